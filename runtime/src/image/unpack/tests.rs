//! Ordinary layers: what each entry type becomes, compression, diff_ids, whiteouts, limits, and
//! the snapshot store. (Run as root, like CI: owners and whiteouts need it.)

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tar::EntryType;

use super::test_layers::{DOCKER_GZIP, Layer, Spec, TAR, TAR_GZIP, TAR_ZSTD, gzip, sha256, zstd};
use super::*;

fn options() -> UnpackOptions {
    UnpackOptions {
        layer_name: Some("sha256:test".into()),
        ..UnpackOptions::default()
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).expect("stat").mode() & 0o7777
}

fn mtime(p: &Path) -> i64 {
    std::fs::symlink_metadata(p).expect("stat").mtime()
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    let n = rustix::fs::lgetxattr(p, name, &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// A layer with one of everything.
fn everything() -> Vec<u8> {
    let spec = |mode, uid, gid, mtime| Spec {
        mode,
        uid,
        gid,
        mtime,
    };
    let mut l = Layer::new();
    l.dir("./")
        .dir_with("./etc/", &spec(0o755, 0, 0, 1_500_000_001))
        .file_with(
            "./etc/conf",
            b"conf",
            &spec(0o640, 1000, 1001, 1_500_000_002),
        )
        .dir("./bin/")
        .file_with("./bin/su", b"su", &spec(0o4755, 0, 0, 1_500_000_003))
        .file_with("./bin/sg", b"sg", &spec(0o2755, 0, 50, 1_500_000_004))
        .hardlink("./bin/su-again", "./bin/su")
        .hardlink("bin/su-third", "bin/su-again")
        .symlink("./bin/sh", "/bin/busybox")
        .symlink("./lib", "usr/lib")
        .dir_with("./tmp/", &spec(0o1777, 0, 0, 1_500_000_005))
        .fifo("./run/ctl", 0o620)
        // A read-only directory, then an entry inside it.
        .dir_with("./ro/", &spec(0o555, 7, 8, 1_500_000_006))
        .file_with("./ro/inside", b"inside", &spec(0o444, 0, 0, 1_500_000_007))
        .file("./twice", b"first")
        .file("./twice", b"second")
        .pax(&[
            ("SCHILY.xattr.user.skiff", b"yes"),
            ("mtime", b"1700000000.25"),
        ])
        .file("./attr", b"attr")
        // aufs metadata: skipped.
        .file(".wh..wh.plnk/1.2", b"x");
    let mut tar = l.tar();
    // Docker pads layers to a 10 KiB record: the padding is part of the diff_id.
    tar.extend_from_slice(&[0u8; 10240]);
    tar
}

fn check_everything(root: &Path) {
    let p = |s: &str| root.join(s);
    assert_eq!(std::fs::read(p("etc/conf")).expect("conf"), b"conf");
    let conf = std::fs::metadata(p("etc/conf")).expect("stat");
    assert_eq!(
        (conf.uid(), conf.gid(), mode(&p("etc/conf"))),
        (1000, 1001, 0o640)
    );
    assert_eq!(conf.mtime(), 1_500_000_002);
    assert_eq!(mode(&p("bin/su")), 0o4755, "setuid survives chown");
    assert_eq!(mode(&p("bin/sg")), 0o2755, "setgid survives chown");
    assert_eq!(std::fs::metadata(p("bin/sg")).expect("stat").gid(), 50);
    let su = std::fs::metadata(p("bin/su")).expect("stat");
    for link in ["bin/su-again", "bin/su-third"] {
        assert_eq!(
            std::fs::metadata(p(link)).expect("stat").ino(),
            su.ino(),
            "{link}"
        );
    }
    assert_eq!(su.nlink(), 3);
    assert_eq!(
        std::fs::read_link(p("bin/sh")).expect("link"),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        std::fs::read_link(p("lib")).expect("link"),
        Path::new("usr/lib")
    );
    assert_eq!(mode(&p("tmp")), 0o1777, "sticky");
    assert_eq!(mtime(&p("tmp")), 1_500_000_005);
    assert!(
        std::fs::metadata(p("run/ctl"))
            .expect("stat")
            .file_type()
            .is_fifo()
    );
    assert_eq!(mode(&p("run/ctl")), 0o620);
    assert_eq!(mode(&p("run")), 0o755, "a directory the layer implies");
    assert_eq!(mode(&p("ro")), 0o555);
    let ro = std::fs::metadata(p("ro")).expect("stat");
    assert_eq!((ro.uid(), ro.gid()), (7, 8));
    assert_eq!(
        ro.mtime(),
        1_500_000_006,
        "a directory's mtime survives its children"
    );
    assert_eq!(std::fs::read(p("ro/inside")).expect("inside"), b"inside");
    assert_eq!(mtime(&p("etc")), 1_500_000_001);
    assert_eq!(std::fs::read(p("twice")).expect("twice"), b"second");
    assert_eq!(
        xattr(&p("attr"), "user.skiff").as_deref(),
        Some(&b"yes"[..])
    );
    let attr = std::fs::metadata(p("attr")).expect("stat");
    assert_eq!(
        (attr.mtime(), attr.mtime_nsec()),
        (1_700_000_000, 250_000_000)
    );
    assert!(!p(".wh..wh.plnk").exists());
    assert_eq!(mode(root), 0o755, "the root keeps its own mode");
}

#[test]
fn unpacks_every_entry_type_from_every_compression() {
    let tar = everything();
    let want = sha256(&tar);
    for (media_type, blob) in [
        (TAR, tar.clone()),
        (TAR_GZIP, gzip(&tar)),
        (DOCKER_GZIP, gzip(&tar)),
        (TAR_ZSTD, zstd(&tar)),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let info = unpack_layer(&blob[..], media_type, dir.path(), &options()).expect(media_type);
        assert_eq!(info.diff_id, want, "{media_type}");
        assert_eq!(info.size, tar.len() as u64, "{media_type}");
        assert_eq!(info.compressed_size, blob.len() as u64, "{media_type}");
        assert_eq!(info.entries, 18, "{media_type}");
        assert!(!info.devices);
        check_everything(dir.path());
    }
}

#[test]
fn gzip_members_and_zstd_frames_are_one_layer() {
    let tar = everything();
    let (a, b) = tar.split_at(1000);
    for (media_type, compress) in [(TAR_GZIP, gzip as fn(&[u8]) -> Vec<u8>), (TAR_ZSTD, zstd)] {
        let mut blob = compress(a);
        blob.extend(compress(b));
        let dir = tempfile::tempdir().expect("tempdir");
        let info = unpack_layer(&blob[..], media_type, dir.path(), &options()).expect(media_type);
        assert_eq!(info.diff_id, sha256(&tar), "{media_type}");
        check_everything(dir.path());
    }
}

#[test]
fn whiteouts_become_overlayfs_whiteouts() {
    let tar = Layer::new()
        .dir("a/")
        .file("a/.wh.gone", b"")
        .file(".wh.top", b"")
        .file("d/.wh..wh..opq", b"")
        .file("d/kept", b"kept")
        // Deleted and made anew within one layer: an opaque directory.
        .file(".wh.again", b"")
        .dir("again/")
        .tar();
    let dir = tempfile::tempdir().expect("tempdir");
    unpack_layer(&tar[..], TAR, dir.path(), &options()).expect("unpack");
    for gone in ["a/gone", "top"] {
        let m = std::fs::symlink_metadata(dir.path().join(gone)).expect(gone);
        assert!(m.file_type().is_char_device(), "{gone}");
        assert_eq!(m.rdev(), 0, "{gone}");
    }
    assert!(!dir.path().join("a/.wh.gone").exists());
    assert_eq!(
        xattr(&dir.path().join("d"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!dir.path().join("d/.wh..wh..opq").exists());
    assert_eq!(
        std::fs::read(dir.path().join("d/kept")).expect("kept"),
        b"kept"
    );
    assert!(dir.path().join("again").is_dir());
    assert_eq!(
        xattr(&dir.path().join("again"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(xattr(&dir.path().join("a"), "trusted.overlay.opaque"), None);
}

#[test]
fn devices_only_when_allowed() {
    let tar = Layer::new()
        .device("dev/null", EntryType::Char, 1, 3)
        .device("dev/loop9", EntryType::Block, 7, 9)
        .tar();
    let dir = tempfile::tempdir().expect("tempdir");
    let allow = UnpackOptions {
        allow_devices: true,
        ..options()
    };
    let info = unpack_layer(&tar[..], TAR, dir.path(), &allow).expect("unpack");
    assert!(info.devices);
    let null = std::fs::symlink_metadata(dir.path().join("dev/null")).expect("null");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert!(
        std::fs::symlink_metadata(dir.path().join("dev/loop9"))
            .expect("loop")
            .file_type()
            .is_block_device()
    );
}

#[test]
fn size_limit_media_type_and_corrupt_streams() {
    let tar = Layer::new().file("big", &[1u8; 4096]).tar();
    let dir = tempfile::tempdir().expect("tempdir");
    let small = UnpackOptions {
        max_size: Some(2048),
        ..options()
    };
    let err = unpack_layer(&tar[..], TAR, dir.path(), &small).expect_err("too large");
    assert!(
        matches!(err, UnpackError::TooLarge { limit: 2048, .. }),
        "{err}"
    );
    // The end-of-archive blocks count too.
    let exact = UnpackOptions {
        max_size: Some(tar.len() as u64 - 1),
        ..options()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let err = unpack_layer(&tar[..], TAR, dir.path(), &exact).expect_err("one byte over");
    assert!(matches!(err, UnpackError::TooLarge { .. }), "{err}");

    let err = unpack_layer(
        &tar[..],
        "application/vnd.oci.image.layer.v1.tar+lz4",
        dir.path(),
        &options(),
    )
    .expect_err("unknown media type");
    assert_eq!(
        err.to_string(),
        "layer sha256:test: media type \"application/vnd.oci.image.layer.v1.tar+lz4\" is not a layer skiff can unpack (an OCI or Docker tar layer, uncompressed, gzip or zstd)"
    );
    let err = unpack_layer(&tar[..], TAR_GZIP, dir.path(), &options()).expect_err("not gzip");
    assert!(matches!(err, UnpackError::Read { .. }), "{err}");
    let err = unpack_layer(&tar[..], TAR_ZSTD, dir.path(), &options()).expect_err("not zstd");
    assert!(matches!(err, UnpackError::Read { .. }), "{err}");
    let mut truncated = gzip(&tar);
    truncated.truncate(truncated.len() / 2);
    let err = unpack_layer(&truncated[..], TAR_GZIP, dir.path(), &options()).expect_err("cut");
    assert!(
        err.to_string()
            .starts_with("layer sha256:test: cannot read the layer"),
        "{err}"
    );
}

/// A snapshot store in a temp dir, and a layer for it.
fn store() -> (tempfile::TempDir, Snapshots) {
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshots = Snapshots::new(dir.path().join("snapshots")).expect("store");
    (dir, snapshots)
}

/// What the store's `tmp/` holds.
pub(super) fn temp_entries(store: &Snapshots) -> Vec<String> {
    std::fs::read_dir(store.root().join("tmp"))
        .expect("ls tmp")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn snapshots_unpack_once_and_list_lower_dirs_top_first() {
    let (_dir, store) = store();
    let base = Layer::new().file("etc/os-release", b"skiff").tar();
    let top = gzip(&Layer::new().file("app", b"app").tar());
    let (base_id, top_id) = (
        sha256(&base),
        sha256(&Layer::new().file("app", b"app").tar()),
    );
    let opened = AtomicUsize::new(0);
    let open = |bytes: &[u8]| {
        opened.fetch_add(1, Ordering::SeqCst);
        Ok(std::io::Cursor::new(bytes.to_vec()))
    };
    let base_dir = store.ensure(&base_id, TAR, || open(&base)).expect("base");
    let top_dir = store.ensure(&top_id, TAR_GZIP, || open(&top)).expect("top");
    assert_eq!(
        store.ensure(&base_id, TAR, || open(&base)).expect("again"),
        base_dir
    );
    assert_eq!(
        opened.load(Ordering::SeqCst),
        2,
        "the second ensure opens nothing"
    );
    assert_eq!(
        std::fs::read(base_dir.join("etc/os-release")).expect("file"),
        b"skiff"
    );
    assert_eq!(
        store.lower_dirs(&[&base_id, &top_id]).expect("lower dirs"),
        [top_dir.clone(), base_dir.clone()]
    );
    let snapshot = store.get(&top_id).expect("get").expect("present");
    assert_eq!((snapshot.dir, snapshot.unpacked), (top_dir, false));
    assert_eq!(snapshot.info.diff_id, top_id);
    let missing = sha256(b"nothing");
    let err = store
        .lower_dirs(&[&base_id, &missing])
        .expect_err("missing");
    assert_eq!(
        err.to_string(),
        format!("layer {missing}: not in the snapshot store (ensure it first)")
    );
    for private in [
        store.root().to_path_buf(),
        store.root().join("sha256"),
        store.root().join("tmp"),
        base_dir.parent().expect("layer dir").to_path_buf(),
    ] {
        assert_eq!(mode(&private), 0o700, "{}", private.display());
    }
    assert_eq!(mode(&base_dir), 0o755);
    assert!(temp_entries(&store).is_empty());
}

#[test]
fn concurrent_ensures_unpack_once() {
    let (_dir, store) = store();
    let tar = Layer::new().file("f", &[5u8; 100_000]).tar();
    let id = sha256(&tar);
    let opened = AtomicUsize::new(0);
    let dirs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    store.ensure(&id, TAR, || {
                        opened.fetch_add(1, Ordering::SeqCst);
                        Ok(&tar[..])
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread").expect("ensure"))
            .collect()
    });
    assert_eq!(opened.load(Ordering::SeqCst), 1);
    assert!(dirs.iter().all(|d| *d == dirs[0]));
    assert!(temp_entries(&store).is_empty());
}

#[test]
fn another_process_renaming_first_is_harmless() {
    let (dir, first) = store();
    let second = Snapshots::new(dir.path().join("snapshots")).expect("second handle");
    let tar = Layer::new().file("f", b"same").tar();
    let id = sha256(&tar);
    // While `first` unpacks, `second` (standing in for another process: its own locks) puts the
    // layer in place.
    let path = first
        .ensure(&id, TAR, || {
            second.ensure(&id, TAR, || Ok(&tar[..])).expect("second");
            Ok(&tar[..])
        })
        .expect("first");
    assert_eq!(std::fs::read(path.join("f")).expect("f"), b"same");
    assert!(temp_entries(&first).is_empty());
}

#[test]
fn failures_leave_nothing_behind() {
    let (_dir, store) = store();
    let tar = Layer::new().file("f", b"content").tar();
    let wrong = sha256(b"another layer");
    let err = store
        .ensure(&wrong, TAR, || Ok(&tar[..]))
        .expect_err("mismatch");
    assert_eq!(
        err.to_string(),
        format!(
            "layer {wrong}: the uncompressed layer has diff_id {}, not the one the image config names",
            sha256(&tar)
        )
    );
    assert!(store.get(&wrong).expect("get").is_none());
    let err = store
        .ensure(&wrong, TAR, || {
            Err::<&[u8], _>(std::io::Error::other("blob gone"))
        })
        .expect_err("no blob");
    assert!(matches!(err, UnpackError::Blob { .. }), "{err}");
    let err = store
        .ensure("sha256:nope", TAR, || Ok(&tar[..]))
        .expect_err("bad id");
    assert!(matches!(err, UnpackError::InvalidDiffId { .. }), "{err}");
    let mut cut = gzip(&tar);
    cut.truncate(cut.len() - 8);
    let err = store
        .ensure(&sha256(&tar), TAR_GZIP, || Ok(&cut[..]))
        .expect_err("cut");
    assert!(matches!(err, UnpackError::Read { .. }), "{err}");
    assert!(temp_entries(&store).is_empty());
    assert_eq!(
        std::fs::read_dir(store.root().join("sha256"))
            .expect("ls")
            .count(),
        0
    );
}

#[test]
fn a_panic_in_the_blob_leaves_nothing_behind() {
    let (_dir, store) = store();
    let tar = Layer::new().file("f", b"content").tar();
    let id = sha256(&tar);
    struct Panics;
    impl std::io::Read for Panics {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            panic!("reader panics mid-layer")
        }
    }
    let store = Arc::new(store);
    let s = store.clone();
    let joined = std::thread::spawn(move || s.ensure(&id, TAR, || Ok(Panics))).join();
    assert!(joined.is_err());
    assert!(temp_entries(&store).is_empty());
}

#[test]
fn dead_processes_temp_dirs_go_when_the_store_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("snapshots");
    let store = Snapshots::new(&root).expect("store");
    // No pid reaches 999999999 (pid_max is at most 2^22).
    let dead = root.join("tmp/999999999-0-abc");
    std::fs::create_dir_all(dead.join("fs/ro")).expect("dead temp");
    std::fs::set_permissions(
        dead.join("fs/ro"),
        std::os::unix::fs::PermissionsExt::from_mode(0o500),
    )
    .expect("chmod");
    let live = root.join(format!("tmp/{}-77-abc", std::process::id()));
    std::fs::create_dir(&live).expect("live temp");
    drop(store);
    let store = Snapshots::new(&root).expect("reopen");
    assert_eq!(
        temp_entries(&store),
        [format!("{}-77-abc", std::process::id())]
    );
}

#[test]
fn device_snapshots_are_refused_to_callers_without_devices() {
    let (_dir, store) = store();
    let tar = Layer::new().device("dev/null", EntryType::Char, 1, 3).tar();
    let id = sha256(&tar);
    let err = store
        .ensure(&id, TAR, || Ok(&tar[..]))
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        format!(
            "layer {id}: entry \"dev/null\": character device 1:3 refused: device nodes are not allowed for this layer"
        )
    );
    assert!(temp_entries(&store).is_empty());
    let snapshot = store
        .ensure_with(&id, TAR, true, || Ok(&tar[..]))
        .expect("privileged");
    assert!(snapshot.info.devices && snapshot.unpacked);
    let err = store
        .ensure(&id, TAR, || Ok(&tar[..]))
        .expect_err("unprivileged");
    assert!(
        matches!(err, UnpackError::DevicesNotAllowed { .. }),
        "{err}"
    );
}
