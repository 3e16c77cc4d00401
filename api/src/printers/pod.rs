//! Pods' columns: Name, Ready, Status, Restarts, Age; wide: IP, Node, Nominated Node, Readiness
//! Gates — and the Status and Restarts cells worked out as kubectl's printer does.

use serde_json::Value;

use super::{Column, Printer, created, or_none, text};
use crate::resource::ResourceExt;
use crate::time::{age, human_duration, since};
use crate::v1::{ContainerStatus, Pod};
use pbjson_types::Timestamp;

impl Printer for Pod {
    fn columns() -> Vec<Column> {
        vec![
            Column::name(),
            Column::new(
                "Ready",
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            Column::new(
                "Status",
                "The aggregate status of the containers in this pod.",
            ),
            Column::new(
                "Restarts",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            Column::age(),
            Column::new("IP", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.").wide(),
            Column::new("Node", "NodeName is a request to schedule this pod onto a specific node. If it is non-empty, the scheduler simply schedules this pod onto that node, assuming that it fits resource requirements.").wide(),
            Column::new("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.").wide(),
            Column::new("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.").wide(),
        ]
    }

    fn cells(&self) -> Vec<Value> {
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let summary = summarize(self);
        let ip = status
            .pod_ips
            .first()
            .map(|p| p.ip.clone())
            .unwrap_or(status.pod_ip.clone());
        vec![
            text(self.name()),
            text(format!("{}/{}", summary.ready, spec.containers.len())),
            text(summary.reason),
            text(match summary.last_restart {
                Some(at) => format!("{} ({} ago)", summary.restarts, human_duration(since(&at))),
                None => summary.restarts.to_string(),
            }),
            created(self),
            or_none(&ip),
            or_none(&spec.node_name),
            or_none(&status.nominated_node_name),
            // skiff pods have no readiness gates.
            or_none(""),
        ]
    }
}

/// What kubectl works out of a pod's statuses for its row.
struct Summary {
    reason: String,
    ready: usize,
    restarts: i32,
    last_restart: Option<Timestamp>,
}

/// The STATUS column of a pod, as kubectl prints it: `Running`, `ContainerCreating`,
/// `CrashLoopBackOff`, `Completed`, `Init:0/1`, `Init:ErrImagePull`, `Terminating`…
pub fn pod_status(pod: &Pod) -> String {
    summarize(pod).reason
}

fn later(a: Option<Timestamp>, cs: &ContainerStatus) -> Option<Timestamp> {
    let finished = cs
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.finished_at);
    match (a, finished) {
        (Some(a), Some(b)) => Some(if b.seconds > a.seconds { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// kubectl's printPod: the reason from the phase, then init containers (`Init:…`), then the
/// containers (last first, as kubectl walks them), then deletion (`Terminating`).
fn summarize(pod: &Pod) -> Summary {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let mut reason = if status.reason.is_empty() {
        if status.phase.is_empty() {
            "Pending".to_string()
        } else {
            status.phase.clone()
        }
    } else {
        status.reason.clone()
    };
    let mut restarts = 0;
    let mut last_restart = None;
    let mut initializing = false;
    for (i, cs) in status.init_container_statuses.iter().enumerate() {
        restarts += cs.restart_count;
        last_restart = later(last_restart, cs);
        let state = cs.state.clone().unwrap_or_default();
        if let Some(t) = &state.terminated {
            if t.exit_code == 0 {
                continue;
            }
            reason = if !t.reason.is_empty() {
                format!("Init:{}", t.reason)
            } else if t.signal != 0 {
                format!("Init:Signal:{}", t.signal)
            } else {
                format!("Init:ExitCode:{}", t.exit_code)
            };
        } else if let Some(w) = state
            .waiting
            .as_ref()
            .filter(|w| !w.reason.is_empty() && w.reason != "PodInitializing")
        {
            reason = format!("Init:{}", w.reason);
        } else {
            reason = format!("Init:{i}/{}", spec.init_containers.len());
        }
        initializing = true;
        break;
    }
    let initialized = status
        .conditions
        .iter()
        .any(|c| c.r#type == "Initialized" && c.status == "True");
    let mut ready = 0;
    if !initializing || initialized {
        restarts = 0;
        let mut running = false;
        for cs in status.container_statuses.iter().rev() {
            restarts += cs.restart_count;
            last_restart = later(last_restart, cs);
            let state = cs.state.clone().unwrap_or_default();
            if let Some(w) = state.waiting.as_ref().filter(|w| !w.reason.is_empty()) {
                reason = w.reason.clone();
            } else if let Some(t) = &state.terminated {
                reason = if !t.reason.is_empty() {
                    t.reason.clone()
                } else if t.signal != 0 {
                    format!("Signal:{}", t.signal)
                } else {
                    format!("ExitCode:{}", t.exit_code)
                };
            } else if cs.ready && state.running.is_some() {
                running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && running {
            let pod_ready = status
                .conditions
                .iter()
                .any(|c| c.r#type == "Ready" && c.status == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }
    if pod.meta().deletion_timestamp.is_some() {
        reason = if status.reason == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    Summary {
        reason,
        ready,
        restarts,
        last_restart,
    }
}

/// The age of a timestamp for other printers (`<unknown>` when unset).
pub(super) fn age_of(ts: Option<&Timestamp>) -> Value {
    text(age(ts))
}
