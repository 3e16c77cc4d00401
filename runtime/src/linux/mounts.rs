//! The container's filesystem view, built inside its new mount namespace: the spec's mounts
//! (proc, a tmpfs /dev with the minimal device nodes, devpts, shm, mqueue, read-only sysfs,
//! binds), `pivot_root` into the rootfs, then masked and read-only paths and a read-only root.
//!
//! Every mount destination is opened inside the rootfs through descriptors
//! ([`super::mount_target`]: symlinks are followed as the container would see them, `..` stops
//! at the root, nothing is looked up by a path a container could change in between) and mounted
//! onto `/proc/self/fd/N`; bind sources are opened first too (under `skiff.beneath=`, from their
//! volume with no symlink followed), so an image or a container sharing a volume cannot point a
//! mount at the host.
//!
//! Must not: mount anything outside the container's mount namespace, or follow a path out of the
//! rootfs.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use oci_spec::runtime::{Mount, Spec};

use super::error::{LinuxError, SysContext};
use super::mount_target;

/// Symlinks followed when resolving one path, as the kernel's limit.
const MAX_LINKS: usize = 40;

/// `path` (absolute or not, as the container sees it) resolved inside `root` without leaving it.
pub fn resolve_in_root(root: &Path, path: &Path) -> Result<PathBuf, LinuxError> {
    let mut pending: Vec<PathBuf> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .rev()
        .collect();
    let mut resolved: Vec<PathBuf> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part.as_os_str() == ".." {
            resolved.pop();
            continue;
        }
        let candidate: PathBuf = root.join(resolved.iter().collect::<PathBuf>()).join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(LinuxError::io(
                        format!("resolving {} in the rootfs", path.display()),
                        std::io::Error::from_raw_os_error(nix::libc::ELOOP),
                    ));
                }
                let target = std::fs::read_link(&candidate)
                    .ctx(|| format!("reading link {}", candidate.display()))?;
                if target.is_absolute() {
                    resolved.clear();
                }
                let parts: Vec<PathBuf> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(PathBuf::from(n)),
                        Component::ParentDir => Some(PathBuf::from("..")),
                        _ => None,
                    })
                    .collect();
                pending.extend(parts.into_iter().rev());
            }
            _ => resolved.push(part),
        }
    }
    Ok(root.join(resolved.iter().collect::<PathBuf>()))
}

/// skiff's own bind option, `skiff.beneath=DIR`: the source lies inside DIR and is opened from
/// it with no symlink followed (`openat2` `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), then mounted
/// through its descriptor. What the agent checked cannot be swapped for a link in between.
pub const BENEATH_OPTION: &str = "skiff.beneath=";

/// Mount flags and data from OCI mount options.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub flags: MsFlags,
    pub propagation: MsFlags,
    pub data: Vec<String>,
    pub bind: bool,
    /// [`BENEATH_OPTION`]'s directory.
    pub beneath: Option<PathBuf>,
}

pub fn parse_options(options: &[String]) -> Options {
    let mut o = Options {
        flags: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: Vec::new(),
        bind: false,
        beneath: None,
    };
    for opt in options {
        if let Some(dir) = opt.strip_prefix(BENEATH_OPTION) {
            o.beneath = Some(PathBuf::from(dir));
            continue;
        }
        let (set, clear): (MsFlags, MsFlags) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "bind" => {
                o.bind = true;
                (MsFlags::MS_BIND, MsFlags::empty())
            }
            "rbind" => {
                o.bind = true;
                (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty())
            }
            "private" => {
                o.propagation |= MsFlags::MS_PRIVATE;
                continue;
            }
            "rprivate" => {
                o.propagation |= MsFlags::MS_PRIVATE | MsFlags::MS_REC;
                continue;
            }
            "slave" => {
                o.propagation |= MsFlags::MS_SLAVE;
                continue;
            }
            "rslave" => {
                o.propagation |= MsFlags::MS_SLAVE | MsFlags::MS_REC;
                continue;
            }
            "shared" | "rshared" | "unbindable" | "runbindable" => continue,
            other => {
                o.data.push(other.to_string());
                continue;
            }
        };
        o.flags |= set;
        o.flags &= !clear;
    }
    o
}

