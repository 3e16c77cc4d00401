//! What the executor remembers of a container: `<root>/<id>/state.json`, and the container's
//! status derived from it and from /proc (as runc does): `created` while its init waits on the
//! exec FIFO, `running` once started, `stopped` when its init is gone (or the pid was reused).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{LinuxError, SysContext};

/// The FIFO the container's init blocks on until `start`.
pub const EXEC_FIFO: &str = "exec.fifo";
const STATE_FILE: &str = "state.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Saved {
    pub id: String,
    /// The container's init, in the host's pid namespace.
    pub pid: i32,
    /// Its start time in clock ticks since boot (/proc/PID/stat field 22): tells a reused pid.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// The cgroup, relative to each hierarchy's root.
    pub cgroup: String,
    /// RFC 3339.
    pub created: String,
}

/// The OCI status of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

/// A container as the executor sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub saved: Saved,
    pub status: Status,
}

/// Field 22 (starttime) and field 3 (state) of /proc/PID/stat.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

pub fn container_dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

pub fn save(dir: &Path, saved: &Saved) -> Result<(), LinuxError> {
    let tmp = dir.join(".state.json.tmp");
    let bytes = serde_json::to_vec_pretty(saved).map_err(|e| LinuxError::Init {
        id: saved.id.clone(),
        message: e.to_string(),
    })?;
    std::fs::write(&tmp, bytes).ctx(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(STATE_FILE)).ctx(|| format!("saving state in {}", dir.display()))
}

pub fn load(root: &Path, id: &str) -> Result<State, LinuxError> {
    let dir = container_dir(root, id);
    let path = dir.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LinuxError::NotFound(id.to_string()));
        }
        Err(e) => return Err(LinuxError::io(format!("reading {}", path.display()), e)),
    };
    let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| LinuxError::Init {
        id: id.to_string(),
        message: format!("{}: {e}", path.display()),
    })?;
    let alive =
        proc_stat(saved.pid).is_some_and(|(s, start)| s != 'Z' && start == saved.start_time);
    let status = if !alive {
        Status::Stopped
    } else if dir.join(EXEC_FIFO).exists() {
        Status::Created
    } else {
        Status::Running
    };
    Ok(State { saved, status })
}
