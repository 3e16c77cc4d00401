//! Does a pod fit a node, and how well: pure functions over API objects, no I/O.
//!
//! Filters: node readiness and schedulability, runtime support (`wasm` / `oci` runtime handlers),
//! nodeSelector, NoSchedule/NoExecute taints, and requests (cpu, memory, pod count) against
//! allocatable minus what bound pods request. Score: least allocated.

use std::collections::BTreeMap;
use std::fmt;

use skiff_api::ResourceExt;
use skiff_api::quantity::Quantity;
use skiff_api::v1::{Node, Pod};

/// A node is not Ready once its heartbeat is older than this (until the node lifecycle
/// controller marks it NotReady itself).
pub const HEARTBEAT_GRACE: std::time::Duration = std::time::Duration::from_secs(40);

/// What a pod asks for, or what a node has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_millis: i64,
    pub memory: i64,
    pub pods: i64,
}

impl Resources {
    pub fn add(&mut self, other: &Resources) {
        self.cpu_millis += other.cpu_millis;
        self.memory += other.memory;
        self.pods += other.pods;
    }
}

fn quantity(map: &BTreeMap<String, String>, key: &str) -> Option<Quantity> {
    map.get(key).and_then(|q| Quantity::parse(q).ok())
}

/// The sum of the pod's container requests (a limit stands for a missing request, as in
/// Kubernetes), plus one pod.
pub fn pod_requests(pod: &Pod) -> Resources {
    let mut total = Resources {
        pods: 1,
        ..Default::default()
    };
    for c in pod.spec.iter().flat_map(|s| &s.containers) {
        let Some(r) = &c.resources else { continue };
        let pick = |key: &str| quantity(&r.requests, key).or_else(|| quantity(&r.limits, key));
        if let Some(q) = pick("cpu") {
            total.cpu_millis += q.millis();
        }
        if let Some(q) = pick("memory") {
            total.memory += q.value();
        }
    }
    total
}

/// What the node offers to pods.
pub fn allocatable(node: &Node) -> Resources {
    let Some(status) = &node.status else {
        return Resources::default();
    };
    Resources {
        cpu_millis: quantity(&status.allocatable, "cpu").map_or(0, |q| q.millis()),
        memory: quantity(&status.allocatable, "memory").map_or(0, |q| q.value()),
        pods: quantity(&status.allocatable, "pods").map_or(0, |q| q.value()),
    }
}

/// The runtime handler a pod needs: `wasm` for `runtimeClassName: wasm`, `oci` by default.
pub fn pod_runtime(pod: &Pod) -> &str {
    match pod.spec.as_ref().map(|s| s.runtime_class_name.as_str()) {
        None | Some("") => "oci",
        Some(other) => other,
    }
}

/// Why a node cannot take a pod; the text is what `0/N nodes are available: ...` counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unfit {
    NotReady,
    Unschedulable,
    Runtime(String),
    Selector,
    Taint(String),
    Cpu,
    Memory,
    Pods,
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::NotReady => write!(f, "node(s) were not ready"),
            Unfit::Unschedulable => write!(f, "node(s) were unschedulable"),
            Unfit::Runtime(r) => write!(f, "node(s) did not support runtime {r:?}"),
            Unfit::Selector => write!(f, "node(s) didn't match Pod's node selector"),
            Unfit::Taint(t) => write!(f, "node(s) had untolerated taint {{{t}}}"),
            Unfit::Cpu => write!(f, "Insufficient cpu"),
            Unfit::Memory => write!(f, "Insufficient memory"),
            Unfit::Pods => write!(f, "Too many pods"),
        }
    }
}

/// Is the node Ready, with a fresh heartbeat?
pub fn node_ready(node: &Node) -> bool {
    node.status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.r#type == "Ready")
        .is_some_and(|c| {
            c.status == "True"
                && c.last_heartbeat_time
                    .as_ref()
                    .is_none_or(|t| skiff_api::time::since(t) < HEARTBEAT_GRACE)
        })
}

fn tolerated(pod: &Pod, key: &str, value: &str, effect: &str) -> bool {
    pod.spec.iter().flat_map(|s| &s.tolerations).any(|t| {
        let key_ok = t.key.is_empty() && t.operator == "Exists" || t.key == key;
        let value_ok = t.operator == "Exists" || t.value == value;
        let effect_ok = t.effect.is_empty() || t.effect == effect;
        key_ok && value_ok && effect_ok
    })
}

/// Checks every filter; the first that fails is the reason.
pub fn check(pod: &Pod, wants: &Resources, node: &Node, used: &Resources) -> Result<(), Unfit> {
    if !node_ready(node) {
        return Err(Unfit::NotReady);
    }
    if node.spec.as_ref().is_some_and(|s| s.unschedulable) {
        return Err(Unfit::Unschedulable);
    }
    let runtime = pod_runtime(pod);
    let handlers = node.status.iter().flat_map(|s| &s.runtime_handlers);
    if !handlers.clone().any(|h| h.name == runtime) {
        return Err(Unfit::Runtime(runtime.to_string()));
    }
    let labels = &node.meta().labels;
    if let Some(spec) = &pod.spec
        && spec
            .node_selector
            .iter()
            .any(|(k, v)| labels.get(k) != Some(v))
    {
        return Err(Unfit::Selector);
    }
    for taint in node.spec.iter().flat_map(|s| &s.taints) {
        if matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
            && !tolerated(pod, &taint.key, &taint.value, &taint.effect)
        {
            let value = if taint.value.is_empty() {
                String::new()
            } else {
                format!(": {}", taint.value)
            };
            return Err(Unfit::Taint(format!("{}{value}", taint.key)));
        }
    }
    let has = allocatable(node);
    if used.pods + wants.pods > has.pods {
        return Err(Unfit::Pods);
    }
    if wants.cpu_millis > 0 && used.cpu_millis + wants.cpu_millis > has.cpu_millis {
        return Err(Unfit::Cpu);
    }
    if wants.memory > 0 && used.memory + wants.memory > has.memory {
        return Err(Unfit::Memory);
    }
    Ok(())
}

