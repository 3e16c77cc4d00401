//! A mount destination inside a container's rootfs, opened through file descriptors (the
//! CVE-2021-30465 class: a destination resolved by path in userspace and then mounted by path can
//! be swapped for a symlink in between, by a container that shares a volume with this one).
//!
//! [`open_destination`] walks the destination one component at a time from an `O_PATH`
//! descriptor of the rootfs: each name is looked up in the directory descriptor it follows
//! (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`: the kernel follows no link and
//! leaves no directory), missing components are made with `mkdirat`/`openat` in that descriptor,
//! and a symlink met on the way is read (`readlinkat`) and resolved as the container would see
//! it — an absolute target from the rootfs, `..` stopping at the rootfs. The mount then goes onto
//! `/proc/self/fd/N` of the descriptor found, which is that object whatever happens to the path
//! afterwards. A swap during the walk makes the walk fail (the name became a link), never leads
//! it out.
//!
//! Nested destinations (a volume at `/data` and another at `/data/sub`) are made safe the same
//! way: the second walk goes through the first mount, by descriptor, inside the rootfs.
//!
//! Must not: follow a path out of the rootfs, or mount anything by a path a container can change.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, open, openat, openat2, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstat, fstatat, mkdirat};

use super::error::{LinuxError, SysContext};

/// Symlinks followed in one walk, as the kernel's limit.
const MAX_LINKS: usize = 40;

/// An opened mount destination: the object itself, and the directory and name it was found
/// by (a later lookup of that name in that directory reaches what is mounted on it).
#[derive(Debug)]
pub struct Destination {
    pub fd: OwnedFd,
    parent: OwnedFd,
    name: OsString,
}

impl Destination {
    /// `/proc/self/fd/N` of the destination: what `mount` is given as its target.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// The destination looked up again by its name in its directory: after a mount, the root
    /// of what was mounted there (remounts and propagation changes go to it).
    pub fn reopen(&self) -> Result<OwnedFd, LinuxError> {
        open_component(&self.parent, &self.name)
            .ctx(|| format!("reopening the mount point {:?}", self.name))
    }
}

fn open_component(dir: &OwnedFd, name: &OsStr) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    openat2(dir, name, how)
}

fn components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// An `O_PATH` descriptor of the rootfs directory.
pub fn open_root(rootfs: &Path) -> Result<OwnedFd, LinuxError> {
    open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("opening the rootfs {}", rootfs.display()))
}

/// Opens `dest` (as the container names it) inside the rootfs `root`, making what is missing:
/// directories on the way, and the last component as a directory (`dir`) or an empty file.
pub fn open_destination(root: &OwnedFd, dest: &Path, dir: bool) -> Result<Destination, LinuxError> {
    let fail = |why: String| {
        LinuxError::io(
            format!("mount destination {}: {why}", dest.display()),
            std::io::ErrorKind::InvalidInput.into(),
        )
    };
    let sys = |what: &str, name: &OsStr, e: Errno| {
        LinuxError::sys(
            format!("mount destination {}: {what} {name:?}", dest.display()),
            e,
        )
    };
    // The directories walked so far, the rootfs first; `..` pops one (never the rootfs).
    let mut stack: Vec<OwnedFd> = vec![root.try_clone().ctx(|| "dup".into())?];
    let mut pending: Vec<OsString> = components(dest).into_iter().rev().collect();
    let mut links = 0;
    let mut retries = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let last = pending.is_empty();
        let Some(parent) = stack.last() else {
            return Err(fail("lost its directory".into()));
        };
        match fstatat(parent, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => {
                retries += 1;
                if retries > MAX_LINKS {
                    return Err(fail("keeps changing while it is made".into()));
                }
                let made = if !last || dir {
                    mkdirat(parent, name.as_os_str(), Mode::from_bits_truncate(0o755))
                } else {
                    openat(
                        parent,
                        name.as_os_str(),
                        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW,
                        Mode::from_bits_truncate(0o644),
                    )
                    .map(drop)
                };
                match made {
                    Ok(()) | Err(Errno::EEXIST) => pending.push(name), // look at it again
                    Err(e) => return Err(sys("creating", &name, e)),
                }
            }
            Err(e) => return Err(sys("looking up", &name, e)),
            Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(sys("resolving", &name, Errno::ELOOP));
                }
                let target = readlinkat(parent, name.as_os_str())
                    .map_err(|e| sys("reading link", &name, e))?;
                let target = Path::new(&target);
                if target.is_absolute() {
                    stack.truncate(1);
                }
                pending.extend(components(target).into_iter().rev());
            }
            Ok(_) => {
                let fd = open_component(parent, &name).map_err(|e| match e {
                    Errno::ELOOP | Errno::EXDEV => fail(format!(
                        "{name:?} was swapped for a link while it was opened"
                    )),
                    e => sys("opening", &name, e),
                })?;
                let is_dir = SFlag::from_bits_truncate(fstat(&fd).ctx(|| "fstat".into())?.st_mode)
                    & SFlag::S_IFMT
                    == SFlag::S_IFDIR;
                if pending.is_empty() {
                    if is_dir != dir {
                        let want = if dir { "a directory" } else { "a file" };
                        return Err(fail(format!("is not {want}")));
                    }
                    return Ok(Destination {
                        fd,
                        parent: parent.try_clone().ctx(|| "dup".into())?,
                        name,
                    });
                }
                if !is_dir {
                    return Err(sys("walking through", &name, Errno::ENOTDIR));
                }
                stack.push(fd);
            }
        }
    }
    Err(fail(
        "names the rootfs itself (a mount on the container's root is not supported)".into(),
    ))
}

