//! Hostile layers: each must fail with a clear error naming the layer and the entry, write
//! nothing outside the destination (a sentinel directory next to it stays exactly as it was),
//! and — through the snapshot store — leave no temp directory and no snapshot behind.
//! A few tricks are not errors but must still not write through a link: those check the result.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use tar::EntryType;

use super::test_layers::{Layer, Scene, TAR, TAR_GZIP, gzip, sha256};
use super::tests::temp_entries;
use super::*;

/// Unpacks the layer `build` makes (it may point at the scene's sentinel directory) directly and
/// through a snapshot store; both must fail with a message containing `entry "ENTRY": WHY`.
/// `{outside}` in `entry` and `why` stands for the sentinel directory's absolute path.
fn assert_refused(case: &str, entry: &str, why: &str, build: impl Fn(&Scene) -> Vec<u8>) {
    let scene = Scene::new();
    let tar = build(&scene);
    let entry = &entry.replace("{outside}", scene.outside_str());
    let why = &why.replace("{outside}", scene.outside_str());
    let options = UnpackOptions {
        layer_name: Some("sha256:hostile".into()),
        ..UnpackOptions::default()
    };
    let err = unpack_layer(&tar[..], TAR, &scene.layer, &options).expect_err(case);
    let message = err.to_string();
    let want = format!("layer sha256:hostile: entry {entry:?}: {why}");
    assert!(
        message.starts_with(&want),
        "{case}:\n  got  {message}\n  want {want}…"
    );
    assert!(
        matches!(err, UnpackError::Refused { .. }),
        "{case}: {err:?}"
    );
    scene.assert_untouched(case);

    // The same layer, gzip-compressed, through the store.
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = Snapshots::new(store_dir.path()).expect("store");
    let diff_id = sha256(&tar);
    let blob = gzip(&tar);
    let err = store
        .ensure(&diff_id, TAR_GZIP, || Ok(&blob[..]))
        .expect_err(case);
    let want = format!("layer {diff_id}: entry {entry:?}: {why}");
    assert!(err.to_string().starts_with(&want), "{case} (store): {err}");
    assert!(
        temp_entries(&store).is_empty(),
        "{case}: temp dir left behind"
    );
    assert!(
        store.get(&diff_id).expect("get").is_none(),
        "{case}: snapshot kept"
    );
    scene.assert_untouched(case);
}

#[test]
fn paths_that_leave_the_root() {
    let leaves = "path leaves the layer root";
    assert_refused("../x", "../x", leaves, |_| {
        Layer::new().file("../x", b"evil").tar()
    });
    assert_refused("../outside/x", "../outside/x", leaves, |_| {
        Layer::new().file("../outside/x", b"evil").tar()
    });
    assert_refused("a/../../x", "a/../../x", leaves, |_| {
        Layer::new().dir("a/").file("a/../../x", b"evil").tar()
    });
    assert_refused(
        "./../outside/sentinel",
        "./../outside/sentinel",
        leaves,
        |_| Layer::new().file("./../outside/sentinel", b"evil").tar(),
    );
    assert_refused("a dir entry ..", "..", leaves, |_| {
        Layer::new().dir("..").tar()
    });
    let absolute = "absolute path (layer paths are relative to the layer root)";
    assert_refused("/etc/x", "/etc/skiff-unpack-test", absolute, |_| {
        Layer::new().file("/etc/skiff-unpack-test", b"evil").tar()
    });
    assert!(!std::path::Path::new("/etc/skiff-unpack-test").exists());
    assert_refused("absolute into the sentinel", "{outside}/x", absolute, |s| {
        Layer::new()
            .file(&format!("{}/x", s.outside_str()), b"evil")
            .tar()
    });
}

#[test]
fn writes_through_symlinks() {
    let why = |link: &str| format!("parent {link:?} is a symlink");
    // ln -s /abs/outside link; link/file
    assert_refused("symlink then write", "link/file", &why("link"), |s| {
        Layer::new()
            .symlink("link", s.outside_str())
            .file("link/file", b"evil")
            .tar()
    });
    assert_refused(
        "relative symlink then write",
        "link/sentinel",
        &why("link"),
        |_| {
            Layer::new()
                .symlink("link", "../outside")
                .file("link/sentinel", b"evil")
                .tar()
        },
    );
    assert_refused(
        "symlink dir then nested write",
        "d/sub/deeper/f",
        &why("d/sub"),
        |s| {
            Layer::new()
                .dir("d/")
                .symlink("d/sub", s.outside_str())
                .file("d/sub/deeper/f", b"evil")
                .tar()
        },
    );
    assert_refused(
        "symlink then dir entry below",
        "link/newdir/",
        &why("link"),
        |s| {
            Layer::new()
                .symlink("link", s.outside_str())
                .dir("link/newdir/")
                .tar()
        },
    );
    assert_refused(
        "symlink then symlink below",
        "link/evil",
        &why("link"),
        |s| {
            Layer::new()
                .symlink("link", s.outside_str())
                .symlink("link/evil", "/")
                .tar()
        },
    );
    assert_refused("symlink then fifo below", "link/fifo", &why("link"), |s| {
        Layer::new()
            .symlink("link", s.outside_str())
            .fifo("link/fifo", 0o644)
            .tar()
    });
    assert_refused(
        "symlink to / then write",
        "root{outside}/sentinel",
        &why("root"),
        // At the sentinel, never at a real host file: a regression must not clobber the machine
        // running the tests.
        |s| {
            Layer::new()
                .symlink("root", "/")
                .file(&format!("root{}/sentinel", s.outside_str()), b"evil")
                .tar()
        },
    );
    assert_refused(
        "file then write below",
        "f/x",
        "parent \"f\" is not a directory",
        |_| Layer::new().file("f", b"f").file("f/x", b"x").tar(),
    );
}

