//! The agent's own types for what flows through the task API: a task's state, how it ended, its
//! figures, and what Create takes. No protobuf type leaves [`super`]: these are what the pod loop
//! (and a fake runtime in its tests) sees.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{Message, MessageField, MessageFull};
use containerd_shim::protos::types::task::Status;

use super::error::ShimError;

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
    pub id: String,
    pub bundle: PathBuf,
    /// The task's pid (a Wasm task runs in the shim: the shim's pid).
    pub pid: u32,
    pub status: TaskStatus,
    /// Set once the task has stopped.
    pub exit: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// What Connect says: the shim process and the task's pid in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimInfo {
    pub shim_pid: u32,
    /// 0 when the shim has no such task.
    pub task_pid: u32,
    pub version: String,
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
    pub io: TaskIo,
    pub rootfs: Vec<RootfsMount>,
}

/// A task's figures (Stats): a Linux task's cgroup's, a Wasm task's own from wasmtime's
/// accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskStats {
    pub memory_bytes: u64,
    /// 0: no limit.
    pub memory_limit_bytes: u64,
    pub cpu_nanos: u64,
    pub pids: u64,
}

impl TaskStats {
    /// Reads the cgroup v1 or v2 metrics the shim sent.
    pub(crate) fn from_any(id: &str, any: &Any) -> Result<Self, ShimError> {
        use containerd_shim::protos::cgroups::metrics::Metrics as V1;
        use containerd_shim::protos::cgroups_v2::metrics::Metrics as V2;
        let decode = |e: containerd_shim::protos::protobuf::Error| ShimError::Decode {
            what: format!("stats of task {id}"),
            reason: e.to_string(),
        };
        let name = any.type_url.rsplit('/').next().unwrap_or_default();
        if name == V2::descriptor().full_name() {
            let m = V2::parse_from_bytes(&any.value).map_err(decode)?;
            Ok(TaskStats {
                memory_bytes: m.memory.usage,
                memory_limit_bytes: m.memory.usage_limit,
                cpu_nanos: m.cpu.usage_usec.saturating_mul(1000),
                pids: m.pids.current,
            })
        } else if name == V1::descriptor().full_name() {
            let m = V1::parse_from_bytes(&any.value).map_err(decode)?;
            Ok(TaskStats {
                memory_bytes: m.memory.usage.usage,
                memory_limit_bytes: m.memory.usage.limit,
                cpu_nanos: m.cpu.usage.total,
                pids: m.pids.current,
            })
        } else {
            Err(ShimError::Decode {
                what: format!("stats of task {id}"),
                reason: format!("unknown metrics type {:?}", any.type_url),
            })
        }
    }
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

    #[test]
    fn stats_of_either_cgroup_version_are_read() {
        use containerd_shim::protos::cgroups_v2::metrics::Metrics as V2;
        let mut m = V2::new();
        m.memory.mut_or_insert_default().usage = 42;
        m.cpu.mut_or_insert_default().usage_usec = 3;
        let any = Any {
            type_url: V2::descriptor().full_name().to_string(),
            value: m.write_to_bytes().unwrap(),
            ..Default::default()
        };
        let s = TaskStats::from_any("t", &any).unwrap();
        assert_eq!((s.memory_bytes, s.cpu_nanos), (42, 3000));
        let bad = Any {
            type_url: "x.Y".into(),
            ..Default::default()
        };
        assert!(TaskStats::from_any("t", &bad).is_err());
    }
}
