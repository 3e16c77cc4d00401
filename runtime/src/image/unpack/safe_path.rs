//! Entry paths that cannot leave the layer root, and the walk that never follows a symlink.
//!
//! [`RelPath::parse`] turns a tar path into components: empty and `.` components dropped (so a
//! leading `./` goes), and a `..` component, an absolute path, a NUL or a path longer than
//! `PATH_MAX` refused — never rewritten.
//!
//! [`Tree`] holds the layer root as a directory fd and reaches a directory below it one
//! component at a time with `openat(dir, name, O_DIRECTORY | O_NOFOLLOW)`: each step names a
//! single component (no `/`, never `..`), and a symlink at any step is refused rather than
//! followed, so a symlink planted by an earlier entry of the layer can never redirect a later
//! write, whatever the kernel (this is what `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` would
//! do in one call; the walk needs no fallback). Every write then happens with an `*at` call on
//! the last directory's fd and a single-component name.
//!
//! Must not: resolve a path through the process's view of the filesystem (only the root is
//! opened by path, by the caller's choice), or follow a symlink found in a layer.

use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::error::{PathProblem, Refusal};

/// Linux's `PATH_MAX`: longer entry paths are refused (and so directory depth is bounded).
pub const MAX_PATH_BYTES: usize = 4096;

/// The mode of directories the walk creates because an entry needs them and the layer has no
/// entry of its own for them (as Docker and containerd do).
const IMPLICIT_DIR_MODE: u32 = 0o755;

/// A path below the layer root: no component is empty, `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(Vec<Vec<u8>>);

impl RelPath {
    pub fn parse(bytes: &[u8]) -> Result<Self, PathProblem> {
        if bytes.len() > MAX_PATH_BYTES {
            return Err(PathProblem::TooLong);
        }
        if bytes.contains(&0) {
            return Err(PathProblem::Nul);
        }
        if bytes.starts_with(b"/") {
            return Err(PathProblem::Absolute);
        }
        let mut parts = Vec::new();
        for part in bytes.split(|b| *b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => return Err(PathProblem::LeavesRoot),
                _ => parts.push(part.to_vec()),
            }
        }
        Ok(Self(parts))
    }

    pub fn components(&self) -> &[Vec<u8>] {
        &self.0
    }

    /// The last component and the directories above it; `None` for the root.
    pub fn split_last(&self) -> Option<(&[u8], &[Vec<u8>])> {
        self.0
            .split_last()
            .map(|(name, dirs)| (name.as_slice(), dirs))
    }

    /// `dirs` joined with `name`.
    pub fn join(dirs: &[Vec<u8>], name: &[u8]) -> Self {
        let mut parts = dirs.to_vec();
        parts.push(name.to_vec());
        Self(parts)
    }

    /// Whether `self` is `prefix` or below it.
    pub fn starts_with(&self, prefix: &RelPath) -> bool {
        self.0.starts_with(&prefix.0)
    }

    pub fn depth(&self) -> usize {
        self.0.len()
    }
}

/// `a/b/c` (lossy where a name is not UTF-8), for messages.
pub fn display(parts: &[Vec<u8>]) -> String {
    let joined: Vec<u8> = parts.join(&b'/');
    String::from_utf8_lossy(&joined).into_owned()
}

/// Why the walk stopped.
#[derive(Debug)]
pub enum WalkError {
    Refused(Refusal),
    Io(io::Error),
}

impl From<Errno> for WalkError {
    fn from(e: Errno) -> Self {
        Self::Io(e.into())
    }
}

/// The layer root, as a directory fd.
#[derive(Debug)]
pub struct Tree {
    root: OwnedFd,
}

impl Tree {
    /// Opens `dir` (the caller's path, followed as given) as the root of the walk.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let root = rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self { root })
    }

    /// The directory at `dirs` below the root, reached without following any symlink; missing
    /// directories are created (mode 0755) when `create`.
    pub fn open_dir(&self, dirs: &[Vec<u8>], create: bool) -> Result<OwnedFd, WalkError> {
        let mut current = self.root.try_clone().map_err(WalkError::Io)?;
        for (i, name) in dirs.iter().enumerate() {
            current = match open_child(current.as_fd(), name) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(
                        current.as_fd(),
                        name,
                        Mode::from_raw_mode(IMPLICIT_DIR_MODE),
                    ) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    open_child(current.as_fd(), name)?
                }
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    let here = display(&dirs[..=i]);
                    return Err(WalkError::Refused(
                        match kind_at(current.as_fd(), name).map_err(WalkError::Io)? {
                            Some(FileType::Symlink) => Refusal::SymlinkParent(here),
                            _ => Refusal::NotDirParent(here),
                        },
                    ));
                }
                Err(e) => return Err(e.into()),
            };
        }
        Ok(current)
    }
}