#[test]
fn later_entries_replace_symlinks_instead_of_writing_through() {
    let scene = Scene::new();
    let victim = format!("{}/victim", scene.outside_str());
    let tar = Layer::new()
        // A symlink to a host file, then a regular file of the same name.
        .symlink("f", &victim)
        .file("f", b"pwned")
        // A symlink to a host dir, then a directory of the same name and a file in it.
        .symlink("d", scene.outside_str())
        .dir("d/")
        .file("d/sentinel", b"pwned")
        // A symlink, then a hard link of the same name.
        .file("real", b"real")
        .symlink("h", &victim)
        .hardlink("h", "real")
        // A symlink, then a FIFO of the same name.
        .symlink("p", &victim)
        .fifo("p", 0o600)
        .tar();
    let options = UnpackOptions::default();
    unpack_layer(&tar[..], TAR, &scene.layer, &options).expect("not an error");
    let l = |p: &str| scene.layer.join(p);
    let f = std::fs::symlink_metadata(l("f")).expect("f");
    assert!(f.file_type().is_file());
    assert_eq!(std::fs::read(l("f")).expect("f"), b"pwned");
    assert!(std::fs::symlink_metadata(l("d")).expect("d").is_dir());
    assert_eq!(
        std::fs::read(l("d/sentinel")).expect("d/sentinel"),
        b"pwned"
    );
    assert_eq!(
        std::fs::metadata(l("h")).expect("h").ino(),
        std::fs::metadata(l("real")).expect("real").ino()
    );
    assert!(
        std::fs::symlink_metadata(l("p"))
            .expect("p")
            .file_type()
            .is_fifo()
    );
    scene.assert_untouched("later entries replace symlinks");
}

#[test]
fn hard_links_out_of_the_layer() {
    let passwd_links = std::fs::metadata("/etc/passwd").map(|m| m.nlink()).ok();
    assert_refused(
        "hard link to /etc/passwd",
        "h",
        "hard link to \"/etc/passwd\": absolute path",
        |_| Layer::new().hardlink("h", "/etc/passwd").tar(),
    );
    assert_eq!(
        std::fs::metadata("/etc/passwd").map(|m| m.nlink()).ok(),
        passwd_links
    );
    assert_refused(
        "hard link to ../outside/sentinel",
        "h",
        "hard link to \"../outside/sentinel\": path leaves the layer root",
        |_| Layer::new().hardlink("h", "../outside/sentinel").tar(),
    );
    assert_refused(
        "hard link to the sentinel by absolute path",
        "h",
        "hard link to \"{outside}/sentinel\": absolute path",
        |s| {
            Layer::new()
                .hardlink("h", &format!("{}/sentinel", s.outside_str()))
                .tar()
        },
    );
    let not_earlier = "the target is not a regular file written earlier by this layer";
    assert_refused(
        "hard link to a symlink",
        "h",
        &format!("hard link to \"s\": {not_earlier}"),
        |s| {
            Layer::new()
                .symlink("s", &format!("{}/victim", s.outside_str()))
                .hardlink("h", "s")
                .tar()
        },
    );
    assert_refused(
        "hard link through a symlinked dir",
        "h",
        &format!("hard link to \"d/sentinel\": {not_earlier}"),
        |s| {
            Layer::new()
                .symlink("d", s.outside_str())
                .hardlink("h", "d/sentinel")
                .tar()
        },
    );
    assert_refused(
        "hard link to a file of a lower layer (or the host)",
        "h",
        &format!("hard link to \"etc/passwd\": {not_earlier}"),
        |_| Layer::new().hardlink("h", "etc/passwd").tar(),
    );
    assert_refused(
        "hard link to a file later replaced by a symlink",
        "h",
        &format!("hard link to \"f\": {not_earlier}"),
        |s| {
            Layer::new()
                .file("f", b"f")
                .symlink("f", &format!("{}/victim", s.outside_str()))
                .hardlink("h", "f")
                .tar()
        },
    );
    assert_refused(
        "hard link to a directory",
        "h",
        &format!("hard link to \"d\": {not_earlier}"),
        |_| Layer::new().dir("d/").hardlink("h", "d").tar(),
    );
    assert_refused(
        "hard link to itself",
        "h",
        "hard link to \"h\": the target is the link itself",
        |_| Layer::new().file("h", b"h").hardlink("h", "h").tar(),
    );
}

