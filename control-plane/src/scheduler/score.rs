//! Which feasible node is best: kube-scheduler's default scores, as fractions (not integers) so
//! that ties are rare, each normalised to 0..=100 and weighted as Kubernetes weights them:
//!
//! | score | weight | what |
//! | --- | ---: | --- |
//! | least allocated | 1 | mean free fraction of cpu and memory after placing the pod |
//! | balanced allocation | 1 | 1 − the standard deviation of the cpu and memory fractions |
//! | spreading | 2 | fewer replicas of the pod's owner on the node (⅓) and in its zone (⅔), SelectorSpread's arithmetic, relative to the most crowded candidate |
//! | preferred node affinity | 2 | sum of matching term weights, relative to the best candidate |
//! | inter-pod affinity | 2 | preferred pod (anti-)affinity weights of matching pods in the node's domains, both ways, from the lowest (0) to the highest candidate (100) |
//! | topology spread | 2 | `ScheduleAnyway` constraints: fewer matching pods in the node's domains, PodTopologySpread's arithmetic (a node without the key: 0) |
//! | taint toleration | 3 | fewer untolerated PreferNoSchedule taints |
//!
//! Remaining ties go to the node with fewest pods, then to the first name, so they are
//! deterministic without always favouring one node.
//!
//! Must not: filter (every candidate given here fits), or do I/O.

use std::cmp::Ordering;

use super::cache::{NodeInfo, PodInfo, Spread};
use super::filter;
use super::topology::PodTopology;

/// A node that passed the filters, with the raw inputs of its scores.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Position in the cache's node slots.
    pub index: usize,
    /// Least allocated + balanced allocation, already weighted.
    pub resources: f64,
    pub affinity: i64,
    pub intolerable: usize,
    /// Replicas of the pod's owner on the node and in its zone (None: the node has no zone).
    pub owner_on_node: u32,
    pub owner_in_zone: Option<u32>,
    /// Preferred inter-pod affinity, raw.
    pub pod_affinity: i64,
    /// Soft spreading load (None: no ScheduleAnyway constraint, or the node lacks its key).
    pub spread_load: Option<f64>,
}

/// What fraction of the node's `cap` is used once `requested` more is placed, capped at 1.
fn fraction(requested: i64, cap: i64) -> f64 {
    if cap <= 0 {
        1.0
    } else {
        (requested as f64 / cap as f64).min(1.0)
    }
}

fn fractions(pod: &PodInfo, node: &NodeInfo) -> (f64, f64) {
    let used = &node.requested;
    let has = &node.allocatable;
    (
        fraction(used.cpu_millis + pod.requests.cpu_millis, has.cpu_millis),
        fraction(used.memory + pod.requests.memory, has.memory),
    )
}

/// NodeResourcesFit (LeastAllocated): the mean free fraction of cpu and memory, 0..=100.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> f64 {
    let (cpu, memory) = fractions(pod, node);
    (2.0 - cpu - memory) / 2.0 * 100.0
}

/// NodeResourcesBalancedAllocation: 100 when cpu and memory are equally used, less the more
/// they differ (one minus their standard deviation).
pub fn balanced_allocation(pod: &PodInfo, node: &NodeInfo) -> f64 {
    let (cpu, memory) = fractions(pod, node);
    let std_dev = (cpu - memory).abs() / 2.0;
    (1.0 - std_dev) * 100.0
}

/// The summed weights of the pod's preferred node affinity terms this node matches.
pub fn preferred_affinity(pod: &PodInfo, node: &NodeInfo) -> i64 {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .map_or(0, |na| {
            na.preferred_during_scheduling_ignored_during_execution
                .iter()
                .filter(|p| {
                    p.preference
                        .as_ref()
                        .is_some_and(|t| filter::term_matches(t, &node.labels, &node.name))
                })
                .map(|p| i64::from(p.weight))
                .sum()
        })
}

/// The raw scores of one feasible node; `spread` is the cache's [`Spread`] of the pod.
pub fn candidate(
    pod: &PodInfo,
    node: &NodeInfo,
    index: usize,
    spread: &Spread<'_>,
    topology: &PodTopology,
) -> Candidate {
    let (owner_on_node, owner_in_zone) = spread.counts(node);
    Candidate {
        index,
        resources: least_allocated(pod, node) + balanced_allocation(pod, node),
        affinity: preferred_affinity(pod, node),
        intolerable: filter::intolerable_preferences(&pod.pod, &node.taints),
        owner_on_node,
        owner_in_zone,
        pod_affinity: topology.affinity_score(node),
        spread_load: topology.spread_load(node),
    }
}

