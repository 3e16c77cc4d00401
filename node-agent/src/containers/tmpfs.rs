//! The agent's tmpfs (`DATA_DIR/run`): task bundles, which hold containers' environments and so
//! Secret values, never reach a disk, and go with a reboot.
//!
//! Must not: mount over a directory that is already a mount point (a restarted agent keeps the
//! tmpfs its predecessor made, bundles and all).

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use nix::mount::MsFlags;

/// Makes `dir` a tmpfs (mode 0700) unless it is a mount point already. Returns whether it is one
/// (false when this process may not mount: the agent then refuses to start, rather than put
/// Secret values on the data dir's disk).
pub fn ensure(dir: &Path) -> std::io::Result<bool> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if is_mount_point(dir)? {
        // Kept from an earlier agent, or mounted by the admin: it must be memory, not a disk.
        return in_memory(dir);
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

/// Whether `dir` is on a filesystem in memory (tmpfs or ramfs).
pub fn in_memory(dir: &Path) -> std::io::Result<bool> {
    use nix::sys::statfs::{FsType, TMPFS_MAGIC, statfs};
    // ramfs has no constant in nix.
    const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
    let kind = statfs(dir).map_err(std::io::Error::from)?.filesystem_type();
    Ok(kind == TMPFS_MAGIC || kind == RAMFS_MAGIC)
}

/// Whether `dir` is on another filesystem than its parent.
fn is_mount_point(dir: &Path) -> std::io::Result<bool> {
    let own = std::fs::metadata(dir)?;
    let parent = std::fs::metadata(dir.join(".."))?;
    Ok(own.dev() != parent.dev() || own.ino() == parent.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_dir_is_memory_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        assert!(ensure(&run).unwrap());
        assert!(in_memory(&run).unwrap());
        // A restarted agent keeps the tmpfs it finds.
        assert!(ensure(&run).unwrap());
        nix::mount::umount(&run).unwrap();
        // A directory of the same disk bound there is no mount point of its own: the agent
        // mounts its tmpfs over it.
        let disk = dir.path().join("disk");
        let bound = dir.path().join("bound");
        std::fs::create_dir_all(&disk).unwrap();
        std::fs::create_dir_all(&bound).unwrap();
        nix::mount::mount(
            Some(&disk),
            &bound,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        let made = ensure(&bound).and_then(|m| Ok((m, in_memory(&bound)?)));
        let _ = nix::mount::umount(&bound);
        let _ = nix::mount::umount(&bound);
        assert_eq!(made.unwrap(), (true, true));
    }
}