/// `name` in `dir`, as a directory, never through a symlink.
fn open_child(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// What `name` in `dir` is (not following a symlink); `None` when there is nothing.
pub fn kind_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes the directory `name` in `dir` and everything below it, never following a symlink
/// (symlinks are unlinked, not entered). Directories are made writable first, so that a
/// read-only directory of a layer does not stop the removal.
pub fn remove_tree(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let fd = open_child(dir, name)?;
    // Best effort: root needs no permission; anyone else needs to list and unlink.
    let _ = rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700));
    let mut children = Vec::new();
    for entry in Dir::read_from(&fd)? {
        let entry = entry?;
        let child = entry.file_name().to_bytes();
        if child != b"." && child != b".." {
            children.push((child.to_vec(), entry.file_type()));
        }
    }
    for (child, kind) in children {
        let kind = match kind {
            FileType::Unknown => kind_at(fd.as_fd(), &child)?,
            known => Some(known),
        };
        match kind {
            Some(FileType::Directory) => remove_tree(fd.as_fd(), &child)?,
            Some(_) => rustix::fs::unlinkat(&fd, &child, AtFlags::empty())?,
            None => {}
        }
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

/// Removes `path` (a directory tree or anything else) if it exists; the last component is not
/// followed if it is a symlink.
pub fn remove_path(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a removable path",
        ));
    };
    let dir = match fs::File::open(parent) {
        Ok(dir) => OwnedFd::from(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let name = name.as_encoded_bytes();
    match kind_at(dir.as_fd(), name)? {
        None => Ok(()),
        Some(FileType::Directory) => remove_tree(dir.as_fd(), name),
        Some(_) => Ok(rustix::fs::unlinkat(&dir, name, AtFlags::empty())?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(p: &RelPath) -> Vec<&str> {
        p.components()
            .iter()
            .map(|c| std::str::from_utf8(c).expect("utf-8"))
            .collect()
    }

    #[test]
    fn parse_normalises_only_harmless_spellings() {
        for (raw, want) in [
            ("a/b", vec!["a", "b"]),
            ("./a/b/", vec!["a", "b"]),
            ("././a//./b", vec!["a", "b"]),
            ("./", vec![]),
            (".", vec![]),
            ("a..b/..c", vec!["a..b", "..c"]),
        ] {
            let p = RelPath::parse(raw.as_bytes()).expect(raw);
            assert_eq!(parts(&p), want, "{raw}");
        }
    }

    #[test]
    fn parse_refuses_escapes() {
        for (raw, want) in [
            ("../x", PathProblem::LeavesRoot),
            ("a/../../x", PathProblem::LeavesRoot),
            ("a/..", PathProblem::LeavesRoot),
            ("./../x", PathProblem::LeavesRoot),
            ("/etc/passwd", PathProblem::Absolute),
            ("//x", PathProblem::Absolute),
            ("a\0b", PathProblem::Nul),
        ] {
            assert_eq!(RelPath::parse(raw.as_bytes()), Err(want), "{raw}");
        }
        let long = "a/".repeat(MAX_PATH_BYTES / 2 + 1);
        assert_eq!(RelPath::parse(long.as_bytes()), Err(PathProblem::TooLong));
    }

    #[test]
    fn walk_creates_missing_dirs_and_refuses_symlinks_and_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).expect("symlink");
        std::fs::write(dir.path().join("file"), b"x").expect("file");
        let tree = Tree::open(dir.path()).expect("open");
        let p = |s: &str| RelPath::parse(s.as_bytes()).expect(s);

        tree.open_dir(p("a/b").components(), true).expect("created");
        assert!(dir.path().join("a/b").is_dir());
        assert!(matches!(
            tree.open_dir(p("c").components(), false),
            Err(WalkError::Io(_))
        ));
        match tree.open_dir(p("link/x").components(), true) {
            Err(WalkError::Refused(Refusal::SymlinkParent(at))) => assert_eq!(at, "link"),
            other => panic!("{other:?}"),
        }
        match tree.open_dir(p("file/x").components(), true) {
            Err(WalkError::Refused(Refusal::NotDirParent(at))) => assert_eq!(at, "file"),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_dir(outside.path()).expect("ls").count(), 0);
    }

    #[test]
    fn remove_tree_unlinks_symlinks_without_entering_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("keep"), b"x").expect("keep");
        let top = dir.path().join("top");
        std::fs::create_dir_all(top.join("ro/sub")).expect("mkdir");
        std::fs::write(top.join("ro/sub/f"), b"x").expect("f");
        std::os::unix::fs::symlink(outside.path(), top.join("ro/link")).expect("symlink");
        std::fs::set_permissions(
            top.join("ro"),
            std::os::unix::fs::PermissionsExt::from_mode(0o500),
        )
        .expect("chmod");
        remove_path(&top).expect("removed");
        assert!(!top.exists());
        assert!(outside.path().join("keep").exists());
        remove_path(&top).expect("absent is fine");
    }
}