#[test]
fn device_nodes() {
    assert_refused(
        "character device",
        "dev/mem",
        "character device 1:1 refused: device nodes are not allowed for this layer",
        |_| Layer::new().device("dev/mem", EntryType::Char, 1, 1).tar(),
    );
    assert_refused(
        "block device",
        "dev/sda",
        "block device 8:0 refused: device nodes are not allowed for this layer",
        |_| Layer::new().device("dev/sda", EntryType::Block, 8, 0).tar(),
    );
    // A 0:0 character device is how overlayfs spells a whiteout; a layer says `.wh.` instead.
    assert_refused(
        "a raw 0:0 character device",
        "x",
        "character device 0:0 refused",
        |_| Layer::new().device("x", EntryType::Char, 0, 0).tar(),
    );
}

#[test]
fn whiteout_tricks() {
    assert_refused(
        ".wh... (whiteout of ..)",
        ".wh...",
        "whiteout of \".\" or \"..\"",
        |_| Layer::new().file(".wh...", b"").tar(),
    );
    assert_refused(
        "a/.wh.. (whiteout of .)",
        "a/.wh..",
        "whiteout of \".\" or \"..\"",
        |_| Layer::new().file("a/.wh..", b"").tar(),
    );
    assert_refused(
        ".wh. (whiteout of nothing)",
        ".wh.",
        "whiteout names nothing",
        |_| Layer::new().file(".wh.", b"").tar(),
    );
    assert_refused("../.wh.x", "../.wh.x", "path leaves the layer root", |_| {
        Layer::new().file("../.wh.x", b"").tar()
    });
    assert_refused(
        "../outside/.wh.sentinel",
        "../outside/.wh.sentinel",
        "path leaves the layer root",
        |_| Layer::new().file("../outside/.wh.sentinel", b"").tar(),
    );
    assert_refused(
        "whiteout through a symlinked dir",
        "d/.wh.sentinel",
        "parent \"d\" is a symlink",
        |s| {
            Layer::new()
                .symlink("d", s.outside_str())
                .file("d/.wh.sentinel", b"")
                .tar()
        },
    );
    assert_refused(
        "opaque marker in a symlinked dir",
        "d/.wh..wh..opq",
        "parent \"d\" is a symlink",
        |s| {
            Layer::new()
                .symlink("d", s.outside_str())
                .file("d/.wh..wh..opq", b"")
                .tar()
        },
    );
    assert_refused(
        "a whiteout name as a directory",
        ".wh.x/y",
        "whiteout name used as a directory",
        |_| Layer::new().file(".wh.x/y", b"").tar(),
    );
    assert_refused(
        "overlayfs metadata as a PAX xattr",
        "d/",
        "extended attribute \"trusted.overlay.opaque\" is overlayfs metadata",
        |_| {
            Layer::new()
                .pax(&[("SCHILY.xattr.trusted.overlay.opaque", b"y")])
                .dir("d/")
                .tar()
        },
    );
    assert_refused(
        "an overlayfs redirect as a PAX xattr",
        "d/",
        "extended attribute \"trusted.overlay.redirect\" is overlayfs metadata",
        |_| {
            Layer::new()
                .pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/etc")])
                .dir("d/")
                .tar()
        },
    );
    // A whiteout over a symlink replaces the symlink; it never deletes what the link points at.
    let scene = Scene::new();
    let tar = Layer::new()
        .symlink("v", &format!("{}/victim", scene.outside_str()))
        .file(".wh.v", b"")
        .tar();
    unpack_layer(&tar[..], TAR, &scene.layer, &UnpackOptions::default()).expect("whiteout");
    assert!(
        std::fs::symlink_metadata(scene.layer.join("v"))
            .expect("v")
            .file_type()
            .is_char_device()
    );
    scene.assert_untouched("whiteout over a symlink");
}

#[test]
fn other_refusals_are_clear() {
    assert_refused("empty symlink", "s", "symlink with an empty target", |_| {
        Layer::new().symlink("s", "").tar()
    });
    assert_refused(
        "a file for the root",
        ".",
        "a regular file cannot replace the layer root",
        |_| {
            Layer::new()
                .raw(
                    ".",
                    EntryType::Regular,
                    b"",
                    None,
                    &Default::default(),
                    None,
                )
                .tar()
        },
    );
    assert_refused("uid -1", "f", "owner id 4294967295 is out of range", |_| {
        let spec = super::test_layers::Spec {
            uid: u64::from(u32::MAX),
            ..Default::default()
        };
        Layer::new().file_with("f", b"", &spec).tar()
    });
}
