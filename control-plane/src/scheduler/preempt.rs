//! Preemption: for a pod that fits nowhere, which lower-priority pods to evict, and where — a
//! pure choice over the cache, as kube-scheduler's DefaultPreemption makes it.
//!
//! A node is a candidate when it passes the filters other pods cannot change and the pod fits
//! once every pod of strictly lower priority is gone (never one of equal or higher priority, and
//! never one already terminating). Victims are then reprieved, most important first, while the
//! pod still fits. Among candidates the choice is the node whose most important victim has the
//! lowest priority, then the lowest sum of victim priorities, then the fewest victims, then the
//! first name.
//!
//! A pod that has already preempted waits while lower-priority pods on its nominated node are
//! still terminating, rather than evicting more elsewhere. (The API has no `preemptionPolicy`,
//! so every pod may preempt.)
//!
//! Must not: delete anything (the scheduler does that), or evict for a pod that fits somewhere.

use std::cmp::Reverse;
use std::sync::Arc;

use super::cache::{Cache, NodeInfo, PodInfo, Resources};
use super::filter;
use super::topology::PodTopology;

/// Where a pod can go once its victims are gone.
#[derive(Debug, Clone)]
pub struct Preemption {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
}

/// Should the pod preempt now? Not while its earlier preemption is still freeing its node.
pub fn eligible(cache: &Cache, pod: &PodInfo) -> bool {
    let Some(node) = pod.nominated_node().and_then(|n| cache.node(n)) else {
        return true;
    };
    !cache
        .pods_on(node)
        .any(|p| p.terminating() && p.priority < pod.priority)
}

/// Does the pod fit on `node` if only `staying` remain of its pods?
fn fits_with(pod: &PodInfo, node: &NodeInfo, staying: &[&Arc<PodInfo>]) -> bool {
    let mut used = Resources::default();
    for p in staying {
        used.add(&p.requests);
    }
    let ports = staying.iter().flat_map(|p| p.host_ports.iter());
    filter::check_room(pod, node, &used, ports).is_ok()
}

/// The victims on one node, or None if evicting every lower-priority pod is not enough.
fn victims_on(cache: &Cache, pod: &PodInfo, node: &NodeInfo) -> Option<Vec<Arc<PodInfo>>> {
    let (mut lower, mut staying): (Vec<&Arc<PodInfo>>, Vec<&Arc<PodInfo>>) = cache
        .pods_on(node)
        .partition(|p| p.priority < pod.priority && !p.terminating());
    if lower.is_empty() || !fits_with(pod, node, &staying) {
        return None;
    }
    // Most important first: higher priority, then older.
    lower.sort_by_key(|p| {
        let created = p.pod.metadata.as_ref().and_then(|m| m.creation_timestamp);
        (
            Reverse(p.priority),
            created.map_or((0, 0), |t| (t.seconds, t.nanos)),
            p.key.clone(),
        )
    });
    let mut victims = Vec::new();
    for p in lower {
        staying.push(p);
        if !fits_with(pod, node, &staying) {
            staying.pop();
            victims.push(p.clone());
        }
    }
    Some(victims)
}

