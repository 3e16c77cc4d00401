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

/// A task's figures, as its Stats reports them (cgroups v1 or v2 metrics; a Wasm task's are v2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskUsage {
    /// CPU time used since the task started.
    pub cpu: Duration,
    /// Memory in use now.
    pub memory_bytes: u64,
    /// A function's counters, when the task is one: (requests received, requests in flight).
    pub requests: Option<(u64, u64)>,
    /// All of a function's figures, when the task is one (for the agent's `/metrics`).
    pub function: Option<skiff_runtime::wasm::FunctionStats>,
}

/// The field of `io.containerd.cgroups.v2.Metrics` in which a skiff shim adds a function's
/// counters (the runtime's `FunctionStats`: `requests_total = 1`, `in_flight = 2`, varints).
pub const FUNCTION_STATS_FIELD: u32 = 5021;

impl TaskUsage {
    /// Reads a Stats answer by its type.
    pub fn from_any(
        any: &containerd_shim::protos::protobuf::well_known_types::any::Any,
    ) -> Result<Self, String> {
        use containerd_shim::protos::cgroups::metrics as v1;
        use containerd_shim::protos::cgroups_v2::metrics as v2;
        use containerd_shim::protos::protobuf::{Message, MessageFull};
        let name = any.type_url.rsplit('/').next().unwrap_or_default();
        if name == v2::Metrics::descriptor().full_name() {
            let m = v2::Metrics::parse_from_bytes(&any.value).map_err(|e| e.to_string())?;
            let requests = m
                .special_fields
                .unknown_fields()
                .get(FUNCTION_STATS_FIELD)
                .and_then(|v| match v {
                    containerd_shim::protos::protobuf::UnknownValueRef::LengthDelimited(b) => {
                        function_counters(b)
                    }
                    _ => None,
                });
            Ok(TaskUsage {
                cpu: Duration::from_micros(m.cpu.usage_usec),
                memory_bytes: m.memory.usage,
                requests,
                function: requests.and_then(|_| function_stats(any)),
            })
        } else if name == v1::Metrics::descriptor().full_name() {
            let m = v1::Metrics::parse_from_bytes(&any.value).map_err(|e| e.to_string())?;
            Ok(TaskUsage {
                cpu: Duration::from_nanos(m.cpu.usage.total),
                memory_bytes: m.memory.usage.usage,
                requests: None,
                function: None,
            })
        } else {
            Err(format!("unknown stats type {:?}", any.type_url))
        }
    }
}

/// A function's full counters from a Stats answer (field [`FUNCTION_STATS_FIELD`] of a v2
/// `Metrics`, in the runtime's [`skiff_runtime::wasm::FunctionStats`] form); `None` when absent.
pub fn function_stats(
    any: &containerd_shim::protos::protobuf::well_known_types::any::Any,
) -> Option<skiff_runtime::wasm::FunctionStats> {
    use containerd_shim::protos::cgroups_v2::metrics as v2;
    use containerd_shim::protos::protobuf::{Message, MessageFull, UnknownValueRef};
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    if name != v2::Metrics::descriptor().full_name() {
        return None;
    }
    let m = v2::Metrics::parse_from_bytes(&any.value).ok()?;
    match m
        .special_fields
        .unknown_fields()
        .get(FUNCTION_STATS_FIELD)?
    {
        UnknownValueRef::LengthDelimited(bytes) => {
            skiff_runtime::wasm::FunctionStats::decode(bytes)
        }
        _ => None,
    }
}

/// Fields 1 (requests received) and 2 (in flight) of a function's counters; other fields skipped.
fn function_counters(mut bytes: &[u8]) -> Option<(u64, u64)> {
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = bytes.split_first()?;
            *bytes = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let (mut total, mut in_flight) = (0, 0);
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        match key & 7 {
            0 => {
                let v = varint(&mut bytes)?;
                match key >> 3 {
                    1 => total = v,
                    2 => in_flight = v,
                    _ => {}
                }
            }
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                bytes = bytes.get(len..)?;
            }
            1 => bytes = bytes.get(8..)?,
            5 => bytes = bytes.get(4..)?,
            _ => return None,
        }
    }
    Some((total, in_flight))
}

#[cfg(test)]
mod usage_tests {
    use super::*;
    use containerd_shim::protos::cgroups_v2::metrics as v2;
    use containerd_shim::protos::protobuf::Message;

    #[test]
    fn a_wasm_tasks_v2_metrics_with_a_functions_counters() {
        let mut m = v2::Metrics::new();
        m.cpu.mut_or_insert_default().usage_usec = 1_500_000;
        m.memory.mut_or_insert_default().usage = 3 << 20;
        // requests_total 7, in_flight 2, a packed field after them.
        let counters = vec![0x08, 7, 0x10, 2, 0x4a, 2, 1, 1];
        m.special_fields
            .mut_unknown_fields()
            .add_length_delimited(FUNCTION_STATS_FIELD, counters);
        let any = containerd_shim::util::convert_to_any(Box::new(m)).unwrap();
        let usage = TaskUsage::from_any(&any).unwrap();
        assert_eq!(usage.cpu, Duration::from_millis(1500));
        assert_eq!(usage.memory_bytes, 3 << 20);
        assert_eq!(usage.requests, Some((7, 2)));
        let plain = containerd_shim::util::convert_to_any(Box::new(v2::Metrics::new())).unwrap();
        assert_eq!(TaskUsage::from_any(&plain).unwrap().requests, None);
        let _ = v2::Metrics::new().write_to_bytes();
    }
}

#[cfg(test)]
mod function_stats_tests {
    use super::*;
    use containerd_shim::protos::cgroups_v2::metrics as v2;
    use skiff_runtime::wasm::FunctionStats;

    #[test]
    fn a_functions_full_figures_come_back_from_a_stats_answer() {
        assert_eq!(FUNCTION_STATS_FIELD, FunctionStats::METRICS_FIELD);
        let stats = FunctionStats {
            requests_total: 9,
            in_flight: 3,
            timed_out: 1,
            instantiations: 8,
            duration_sum: Duration::from_millis(40),
            ..FunctionStats::default()
        };
        let mut m = v2::Metrics::new();
        m.special_fields
            .mut_unknown_fields()
            .add_length_delimited(FUNCTION_STATS_FIELD, stats.encode());
        let any = containerd_shim::util::convert_to_any(Box::new(m)).unwrap();
        assert_eq!(function_stats(&any), Some(stats));
        let plain = containerd_shim::util::convert_to_any(Box::new(v2::Metrics::new())).unwrap();
        assert_eq!(function_stats(&plain), None);
    }
}
