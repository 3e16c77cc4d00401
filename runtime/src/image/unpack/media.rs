//! Layer media types → a decompressing reader, and the reader that computes the diff_id.
//!
//! The uncompressed media types and the gzip ones are those [`crate::image::extract`] reads,
//! plus zstd (`+zstd`). gzip is read as a multi-member stream, as Go's reader (and so containerd
//! and Docker) does; zstd reads every frame. Anything else is refused by name.
//!
//! Must not: write anything, or trust a media type it does not list.

use std::cell::Cell;
use std::io::{self, BufReader, Read};
use std::rc::Rc;

use sha2::{Digest, Sha256};

/// How a layer's tar is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

impl LayerCompression {
    /// From a layer media type (OCI, OCI non-distributable, Docker and Docker foreign layers);
    /// `None` for anything that is not a tar layer skiff reads.
    pub fn of_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar" => Some(Self::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Self::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Some(Self::Zstd),
            _ => None,
        }
    }

    /// The uncompressed stream of `compressed`.
    pub(super) fn decoder<'a>(self, compressed: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Self::None => Box::new(compressed),
            Self::Gzip => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
            Self::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(BufReader::new(
                compressed,
            ))?),
        })
    }
}

/// Counts the bytes read through it into a counter the caller keeps.
pub(super) struct Counting<R> {
    pub inner: R,
    pub count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get().saturating_add(n as u64));
        Ok(n)
    }
}

/// The uncompressed tar stream: hashed (the diff_id), counted, and cut off past a limit.
pub(super) struct DiffReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    limit: Option<u64>,
    exceeded: bool,
}

impl<R: Read> DiffReader<R> {
    pub fn new(inner: R, limit: Option<u64>) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
            limit,
            exceeded: false,
        }
    }

    /// Whether reading stopped because the stream was longer than the limit.
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// Reads what is left of the stream: a tar's trailing blocks count in the diff_id.
    pub fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }

    /// `("sha256:<hex>", size)` of what was read.
    pub fn digest(self) -> (String, u64) {
        let hex: String = self
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        (format!("sha256:{hex}"), self.size)
    }
}

impl<R: Read> Read for DiffReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.exceeded {
            return Err(io::Error::other("layer size limit exceeded"));
        }
        let n = self.inner.read(buf)?;
        self.size = self.size.saturating_add(n as u64);
        if self.limit.is_some_and(|limit| self.size > limit) {
            self.exceeded = true;
            return Err(io::Error::other("layer size limit exceeded"));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        for (media_type, want) in [
            (
                "application/vnd.oci.image.layer.v1.tar",
                Some(LayerCompression::None),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Some(LayerCompression::Gzip),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Some(LayerCompression::Zstd),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some(LayerCompression::Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Some(LayerCompression::Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar",
                Some(LayerCompression::None),
            ),
            ("application/vnd.oci.image.layer.v1.tar+bzip2", None),
            ("application/wasm", None),
            ("", None),
        ] {
            assert_eq!(
                LayerCompression::of_media_type(media_type),
                want,
                "{media_type}"
            );
        }
    }

    #[test]
    fn limit_cuts_off_and_says_so() {
        let mut r = DiffReader::new(&[7u8; 10][..], Some(9));
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
        assert!(r.exceeded());
        let mut r = DiffReader::new(&[7u8; 10][..], Some(10));
        r.drain().expect("at the limit");
        assert!(!r.exceeded());
        let (digest, size) = r.digest();
        assert_eq!(size, 10);
        assert_eq!(digest.len(), "sha256:".len() + 64);
    }
}
