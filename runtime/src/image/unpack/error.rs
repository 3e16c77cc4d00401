//! Why a layer could not be unpacked or a snapshot could not be had, in words a user can act on.
//!
//! Every message names the layer (its digest, or the name the caller gave) and, for a refused
//! or failed entry, the entry's path as the tar spells it, then why:
//! `layer sha256:ab…: entry "../etc/passwd": path leaves the layer root`.

use std::io;
use std::path::PathBuf;

/// A failed unpack, or a snapshot store failure.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The media type is not a tar layer skiff reads.
    #[error(
        "layer {layer}: media type {media_type:?} is not a layer skiff can unpack (an OCI or Docker tar layer, uncompressed, gzip or zstd)"
    )]
    MediaType { layer: String, media_type: String },
    /// An entry refused for what it is or where it points: nothing of it was written.
    #[error("layer {layer}: entry {entry:?}: {refusal}")]
    Refused {
        layer: String,
        entry: String,
        refusal: Refusal,
    },
    /// Writing an entry failed (disk full, a `chown` refused to a non-root caller, ...).
    #[error("layer {layer}: entry {entry:?}: {source}")]
    Write {
        layer: String,
        entry: String,
        source: io::Error,
    },
    /// The directory to unpack into cannot be opened.
    #[error("layer {layer}: destination {}: {source}", path.display())]
    Destination {
        layer: String,
        path: PathBuf,
        source: io::Error,
    },
    /// The layer does not decompress or is not a valid tar.
    #[error("layer {layer}: cannot read the layer: {source}")]
    Read { layer: String, source: io::Error },
    /// More uncompressed bytes than the caller allows.
    #[error("layer {layer}: more than {limit} bytes once decompressed")]
    TooLarge { layer: String, limit: u64 },
    /// The unpacked stream is not the layer the image config names.
    #[error(
        "layer {expected}: the uncompressed layer has diff_id {actual}, not the one the image config names"
    )]
    DiffIdMismatch { expected: String, actual: String },
    /// A diff_id that is not `sha256:` and 64 lower-case hex digits.
    #[error("layer {layer:?}: not a sha256 diff_id")]
    InvalidDiffId { layer: String },
    /// The caller's blob could not be opened.
    #[error("layer {layer}: cannot open the layer blob: {source}")]
    Blob { layer: String, source: io::Error },
    /// [`super::Snapshots::lower_dirs`] was asked for a layer that is not unpacked.
    #[error("layer {layer}: not in the snapshot store (ensure it first)")]
    NotPresent { layer: String },
    /// The snapshot was unpacked with device nodes allowed; this caller does not allow them.
    #[error(
        "layer {layer}: holds device nodes (unpacked for a caller that allows them), and devices are not allowed here"
    )]
    DevicesNotAllowed { layer: String },
    /// The snapshot store's own directories.
    #[error("snapshot store: {}: {source}", path.display())]
    Store { path: PathBuf, source: io::Error },
}

/// Why one entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The entry path itself.
    #[error("{0}")]
    Path(PathProblem),
    /// A directory on the way to the entry is a symlink in this layer.
    #[error("parent {0:?} is a symlink: entries are never written through symlinks")]
    SymlinkParent(String),
    /// A directory on the way to the entry is something else than a directory.
    #[error("parent {0:?} is not a directory")]
    NotDirParent(String),
    /// A non-directory entry for the layer root itself.
    #[error("a {0} cannot replace the layer root")]
    ReplacesRoot(&'static str),
    /// A character or block device, and devices are not allowed.
    #[error("{kind} {major}:{minor} refused: device nodes are not allowed for this layer")]
    Device {
        kind: &'static str,
        major: u32,
        minor: u32,
    },
    /// A hard link whose target is not a regular file written earlier by this layer.
    #[error("hard link to {target:?}: {problem}")]
    HardLink {
        target: String,
        problem: LinkProblem,
    },
    /// A symlink with no target.
    #[error("symlink with an empty target")]
    EmptySymlink,
    /// A whiteout that names nothing a layer may delete.
    #[error("whiteout {0}")]
    Whiteout(&'static str),
    /// An extended attribute that would forge overlayfs metadata.
    #[error("extended attribute {0:?} is overlayfs metadata, which a layer may not set")]
    OverlayXattr(String),
    /// A uid or gid the kernel cannot take.
    #[error("owner id {0} is out of range")]
    OwnerId(u64),
    /// A tar entry type skiff does not unpack.
    #[error("unsupported tar entry type {0:?}")]
    Unsupported(String),
}

/// What is wrong with a path from a tar header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    #[error("path leaves the layer root")]
    LeavesRoot,
    #[error("absolute path (layer paths are relative to the layer root)")]
    Absolute,
    #[error("path longer than {} bytes", super::safe_path::MAX_PATH_BYTES)]
    TooLong,
    #[error("path with a NUL byte")]
    Nul,
}

/// Why a hard link's target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkProblem {
    #[error("{0}")]
    Path(PathProblem),
    #[error("the target is not a regular file written earlier by this layer")]
    NotEarlierFile,
    #[error("the target is the link itself")]
    Itself,
}
