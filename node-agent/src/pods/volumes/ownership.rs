//! `securityContext.fsGroup`: a pod's volumes owned by its group, as kubelet's
//! SetVolumeOwnership makes them — every file and directory's group set to fsGroup (symlinks
//! too, without following them), group read (and write, unless the volume's files are
//! read-only: ConfigMap, Secret, projected) added, group execute where the owner may execute,
//! and directories setgid so that files made later inherit the group. Containers get fsGroup
//! among their supplementary groups ([`crate::pods::oci`]).
//!
//! `fsGroupChangePolicy: OnRootMismatch` skips the walk when the volume's root already has the
//! group, the setgid bit and the permissions; `Always` (the default) walks every time the
//! volume is set up or its files are rewritten.
//!
//! Applies to emptyDir, ConfigMap, Secret, projected and persistentVolumeClaim volumes; never to
//! hostPath (the host's own files, as in Kubernetes).
//!
//! Must not: follow a symlink (a container could point one at a host file), or touch anything
//! outside the volume's directory.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Group read + write, group read, group execute.
const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// The pod's fsGroup settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsGroup {
    pub gid: u32,
    /// `fsGroupChangePolicy: OnRootMismatch`.
    pub on_root_mismatch: bool,
}

impl FsGroup {
    /// The pod's, if it sets `fsGroup`.
    pub fn of(pod: &skiff_api::v1::Pod) -> Option<Self> {
        let sc = pod.spec.as_ref()?.security_context.as_ref()?;
        Some(FsGroup {
            gid: sc.fs_group?,
            on_root_mismatch: sc.fs_group_change_policy.as_deref() == Some("OnRootMismatch"),
        })
    }
}

fn wanted_mode(mode: u32, is_dir: bool, read_only: bool) -> u32 {
    let mut mask = if read_only { RO_MASK } else { RW_MASK };
    if is_dir {
        mask |= SETGID | EXEC_MASK;
    } else if mode & 0o100 != 0 {
        mask |= EXEC_MASK;
    }
    mode | mask
}

/// Does the volume's root already look done (OnRootMismatch)?
fn root_matches(root: &Path, gid: u32, read_only: bool) -> io::Result<bool> {
    let meta = std::fs::symlink_metadata(root)?;
    let mode = meta.mode() & 0o7777;
    Ok(meta.gid() == gid && wanted_mode(mode, true, read_only) == mode)
}

fn change(path: &Path, meta: &std::fs::Metadata, gid: u32, read_only: bool) -> io::Result<()> {
    if meta.gid() != gid {
        std::os::unix::fs::lchown(path, None, Some(gid))?;
    }
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.mode() & 0o7777;
    let wanted = wanted_mode(mode, meta.is_dir(), read_only);
    if wanted != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))?;
    }
    Ok(())
}

/// Gives `root` and everything under it to group `fs.gid` (blocking: run it off the runtime).
pub fn apply(root: &Path, fs: FsGroup, read_only: bool) -> io::Result<()> {
    if fs.on_root_mismatch && root_matches(root, fs.gid, read_only)? {
        return Ok(());
    }
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        change(&path, &meta, fs.gid, read_only)?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// [`apply`] on a blocking thread; the error names the directory.
pub async fn apply_async(root: PathBuf, fs: FsGroup, read_only: bool) -> Result<(), String> {
    let shown = root.display().to_string();
    tokio::task::spawn_blocking(move || apply(&root, fs, read_only))
        .await
        .map_err(|e| format!("fsGroup: {e}"))?
        .map_err(|e| format!("fsGroup: setting the group of {shown}: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn gid(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().gid()
    }

    #[test]
    fn a_writable_volume_becomes_the_groups_with_setgid_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(root.join("sub"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(root.join("sub/file"), b"x").unwrap();
        std::fs::set_permissions(
            root.join("sub/file"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::write(root.join("run.sh"), b"x").unwrap();
        std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        // A link out of the volume is regrouped itself, never what it points at.
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"host").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let before = (gid(&outside), mode(&outside));

        let fs = FsGroup {
            gid: 4321,
            on_root_mismatch: false,
        };
        apply(&root, fs, false).unwrap();
        assert_eq!((gid(&root), mode(&root)), (4321, 0o2775));
        assert_eq!(mode(&root.join("sub")), 0o2770);
        assert_eq!(
            (gid(&root.join("sub/file")), mode(&root.join("sub/file"))),
            (4321, 0o660)
        );
        assert_eq!(mode(&root.join("run.sh")), 0o770);
        assert_eq!(gid(&root.join("link")), 4321);
        assert_eq!((gid(&outside), mode(&outside)), before);
    }

    #[test]
    fn read_only_volumes_get_group_read_and_on_root_mismatch_skips_a_done_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("cm");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("key"), b"v").unwrap();
        std::fs::set_permissions(root.join("key"), std::fs::Permissions::from_mode(0o400)).unwrap();
        let always = FsGroup {
            gid: 2000,
            on_root_mismatch: false,
        };
        apply(&root, always, true).unwrap();
        assert_eq!(mode(&root.join("key")), 0o440);
        // A file added later with the root already done: OnRootMismatch leaves it, Always not.
        std::fs::write(root.join("new"), b"v").unwrap();
        std::fs::set_permissions(root.join("new"), std::fs::Permissions::from_mode(0o400)).unwrap();
        let lazy = FsGroup {
            on_root_mismatch: true,
            ..always
        };
        apply(&root, lazy, true).unwrap();
        assert_eq!(mode(&root.join("new")), 0o400);
        apply(&root, always, true).unwrap();
        assert_eq!(
            (gid(&root.join("new")), mode(&root.join("new"))),
            (2000, 0o440)
        );
    }
}
