//! The readers a layer's blob goes through on its way to the tar reader: one that counts the
//! compressed bytes, and one that hashes the uncompressed stream (the diff_id) and cuts it off
//! past a size limit. Which media types are layers and how each decompresses is
//! [`crate::image::media`]'s one table.
//!
//! Must not: write anything.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use sha2::{Digest, Sha256};

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
