//! Unpacking OCI image layers into overlayfs-ready directories, and the snapshot store that keeps
//! one such directory per layer, shared by every container whose image has the layer.
//!
//! Public API:
//!
//! - [`unpack_layer`]`(reader, media_type, dest_dir, &`[`UnpackOptions`]`)` → [`LayerInfo`]
//!   `{ diff_id, size, compressed_size, entries, devices }`: decompresses (by media type, from
//!   the one table in [`crate::image::media`]: [`LayerCompression`]), streams the tar into `dest_dir`, and returns the diff_id (sha256 of
//!   the uncompressed tar) for the caller to check against the image config's `rootfs.diff_ids`.
//! - [`Snapshots::new`]`(root)`; [`Snapshots::ensure`]`(diff_id, media_type, open_blob)` → the
//!   layer's directory (an overlay `lowerdir`), unpacked and verified once;
//!   [`Snapshots::ensure_with`] for callers that allow device nodes;
//!   [`Snapshots::lower_dirs`]`(diff_ids)` → the `lowerdir=` list, top layer first.
//! - [`UnpackError`]: every message names the layer and, for an entry, its path and why.
//!
//! Path safety (`safe_path.rs`): an entry path with a `..` component or an absolute path is
//! refused, never rewritten; every write goes through a walk from the layer root's fd, one
//! component at a time with `O_NOFOLLOW`, so a symlink in the layer being written — planted by an
//! earlier entry or not — can never redirect a write; symlinks themselves are written as-is and
//! never followed; a hard link must name a regular file written earlier by the same layer;
//! device nodes are refused unless the caller allows them. Whiteouts (`whiteout.rs`) become
//! overlayfs whiteouts (a 0:0 character device) and opaque markers (`trusted.overlay.opaque`).
//!
//! `unpack_layer` leaves `dest_dir` as far as it got when it fails: callers that need "all or
//! nothing" unpack into a fresh directory and throw it away on error, as [`Snapshots`] does.
//!
//! zstd: the `zstd` crate (bindings to the reference C library, which every zstd layer producer
//! uses; the fastest decoder, and the C compiler it needs is already required by the workspace),
//! called through [`crate::image::media`].
//!
//! Must not: know about pods, containers or mounts; follow a symlink found in a layer; write
//! outside the directory it was given. Synchronous and blocking: async callers use
//! `spawn_blocking`.

mod diff;
mod entries;
mod error;
mod meta;
mod safe_path;
mod snapshots;
mod whiteout;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod overlay_tests;
#[cfg(test)]
mod property_tests;
#[cfg(test)]
mod test_layers;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

pub use super::media::LayerCompression;
pub use error::{LinkProblem, PathProblem, Refusal, UnpackError};
pub use snapshots::{Snapshot, Snapshots};

use diff::{Counting, DiffReader};
use entries::LayerWriter;
use safe_path::Tree;

/// How to unpack a layer.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// How messages name the layer: its digest. `None`: "(unnamed)".
    pub layer_name: Option<String>,
    /// Whether character and block devices are created (else refused). Whiteouts are always
    /// made: they are not device nodes to a container.
    pub allow_devices: bool,
    /// The most uncompressed bytes accepted (`None`: no limit).
    pub max_size: Option<u64>,
}

impl UnpackOptions {
    fn layer(&self) -> String {
        self.layer_name
            .clone()
            .unwrap_or_else(|| "(unnamed)".to_string())
    }
}

/// What an unpacked layer was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// `sha256:<hex>` of the uncompressed tar stream.
    pub diff_id: String,
    /// Bytes of the uncompressed tar stream.
    pub size: u64,
    /// Bytes read from the (compressed) layer blob.
    pub compressed_size: u64,
    /// Tar entries read.
    pub entries: u64,
    /// Whether a device node (not a whiteout) was created.
    pub devices: bool,
}

/// Unpacks one layer read from `reader` into the existing directory `dest_dir`.
pub fn unpack_layer(
    reader: impl Read,
    media_type: &str,
    dest_dir: &Path,
    options: &UnpackOptions,
) -> Result<LayerInfo, UnpackError> {
    let layer = options.layer();
    let compression =
        LayerCompression::of_media_type(media_type).ok_or_else(|| UnpackError::MediaType {
            layer: layer.clone(),
            media_type: media_type.to_string(),
        })?;
    let tree = Tree::open(dest_dir).map_err(|source| UnpackError::Destination {
        layer: layer.clone(),
        path: dest_dir.to_path_buf(),
        source,
    })?;
    let read_err = |source| UnpackError::Read {
        layer: layer.clone(),
        source,
    };
    let compressed_size = Rc::new(Cell::new(0));
    let counting = Counting {
        inner: reader,
        count: compressed_size.clone(),
    };
    let decoder = compression.decoder(counting).map_err(read_err)?;
    let mut archive = tar::Archive::new(DiffReader::new(decoder, options.max_size));
    let mut writer = LayerWriter::new(tree, &layer, options.allow_devices);
    let written = write_all(&mut archive, &mut writer, &layer);
    let mut stream = archive.into_inner();
    let too_large = || UnpackError::TooLarge {
        layer: layer.clone(),
        limit: options.max_size.unwrap_or(u64::MAX),
    };
    if stream.exceeded() {
        return Err(too_large());
    }
    written?;
    let drained = stream.drain();
    if stream.exceeded() {
        return Err(too_large());
    }
    drained.map_err(read_err)?;
    let (diff_id, size) = stream.digest();
    Ok(LayerInfo {
        diff_id,
        size,
        compressed_size: compressed_size.get(),
        entries: writer.entries,
        devices: writer.devices,
    })
}

fn write_all<R: Read>(
    archive: &mut tar::Archive<R>,
    writer: &mut LayerWriter,
    layer: &str,
) -> Result<(), UnpackError> {
    let read_err = |source| UnpackError::Read {
        layer: layer.to_string(),
        source,
    };
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        writer.write(&mut entry)?;
    }
    writer.finish()
}
