//! The agent's tmpfs (`DATA_DIR/run`): task bundles, which hold containers' environments and so
//! Secret values, never reach a disk, and go with a reboot.
//!
//! Must not: mount over a directory that is already a mount point (a restarted agent keeps the
//! tmpfs its predecessor made, bundles and all).

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use nix::mount::MsFlags;

/// Makes `dir` a tmpfs (mode 0700) unless it is a mount point already. Returns whether it is one
/// (false when this process may not mount: the bundles then live on the data dir's disk).
pub fn ensure(dir: &Path) -> std::io::Result<bool> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if is_mount_point(dir)? {
        return Ok(true);
    }
    match nix::mount::mount(
        Some("skiff-run"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    ) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::EPERM) => Ok(false),
        Err(e) => Err(std::io::Error::from(e)),
    }
}

/// Whether `dir` is on another filesystem than its parent.
fn is_mount_point(dir: &Path) -> std::io::Result<bool> {
    let own = std::fs::metadata(dir)?;
    let parent = std::fs::metadata(dir.join(".."))?;
    Ok(own.dev() != parent.dev() || own.ino() == parent.ino())
}