/// `(st_dev, st_ino)` of a descriptor's object.
pub fn identity(fd: impl AsFd) -> Result<(u64, u64), LinuxError> {
    let st = fstat(fd).ctx(|| "fstat".into())?;
    Ok((st.st_dev, st.st_ino))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
    }

    #[test]
    fn destinations_are_made_and_opened_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        let host = dir.path().join("host");
        std::fs::create_dir_all(rootfs.join("real")).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        // Links an image (or a container sharing a volume) could plant: absolute, up and out,
        // dangling, to the host itself.
        std::os::unix::fs::symlink("/real", rootfs.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../real", rootfs.join("real/up")).unwrap();
        std::os::unix::fs::symlink(&host, rootfs.join("to-host")).unwrap();
        std::os::unix::fs::symlink("loop", rootfs.join("loop")).unwrap();
        let root = open_root(&rootfs).unwrap();
        let cases = [
            ("/abs/a", rootfs.join("real/a")),
            ("/real/up/b", rootfs.join("real/b")),
            ("/../../c", rootfs.join("c")),
            // The host path is made inside the rootfs, never on the host.
            (
                "/to-host/d",
                rootfs.join(host.strip_prefix("/").unwrap()).join("d"),
            ),
        ];
        for (dest, real) in cases {
            let d = open_destination(&root, Path::new(dest), true).unwrap();
            assert_eq!(path_of(&d.fd), real, "{dest}");
            assert!(real.is_dir(), "{dest}");
            let again = d.reopen().unwrap();
            assert_eq!(identity(&again).unwrap(), identity(&d.fd).unwrap());
        }
        assert_eq!(
            std::fs::read_dir(&host).unwrap().count(),
            0,
            "the host dir was touched"
        );
        let file = open_destination(&root, Path::new("/etc/resolv.conf"), false).unwrap();
        assert!(rootfs.join("etc/resolv.conf").is_file());
        assert_eq!(path_of(&file.fd), rootfs.join("etc/resolv.conf"));
        let e = open_destination(&root, Path::new("/loop/x"), true).unwrap_err();
        assert!(e.to_string().contains("resolving"), "{e}");
        let e = open_destination(&root, Path::new("/etc/resolv.conf"), true).unwrap_err();
        assert!(e.to_string().contains("is not a directory"), "{e}");
        let e = open_destination(&root, Path::new("/"), true).unwrap_err();
        assert!(e.to_string().contains("rootfs itself"), "{e}");
    }
}
