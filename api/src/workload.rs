//! Which kind of workload each container of a pod is: a Wasm guest (wasmtime) or a Linux
//! container (namespaces and cgroups), decided from the pod spec alone, so the scheduler knows
//! before any pull which runtimes a node needs (DESIGN §4).
//!
//! `runtimeClassName: wasm` makes Wasm the pod's default; without it the default is a Linux
//! container. The annotation [`LINUX_CONTAINERS`] (in a Wasm pod) or [`WASM_CONTAINERS`] (in an
//! OCI pod) names the containers of the other kind, init containers included.

use crate::v1::{Pod, PodSpec};

/// In a Wasm pod: the comma-separated names of its Linux containers.
pub const LINUX_CONTAINERS: &str = "skiff.dev/linux-containers";
/// In an OCI pod: the comma-separated names of its Wasm containers.
pub const WASM_CONTAINERS: &str = "skiff.dev/wasm-containers";
/// The runtime handler of Wasm containers (and the `runtimeClassName` of Wasm pods).
pub const WASM_RUNTIME: &str = "wasm";
/// The runtime handler of Linux containers.
pub const OCI_RUNTIME: &str = "oci";

/// What a container runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Wasm,
    Linux,
}

impl WorkloadKind {
    /// The node runtime handler that runs it.
    pub fn runtime(self) -> &'static str {
        match self {
            WorkloadKind::Wasm => WASM_RUNTIME,
            WorkloadKind::Linux => OCI_RUNTIME,
        }
    }
}

/// The names listed in an annotation value: comma-separated, blanks trimmed, empties dropped.
pub fn listed(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|n| !n.is_empty())
}

/// The kind a pod's containers have unless its annotation says otherwise, and the annotation
/// that names the exceptions.
fn default_and_exceptions(spec: Option<&PodSpec>) -> (WorkloadKind, &'static str) {
    if spec.is_some_and(|s| s.runtime_class_name == WASM_RUNTIME) {
        (WorkloadKind::Wasm, LINUX_CONTAINERS)
    } else {
        (WorkloadKind::Linux, WASM_CONTAINERS)
    }
}

/// The kind of container `name` of `pod`.
pub fn container_kind(pod: &Pod, name: &str) -> WorkloadKind {
    let (default, annotation) = default_and_exceptions(pod.spec.as_ref());
    let other = match default {
        WorkloadKind::Wasm => WorkloadKind::Linux,
        WorkloadKind::Linux => WorkloadKind::Wasm,
    };
    let listed_here = pod
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.get(annotation))
        .is_some_and(|v| listed(v).any(|n| n == name));
    if listed_here { other } else { default }
}

/// Every kind among the pod's containers (init containers included), Wasm first.
pub fn pod_kinds(pod: &Pod) -> Vec<WorkloadKind> {
    let Some(spec) = pod.spec.as_ref() else {
        return vec![default_and_exceptions(None).0];
    };
    let mut kinds = Vec::with_capacity(2);
    for kind in [WorkloadKind::Wasm, WorkloadKind::Linux] {
        let any = spec
            .init_containers
            .iter()
            .chain(&spec.containers)
            .any(|c| container_kind(pod, &c.name) == kind);
        if any {
            kinds.push(kind);
        }
    }
    if kinds.is_empty() {
        kinds.push(default_and_exceptions(Some(spec)).0);
    }
    kinds
}

/// The runtime handlers a node needs to run `pod`.
pub fn pod_runtimes(pod: &Pod) -> Vec<&'static str> {
    pod_kinds(pod)
        .into_iter()
        .map(WorkloadKind::runtime)
        .collect()
}

/// Whether the pod mixes Wasm and Linux containers.
pub fn is_mixed(pod: &Pod) -> bool {
    pod_kinds(pod).len() > 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Container, ObjectMeta};

    fn pod(runtime_class: &str, annotations: &[(&str, &str)]) -> Pod {
        let container = |n: &str| Container {
            name: n.into(),
            ..Default::default()
        };
        Pod {
            metadata: Some(ObjectMeta {
                annotations: annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                runtime_class_name: runtime_class.into(),
                init_containers: vec![container("init")],
                containers: vec![container("a"), container("b")],
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn the_runtime_class_sets_the_default_and_the_annotation_the_exceptions() {
        let wasm = pod("wasm", &[]);
        assert_eq!(container_kind(&wasm, "a"), WorkloadKind::Wasm);
        assert_eq!(pod_runtimes(&wasm), ["wasm"]);
        let oci = pod("", &[]);
        assert_eq!(container_kind(&oci, "a"), WorkloadKind::Linux);
        assert_eq!(pod_runtimes(&oci), ["oci"]);

        let mixed = pod("wasm", &[(LINUX_CONTAINERS, " b , init")]);
        assert_eq!(container_kind(&mixed, "a"), WorkloadKind::Wasm);
        assert_eq!(container_kind(&mixed, "b"), WorkloadKind::Linux);
        assert_eq!(container_kind(&mixed, "init"), WorkloadKind::Linux);
        assert_eq!(pod_runtimes(&mixed), ["wasm", "oci"]);
        assert!(is_mixed(&mixed));

        let mixed = pod("", &[(WASM_CONTAINERS, "a")]);
        assert_eq!(container_kind(&mixed, "a"), WorkloadKind::Wasm);
        assert_eq!(container_kind(&mixed, "b"), WorkloadKind::Linux);
        // The other kind's annotation means nothing here.
        let plain = pod("", &[(LINUX_CONTAINERS, "a")]);
        assert!(!is_mixed(&plain));
    }

    #[test]
    fn every_container_of_the_other_kind_makes_a_pod_of_that_kind_only() {
        let all = pod("wasm", &[(LINUX_CONTAINERS, "init,a,b")]);
        assert_eq!(pod_runtimes(&all), ["oci"]);
    }
}
