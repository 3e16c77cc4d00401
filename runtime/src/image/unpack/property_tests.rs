//! Property tests (proptest) of the layer unpacker over generated tar entries: names built from
//! `..`, `.`, absolute and ordinary components, symlinks and hardlinks pointing inside, out and at
//! the sentinel directory beside the layer, whiteouts, directories and files in any order. Each
//! layer unpacks or is refused with an error naming the layer, never a panic, and nothing outside
//! the destination changes (the sentinel directory stays exactly as it was).

use proptest::prelude::*;
use tar::EntryType;

use super::test_layers::{Layer, Scene, Spec, TAR};
use super::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A path from hostile and ordinary parts; `{outside}` is the sentinel directory.
fn path() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just("a".to_string()),
        Just("b".to_string()),
        Just("link".to_string()),
        Just(".wh.a".to_string()),
        Just(".wh..wh..opq".to_string()),
        Just("{outside}".to_string()),
        Just(String::new()),
    ];
    (any::<bool>(), prop::collection::vec(part, 1..4)).prop_map(|(absolute, parts)| {
        let joined = parts.join("/");
        if absolute {
            format!("/{joined}")
        } else {
            joined
        }
    })
}

#[derive(Debug, Clone)]
enum Entry {
    File(String, Vec<u8>),
    Dir(String),
    Symlink(String, String),
    Hardlink(String, String),
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        (path(), prop::collection::vec(any::<u8>(), 0..16)).prop_map(|(p, d)| Entry::File(p, d)),
        path().prop_map(Entry::Dir),
        (path(), path()).prop_map(|(p, t)| Entry::Symlink(p, t)),
        (path(), path()).prop_map(|(p, t)| Entry::Hardlink(p, t)),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_layers_never_escape_or_panic(entries in prop::collection::vec(entry(), 1..8)) {
        let scene = Scene::new();
        let outside = scene.outside_str().trim_start_matches('/').to_string();
        let fill = |p: &str| p.replace("{outside}", &outside);
        let fits = |p: &str| p.len() <= 100;
        let mut layer = Layer::new();
        for e in &entries {
            match e {
                Entry::File(p, data) if fits(&fill(p)) => {
                    layer.raw(&fill(p), EntryType::Regular, data, None, &Spec::default(), None);
                }
                Entry::Dir(p) if fits(&fill(p)) => {
                    layer.raw(&fill(p), EntryType::Directory, &[], None, &Spec::default(), None);
                }
                Entry::Symlink(p, t) if fits(&fill(p)) && fits(&fill(t)) => {
                    layer.raw(&fill(p), EntryType::Symlink, &[], Some(&fill(t)), &Spec::default(), None);
                }
                Entry::Hardlink(p, t) if fits(&fill(p)) && fits(&fill(t)) => {
                    layer.raw(&fill(p), EntryType::Link, &[], Some(&fill(t)), &Spec::default(), None);
                }
                _ => {}
            }
        }
        let tar = layer.tar();
        let options = UnpackOptions {
            layer_name: Some("sha256:generated".into()),
            ..UnpackOptions::default()
        };
        match unpack_layer(&tar[..], TAR, &scene.layer, &options) {
            Ok(_) => {}
            Err(e) => {
                let message = e.to_string();
                prop_assert!(message.starts_with("layer sha256:generated"), "{}", message);
            }
        }
        scene.assert_untouched(&format!("{entries:?}"));
    }
}
