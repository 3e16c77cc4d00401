//! The image store's files: content-addressed blobs, references → manifest digests, and one
//! record per pulled image.
//!
//! ```text
//! ROOT/blobs/sha256/<hex>                       manifests, configs, Wasm layers and extracted modules
//! ROOT/images/sha256/<manifest hex>.json        what a manifest resolved to (an ImageRecord)
//! ROOT/containers/sha256/<manifest hex>.json    the same for a container image (a ContainerRecord)
//! ROOT/refs/<registry>/<repository>/_tags/<tag> "sha256:<manifest hex>"
//! ROOT/tmp/                                     downloads in progress (emptied on open)
//! ```
//!
//! Every file is written to `tmp/` first and renamed into place once complete (and, for blobs,
//! verified), so a pull that dies half-way leaves nothing that a later lookup would take as
//! present. A record is written only after the module blob it names; a ref only after its record.
//! (`_tags` cannot collide with a repository path component, which never starts with `_`.)
//!
//! Must not: talk to a registry, or trust a path built from a digest or reference it has not
//! checked.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use oci_client::Reference;
use serde::{Deserialize, Serialize};

use super::PullError;

/// What a pulled image resolved to, kept as `images/sha256/<manifest hex>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The manifest digest the reference resolved to (an index's own digest for an index).
    pub digest: String,
    /// The image manifest used (differs from `digest` when `digest` is an index).
    pub manifest_digest: String,
    pub config_media_type: String,
    pub layer_media_types: Vec<String>,
    /// `"wasm-artifact"` or `"oci-image"`.
    pub kind: String,
    /// For OCI images: the config's `Entrypoint` and `Cmd`.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    /// The module: a blob of the store.
    pub module_digest: String,
    pub module_size: u64,
}

/// The store's directory.
#[derive(Debug)]
pub struct Cache {
    root: PathBuf,
    counter: AtomicU64,
}

/// `<hex>` of a `sha256:<64 lowercase hex>` digest; `None` for anything else.
pub fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

/// A path component taken from a reference: no separators, no `.`/`..`, nothing empty.
fn safe_component(c: &str) -> Option<&str> {
    (!c.is_empty() && c != "." && c != ".." && !c.contains(['/', '\\', '\0'])).then_some(c)
}

