//! The snapshot store: one unpacked directory per layer, shared by every container whose image
//! has the layer, and handed to overlayfs as a `lowerdir`.
//!
//! ```text
//! ROOT/                          0700
//! ROOT/sha256/<hex>/             0700: one complete, verified layer, keyed by its diff_id
//! ROOT/sha256/<hex>/fs/          the layer's files (whiteouts in overlayfs form): a lowerdir
//! ROOT/sha256/<hex>/layer.json   its LayerInfo
//! ROOT/tmp/<pid>-<n>-<hex>/      an unpack in progress (same shape)
//! ```
//!
//! Keyed by diff_id, not chain id: with overlayfs a layer's directory depends on nothing but the
//! layer's own tar (whiteouts are kept as whiteouts and applied by overlayfs at mount time;
//! directories a layer implies without an entry get fixed metadata, not copied from the layers
//! below), so one directory serves the layer wherever it sits in any image. Chain ids matter to
//! snapshotters whose snapshots are built on their parent (btrfs, devmapper); skiff's are not.
//!
//! A layer is unpacked into `tmp/`, checked against the diff_id the caller expects, synced to
//! disk, and renamed into `sha256/` only then; any failure (or panic) removes the temp
//! directory, so nothing half-written is ever taken as present. Concurrent `ensure`s of one
//! layer in a process wait for the first (one unpack); across processes the second rename finds
//! the directory in place and its own copy is thrown away. Temp directories of processes that
//! are gone are removed when a store is opened.
//!
//! Devices: a snapshot unpacked with devices allowed records it, and is refused to a caller that
//! does not allow them, so a privileged pod's layer never hands device nodes to another pod.
//!
//! Must not: know about images, pods or mounts; remove a snapshot (that is a garbage collector's
//! call, which must know what is mounted).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::safe_path::remove_path;
use super::{LayerInfo, UnpackError, UnpackOptions, unpack_layer};
use crate::image::cache::sha256_hex;

const LAYERS: &str = "sha256";
const TMP: &str = "tmp";
const FS: &str = "fs";
const INFO: &str = "layer.json";

/// A layer in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The layer's files: an overlayfs `lowerdir`.
    pub dir: PathBuf,
    pub info: LayerInfo,
    /// Whether this call unpacked it (false: it was there).
    pub unpacked: bool,
}

/// The snapshot store.
#[derive(Debug)]
pub struct Snapshots {
    root: PathBuf,
    max_size: Option<u64>,
    /// One lock per layer: concurrent `ensure`s of a layer unpack it once.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Snapshots {
    /// Opens (creating) the store at `root`, and removes what dead processes left in `tmp/`.
    pub fn new(root: impl AsRef<Path>) -> Result<Self, UnpackError> {
        let root = root.as_ref().to_path_buf();
        for dir in [root.clone(), root.join(LAYERS), root.join(TMP)] {
            private_dir(&dir)?;
        }
        let store = Self {
            root,
            max_size: None,
            locks: Mutex::new(HashMap::new()),
        };
        store.clean_tmp()?;
        Ok(store)
    }

    /// Refuses layers of more than `limit` uncompressed bytes.
    pub fn with_max_size(mut self, limit: u64) -> Self {
        self.max_size = Some(limit);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The files of layer `diff_id` if the store has it complete and free of device nodes.
    pub fn fs_dir(&self, diff_id: &str) -> Option<PathBuf> {
        let hex = checked(diff_id).ok()?;
        match self.present(hex, diff_id) {
            Ok(Some(s)) if !s.info.devices => Some(s.dir),
            _ => None,
        }
    }

    /// The directory of layer `diff_id`, unpacked from the blob `open_blob` opens if the store
    /// does not have it yet. Device nodes in the layer are refused.
    pub fn ensure<R: Read>(
        &self,
        diff_id: &str,
        media_type: &str,
        open_blob: impl FnOnce() -> io::Result<R>,
    ) -> Result<PathBuf, UnpackError> {
        Ok(self.ensure_with(diff_id, media_type, false, open_blob)?.dir)
    }

    /// [`Snapshots::ensure`], with device nodes allowed or not.
    pub fn ensure_with<R: Read>(
        &self,
        diff_id: &str,
        media_type: &str,
        allow_devices: bool,
        open_blob: impl FnOnce() -> io::Result<R>,
    ) -> Result<Snapshot, UnpackError> {
        let hex = checked(diff_id)?;
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(hex.to_string()).or_default().clone()
        };
        let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(snapshot) = self.present(hex, diff_id)? {
            return devices_allowed(snapshot, allow_devices);
        }

        let temp = TempDir::create(self.temp_path(hex))?;
        let fs_dir = temp.path.join(FS);
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&fs_dir)
            .map_err(|e| store_err(&fs_dir, e))?;
        // The rootfs root is 0755 whatever the umask.
        fs::set_permissions(&fs_dir, fs::Permissions::from_mode(0o755))
            .map_err(|e| store_err(&fs_dir, e))?;
        let blob = open_blob().map_err(|source| UnpackError::Blob {
            layer: diff_id.to_string(),
            source,
        })?;
        let options = UnpackOptions {
            layer_name: Some(diff_id.to_string()),
            allow_devices,
            max_size: self.max_size,
        };
        let info = unpack_layer(blob, media_type, &fs_dir, &options)?;
        if info.diff_id != diff_id {
            return Err(UnpackError::DiffIdMismatch {
                expected: diff_id.to_string(),
                actual: info.diff_id,
            });
        }
        let info_path = temp.path.join(INFO);
        let json = serde_json::to_vec_pretty(&info).map_err(|e| store_err(&info_path, e.into()))?;
        fs::write(&info_path, json).map_err(|e| store_err(&info_path, e))?;
        let temp_fd = fs::File::open(&temp.path).map_err(|e| store_err(&temp.path, e))?;
        rustix::fs::syncfs(&temp_fd).map_err(|e| store_err(&temp.path, e.into()))?;

