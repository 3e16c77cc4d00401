//! Hostile image layers, end to end. Each test image is pushed to a real loopback
//! `docker-registry` and pulled by a real agent for an OCI pod. The layers try to escape the
//! rootfs: `../`, an absolute path, a write through a symlink, a hard link to a host file, a device
//! node, and whiteout tricks. Each pod must wait with `ErrImagePull` or `ImagePullBackOff`, and
//! its message must name the entry. Nothing may appear outside the rootfs: a sentinel directory on
//! the host stays as it was. The node must go on running good pods.
//! (`runtime/src/image/unpack/hostile_tests.rs` covers more cases against the unpacker itself.)

use std::path::Path;
use std::time::Duration;

use skiff_tests::images::busybox_oci_archive;
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, wait_for};
use tar::EntryType;

/// One raw tar entry, written as given: no tar writer would produce these.
struct Entry<'a> {
    kind: EntryType,
    path: &'a str,
    link: &'a str,
    data: &'a [u8],
    device: (u32, u32),
}

fn file<'a>(path: &'a str, data: &'a [u8]) -> Entry<'a> {
    Entry {
        kind: EntryType::Regular,
        path,
        link: "",
        data,
        device: (0, 0),
    }
}

fn link<'a>(kind: EntryType, path: &'a str, target: &'a str) -> Entry<'a> {
    Entry {
        kind,
        path,
        link: target,
        data: b"",
        device: (0, 0),
    }
}

fn raw_tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let gnu = h.as_gnu_mut().expect("gnu header");
        assert!(
            e.path.len() < 100 && e.link.len() < 100,
            "names fit the header"
        );
        gnu.name[..e.path.len()].copy_from_slice(e.path.as_bytes());
        gnu.linkname[..e.link.len()].copy_from_slice(e.link.as_bytes());
        h.set_entry_type(e.kind);
        h.set_mode(0o644);
        h.set_size(e.data.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        if e.kind.is_character_special() {
            h.set_device_major(e.device.0).expect("major");
            h.set_device_minor(e.device.1).expect("minor");
        }
        h.set_cksum();
        b.append(&h, e.data).expect("append");
    }
    b.into_inner().expect("tar")
}

/// The names and contents of everything under `dir`.
fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read sentinel")
        .map(|e| {
            let e = e.expect("entry");
            let data = std::fs::read(e.path()).unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), data)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn hostile_layers_from_a_registry_fail_the_pull_and_write_nothing_outside() {
    let sentinel = tempfile::tempdir().expect("sentinel");
    std::fs::write(sentinel.path().join("keep"), b"untouched").expect("keep");
    let outside = sentinel.path().display().to_string();
    let before = listing(sentinel.path());
    let passwd = std::fs::read("/etc/passwd").expect("passwd");

    let dotdot = format!("../../../../../../../..{outside}/dotdot");
    let absolute = format!("{outside}/absolute");
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "dotdot",
            raw_tar(&[file(&dotdot, b"pwned")]),
            format!("entry {dotdot:?}"),
        ),
        (
            "absolute",
            raw_tar(&[file(&absolute, b"pwned")]),
            format!("entry {absolute:?}"),
        ),
        (
            "symlink-then-write",
            raw_tar(&[
                link(EntryType::Symlink, "escape", &outside),
                file("escape/through-link", b"pwned"),
            ]),
            "entry \"escape/through-link\"".to_string(),
        ),
        (
            "hardlink-to-host",
            raw_tar(&[link(EntryType::Link, "passwd", "/etc/passwd")]),
            "entry \"passwd\"".to_string(),
        ),
        (
            "hardlink-up-and-out",
            raw_tar(&[link(
                EntryType::Link,
                "passwd",
                "../../../../../../etc/passwd",
            )]),
            "entry \"passwd\"".to_string(),
        ),
        (
            "device-node",
            raw_tar(&[Entry {
                kind: EntryType::Char,
                path: "dev/mem",
                link: "",
                data: b"",
                device: (1, 1),
            }]),
            "entry \"dev/mem\"".to_string(),
        ),
        (
            "whiteout-of-dotdot",
            raw_tar(&[file(".wh...", b"")]),
            "entry \".wh...\"".to_string(),
        ),
    ];

    let registry = Registry::start();
    let mut cluster = Cluster::start();
    cluster.add_agent("node-1");
    let c = &cluster;
    for (name, tar, _) in &cases {
        let image = registry
            .push_layer_tars(
                &format!("hostile-{name}"),
                "v1",
                std::slice::from_ref(tar),
                &["/bin/sh"],
            )
            .reference;
        c.apply(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {image}\n"
        ));
    }
    for (name, _, entry) in &cases {
        let waiting = wait_for(
            &format!("pod {name} refused"),
            Duration::from_secs(60),
            || {
                let p = c.get_json("pod", name)?;
                let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
                matches!(
                    w["reason"].as_str(),
                    Some("ErrImagePull" | "ImagePullBackOff")
                )
                .then_some(w)
            },
        );
        let message = waiting["message"].as_str().unwrap_or("");
        assert!(
            message.contains("invalid layer") && message.contains(entry.as_str()),
            "pod {name}: the message names the entry ({entry}): {waiting:#}"
        );
        let p = c.get_json("pod", name).expect("pod");
        assert_eq!(p["status"]["phase"], "Pending", "{p:#}");
    }
    assert_eq!(
        listing(sentinel.path()),
        before,
        "nothing written outside the rootfs"
    );
    assert_eq!(std::fs::read("/etc/passwd").expect("passwd"), passwd);

    // The node is unharmed: a good image still runs there.
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("busybox.tar");
    busybox_oci_archive(&archive).expect("busybox image");
    let good = registry.push_layout(&archive, "busybox", "v1").reference;
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: good\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {good}\n    command: [sh, -c, \"exit 0\"]\n"
    ));
    wait_for("the good pod succeeded", Duration::from_secs(60), || {
        c.get_json("pod", "good")
            .filter(|p| p["status"]["phase"] == "Succeeded")
    });
}
