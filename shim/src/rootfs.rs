//! A task's root filesystem: the mounts containerd sends with Create, mounted on
//! `<bundle>/rootfs`, and taken down at Delete (or by `shim delete` after a crash).
//!
//! containerd prepares the snapshot (an overlay, usually) and leaves mounting it to the shim, as
//! runc's shim does. Must not: touch anything outside the bundle.

use std::path::{Path, PathBuf};

use containerd_shim::protos::types::mount::Mount;

pub fn path(bundle: &Path) -> PathBuf {
    bundle.join("rootfs")
}

/// Mounts `mounts` in order on the bundle's rootfs (none: the bundle brought its own rootfs).
pub async fn mount(bundle: &Path, mounts: &[Mount]) -> Result<(), String> {
    let target = path(bundle);
    if mounts.is_empty() {
        return Ok(());
    }
    if let Err(e) = std::fs::create_dir_all(&target) {
        return Err(format!("creating {}: {e}", target.display()));
    }
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = containerd_shim::asynchronous::util::mount_rootfs(m, &target).await {
            unmount(bundle);
            return Err(format!(
                "rootfs[{i}] ({} {}): mounting on {}: {e}",
                m.type_,
                m.source,
                target.display()
            ));
        }
    }
    Ok(())
}

/// Unmounts everything on the bundle's rootfs, innermost first (lazily if busy).
pub fn unmount(bundle: &Path) {
    let target = path(bundle);
    for _ in 0..16 {
        if !is_mountpoint(&target) {
            return;
        }
        if nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).is_err() {
            return;
        }
    }
}

fn is_mountpoint(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.display().to_string();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| mp == want)
}