/// Share of the spreading score that goes to zones when nodes have them (SelectorSpread's).
const ZONE_WEIGHT: f64 = 2.0 / 3.0;

/// The final, weighted scores of the candidates, in their order.
pub fn totals(candidates: &[Candidate]) -> Vec<f64> {
    let max_node = candidates
        .iter()
        .map(|c| c.owner_on_node)
        .max()
        .unwrap_or(0);
    let max_zone = candidates
        .iter()
        .filter_map(|c| c.owner_in_zone)
        .max()
        .unwrap_or(0);
    let have_zones = candidates.iter().any(|c| c.owner_in_zone.is_some());
    let max_affinity = candidates.iter().map(|c| c.affinity).max().unwrap_or(0);
    let max_intolerable = candidates.iter().map(|c| c.intolerable).max().unwrap_or(0);
    let (min_pod_affinity, max_pod_affinity) = candidates
        .iter()
        .map(|c| c.pod_affinity)
        .fold((i64::MAX, i64::MIN), |(lo, hi), a| (lo.min(a), hi.max(a)));
    let loads = candidates.iter().filter_map(|c| c.spread_load);
    let (min_load, max_load) = loads.fold((f64::MAX, 0.0f64), |(lo, hi), l| (lo.min(l), hi.max(l)));
    let relative = |count: u32, max: u32| {
        if max == 0 {
            100.0
        } else {
            f64::from(max - count) * 100.0 / f64::from(max)
        }
    };
    candidates
        .iter()
        .map(|c| {
            let mut spread = relative(c.owner_on_node, max_node);
            if have_zones && let Some(in_zone) = c.owner_in_zone {
                spread = spread * (1.0 - ZONE_WEIGHT) + relative(in_zone, max_zone) * ZONE_WEIGHT;
            }
            let affinity = if max_affinity > 0 {
                c.affinity as f64 * 100.0 / max_affinity as f64
            } else {
                0.0
            };
            let taints = if max_intolerable > 0 {
                (max_intolerable - c.intolerable) as f64 * 100.0 / max_intolerable as f64
            } else {
                100.0
            };
            let pod_affinity = if max_pod_affinity > min_pod_affinity {
                (c.pod_affinity - min_pod_affinity) as f64 * 100.0
                    / (max_pod_affinity - min_pod_affinity) as f64
            } else {
                0.0
            };
            let spread_constraints = match c.spread_load {
                Some(_) if max_load <= 0.0 => 100.0,
                Some(load) => (max_load + min_load - load) * 100.0 / max_load,
                None => 0.0,
            };
            c.resources
                + 2.0 * spread
                + 2.0 * affinity
                + 3.0 * taints
                + 2.0 * pod_affinity
                + 2.0 * spread_constraints
        })
        .collect()
}

/// The index (into `candidates`) of the best: highest total, then fewest pods, then first name.
pub fn best(candidates: &[Candidate], nodes: &[NodeInfo]) -> Option<usize> {
    let totals = totals(candidates);
    (0..candidates.len()).max_by(|&a, &b| {
        let (na, nb) = (&nodes[candidates[a].index], &nodes[candidates[b].index]);
        totals[a]
            .partial_cmp(&totals[b])
            .unwrap_or(Ordering::Equal)
            .then_with(|| nb.requested.pods.cmp(&na.requested.pods))
            .then_with(|| NodeInfo::name_order(nb, na))
    })
}

