//! What controllers ask of a pod: is it active, ready, available, and how to rank pods for
//! removal. Pure functions, no I/O.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::Duration;

use skiff_api::ResourceExt;
use skiff_api::v1::Pod;

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("")
}

/// Not being deleted and not finished: a pod that counts toward replicas.
pub fn is_active(pod: &Pod) -> bool {
    pod.meta().deletion_timestamp.is_none() && !matches!(phase(pod), "Succeeded" | "Failed")
}

/// Finished (Succeeded or Failed) and not yet being deleted.
pub fn is_finished(pod: &Pod) -> bool {
    pod.meta().deletion_timestamp.is_none() && matches!(phase(pod), "Succeeded" | "Failed")
}

/// How long the pod has been Ready, if it is.
pub fn ready_for(pod: &Pod) -> Option<Duration> {
    pod.status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.r#type == "Ready" && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map_or(Duration::MAX, skiff_api::time::since)
        })
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_for(pod).is_some()
}

/// Ready for at least `min_ready_seconds`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32) -> bool {
    let need = Duration::from_secs(u64::try_from(min_ready_seconds).unwrap_or(0));
    ready_for(pod).is_some_and(|d| d >= need)
}

/// When a ready pod that is not yet available becomes so.
pub fn available_in(pod: &Pod, min_ready_seconds: i32) -> Option<Duration> {
    let need = Duration::from_secs(u64::try_from(min_ready_seconds).unwrap_or(0));
    ready_for(pod).and_then(|d| need.checked_sub(d).filter(|d| !d.is_zero()))
}

fn node(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .map(|s| s.node_name.as_str())
        .unwrap_or("")
}

fn phase_rank(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" | "" => 0,
        "Unknown" => 1,
        _ => 2,
    }
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .iter()
        .flat_map(|s| &s.container_statuses)
        .map(|c| c.restart_count)
        .sum()
}

/// Orders pods so that the ones to remove first come first, as the ReplicaSet controller does:
/// unscheduled before scheduled, pending before running, not ready before ready, pods on crowded
/// nodes (of this set) before pods on lonely ones, recently ready before long ready, more
/// restarts before fewer, newer before older.
pub fn removal_order(pods: &mut [&Pod]) {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in pods.iter() {
        *per_node.entry(node(p)).or_default() += 1;
    }
    let crowd = |p: &Pod| per_node.get(node(p)).copied().unwrap_or(0);
    pods.sort_by(|a, b| {
        let scheduled = |p: &Pod| !node(p).is_empty();
        scheduled(a)
            .cmp(&scheduled(b))
            .then(phase_rank(a).cmp(&phase_rank(b)))
            .then(is_ready(a).cmp(&is_ready(b)))
            .then(crowd(b).cmp(&crowd(a)))
            .then(ready_for(a).cmp(&ready_for(b)))
            .then(restarts(b).cmp(&restarts(a)))
            .then(created(b).cmp(&created(a)))
            .then_with(|| a.name().cmp(b.name()))
    });
}

fn created(pod: &Pod) -> (i64, i32) {
    pod.meta()
        .creation_timestamp
        .map_or((0, 0), |t| (t.seconds, t.nanos))
}

/// Newest first, by creation then name (for picking among equals).
pub fn newest_first(a: &Pod, b: &Pod) -> Ordering {
    created(b)
        .cmp(&created(a))
        .then_with(|| b.name().cmp(a.name()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{Condition, ObjectMeta, PodSpec, PodStatus};

    fn pod(name: &str, node: &str, phase: &str, ready: bool) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                node_name: node.into(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: phase.into(),
                conditions: if ready {
                    vec![Condition {
                        r#type: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(skiff_api::time::now()),
                        ..Default::default()
                    }]
                } else {
                    vec![]
                },
                ..Default::default()
            }),
        }
    }

    #[test]
    fn removal_prefers_unscheduled_then_not_ready_then_crowded() {
        let a = pod("a", "n1", "Running", true);
        let b = pod("b", "n1", "Running", true);
        let c = pod("c", "n3", "Running", true);
        let d = pod("d", "n2", "Running", false);
        let e = pod("e", "", "Pending", false);
        let mut all = vec![&c, &a, &d, &b, &e];
        removal_order(&mut all);
        let names: Vec<&str> = all.iter().map(|p| p.name()).collect();
        // e is unscheduled, d not ready; a and b share n1, so both go before c, alone on n3.
        assert_eq!(&names[..2], ["e", "d"]);
        assert_eq!(names[4], "c", "{names:?}");
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod("a", "n1", "Running", true);
        assert!(is_available(&p, 0));
        assert!(!is_available(&p, 30));
        assert!(available_in(&p, 30).is_some_and(|d| d <= Duration::from_secs(30)));
        let q = pod("b", "n1", "Running", false);
        assert!(!is_available(&q, 0));
        assert!(is_active(&q));
    }
}