fn mount_one(root: &OwnedFd, m: &Mount) -> Result<(), LinuxError> {
    let options = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().clone().unwrap_or_default();
    let bind = options.bind || typ == "bind";
    let what = || format!("mounting {} ({typ})", m.destination().display());
    if typ == "cgroup" && super::cgroups::version() == super::cgroups::Version::V1 {
        // The container sees no cgroup tree on a v1 host (its cgroup namespace is v2-only).
        return Ok(());
    }
    let mounted = if bind {
        let source = m
            .source()
            .clone()
            .ok_or_else(|| LinuxError::io(what(), std::io::ErrorKind::InvalidInput.into()))?;
        // Held until mounted: the source is then `/proc/self/fd/N`, the object it opened.
        let opened = match &options.beneath {
            Some(dir) => open_beneath(dir, &source)?,
            None => nix::fcntl::open(
                &source,
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .ctx(|| format!("{}: source {}", what(), source.display()))?,
        };
        let is_dir = SFlag::from_bits_truncate(
            nix::sys::stat::fstat(&opened)
                .ctx(|| format!("{}: source", what()))?
                .st_mode,
        ) & SFlag::S_IFMT
            == SFlag::S_IFDIR;
        let dest = mount_target::open_destination(root, m.destination(), is_dir)?;
        mount(
            Some(&fd_path(&opened)),
            &dest.proc_path(),
            None::<&str>,
            MsFlags::MS_BIND | (options.flags & MsFlags::MS_REC),
            None::<&str>,
        )
        .ctx(what)?;
        // What its name leads to now must be what was bound, or the point moved meanwhile.
        let mounted = dest.reopen()?;
        if mount_target::identity(&mounted)? != mount_target::identity(&opened)? {
            return Err(LinuxError::io(
                format!("{}: the mount point changed while it was mounted", what()),
                std::io::ErrorKind::PermissionDenied.into(),
            ));
        }
        let rest = options.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
        if !rest.is_empty() {
            mount(
                None::<&str>,
                &fd_path(&mounted),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | rest,
                None::<&str>,
            )
            .ctx(|| format!("{}: remount", what()))?;
        }
        mounted
    } else {
        let dest = mount_target::open_destination(root, m.destination(), true)?;
        let data = options.data.join(",");
        let source = m.source().clone().unwrap_or_else(|| PathBuf::from(&typ));
        let cgroup_type = if typ == "cgroup" {
            "cgroup2"
        } else {
            typ.as_str()
        };
        mount(
            Some(&source),
            &dest.proc_path(),
            Some(cgroup_type),
            options.flags,
            (!data.is_empty()).then_some(data.as_str()),
        )
        .ctx(what)?;
        dest.reopen()?
    };
    if !options.propagation.is_empty() {
        mount(
            None::<&str>,
            &fd_path(&mounted),
            None::<&str>,
            options.propagation,
            None::<&str>,
        )
        .ctx(what)?;
    }
    Ok(())
}

/// `/proc/self/fd/N` of a descriptor.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Opens `source` (`O_PATH`) from `dir` without following any symlink and without leaving
/// `dir`.
pub fn open_beneath(dir: &Path, source: &Path) -> Result<OwnedFd, LinuxError> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat2};
    let refused = |why: &str| {
        LinuxError::io(
            format!("bind source {}: {why}", source.display()),
            std::io::ErrorKind::PermissionDenied.into(),
        )
    };
    let relative = source
        .strip_prefix(dir)
        .map_err(|_| refused(&format!("not inside {}", dir.display())))?;
    let root = open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("opening {}", dir.display()))?;
    if relative.as_os_str().is_empty() {
        return Ok(root);
    }
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    openat2(&root, relative, how).map_err(|e| match e {
        nix::errno::Errno::ELOOP | nix::errno::Errno::EXDEV => {
            refused(&format!("a symlink or a path out of {}", dir.display()))
        }
        e => LinuxError::sys(format!("opening bind source {}", source.display()), e),
    })
}

/// The device nodes every container gets (runc's default set).
const DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn create_devices(rootfs: &Path) -> Result<(), LinuxError> {
    let dev = resolve_in_root(rootfs, Path::new("/dev"))?;
    std::fs::create_dir_all(&dev).ctx(|| "creating /dev".into())?;
    for (name, major, minor) in DEVICES {
        let path = dev.join(name);
        let _ = std::fs::remove_file(&path);
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(*major, *minor),
        )
        .ctx(|| format!("creating /dev/{name}"))?;
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            &path,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .ctx(|| format!("chmod /dev/{name}"))?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let path = dev.join(link);
        if std::fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        std::os::unix::fs::symlink(target, &path).ctx(|| format!("linking /dev/{link}"))?;
    }
    Ok(())
}

