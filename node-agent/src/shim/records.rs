//! What the agent records about its shims in its data dir, so that a restarted agent reconnects
//! to them instead of launching new ones.
//!
//! Layout, under `DATA_DIR/shims/` (mode 0700: whoever can write here can forge task events):
//!
//! ```text
//! agent.sock.ttrpc          the events endpoint the shims publish to (TTRPC_ADDRESS)
//! cache/                    the shims' compiled-module cache (SKIFF_SHIM_CACHE_DIR)
//! <group>/address           the shim's ttrpc address, as `shim start` printed it
//! <group>/shim.log          the shim's own log (each bundle's `log` links here)
//! <group>/tasks/<task id>   one per task the agent created in that shim: its bundle path
//! ```
//!
//! Files are written to a temporary name and renamed, so a crash mid-write leaves the old
//! record or none. Must not: talk to shims (that is [`super::client`]).

use std::path::{Path, PathBuf};

use super::error::ShimError;

/// A shim the agent launched and has not shut down, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedShim {
    pub group: String,
    pub address: String,
    pub tasks: Vec<RecordedTask>,
}

/// A task the agent created in a shim and has not deleted, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedTask {
    pub id: String,
    pub bundle: PathBuf,
}

/// Checks a group or task id: it names a directory or file here, and containerd's ids follow
/// the same rule (`[A-Za-z0-9][A-Za-z0-9_.-]*`, at most 76 characters).
pub fn check_id(what: &str, id: &str) -> Result<(), ShimError> {
    let ok = !id.is_empty()
        && id.len() <= 76
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ShimError::invalid(
            format!("{what} {id:?}"),
            "must be 1 to 76 of [A-Za-z0-9_.-], starting with a letter or digit",
        ))
    }
}

/// The records under one `shims` directory.
#[derive(Debug, Clone)]
pub struct Records {
    root: PathBuf,
}

impl Records {
    /// Creates `root` (mode 0700) if missing.
    pub fn open(root: &Path) -> Result<Self, ShimError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| ShimError::io(root, e))?;
        Ok(Records {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn shim_dir(&self, group: &str) -> PathBuf {
        self.root.join(group)
    }

    pub fn log_path(&self, group: &str) -> PathBuf {
        self.shim_dir(group).join("shim.log")
    }

    fn tasks_dir(&self, group: &str) -> PathBuf {
        self.shim_dir(group).join("tasks")
    }

    /// The recorded address of `group`'s shim, if any.
    pub fn address(&self, group: &str) -> Result<Option<String>, ShimError> {
        let path = self.shim_dir(group).join("address");
        match std::fs::read_to_string(&path) {
            Ok(a) if !a.trim().is_empty() => Ok(Some(a.trim().to_string())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ShimError::io(path, e)),
        }
    }

    pub fn record_address(&self, group: &str, address: &str) -> Result<(), ShimError> {
        write_atomic(&self.shim_dir(group), "address", address.as_bytes())
    }

    /// Notes the pid of `group`'s shim (for operators and tests: `shims/<group>/pid`).
    pub fn record_pid(&self, group: &str, pid: u32) -> Result<(), ShimError> {
        write_atomic(&self.shim_dir(group), "pid", pid.to_string().as_bytes())
    }

    pub fn record_task(&self, group: &str, id: &str, bundle: &Path) -> Result<(), ShimError> {
        let bundle = bundle.as_os_str().as_encoded_bytes();
        write_atomic(&self.tasks_dir(group), id, bundle)
    }

    pub fn forget_task(&self, group: &str, id: &str) -> Result<(), ShimError> {
        let path = self.tasks_dir(group).join(id);
        removed(&path, std::fs::remove_file(&path))
    }

    /// Removes everything recorded for `group` (its shim is gone).
    pub fn forget_shim(&self, group: &str) -> Result<(), ShimError> {
        let dir = self.shim_dir(group);
        removed(&dir, std::fs::remove_dir_all(&dir))
    }

    /// The tasks recorded in `group`'s shim, by id.
    pub fn tasks(&self, group: &str) -> Result<Vec<RecordedTask>, ShimError> {
        let dir = self.tasks_dir(group);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ShimError::io(dir, e)),
        };
        let mut tasks = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ShimError::io(&dir, e))?;
            let Some(id) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if check_id("task", &id).is_err() {
                continue; // a temporary file of an interrupted write (a dot name)
            }
            let bundle = std::fs::read(entry.path()).map_err(|e| ShimError::io(entry.path(), e))?;
            tasks.push(RecordedTask {
                id,
                bundle: PathBuf::from(String::from_utf8_lossy(&bundle).into_owned()),
            });
        }
        tasks.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(tasks)
    }

    /// Every shim recorded with an address, with its tasks.
    pub fn shims(&self) -> Result<Vec<RecordedShim>, ShimError> {
        let entries = std::fs::read_dir(&self.root).map_err(|e| ShimError::io(&self.root, e))?;
        let mut shims = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ShimError::io(&self.root, e))?;
            let Some(group) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if group == "cache" || check_id("group", &group).is_err() || !entry.path().is_dir() {
                continue;
            }
            let Some(address) = self.address(&group)? else {
                continue;
            };
            let tasks = self.tasks(&group)?;
            shims.push(RecordedShim {
                group,
                address,
                tasks,
            });
        }
        shims.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(shims)
    }
}

/// Writes `dir/name` (making `dir` if missing) through a temporary file and a rename.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ShimError> {
    std::fs::create_dir_all(dir).map_err(|e| ShimError::io(dir, e))?;
    let path = dir.join(name);
    // A dot name: never read as a record (ids start with a letter or digit).
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            ShimError::io(&path, e)
        })
}

/// The `result` of removing `path`: one already gone is fine.
fn removed(path: &Path, result: std::io::Result<()>) -> Result<(), ShimError> {
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ShimError::io(path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_file_names_and_nothing_else() {
        for ok in ["a", "pod-1.c_2", "0abc"] {
            assert!(check_id("task", ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "-a", "a/b", "a b", &"x".repeat(77)] {
            assert!(check_id("task", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shims_and_tasks_are_recorded_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(&dir.path().join("shims")).unwrap();
        assert!(records.shims().unwrap().is_empty());
        records.record_address("g1", "unix:///run/x").unwrap();
        records.record_task("g1", "t1", Path::new("/b/t1")).unwrap();
        records.record_task("g1", "t2", Path::new("/b/t2")).unwrap();
        std::fs::create_dir_all(records.root().join("cache")).unwrap();
        let shims = records.shims().unwrap();
        assert_eq!(shims.len(), 1);
        assert_eq!(shims[0].address, "unix:///run/x");
        assert_eq!(
            shims[0].tasks,
            [
                RecordedTask {
                    id: "t1".into(),
                    bundle: "/b/t1".into()
                },
                RecordedTask {
                    id: "t2".into(),
                    bundle: "/b/t2".into()
                }
            ]
        );
        records.forget_task("g1", "t1").unwrap();
        records.forget_task("g1", "t1").unwrap();
        assert_eq!(records.tasks("g1").unwrap().len(), 1);
        records.forget_shim("g1").unwrap();
        assert!(records.shims().unwrap().is_empty());
        assert_eq!(records.address("g1").unwrap(), None);
    }
}
