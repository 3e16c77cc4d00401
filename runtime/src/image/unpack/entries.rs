//! Writing one layer's tar entries below the layer root.
//!
//! What each entry becomes: a regular file (contents, then [`Meta`]), a directory (created
//! owner-writable; its metadata applied after every entry, deepest first, so a read-only
//! directory does not stop later entries and its mtime survives its children), a symlink
//! (written as-is: its target is never looked at), a hard link (to a regular file this layer
//! wrote earlier, found without following symlinks), a FIFO, a device node (only when the caller
//! allows devices), or a whiteout ([`whiteout`]).
//!
//! A later entry at a path replaces what is there: a non-directory is unlinked first and a
//! directory removed with its contents (without entering symlinks), so nothing is ever written
//! through an earlier entry; a directory over a directory keeps it. A directory over a whiteout
//! of this layer is made opaque (deleted, then made anew: nothing below shows through).
//!
//! Must not: write anywhere but through [`Tree`] (every write is an `*at` call on a directory fd
//! the walk returned, with a single-component name).

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use tar::EntryType;

use super::error::{LinkProblem, Refusal, UnpackError};
use super::meta::Meta;
use super::safe_path::{RelPath, Tree, WalkError, kind_at, remove_tree};
use super::whiteout::{self, Meaning};

/// What stood at a path before an entry replaced it.
#[derive(Debug, PartialEq, Eq)]
enum Existing {
    Nothing,
    Dir,
    Whiteout,
}

/// Writes the entries of one layer.
pub struct LayerWriter {
    tree: Tree,
    layer: String,
    allow_devices: bool,
    /// Directories that have an entry of their own: `(entry as spelled, metadata)`.
    dirs: BTreeMap<RelPath, (String, Meta)>,
    /// Regular files (and hard links to them) this layer wrote: the only hard-link targets.
    files: HashSet<RelPath>,
    /// Whiteouts this layer made.
    whiteouts: HashSet<RelPath>,
    buf: Vec<u8>,
    /// Whether a device node was made.
    pub devices: bool,
    pub entries: u64,
}

impl LayerWriter {
    pub fn new(tree: Tree, layer: &str, allow_devices: bool) -> Self {
        Self {
            tree,
            layer: layer.to_string(),
            allow_devices,
            dirs: BTreeMap::new(),
            files: HashSet::new(),
            whiteouts: HashSet::new(),
            buf: vec![0; 64 << 10],
            devices: false,
            entries: 0,
        }
    }

    fn refused(&self, entry: &str, refusal: Refusal) -> UnpackError {
        UnpackError::Refused {
            layer: self.layer.clone(),
            entry: entry.to_string(),
            refusal,
        }
    }

    fn write_err(&self, entry: &str, source: impl Into<io::Error>) -> UnpackError {
        UnpackError::Write {
            layer: self.layer.clone(),
            entry: entry.to_string(),
            source: source.into(),
        }
    }

    fn read_err(&self, source: io::Error) -> UnpackError {
        UnpackError::Read {
            layer: self.layer.clone(),
            source,
        }
    }

