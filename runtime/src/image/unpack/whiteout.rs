//! OCI whiteouts, converted at unpack time to the form overlayfs reads.
//!
//! - `.wh.NAME` (NAME deleted from the layers below) → a character device 0:0 named NAME: an
//!   overlayfs whiteout, the one device node a layer always gets.
//! - `.wh..wh..opq` (the directory's contents in the layers below are hidden) → the extended
//!   attribute `trusted.overlay.opaque=y` on the directory.
//! - Any other `.wh..wh.` name is aufs metadata (hard-link stash, `.wh..wh.aufs`): skipped, with
//!   everything below it.
//!
//! Whiteout names go through the same path checks as every entry (the walk refuses a whiteout
//! in a symlinked directory); a whiteout must name a real child (`.wh.`, `.wh..` and `.wh...`
//! are refused), and a whiteout name cannot be a directory on the way to another entry.
//!
//! Must not: delete anything outside the directory the whiteout is in, or touch lower layers
//! (overlayfs applies whiteouts at mount time).

use std::os::fd::BorrowedFd;

use rustix::fs::{FileType, Mode, XattrFlags};

use super::error::Refusal;
use super::safe_path::RelPath;

pub const PREFIX: &[u8] = b".wh.";
pub const META_PREFIX: &[u8] = b".wh..wh.";
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Where overlayfs reads that a directory is opaque.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What an entry path means, whiteout-wise.
#[derive(Debug, PartialEq, Eq)]
pub enum Meaning<'a> {
    /// An ordinary entry.
    Plain,
    /// `.wh.NAME`: NAME (the last component given) is deleted.
    Whiteout(&'a [u8]),
    /// `.wh..wh..opq`: the directory holding it is opaque.
    Opaque,
    /// aufs metadata: skipped.
    AufsMeta,
}

/// What `path` means; a refusal for a whiteout that names nothing it may delete.
pub fn meaning(path: &RelPath) -> Result<Meaning<'_>, Refusal> {
    let Some((name, dirs)) = path.split_last() else {
        return Ok(Meaning::Plain);
    };
    for dir in dirs {
        if dir.starts_with(META_PREFIX) {
            return Ok(Meaning::AufsMeta);
        }
        if dir.starts_with(PREFIX) {
            return Err(Refusal::Whiteout("name used as a directory"));
        }
    }
    if name == OPAQUE_MARKER {
        return Ok(Meaning::Opaque);
    }
    if name.starts_with(META_PREFIX) {
        return Ok(Meaning::AufsMeta);
    }
    match name.strip_prefix(PREFIX) {
        None => Ok(Meaning::Plain),
        Some(b"") => Err(Refusal::Whiteout("names nothing")),
        Some(b"." | b"..") => Err(Refusal::Whiteout(
            "of \".\" or \"..\": a whiteout deletes a child of its own directory",
        )),
        Some(hidden) => Ok(Meaning::Whiteout(hidden)),
    }
}

/// Makes the overlayfs whiteout for `name` in `dir` (which holds nothing by that name).
pub fn make_whiteout(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<()> {
    rustix::fs::mknodat(
        dir,
        name,
        FileType::CharacterDevice,
        Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
}

/// Marks the directory `dir` opaque for overlayfs.
pub fn set_opaque(dir: BorrowedFd<'_>) -> rustix::io::Result<()> {
    rustix::fs::fsetxattr(dir, OPAQUE_XATTR, b"y", XattrFlags::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The meaning of `raw`, spelled out: "plain", "whiteout NAME", "opaque", "aufs".
    fn of(raw: &str) -> Result<String, Refusal> {
        let path = RelPath::parse(raw.as_bytes()).expect(raw);
        Ok(match meaning(&path)? {
            Meaning::Plain => "plain".into(),
            Meaning::Whiteout(name) => format!("whiteout {}", String::from_utf8_lossy(name)),
            Meaning::Opaque => "opaque".into(),
            Meaning::AufsMeta => "aufs".into(),
        })
    }

    #[test]
    fn meanings() {
        for (raw, want) in [
            ("a/b", "plain"),
            ("a/b.wh.c", "plain"),
            ("a/.wh.b", "whiteout b"),
            (".wh..b", "whiteout .b"),
            ("a/.wh..wh..opq", "opaque"),
            (".wh..wh..opq", "opaque"),
            (".wh..wh.plnk/123.4", "aufs"),
            ("a/.wh..wh.aufs", "aufs"),
        ] {
            assert_eq!(of(raw).as_deref(), Ok(want), "{raw}");
        }
        for bad in [".wh.", ".wh..", ".wh...", "a/.wh...", ".wh.a/b"] {
            assert!(matches!(of(bad), Err(Refusal::Whiteout(_))), "{bad}");
        }
    }
}