/// Least allocated: the mean free fraction of cpu and memory after placing the pod, 0..=1000.
pub fn score(wants: &Resources, node: &Node, used: &Resources) -> i64 {
    let has = allocatable(node);
    let free = |cap: i64, used: i64| {
        if cap <= 0 {
            0
        } else {
            ((cap - used).max(0) * 1000) / cap
        }
    };
    let cpu = free(has.cpu_millis, used.cpu_millis + wants.cpu_millis);
    let memory = free(has.memory, used.memory + wants.memory);
    let pods = free(has.pods, used.pods + wants.pods);
    (cpu + memory + pods) / 3
}

/// `0/3 nodes are available: 1 node(s) were not ready, 2 Insufficient cpu.`
pub fn summary(nodes: usize, reasons: &[Unfit]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in reasons {
        *counts.entry(r.to_string()).or_default() += 1;
    }
    if nodes == 0 {
        return "0/0 nodes are available: no nodes registered.".to_string();
    }
    let parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    format!("0/{nodes} nodes are available: {}.", parts.join(", "))
}

/// Pods that hold resources on their node: bound and not finished.
pub fn holds_resources(pod: &Pod) -> bool {
    let bound = pod.spec.as_ref().is_some_and(|s| !s.node_name.is_empty());
    let phase = pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("");
    bound && !matches!(phase, "Succeeded" | "Failed")
}

/// Does this scheduler own the pod: unbound, not being deleted, and for skiff's scheduler?
pub fn wants_scheduling(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    spec.node_name.is_empty()
        && pod.meta().deletion_timestamp.is_none()
        && matches!(
            spec.scheduler_name.as_str(),
            "" | "default-scheduler" | "skiff-scheduler"
        )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use skiff_api::v1::*;

    fn node(name: &str, cpu: &str, memory: &str, runtimes: &[&str]) -> Node {
        let mut status = NodeStatus {
            conditions: vec![Condition {
                r#type: "Ready".into(),
                status: "True".into(),
                last_heartbeat_time: Some(skiff_api::time::now()),
                ..Default::default()
            }],
            runtime_handlers: runtimes
                .iter()
                .map(|r| NodeRuntimeHandler {
                    name: r.to_string(),
                })
                .collect(),
            ..Default::default()
        };
        status.allocatable.insert("cpu".into(), cpu.into());
        status.allocatable.insert("memory".into(), memory.into());
        status.allocatable.insert("pods".into(), "110".into());
        Node {
            metadata: Some(ObjectMeta {
                name: name.into(),
                ..Default::default()
            }),
            spec: Some(NodeSpec::default()),
            status: Some(status),
        }
    }

    fn pod(cpu: &str, runtime: &str) -> Pod {
        let mut res = ResourceRequirements::default();
        res.requests.insert("cpu".into(), cpu.into());
        Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                runtime_class_name: runtime.into(),
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(res),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn filters_name_their_reason() {
        let n = node("n", "2", "1Gi", &["wasm"]);
        let p = pod("500m", "wasm");
        let wants = pod_requests(&p);
        assert_eq!(wants.cpu_millis, 500);
        assert!(check(&p, &wants, &n, &Resources::default()).is_ok());
        let busy = Resources {
            cpu_millis: 1800,
            ..Default::default()
        };
        assert_eq!(check(&p, &wants, &n, &busy), Err(Unfit::Cpu));
        let oci = pod("1", "");
        assert_eq!(
            check(&oci, &pod_requests(&oci), &n, &Resources::default()),
            Err(Unfit::Runtime("oci".into()))
        );
        let mut tainted = n.clone();
        tainted.spec.as_mut().unwrap().taints.push(Taint {
            key: "dedicated".into(),
            value: "gpu".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
        assert_eq!(
            check(&p, &wants, &tainted, &Resources::default()),
            Err(Unfit::Taint("dedicated: gpu".into()))
        );
        let mut tolerant = p.clone();
        tolerant
            .spec
            .as_mut()
            .unwrap()
            .tolerations
            .push(Toleration {
                key: "dedicated".into(),
                operator: "Equal".into(),
                value: "gpu".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
        assert!(check(&tolerant, &wants, &tainted, &Resources::default()).is_ok());
        let mut not_ready = n.clone();
        not_ready.status.as_mut().unwrap().conditions[0].status = "False".into();
        assert_eq!(
            check(&p, &wants, &not_ready, &Resources::default()),
            Err(Unfit::NotReady)
        );
    }

    #[test]
    fn least_allocated_prefers_the_emptier_node() {
        let n = node("n", "4", "4Gi", &["wasm"]);
        let p = pod("1", "wasm");
        let wants = pod_requests(&p);
        let idle = score(&wants, &n, &Resources::default());
        let busy = score(
            &wants,
            &n,
            &Resources {
                cpu_millis: 2000,
                memory: 0,
                pods: 5,
            },
        );
        assert!(idle > busy, "{idle} > {busy}");
    }

    #[test]
    fn summary_counts_reasons() {
        let text = summary(3, &[Unfit::Cpu, Unfit::NotReady, Unfit::Cpu]);
        assert_eq!(
            text,
            "0/3 nodes are available: 2 Insufficient cpu, 1 node(s) were not ready."
        );
    }
}
