//! What `Stats` reports for a task: a Linux task's cgroup figures, a Wasm task's own figures from
//! wasmtime's accounting.
//!
//! A Linux task's figures are its cgroup's, in the metrics type containerd decodes for this
//! host's hierarchy (`io.containerd.cgroups.v1.Metrics` or `...v2.Metrics`). A Wasm task runs in
//! the shim process beside others (a pod's, or a node group's), so a cgroup's figures would be
//! the process's: its figures are its instance's ([`skiff_runtime::wasm::InstanceUsage`]), as
//! `io.containerd.cgroups.v2.Metrics` on any host: `memory.usage` the bytes of its linear memories
//! and tables, `memory.usage_limit` its memory limit (0: none), `cpu.usage_usec` the CPU time its
//! guest used, `pids.current` 1 while it runs. A function's request figures
//! ([`FunctionStats`]) ride in the same message as field [`FunctionStats::METRICS_FIELD`], a
//! field containerd does not know and skips; a skiff agent reads it. Must not: read a cgroup
//! for a Wasm task.

use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::util::convert_to_any;
use skiff_runtime::linux::cgroups::{self, Usage, Version};
use skiff_runtime::wasm::{FunctionStats, InstanceUsage};

/// A task's figures, as its kind has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Figures {
    /// A Linux task's cgroup.
    Cgroup(Usage),
    /// A Wasm task's instance (zero before it starts).
    Wasm {
        usage: InstanceUsage,
        /// 0: none.
        memory_limit: u64,
        /// A function's request figures; `None` for a command.
        function: Option<FunctionStats>,
        running: bool,
    },
}

/// `Stats` for `figures`.
pub fn metrics(figures: &Figures) -> Result<Any, String> {
    match figures {
        Figures::Cgroup(usage) => cgroup_metrics(usage),
        Figures::Wasm {
            usage,
            memory_limit,
            function,
            running,
        } => {
            let mut m = wasm_metrics(usage, *memory_limit, *running);
            if let Some(f) = function {
                m.special_fields
                    .mut_unknown_fields()
                    .add_length_delimited(FunctionStats::METRICS_FIELD, f.encode());
            }
            convert_to_any(Box::new(m)).map_err(|e| e.to_string())
        }
    }
}

fn wasm_metrics(usage: &InstanceUsage, memory_limit: u64, running: bool) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    let memory = m.memory.mut_or_insert_default();
    memory.usage = usage.memory_bytes.saturating_add(usage.table_bytes);
    memory.usage_limit = memory_limit;
    let cpu = m.cpu.mut_or_insert_default();
    cpu.usage_usec = u64::try_from(usage.cpu.as_micros()).unwrap_or(u64::MAX);
    m.pids.mut_or_insert_default().current = u64::from(running);
    m
}

fn cgroup_metrics(usage: &Usage) -> Result<Any, String> {
    let any = match cgroups::version() {
        Version::V1 => {
            let mut m = v1::Metrics::new();
            let memory = m.memory.mut_or_insert_default();
            let entry = memory.usage.mut_or_insert_default();
            entry.usage = usage.memory_bytes;
            entry.limit = usage.memory_limit;
            let pids = m.pids.mut_or_insert_default();
            pids.current = usage.pids;
            let cpu = m.cpu.mut_or_insert_default();
            cpu.usage.mut_or_insert_default().total = usage.cpu_nanos;
            convert_to_any(Box::new(m))
        }
        Version::V2 => {
            let mut m = v2::Metrics::new();
            let memory = m.memory.mut_or_insert_default();
            memory.usage = usage.memory_bytes;
            memory.usage_limit = usage.memory_limit;
            m.pids.mut_or_insert_default().current = usage.pids;
            m.cpu.mut_or_insert_default().usage_usec = usage.cpu_nanos / 1000;
            convert_to_any(Box::new(m))
        }
    };
    any.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::{Message, MessageFull};

    #[test]
    fn a_wasm_tasks_figures_are_v2_metrics_of_its_instance() {
        let figures = Figures::Wasm {
            usage: InstanceUsage {
                memory_bytes: 3 << 20,
                table_bytes: 800,
                cpu: std::time::Duration::from_millis(1500),
            },
            memory_limit: 64 << 20,
            function: None,
            running: true,
        };
        let any = metrics(&figures).unwrap();
        // As the agent decodes it (node-agent/src/shim/task.rs): by the type's full name.
        let name = any.type_url.rsplit('/').next().unwrap();
        assert_eq!(name, v2::Metrics::descriptor().full_name());
        let m = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.memory.usage, (3 << 20) + 800);
        assert_eq!(m.memory.usage_limit, 64 << 20);
        assert_eq!(m.cpu.usage_usec, 1_500_000);
        assert_eq!(m.pids.current, 1);
        assert!(
            m.special_fields
                .unknown_fields()
                .get(FunctionStats::METRICS_FIELD)
                .is_none()
        );
    }

    #[test]
    fn a_functions_figures_ride_in_a_field_of_their_own() {
        let stats = FunctionStats {
            requests_total: 7,
            in_flight: 2,
            ..FunctionStats::default()
        };
        let figures = Figures::Wasm {
            usage: InstanceUsage::default(),
            memory_limit: 0,
            function: Some(stats.clone()),
            running: true,
        };
        let any = metrics(&figures).unwrap();
        let m = v2::Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.pids.current, 1);
        let field = m
            .special_fields
            .unknown_fields()
            .get(FunctionStats::METRICS_FIELD);
        let Some(containerd_shim::protos::protobuf::UnknownValueRef::LengthDelimited(bytes)) =
            field
        else {
            panic!("no function figures: {field:?}");
        };
        assert_eq!(FunctionStats::decode(bytes), Some(stats));
    }
}