        let layers = self.root.join(LAYERS);
        let dest = layers.join(hex);
        match fs::rename(&temp.path, &dest) {
            Ok(()) => {
                temp.keep();
                fs::File::open(&layers)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| store_err(&layers, e))?;
                Ok(Snapshot {
                    dir: dest.join(FS),
                    info,
                    unpacked: true,
                })
            }
            // Another process put the layer in place first: use its copy (same diff_id, same
            // bytes); ours goes with `temp`.
            Err(e) if dest.join(INFO).exists() => {
                drop(temp);
                match self.present(hex, diff_id)? {
                    Some(snapshot) => devices_allowed(snapshot, allow_devices),
                    None => Err(store_err(&dest, e)),
                }
            }
            Err(e) => Err(store_err(&dest, e)),
        }
    }

    /// The layer `diff_id`, if the store has it.
    pub fn get(&self, diff_id: &str) -> Result<Option<Snapshot>, UnpackError> {
        let hex = checked(diff_id)?;
        let lock = {
            let locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.get(hex).cloned()
        };
        let _wait = lock
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()));
        self.present(hex, diff_id)
    }

    /// The overlayfs lower directories of an image whose layers are `diff_ids` in image-config
    /// order (bottom layer first): top layer first, as `lowerdir=` wants them.
    pub fn lower_dirs<S: AsRef<str>>(&self, diff_ids: &[S]) -> Result<Vec<PathBuf>, UnpackError> {
        diff_ids
            .iter()
            .rev()
            .map(|d| {
                let d = d.as_ref();
                let hex = checked(d)?;
                let dir = self.root.join(LAYERS).join(hex);
                if dir.join(INFO).is_file() && dir.join(FS).is_dir() {
                    Ok(dir.join(FS))
                } else {
                    Err(UnpackError::NotPresent {
                        layer: d.to_string(),
                    })
                }
            })
            .collect()
    }

    /// The committed layer `hex`, if it is there and whole. A directory that is not (only
    /// someone editing the store by hand makes one) is moved away and removed.
    fn present(&self, hex: &str, diff_id: &str) -> Result<Option<Snapshot>, UnpackError> {
        let dir = self.root.join(LAYERS).join(hex);
        let info_path = dir.join(INFO);
        let info = match fs::read(&info_path) {
            Ok(bytes) => serde_json::from_slice::<LayerInfo>(&bytes).ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !dir.exists() => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(store_err(&info_path, e)),
        };
        match info {
            Some(info) if info.diff_id == diff_id && dir.join(FS).is_dir() => Ok(Some(Snapshot {
                dir: dir.join(FS),
                info,
                unpacked: false,
            })),
            _ => {
                tracing::warn!(
                    layer = diff_id,
                    "snapshot store: removing an incomplete snapshot"
                );
                let aside = self.temp_path(&format!("broken-{hex}"));
                fs::rename(&dir, &aside).map_err(|e| store_err(&dir, e))?;
                remove_path(&aside).map_err(|e| store_err(&aside, e))?;
                Ok(None)
            }
        }
    }

    /// A fresh path in `tmp/`: `<pid>-<n>-<what>`, unique in the process even with several
    /// stores open on one root.
    fn temp_path(&self, what: &str) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        self.root
            .join(TMP)
            .join(format!("{}-{n}-{what}", std::process::id()))
    }

    /// Removes temp directories whose process is gone.
    fn clean_tmp(&self) -> Result<(), UnpackError> {
        let tmp = self.root.join(TMP);
        let own = std::process::id();
        for entry in fs::read_dir(&tmp).map_err(|e| store_err(&tmp, e))? {
            let entry = entry.map_err(|e| store_err(&tmp, e))?;
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(|p| p == own || Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                remove_path(&entry.path()).map_err(|e| store_err(&entry.path(), e))?;
            }
        }
        Ok(())
    }
}

/// A temp directory removed (with everything in it) when dropped, unless kept.
struct TempDir {
    path: PathBuf,
    kept: bool,
}

impl TempDir {
    fn create(path: PathBuf) -> Result<Self, UnpackError> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| store_err(&path, e))?;
        Ok(Self { path, kept: false })
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.kept
            && let Err(e) = remove_path(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "snapshot store: cannot remove a temp directory");
        }
    }
}

/// Creates `dir` if missing and makes it 0700.
fn private_dir(dir: &Path) -> Result<(), UnpackError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| store_err(dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| store_err(dir, e))
}

fn checked(diff_id: &str) -> Result<&str, UnpackError> {
    sha256_hex(diff_id).ok_or_else(|| UnpackError::InvalidDiffId {
        layer: diff_id.to_string(),
    })
}

fn devices_allowed(snapshot: Snapshot, allow_devices: bool) -> Result<Snapshot, UnpackError> {
    if snapshot.info.devices && !allow_devices {
        return Err(UnpackError::DevicesNotAllowed {
            layer: snapshot.info.diff_id,
        });
    }
    Ok(snapshot)
}

fn store_err(path: &Path, source: io::Error) -> UnpackError {
    UnpackError::Store {
        path: path.to_path_buf(),
        source,
    }
}