/// How many feasible nodes to look for before choosing (kube-scheduler's adaptive
/// percentageOfNodesToScore: 50% − 1% per 125 nodes, at least 5%, and at least 100 nodes).
pub fn nodes_to_find(total: usize) -> usize {
    const MIN: usize = 100;
    if total < MIN {
        return total;
    }
    let percent = 50usize.saturating_sub(total / 125).max(5);
    (total * percent / 100).max(MIN)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::cache::tests::{bound, node, pod};
    use super::super::cache::{Cache, PodInfo, UNRANKED};
    use super::*;
    use skiff_api::v1::*;

    fn info(p: Pod) -> PodInfo {
        PodInfo::new("default/new", p)
    }

    fn scored(cache: &Cache, p: &PodInfo) -> Vec<(String, f64)> {
        let spread = cache.spread(p);
        let candidates: Vec<Candidate> = cache
            .nodes()
            .iter()
            .enumerate()
            .map(|(i, n)| candidate(p, n, i, &spread, &PodTopology::default()))
            .collect();
        let totals = totals(&candidates);
        candidates
            .iter()
            .zip(totals)
            .map(|(c, t)| (cache.nodes()[c.index].name.clone(), t))
            .collect()
    }

    #[test]
    fn least_allocated_prefers_the_emptier_node() {
        let mut cache = Cache::default();
        cache.put_node(&node("idle", "4", "4Gi", None));
        cache.put_node(&node("busy", "4", "4Gi", None));
        cache.put_pod("default/x", bound(pod("x", "2", "2Gi"), "busy", 2));
        let p = info(pod("new", "1", "1Gi"));
        let idle = least_allocated(&p, cache.node("idle").unwrap());
        let busy = least_allocated(&p, cache.node("busy").unwrap());
        assert_eq!(idle, 75.0);
        assert_eq!(busy, 25.0);
        // Fine-grained: a 100m difference shows.
        let small = info(pod("small", "100m", "0"));
        let a = least_allocated(&small, cache.node("idle").unwrap());
        let b = least_allocated(&info(pod("b", "200m", "0")), cache.node("idle").unwrap());
        assert!(a > b && a - b < 2.0, "{a} vs {b}");
    }

    #[test]
    fn balanced_allocation_penalises_uneven_use() {
        let mut cache = Cache::default();
        cache.put_node(&node("cpu-heavy", "4", "4Gi", None));
        cache.put_node(&node("even", "4", "4Gi", None));
        cache.put_pod("default/x", bound(pod("x", "2", "0"), "cpu-heavy", 2));
        cache.put_pod("default/y", bound(pod("y", "1", "1Gi"), "even", 3));
        let p = info(pod("new", "0", "1Gi"));
        // cpu-heavy: cpu 0.5, memory 0.25 → 87.5; even: 0.25 and 0.5 → 87.5 as well.
        assert_eq!(
            balanced_allocation(&p, cache.node("cpu-heavy").unwrap()),
            87.5
        );
        let q = info(pod("new", "1", "0"));
        // cpu-heavy: 0.75 / 0 → 62.5; even: 0.5 / 0.25 → 87.5.
        assert_eq!(
            balanced_allocation(&q, cache.node("cpu-heavy").unwrap()),
            62.5
        );
        assert_eq!(balanced_allocation(&q, cache.node("even").unwrap()), 87.5);
    }

    #[test]
    fn spreading_prefers_nodes_and_zones_without_replicas() {
        let mut cache = Cache::default();
        cache.put_node(&node("a1", "32", "128Gi", Some("a")));
        cache.put_node(&node("a2", "32", "128Gi", Some("a")));
        cache.put_node(&node("b1", "32", "128Gi", Some("b")));
        cache.put_pod("default/r1", bound(pod("r1", "100m", "64Mi"), "a1", 2));
        let p = info(pod("r2", "100m", "64Mi"));
        let s = scored(&cache, &p);
        let score = |n: &str| s.iter().find(|(name, _)| name == n).unwrap().1;
        // b1 (empty zone) > a2 (empty node, crowded zone) > a1.
        assert!(score("b1") > score("a2"), "{s:?}");
        assert!(score("a2") > score("a1"), "{s:?}");
        // A pod of another owner does not care.
        let mut other = pod("o", "100m", "64Mi");
        other.metadata.as_mut().unwrap().labels = [("app".to_string(), "db".to_string())].into();
        let s = scored(&cache, &info(other));
        let score = |n: &str| s.iter().find(|(name, _)| name == n).unwrap().1;
        assert!((score("b1") - score("a2")).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn preferred_affinity_and_prefer_no_schedule_taints_score() {
        let mut cache = Cache::default();
        let mut ssd = node("ssd", "4", "4Gi", None);
        ssd.metadata
            .as_mut()
            .unwrap()
            .labels
            .insert("disk".into(), "ssd".into());
        cache.put_node(&ssd);
        cache.put_node(&node("plain", "4", "4Gi", None));
        let mut p = pod("p", "100m", "64Mi");
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                preferred_during_scheduling_ignored_during_execution: vec![
                    PreferredSchedulingTerm {
                        weight: 30,
                        preference: Some(NodeSelectorTerm {
                            match_expressions: vec![NodeSelectorRequirement {
                                key: "disk".into(),
                                operator: "In".into(),
                                values: vec!["ssd".into()],
                            }],
                            ..Default::default()
                        }),
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        });
        let p = info(p);
        assert_eq!(preferred_affinity(&p, cache.node("ssd").unwrap()), 30);
        assert_eq!(preferred_affinity(&p, cache.node("plain").unwrap()), 0);
        let s = scored(&cache, &p);
        assert!(s[0].1 > s[1].1 + 100.0, "{s:?}");

        let mut tainted = node("tainted", "4", "4Gi", None);
        tainted.spec.as_mut().unwrap().taints.push(Taint {
            key: "spot".into(),
            effect: "PreferNoSchedule".into(),
            ..Default::default()
        });
        let mut cache = Cache::default();
        cache.put_node(&tainted);
        cache.put_node(&node("clean", "4", "4Gi", None));
        let s = scored(&cache, &info(pod("p", "100m", "64Mi")));
        assert!(s[1].1 > s[0].1, "{s:?}");
    }

    #[test]
    fn ties_go_to_fewer_pods_then_name() {
        let mut cache = Cache::default();
        for n in ["n2", "n1", "n3"] {
            cache.put_node(&node(n, "4", "4Gi", None));
        }
        let p = info(pod("p", "0", "0"));
        let candidates: Vec<Candidate> = (0..3)
            .map(|i| {
                candidate(
                    &p,
                    &cache.nodes()[i],
                    i,
                    &cache.spread(&p),
                    &PodTopology::default(),
                )
            })
            .collect();
        let i = best(&candidates, cache.nodes()).unwrap();
        assert_eq!(cache.nodes()[candidates[i].index].name, "n1");
        // A zero-request pod scores the same everywhere: the count of pods decides.
        let mut other = pod("x", "0", "0");
        other.metadata.as_mut().unwrap().labels.clear();
        cache.put_pod("default/x", bound(other, "n1", 2));
        let candidates: Vec<Candidate> = (0..3)
            .map(|i| {
                candidate(
                    &p,
                    &cache.nodes()[i],
                    i,
                    &cache.spread(&p),
                    &PodTopology::default(),
                )
            })
            .collect();
        let i = best(&candidates, cache.nodes()).unwrap();
        assert_eq!(cache.nodes()[candidates[i].index].name, "n2");
        // Ranked, as the scheduler ranks them before each pod: the same, without the names.
        cache.rank_names();
        let rank = |n: &str| cache.node(n).unwrap().name_rank;
        assert!(rank("n1") < rank("n2") && rank("n2") < rank("n3"));
        let i = best(&candidates, cache.nodes()).unwrap();
        assert_eq!(cache.nodes()[candidates[i].index].name, "n2");
        // A node added since has no rank yet and is compared by name.
        cache.put_node(&node("n0", "4", "4Gi", None));
        assert_eq!(cache.node("n0").unwrap().name_rank, UNRANKED);
        let all = |cache: &Cache| -> Vec<Candidate> {
            (0..4)
                .map(|i| {
                    candidate(
                        &p,
                        &cache.nodes()[i],
                        i,
                        &cache.spread(&p),
                        &PodTopology::default(),
                    )
                })
                .collect()
        };
        let i = best(&all(&cache), cache.nodes()).unwrap();
        assert_eq!(cache.nodes()[i].name, "n0");
        cache.rank_names();
        assert_eq!(rank_of(&cache, "n0"), 0);
        let i = best(&all(&cache), cache.nodes()).unwrap();
        assert_eq!(cache.nodes()[i].name, "n0");
    }

    fn rank_of(cache: &Cache, name: &str) -> u32 {
        cache.node(name).unwrap().name_rank
    }

    #[test]
    fn sample_size_is_adaptive() {
        assert_eq!(nodes_to_find(3), 3);
        assert_eq!(nodes_to_find(100), 100);
        assert_eq!(nodes_to_find(1000), 420);
        assert_eq!(nodes_to_find(5000), 500);
        assert_eq!(nodes_to_find(100_000), 5000);
    }
}
