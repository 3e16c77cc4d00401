//! The agent's own types for what flows through the task API: a task's state, how it ended, and
//! what Create takes. No protobuf type leaves [`super`]: these are what the pod loop
//! (and a fake runtime in its tests) sees.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::types::task::Status;

/// A task's (or exec's) status as the shim reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Created, not started.
    Created,
    Running,
    /// Ended (its exit is in [`TaskState::exit`]) or killed before it started.
    Stopped,
    Paused,
    Unknown,
}

impl From<Status> for TaskStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::CREATED => TaskStatus::Created,
            Status::RUNNING => TaskStatus::Running,
            Status::STOPPED => TaskStatus::Stopped,
            Status::PAUSED | Status::PAUSING => TaskStatus::Paused,
            Status::UNKNOWN => TaskStatus::Unknown,
        }
    }
}

/// How a process ended: its exit code (128 + the signal for a kill) and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: u32,
    /// `None` when the shim sent no time.
    pub at: Option<SystemTime>,
}

impl ExitStatus {
    pub(crate) fn from_proto(code: u32, at: &MessageField<Timestamp>) -> Self {
        ExitStatus {
            code,
            at: at.as_ref().and_then(system_time),
        }
    }
}

/// A protobuf timestamp as a time; `None` for the zero time.
pub(crate) fn system_time(t: &Timestamp) -> Option<SystemTime> {
    if t.seconds <= 0 && t.nanos <= 0 {
        return None;
    }
    let secs = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// What the shim says about a task (State).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    /// The task's pid (a Wasm task runs in the shim: the shim's pid).
    pub pid: u32,
    pub status: TaskStatus,
    /// Set once the task has stopped.
    pub exit: Option<ExitStatus>,
}

/// What Connect says: the shim process and the task's pid in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimInfo {
    pub shim_pid: u32,
    /// 0 when the shim has no such task.
    pub task_pid: u32,
}

/// A task's standard streams: paths the shim opens (FIFOs, as containerd makes them); empty for
/// none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskIo {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
}

/// A mount the shim makes on `BUNDLE/rootfs` before it creates the task, as containerd sends a
/// snapshot's (an overlay of image layers, usually).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsMount {
    pub typ: String,
    pub source: String,
    pub options: Vec<String>,
}

/// What Create takes. Without `rootfs` mounts the rootfs is the bundle's own (`root.path` in
/// `config.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTask {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: Vec<RootfsMount>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_timestamps_are_no_time() {
        assert_eq!(system_time(&Timestamp::default()), None);
        let t = Timestamp {
            seconds: 10,
            nanos: 5,
            ..Default::default()
        };
        assert_eq!(system_time(&t), Some(UNIX_EPOCH + Duration::new(10, 5)));
    }
}