/// The best node to preempt on, and its victims.
pub fn select(cache: &Cache, pod: &PodInfo) -> Option<Preemption> {
    // Highest victim priority, sum of victim priorities, victims, node name: lowest wins.
    type Rank<'a> = (i64, i64, usize, &'a str);
    let mut best: Option<(Rank, Vec<Arc<PodInfo>>)> = None;
    // Affinity and spreading are judged with every pod in place: evicting for room never
    // puts the pod where those rules keep it out.
    let topology = PodTopology::new(cache, pod);
    for node in cache.nodes().iter().filter(|n| n.known) {
        if filter::check_node(pod, node).is_err() || topology.check(node).is_err() {
            continue;
        }
        let Some(victims) = victims_on(cache, pod, node) else {
            continue;
        };
        if victims.is_empty() {
            continue; // it fits already (reservations moved); the next pass places it
        }
        let offset = |p: i32| i64::from(p) - i64::from(i32::MIN);
        let highest = victims.iter().map(|v| i64::from(v.priority)).max();
        let sum: i64 = victims.iter().map(|v| offset(v.priority)).sum();
        let rank = (
            highest.unwrap_or(i64::MIN),
            sum,
            victims.len(),
            node.name.as_str(),
        );
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((rank, victims));
        }
    }
    best.map(|((_, _, _, node), victims)| Preemption {
        node: node.to_string(),
        victims,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::cache::tests::{bound, node, pod};
    use super::*;
    use skiff_api::v1::Pod;

    fn prioritised(name: &str, cpu: &str, priority: i32) -> Pod {
        let mut p = pod(name, cpu, "64Mi");
        p.spec.as_mut().unwrap().priority = Some(priority);
        p
    }

    fn place(cache: &mut Cache, name: &str, cpu: &str, priority: i32, node: &str) {
        let key = format!("default/{name}");
        cache.put_pod(&key, bound(prioritised(name, cpu, priority), node, 2));
    }

    fn names(p: &Preemption) -> Vec<String> {
        let mut v: Vec<String> = p
            .victims
            .iter()
            .map(|v| v.key.rsplit('/').next().unwrap().to_string())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn only_strictly_lower_priority_pods_are_victims() {
        let mut cache = Cache::default();
        cache.put_node(&node("n1", "2", "4Gi", None));
        place(&mut cache, "same", "1", 100, "n1");
        place(&mut cache, "low", "1", 10, "n1");
        let preemptor = PodInfo::new("default/p", prioritised("p", "1", 100));
        let chosen = select(&cache, &preemptor).unwrap();
        assert_eq!(chosen.node, "n1");
        assert_eq!(names(&chosen), ["low"]);
        // Needing both cpus, it cannot evict its equal: no preemption at all.
        let big = PodInfo::new("default/big", prioritised("big", "2", 100));
        assert!(select(&cache, &big).is_none());
    }

    #[test]
    fn the_fewest_and_least_important_victims_win() {
        let mut cache = Cache::default();
        for n in ["n1", "n2", "n3"] {
            cache.put_node(&node(n, "2", "4Gi", None));
        }
        // n1: one important pod; n2: two unimportant ones; n3: one unimportant and one equal.
        place(&mut cache, "n1-a", "2", 50, "n1");
        place(&mut cache, "n2-a", "1", 1, "n2");
        place(&mut cache, "n2-b", "1", 1, "n2");
        place(&mut cache, "n3-a", "1", 1, "n3");
        place(&mut cache, "n3-b", "1", 100, "n3");
        let preemptor = PodInfo::new("default/p", prioritised("p", "1", 100));
        let chosen = select(&cache, &preemptor).unwrap();
        // n2 and n3 both need one priority-1 victim (n2-b is reprieved); n1 would cost priority
        // 50. Equal otherwise, the first name wins.
        assert_eq!(chosen.node, "n2");
        assert_eq!(chosen.victims.len(), 1);
        // Larger: needs 2 cpus, so n2 loses two victims, n1 one more important one.
        let big = PodInfo::new("default/big", prioritised("big", "2", 100));
        let chosen = select(&cache, &big).unwrap();
        assert_eq!(
            chosen.node, "n2",
            "lower highest priority beats fewer victims"
        );
        assert_eq!(names(&chosen), ["n2-a", "n2-b"]);
    }

    #[test]
    fn reprieve_keeps_the_more_important_pods() {
        let mut cache = Cache::default();
        cache.put_node(&node("n1", "3", "4Gi", None));
        place(&mut cache, "a", "1", 5, "n1");
        place(&mut cache, "b", "1", 7, "n1");
        place(&mut cache, "c", "1", 3, "n1");
        let preemptor = PodInfo::new("default/p", prioritised("p", "1", 10));
        let chosen = select(&cache, &preemptor).unwrap();
        assert_eq!(names(&chosen), ["c"]);
    }

    #[test]
    fn a_nominated_pod_waits_for_its_victims() {
        let mut cache = Cache::default();
        cache.put_node(&node("n1", "1", "4Gi", None));
        let mut victim = bound(prioritised("v", "1", 1), "n1", 2);
        victim.metadata.as_mut().unwrap().deletion_timestamp = Some(skiff_api::time::now());
        cache.put_pod("default/v", victim);
        let mut p = prioritised("p", "1", 100);
        p.status.as_mut().unwrap().nominated_node_name = "n1".into();
        let info = cache.put_pod("default/p", p);
        assert!(!eligible(&cache, &info));
        // A terminating pod is no victim: nothing more to evict.
        assert!(select(&cache, &info).is_none());
        cache.delete_pod("default/v");
        assert!(eligible(&cache, &info));
    }
}