impl Cache {
    /// Opens (creating) the store at `root` and empties its `tmp/`.
    pub fn open(root: &Path) -> Result<Self, PullError> {
        let tmp = root.join("tmp");
        match fs::remove_dir_all(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(PullError::io(&tmp, e)),
        }
        for dir in ["blobs/sha256", "images/sha256", "refs", "tmp"] {
            let d = root.join(dir);
            fs::create_dir_all(&d).map_err(|e| PullError::io(&d, e))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            counter: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` lives (whether or not it is there).
    pub fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        sha256_hex(digest).map(|hex| self.root.join("blobs/sha256").join(hex))
    }

    /// Whether the blob is present with `size` bytes.
    pub fn has_blob(&self, digest: &str, size: u64) -> bool {
        self.blob_path(digest)
            .and_then(|p| fs::metadata(p).ok())
            .is_some_and(|m| m.is_file() && m.len() == size)
    }

    /// A fresh path under `tmp/`.
    pub fn temp_path(&self, what: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{}-{n}-{what}", std::process::id()))
    }

    /// Moves a complete, verified temp file into place as blob `digest`.
    pub fn commit_blob(&self, temp: &Path, digest: &str) -> Result<PathBuf, PullError> {
        let path = self.blob_path(digest).ok_or_else(|| {
            PullError::io(
                temp,
                io::Error::new(io::ErrorKind::InvalidInput, format!("bad digest {digest}")),
            )
        })?;
        fs::rename(temp, &path).map_err(|e| PullError::io(&path, e))?;
        Ok(path)
    }

    /// Writes small verified bytes (a manifest, a config) as blob `digest`.
    pub fn write_blob(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf, PullError> {
        if let Some(path) = self.blob_path(digest)
            && self.has_blob(digest, bytes.len() as u64)
        {
            return Ok(path);
        }
        let temp = self.temp_path("blob");
        self.write_file(&temp, bytes)?;
        self.commit_blob(&temp, digest)
    }

    /// The record of manifest `digest`, if it and its module blob are present.
    pub fn record(&self, digest: &str) -> Option<ImageRecord> {
        let path = self.record_path(digest)?;
        let bytes = fs::read(path).ok()?;
        let record: ImageRecord = serde_json::from_slice(&bytes).ok()?;
        (record.digest == digest && self.has_blob(&record.module_digest, record.module_size))
            .then_some(record)
    }

    pub fn write_record(&self, record: &ImageRecord) -> Result<(), PullError> {
        let path = self.record_path(&record.digest).ok_or_else(|| {
            PullError::io(
                self.root.join("images"),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bad digest {}", record.digest),
                ),
            )
        })?;
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| PullError::io(&path, io::Error::other(e)))?;
        self.replace(&path, &bytes)
    }

    /// The manifest digest a tag reference was last resolved to.
    pub fn read_ref(&self, reference: &Reference) -> Option<String> {
        let text = fs::read_to_string(self.ref_path(reference)?).ok()?;
        let digest = text.trim();
        sha256_hex(digest).map(|_| digest.to_string())
    }

    pub fn write_ref(&self, reference: &Reference, digest: &str) -> Result<(), PullError> {
        let Some(path) = self.ref_path(reference) else {
            // Digest references have no tag to remember.
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| PullError::io(dir, e))?;
        }
        self.replace(&path, format!("{digest}\n").as_bytes())
    }

    fn record_path(&self, digest: &str) -> Option<PathBuf> {
        sha256_hex(digest).map(|hex| self.root.join("images/sha256").join(format!("{hex}.json")))
    }

    fn ref_path(&self, reference: &Reference) -> Option<PathBuf> {
        let tag = safe_component(reference.tag()?)?;
        let mut path = self.root.join("refs");
        path.push(safe_component(reference.registry())?);
        for c in reference.repository().split('/') {
            path.push(safe_component(c)?);
        }
        path.push("_tags");
        path.push(tag);
        Some(path)
    }

    /// Writes `bytes` to `path` (inside the store) through a temp file and a rename.
    pub fn replace_file(&self, path: &Path, bytes: &[u8]) -> Result<(), PullError> {
        self.replace(path, bytes)
    }

    /// Writes `bytes` to `path` through a temp file and a rename.
    fn replace(&self, path: &Path, bytes: &[u8]) -> Result<(), PullError> {
        let temp = self.temp_path("meta");
        self.write_file(&temp, bytes)?;
        fs::rename(&temp, path).map_err(|e| PullError::io(path, e))
    }

    fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<(), PullError> {
        let mut f = fs::File::create(path).map_err(|e| PullError::io(path, e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| PullError::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn digests_are_checked_before_they_become_paths() {
        assert!(sha256_hex(D).is_some());
        for bad in [
            "sha256:../../etc/passwd",
            "sha256:0123",
            "sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
            "",
        ] {
            assert_eq!(sha256_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn refs_records_and_blobs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let r: Reference = "127.0.0.1:5000/team/app:v1".parse().unwrap();
        assert_eq!(cache.read_ref(&r), None);
        cache.write_ref(&r, D).unwrap();
        assert_eq!(cache.read_ref(&r).as_deref(), Some(D));
        assert!(
            dir.path()
                .join("refs/127.0.0.1:5000/team/app/_tags/v1")
                .is_file()
        );
        // A digest reference has nothing to remember.
        let by_digest: Reference = format!("127.0.0.1:5000/team/app@{D}").parse().unwrap();
        cache.write_ref(&by_digest, D).unwrap();

        let module = b"\0asm\x01\0\0\0";
        let module_digest = format!(
            "sha256:{:x}",
            <sha2::Sha256 as sha2::Digest>::digest(module)
        );
        let record = ImageRecord {
            digest: D.into(),
            manifest_digest: D.into(),
            config_media_type: "application/vnd.wasm.config.v0+json".into(),
            layer_media_types: vec!["application/wasm".into()],
            kind: "wasm-artifact".into(),
            entrypoint: vec![],
            cmd: vec![],
            module_digest: module_digest.clone(),
            module_size: module.len() as u64,
        };
        cache.write_record(&record).unwrap();
        // The record does not count until its module is there.
        assert_eq!(cache.record(D), None);
        cache.write_blob(&module_digest, module).unwrap();
        assert_eq!(cache.record(D), Some(record));
        // A truncated module does not count either.
        fs::write(cache.blob_path(&module_digest).unwrap(), b"\0asm").unwrap();
        assert_eq!(cache.record(D), None);
    }

    #[test]
    fn open_clears_half_written_downloads() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let t = cache.temp_path("layer");
        fs::write(&t, b"half").unwrap();
        drop(cache);
        Cache::open(dir.path()).unwrap();
        assert!(!t.exists());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