/// Everything before `pivot_root`: propagation, the rootfs as a mount point, the spec's mounts,
/// device nodes.
pub fn prepare(spec: &Spec, rootfs: &Path) -> Result<(), LinuxError> {
    let linux = spec.linux().clone().unwrap_or_default();
    let propagation = match linux.rootfs_propagation().as_deref() {
        Some("shared") | Some("rshared") => MsFlags::MS_SHARED | MsFlags::MS_REC,
        Some("private") | Some("rprivate") => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    // Nothing mounted from here on reaches the host.
    mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
        .ctx(|| "making / private to the container".into())?;
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .ctx(|| format!("bind-mounting the rootfs {}", rootfs.display()))?;
    // Every destination is opened by descriptor from here ([`mount_target`]).
    let root = mount_target::open_root(rootfs)?;
    for m in spec.mounts().iter().flatten() {
        mount_one(&root, m)?;
    }
    create_devices(rootfs)
}

/// Makes the rootfs `/` and drops the old root.
pub fn pivot(rootfs: &Path) -> Result<(), LinuxError> {
    nix::unistd::chdir(rootfs).ctx(|| format!("chdir {}", rootfs.display()))?;
    nix::unistd::pivot_root(".", ".").ctx(|| "pivot_root".into())?;
    // The old root is now stacked under the new one at `/`: detach it.
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detaching the old root".into())?;
    nix::unistd::chdir("/").ctx(|| "chdir /".into())
}

/// After `pivot_root`: masked paths, read-only paths, a read-only root.
pub fn finish(spec: &Spec) -> Result<(), LinuxError> {
    let linux = spec.linux().clone().unwrap_or_default();
    for path in linux.masked_paths().iter().flatten() {
        let p = Path::new(path);
        match std::fs::metadata(p) {
            Err(_) => continue,
            Ok(m) if m.is_dir() => mount(
                Some("tmpfs"),
                p,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .ctx(|| format!("masking {path}"))?,
            Ok(_) => mount(
                Some("/dev/null"),
                p,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .ctx(|| format!("masking {path}"))?,
        }
    }
    for path in linux.readonly_paths().iter().flatten() {
        let p = Path::new(path);
        if std::fs::symlink_metadata(p).is_err() {
            continue;
        }
        mount(
            Some(p),
            p,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .ctx(|| format!("read-only {path}"))?;
        mount(
            None::<&str>,
            p,
            None::<&str>,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .ctx(|| format!("read-only {path}"))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .ctx(|| "making the root read-only".into())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_source_is_opened_beneath_its_volume_without_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let volume = dir.path().join("vol");
        std::fs::create_dir_all(volume.join("a/b")).unwrap();
        assert!(open_beneath(&volume, &volume.join("a/b")).is_ok());
        assert!(open_beneath(&volume, &volume).is_ok());
        // What a container could plant in a volume it writes: a link out, at any component.
        std::os::unix::fs::symlink("/etc", volume.join("out")).unwrap();
        std::os::unix::fs::symlink("a", volume.join("inner")).unwrap();
        for bad in ["out", "inner/b"] {
            let err = open_beneath(&volume, &volume.join(bad))
                .unwrap_err()
                .to_string();
            assert!(err.contains("a symlink or a path out of"), "{bad}: {err}");
        }
        let err = open_beneath(&volume, Path::new("/etc"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not inside"), "{err}");
        let o = parse_options(&["rbind".into(), format!("{BENEATH_OPTION}/v")]);
        assert_eq!(o.beneath, Some(PathBuf::from("/v")));
        assert!(o.data.is_empty());
    }

    #[test]
    fn paths_resolve_inside_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("real/dir")).expect("mkdir");
        std::os::unix::fs::symlink("/real", root.join("abs")).expect("link");
        std::os::unix::fs::symlink("../../../../etc", root.join("real/up")).expect("link");
        std::os::unix::fs::symlink("loop", root.join("loop")).expect("link");
        assert_eq!(
            resolve_in_root(root, Path::new("/abs/dir")).expect("abs"),
            root.join("real/dir")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/real/up/passwd")).expect("up"),
            root.join("etc/passwd"),
            "`..` stops at the root"
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/../../x")).expect("dotdot"),
            root.join("x")
        );
        assert!(resolve_in_root(root, Path::new("/loop/x")).is_err());
    }

    #[test]
    fn mount_options() {
        let o = parse_options(&[
            "rbind".into(),
            "ro".into(),
            "nosuid".into(),
            "mode=755".into(),
        ]);
        assert!(o.bind);
        assert_eq!(
            o.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
        );
        assert_eq!(o.data, ["mode=755"]);
        let o = parse_options(&["ro".into(), "rw".into(), "rslave".into()]);
        assert!(o.flags.is_empty());
        assert_eq!(o.propagation, MsFlags::MS_SLAVE | MsFlags::MS_REC);
    }
}
