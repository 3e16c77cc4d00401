//! Where compiled modules are kept: in memory per digest, and on disk across restarts.
//!
//! Owns [`ModuleCache`]: the cache directory (mode 0700; artifacts named
//! `<sha256 hex>-<engine compatibility hash>.cwasm`, written to a temp file and renamed into
//! place), the in-memory map digest → prepared module (one compilation per digest even under
//! concurrent prepares), a memo path → digest keyed by the file's identity and mtime, and the
//! one `unsafe` of the crate: deserializing an artifact of that directory. Must not: compile or
//! link (that is `prepare`).

use std::collections::HashMap;
use std::fs::DirBuilder;
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::error::WasmError;
use super::prepare::{Code, ModuleKind, Prepared};

/// The in-memory and on-disk cache of one engine.
pub(crate) struct ModuleCache {
    dir: PathBuf,
    /// Hex of the engine's precompile compatibility hash: artifacts of another wasmtime version
    /// or configuration get other names, and are never tried.
    compat: String,
    prepared: Mutex<HashMap<String, Arc<OnceCell<Prepared>>>>,
    digests: Mutex<HashMap<PathBuf, (FileStamp, String)>>,
}

/// What identifies a file's content without reading it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: Option<SystemTime>,
}

impl FileStamp {
    pub(crate) fn of(m: &std::fs::Metadata) -> Self {
        FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: m.modified().ok(),
        }
    }
}

impl ModuleCache {
    /// Creates the cache directory if needed (mode 0700; `set_permissions` also fails unless
    /// this user owns it, so a directory others control is refused).
    pub(crate) fn open(dir: &Path, engine: &wasmtime::Engine) -> Result<Self, WasmError> {
        let err = |source| WasmError::Cache {
            path: dir.to_path_buf(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        Ok(ModuleCache {
            dir: dir.to_path_buf(),
            compat: compat_hash(engine),
            prepared: Mutex::new(HashMap::new()),
            digests: Mutex::new(HashMap::new()),
        })
    }

    /// The once-cell holding the prepared module of `digest`.
    pub(crate) fn slot(&self, digest: &str) -> Arc<OnceCell<Prepared>> {
        let mut map = self.prepared.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(digest.to_string()).or_default().clone()
    }

    /// Modules prepared so far.
    pub(crate) fn len(&self) -> usize {
        let map = self.prepared.lock().unwrap_or_else(PoisonError::into_inner);
        map.values().filter(|c| c.initialized()).count()
    }

    /// The remembered digest of `path` if the file is unchanged since it was hashed.
    pub(crate) fn known_digest(&self, path: &Path, stamp: FileStamp) -> Option<String> {
        let map = self.digests.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(path)
            .filter(|(s, _)| *s == stamp)
            .map(|(_, d)| d.clone())
    }

    pub(crate) fn remember_digest(&self, path: &Path, stamp: FileStamp, digest: &str) {
        let mut map = self.digests.lock().unwrap_or_else(PoisonError::into_inner);
        map.insert(path.to_path_buf(), (stamp, digest.to_string()));
    }

    /// `<dir>/<hex>-<compat>.cwasm` for `sha256:<hex>`.
    pub(crate) fn artifact_path(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir.join(format!("{hex}-{}.cwasm", self.compat))
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `Hasher` that feeds sha256, so the engine's compatibility hash is stable across processes
/// (std's `DefaultHasher` is randomly keyed per build).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn compat_hash(engine: &wasmtime::Engine) -> String {
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    hex(&h.0.finalize()[..8])
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory, synced, renamed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("artifact path has no parent"))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unique = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.{unique}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Loads a compiled artifact of the cache directory.
#[allow(unsafe_code)]
pub(crate) fn deserialize(
    engine: &wasmtime::Engine,
    kind: ModuleKind,
    path: &Path,
) -> wasmtime::Result<Code> {
    // SAFETY: wasmtime requires that the file be a trusted artifact produced by
    // `Engine::precompile_*` and not modified while mapped. `path` lies in the cache directory,
    // which this process created (or re-chmodded, proving ownership) with mode 0700 and fills
    // only with artifacts it compiled itself, written to a temp file and renamed into place (so
    // never partial, and never rewritten in place: a new artifact is a new inode). wasmtime
    // also checks the header and the engine's compatibility before using the code.
    unsafe {
        Ok(match kind {
            ModuleKind::Module => Code::Module(wasmtime::Module::deserialize_file(engine, path)?),
            ModuleKind::Component => Code::Component(
                wasmtime::component::Component::deserialize_file(engine, path)?,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_sha256() {
        assert_eq!(
            digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn cache_dir_is_private_and_artifacts_are_named_by_digest_and_engine() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("a/b/cache");
        let engine = wasmtime::Engine::default();
        let cache = ModuleCache::open(&cache_dir, &engine).unwrap();
        let mode = std::fs::metadata(&cache_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let p = cache.artifact_path("sha256:abcd");
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("abcd-") && name.ends_with(".cwasm"),
            "{name}"
        );
        // Same engine configuration, same name (stable across processes).
        let again = ModuleCache::open(&cache_dir, &wasmtime::Engine::default()).unwrap();
        assert_eq!(again.artifact_path("sha256:abcd"), p);
    }

    #[test]
    fn atomic_write_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.cwasm");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
