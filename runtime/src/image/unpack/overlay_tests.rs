//! Two snapshots mounted as a real overlayfs: the upper layer's whiteouts and opaque directory
//! hide what they should of the lower one. Needs root (as CI runs); fails, never skips, without.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::test_layers::{Layer, TAR, TAR_ZSTD, sha256, zstd};
use super::*;

/// Unmounts on drop, whatever the test did.
struct Mounted(PathBuf);

impl Mounted {
    fn overlay(lower_dirs: &[PathBuf], at: &Path) -> Self {
        let lower: Vec<&str> = lower_dirs
            .iter()
            .map(|d| d.to_str().expect("utf-8 temp path"))
            .collect();
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!("lowerdir={}", lower.join(":")))
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount overlay (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(at.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn overlayfs_applies_the_converted_whiteouts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Snapshots::new(dir.path().join("snapshots")).expect("store");
    let lower = Layer::new()
        .file("a/keep", b"keep")
        .file("a/gone", b"gone")
        .file("d/old", b"old")
        .file("d/sub/deep", b"deep")
        .file("top/inside", b"inside")
        .tar();
    let upper = Layer::new()
        .file("a/.wh.gone", b"")
        .file("d/.wh..wh..opq", b"")
        .file("d/new", b"new")
        .file(".wh.top", b"")
        .tar();
    let (lower_id, upper_id) = (sha256(&lower), sha256(&upper));
    store
        .ensure(&lower_id, TAR, || Ok(&lower[..]))
        .expect("lower");
    let upper_blob = zstd(&upper);
    store
        .ensure(&upper_id, TAR_ZSTD, || Ok(&upper_blob[..]))
        .expect("upper");
    let lower_dirs = store
        .lower_dirs(&[&lower_id, &upper_id])
        .expect("lower dirs");

    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).expect("mountpoint");
    let mounted = Mounted::overlay(&lower_dirs, &mnt);
    assert_eq!(names(&mnt), ["a", "d"]);
    assert_eq!(names(&mnt.join("a")), ["keep"]);
    assert_eq!(std::fs::read(mnt.join("a/keep")).expect("keep"), b"keep");
    assert!(!mnt.join("a/gone").exists());
    assert_eq!(
        names(&mnt.join("d")),
        ["new"],
        "an opaque directory hides the lower one"
    );
    assert!(!mnt.join("d/sub/deep").exists());
    assert!(!mnt.join("top").exists());
    drop(mounted);
    assert_eq!(names(&mnt), Vec::<String>::new(), "unmounted");
}