    /// Writes one entry.
    pub fn write<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        self.entries += 1;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let path = RelPath::parse(&raw).map_err(|p| self.refused(&shown, Refusal::Path(p)))?;
        match whiteout::meaning(&path).map_err(|r| self.refused(&shown, r))? {
            Meaning::AufsMeta => return Ok(()),
            Meaning::Opaque => return self.opaque(&path, &shown),
            Meaning::Whiteout(hidden) => {
                let meta = self.meta(entry, &shown)?;
                return self.whiteout(&path, hidden, &meta, &shown);
            }
            Meaning::Plain => {}
        }
        // Old tars mark directories by a trailing slash on a regular-file entry.
        let is_dir = kind.is_dir() || (kind == EntryType::Regular && raw.ends_with(b"/"));
        let Some((name, dirs)) = path.split_last() else {
            // The layer root's own entry: the snapshot keeps its own root.
            return match is_dir {
                true => Ok(()),
                false => Err(self.refused(&shown, Refusal::ReplacesRoot(kind_name(kind)))),
            };
        };
        let at = At {
            path: &path,
            name,
            dirs,
            shown: &shown,
        };
        let meta = self.meta(entry, &shown)?;
        if is_dir {
            return self.dir(&at, meta);
        }
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(entry, &at, &meta)
            }
            EntryType::Symlink => self.symlink(entry, &at, &meta),
            EntryType::Link => self.hard_link(entry, &at),
            EntryType::Fifo => self.node(&at, &meta, FileType::Fifo, 0),
            EntryType::Char | EntryType::Block => self.device(entry, &at, &meta),
            other => Err(self.refused(&shown, Refusal::Unsupported(format!("{other:?}")))),
        }
    }

    /// Applies the directories' metadata, deepest first, once every entry is written.
    pub fn finish(&mut self) -> Result<(), UnpackError> {
        let mut dirs: Vec<_> = std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by_key(|(path, _)| Reverse(path.depth()));
        for (path, (shown, meta)) in dirs {
            let fd = self.walk(path.components(), false, &shown)?;
            meta.apply_fd(fd.as_fd())
                .map_err(|e| self.write_err(&shown, e))?;
        }
        Ok(())
    }

    fn meta<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<Meta, UnpackError> {
        Meta::read(entry)
            .map_err(|e| self.read_err(e))?
            .map_err(|r| self.refused(shown, r))
    }

    /// The directory `dirs`, walked to without following symlinks (created when `create`).
    fn walk(&self, dirs: &[Vec<u8>], create: bool, shown: &str) -> Result<OwnedFd, UnpackError> {
        self.tree.open_dir(dirs, create).map_err(|e| match e {
            WalkError::Refused(r) => self.refused(shown, r),
            WalkError::Io(e) => self.write_err(shown, e),
        })
    }

    /// Makes room for a new entry at `path` (`name` in `parent`).
    fn clear(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        path: &RelPath,
        new_is_dir: bool,
    ) -> io::Result<Existing> {
        match kind_at(parent, name)? {
            None => Ok(Existing::Nothing),
            Some(FileType::Directory) if new_is_dir => Ok(Existing::Dir),
            Some(FileType::Directory) => {
                remove_tree(parent, name)?;
                self.dirs.retain(|p, _| !p.starts_with(path));
                self.files.retain(|p| !p.starts_with(path));
                self.whiteouts.retain(|p| !p.starts_with(path));
                Ok(Existing::Nothing)
            }
            Some(_) => {
                rustix::fs::unlinkat(parent, name, AtFlags::empty())?;
                self.files.remove(path);
                Ok(match self.whiteouts.remove(path) {
                    true => Existing::Whiteout,
                    false => Existing::Nothing,
                })
            }
        }
    }

    /// The parent directory of a new entry, cleared for it.
    fn prepare(
        &mut self,
        at: &At<'_>,
        new_is_dir: bool,
    ) -> Result<(OwnedFd, Existing), UnpackError> {
        let parent = self.walk(at.dirs, true, at.shown)?;
        let existing = self
            .clear(parent.as_fd(), at.name, at.path, new_is_dir)
            .map_err(|e| self.write_err(at.shown, e))?;
        Ok((parent, existing))
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        at: &At<'_>,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let (parent, _) = self.prepare(at, false)?;
        let fd = rustix::fs::openat(
            &parent,
            at.name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.write_err(at.shown, e))?;
        let mut file = File::from(fd);
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_err(e)),
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| self.write_err(at.shown, e))?;
        }
        meta.apply_fd(file.as_fd())
            .map_err(|e| self.write_err(at.shown, e))?;
        self.files.insert(at.path.clone());
        Ok(())
    }

    fn dir(&mut self, at: &At<'_>, meta: Meta) -> Result<(), UnpackError> {
        let (parent, existing) = self.prepare(at, true)?;
        if existing != Existing::Dir {
            rustix::fs::mkdirat(&parent, at.name, Mode::from_raw_mode(0o700))
                .map_err(|e| self.write_err(at.shown, e))?;
        }
        if existing == Existing::Whiteout {
            let fd = self.walk(at.path.components(), false, at.shown)?;
            whiteout::set_opaque(fd.as_fd()).map_err(|e| self.write_err(at.shown, e))?;
        }
        self.dirs
            .insert(at.path.clone(), (at.shown.to_string(), meta));
        Ok(())
    }

    fn symlink<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        at: &At<'_>,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let target = entry
            .link_name_bytes()
            .map(Cow::into_owned)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.refused(at.shown, Refusal::EmptySymlink))?;
        let (parent, _) = self.prepare(at, false)?;
        rustix::fs::symlinkat(target.as_slice(), &parent, at.name)
            .map_err(|e| self.write_err(at.shown, e))?;
        meta.apply_nofollow(parent.as_fd(), at.name)
            .map_err(|e| self.write_err(at.shown, e))
    }

    fn hard_link<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        at: &At<'_>,
    ) -> Result<(), UnpackError> {
        let raw = entry
            .link_name_bytes()
            .map(Cow::into_owned)
            .unwrap_or_default();
        let refuse = |problem| {
            self.refused(
                at.shown,
                Refusal::HardLink {
                    target: String::from_utf8_lossy(&raw).into_owned(),
                    problem,
                },
            )
        };
        let target = RelPath::parse(&raw).map_err(|p| refuse(LinkProblem::Path(p)))?;
        if target == *at.path {
            return Err(refuse(LinkProblem::Itself));
        }
        let Some((target_name, target_dirs)) = target.split_last() else {
            return Err(refuse(LinkProblem::NotEarlierFile));
        };
        if !self.files.contains(&target) {
            return Err(refuse(LinkProblem::NotEarlierFile));
        }
        // Belt and braces: the target is reached without symlinks and is a regular file now.
        let target_dir = self
            .tree
            .open_dir(target_dirs, false)
            .map_err(|_| refuse(LinkProblem::NotEarlierFile))?;
        match kind_at(target_dir.as_fd(), target_name) {
            Ok(Some(FileType::RegularFile)) => {}
            _ => return Err(refuse(LinkProblem::NotEarlierFile)),
        }
        let (parent, _) = self.prepare(at, false)?;
        rustix::fs::linkat(&target_dir, target_name, &parent, at.name, AtFlags::empty())
            .map_err(|e| self.write_err(at.shown, e))?;
        self.files.insert(at.path.clone());
        Ok(())
    }

    fn device<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        at: &At<'_>,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let header = entry.header();
        let major = header
            .device_major()
            .map_err(|e| self.read_err(e))?
            .unwrap_or(0);
        let minor = header
            .device_minor()
            .map_err(|e| self.read_err(e))?
            .unwrap_or(0);
        let (kind, file_type) = match header.entry_type() {
            EntryType::Block => ("block device", FileType::BlockDevice),
            _ => ("character device", FileType::CharacterDevice),
        };
        if !self.allow_devices {
            return Err(self.refused(at.shown, Refusal::Device { kind, major, minor }));
        }
        self.node(at, meta, file_type, rustix::fs::makedev(major, minor))?;
        self.devices = true;
        Ok(())
    }

    /// A FIFO or a device node.
    fn node(
        &mut self,
        at: &At<'_>,
        meta: &Meta,
        file_type: FileType,
        dev: rustix::fs::Dev,
    ) -> Result<(), UnpackError> {
        let (parent, _) = self.prepare(at, false)?;
        rustix::fs::mknodat(
            &parent,
            at.name,
            file_type,
            Mode::from_raw_mode(meta.mode),
            dev,
        )
        .map_err(|e| self.write_err(at.shown, e))?;
        meta.apply_node(parent.as_fd(), at.name)
            .map_err(|e| self.write_err(at.shown, e))
    }

    /// `.wh.NAME`: an overlayfs whiteout for NAME.
    fn whiteout(
        &mut self,
        path: &RelPath,
        hidden: &[u8],
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let dirs = path.split_last().map(|(_, d)| d).unwrap_or_default();
        let target = RelPath::join(dirs, hidden);
        let at = At {
            path: &target,
            name: hidden,
            dirs,
            shown,
        };
        let (parent, _) = self.prepare(&at, false)?;
        whiteout::make_whiteout(parent.as_fd(), hidden).map_err(|e| self.write_err(shown, e))?;
        meta.apply_nofollow(parent.as_fd(), hidden)
            .map_err(|e| self.write_err(shown, e))?;
        self.whiteouts.insert(target);
        Ok(())
    }

    /// `.wh..wh..opq`: the directory holding it is opaque.
    fn opaque(&mut self, path: &RelPath, shown: &str) -> Result<(), UnpackError> {
        let dirs = path.split_last().map(|(_, d)| d).unwrap_or_default();
        let dir = self.walk(dirs, true, shown)?;
        whiteout::set_opaque(dir.as_fd()).map_err(|e| self.write_err(shown, e))
    }
}

/// Where an entry goes.
struct At<'a> {
    path: &'a RelPath,
    name: &'a [u8],
    dirs: &'a [Vec<u8>],
    /// The entry's path as the tar spells it.
    shown: &'a str,
}

fn kind_name(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => "regular file",
        EntryType::Symlink => "symlink",
        EntryType::Link => "hard link",
        EntryType::Fifo => "fifo",
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        _ => "non-directory entry",
    }
}
