//! Placement rules that read other pods across topology domains: inter-pod affinity and
//! anti-affinity (kube-scheduler's InterPodAffinity) and `topologySpreadConstraints`
//! (PodTopologySpread). A domain is the set of nodes with the same value of a term's
//! `topologyKey` label (`kubernetes.io/hostname`: each node; `topology.kubernetes.io/zone`).
//!
//! [`PodTopology::new`] looks at the placed pods once per pod to schedule and keeps, per
//! topology key, counts by label value; [`PodTopology::check`] (a filter) and the scores then
//! cost a few map lookups per node. As in Kubernetes:
//! - required affinity: the node has every term's key, and its domain holds a pod matching every
//!   term — unless no such pod exists anywhere and the pod matches its own terms (the first of a
//!   group);
//! - required anti-affinity: no matching pod in the node's domain, both ways (an existing pod's
//!   required anti-affinity keeps a pod it matches out of its domain);
//! - preferred terms score ± weight per matching pod in the node's domain (both ways too);
//! - spread: with `DoNotSchedule`, a node without the key is out, and placing the pod must not
//!   make its domain's matching pods exceed the least populated eligible domain by more than
//!   `maxSkew` (`minDomains`: fewer eligible domains count as a minimum of 0); eligible domains
//!   are those of nodes matching the pod's node affinity (`nodeAffinityPolicy: Honor`) and,
//!   with `nodeTaintsPolicy: Honor`, whose taints it tolerates. `ScheduleAnyway` scores fewer
//!   matching pods higher, each constraint weighted by log(domains + 2). Terminating pods do not
//!   count for spreading.
//!
//! Must not: do I/O, or look at resources (the other filters do).

use std::collections::{BTreeMap, HashMap, HashSet};

use skiff_api::ResourceExt;
use skiff_api::selector::LabelSelector;
use skiff_api::v1::{LabelSelectorRequirement, Pod, PodAffinityTerm, TopologySpreadConstraint};

use super::cache::{Cache, NodeInfo, PodInfo};
use super::filter::{self, Unfit};

/// A term resolved for matching: the namespaces it searches and its selector (with the owner's
/// `matchLabelKeys`/`mismatchLabelKeys` folded in).
struct Term {
    topology_key: String,
    /// None: every namespace.
    namespaces: Option<HashSet<String>>,
    /// None: a term without a labelSelector matches no pod.
    selector: Option<LabelSelector>,
}

impl Term {
    fn new(owner: &Pod, term: &PodAffinityTerm, cache: &Cache) -> Self {
        let meta = owner.meta();
        let mut namespaces: HashSet<String> = term.namespaces.iter().cloned().collect();
        let mut all = false;
        match &term.namespace_selector {
            Some(sel) if sel.match_labels.is_empty() && sel.match_expressions.is_empty() => {
                all = true;
            }
            Some(sel) => {
                if let Ok(sel) = LabelSelector::from_spec(sel) {
                    namespaces.extend(
                        cache
                            .namespaces()
                            .filter(|(_, labels)| sel.matches(labels))
                            .map(|(name, _)| name.clone()),
                    );
                }
            }
            None if term.namespaces.is_empty() => {
                namespaces.insert(meta.namespace.clone());
            }
            None => {}
        }
        let selector = term.label_selector.as_ref().and_then(|spec| {
            let mut spec = spec.clone();
            for (keys, operator) in [
                (&term.match_label_keys, "In"),
                (&term.mismatch_label_keys, "NotIn"),
            ] {
                for key in keys {
                    if let Some(value) = meta.labels.get(key) {
                        spec.match_expressions.push(LabelSelectorRequirement {
                            key: key.clone(),
                            operator: operator.into(),
                            values: vec![value.clone()],
                        });
                    }
                }
            }
            LabelSelector::from_spec(&spec).ok()
        });
        Term {
            topology_key: term.topology_key.clone(),
            namespaces: (!all).then_some(namespaces),
            selector,
        }
    }

    fn matches(&self, pod: &Pod) -> bool {
        let meta = pod.meta();
        self.namespaces
            .as_ref()
            .is_none_or(|ns| ns.contains(&meta.namespace))
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(&meta.labels))
    }
}

/// Counts (or weights) by topology key, then by the key's label value.
#[derive(Default, Debug)]
struct ByDomain(HashMap<String, HashMap<String, i64>>);

impl ByDomain {
    fn add(&mut self, key: &str, node: &NodeInfo, n: i64) {
        if let Some(value) = node.labels.get(key) {
            *self
                .0
                .entry(key.to_string())
                .or_default()
                .entry(value.clone())
                .or_default() += n;
        }
    }

    fn get(&self, key: &str, node: &NodeInfo) -> i64 {
        node.labels
            .get(key)
            .and_then(|v| self.0.get(key)?.get(v))
            .copied()
            .unwrap_or(0)
    }

    /// Any value of any key in `node`'s domains.
    fn hits(&self, node: &NodeInfo) -> bool {
        self.0
            .iter()
            .any(|(key, values)| node.labels.get(key).is_some_and(|v| values.contains_key(v)))
    }
}

/// One spread constraint, resolved against the cluster.
struct Spread {
    key: String,
    max_skew: i64,
    hard: bool,
    /// Matching pods per domain value, every eligible domain present (0 where none).
    counts: HashMap<String, i64>,
    /// The smallest count, with `minDomains` applied.
    min: i64,
    self_match: i64,
    weight: f64,
}

/// What one pod's placement rules need of the cluster, computed once per attempt.
#[derive(Default)]
pub struct PodTopology {
    /// Required affinity: each term's key, and matching pods (matching every term) by domain.
    affinity_keys: Vec<String>,
    affinity: ByDomain,
    /// No pod matches the terms anywhere, and the pod matches them itself.
    affinity_first: bool,
    /// Domains the pod's required anti-affinity keeps it out of.
    anti: ByDomain,
    /// Domains existing pods' required anti-affinity keeps it out of.
    existing_anti: ByDomain,
    /// Preferred terms, both ways: summed weights by domain.
    preferred: ByDomain,
    spreads: Vec<Spread>,
}

fn terms(list: Option<&Vec<PodAffinityTerm>>) -> impl Iterator<Item = &PodAffinityTerm> {
    list.into_iter().flatten()
}

impl PodTopology {
    /// Nothing to check or score: no terms or constraints on the pod, and no placed pod with terms.
    pub fn is_empty(&self) -> bool {
        self.affinity_keys.is_empty()
            && self.anti.0.is_empty()
            && self.existing_anti.0.is_empty()
            && self.preferred.0.is_empty()
            && self.spreads.is_empty()
    }

    pub fn new(cache: &Cache, pod: &PodInfo) -> Self {
        let mut out = PodTopology::default();
        let spec = pod.pod.spec.as_ref();
        let affinity = spec.and_then(|s| s.affinity.as_ref());
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let resolve = |t: &PodAffinityTerm| Term::new(&pod.pod, t, cache);
        let required: Vec<Term> =
            terms(pa.map(|a| &a.required_during_scheduling_ignored_during_execution))
                .map(resolve)
                .collect();
        let anti: Vec<Term> =
            terms(paa.map(|a| &a.required_during_scheduling_ignored_during_execution))
                .map(resolve)
                .collect();
        let mut preferred: Vec<(i64, Term)> = Vec::new();
        for (sign, list) in [
            (
                1,
                pa.map(|a| &a.preferred_during_scheduling_ignored_during_execution),
            ),
            (
                -1,
                paa.map(|a| &a.preferred_during_scheduling_ignored_during_execution),
            ),
        ] {
            for w in list.into_iter().flatten() {
                if let Some(t) = &w.pod_affinity_term {
                    preferred.push((sign * i64::from(w.weight), resolve(t)));
                }
            }
        }
        out.affinity_keys = required.iter().map(|t| t.topology_key.clone()).collect();
        let constraints: Vec<&TopologySpreadConstraint> = spec
            .map(|s| s.topology_spread_constraints.iter().collect())
            .unwrap_or_default();
        let own_terms = !required.is_empty() || !anti.is_empty() || !preferred.is_empty();
        if own_terms {
            for (other, node) in cache.placed() {
                if other.key == pod.key {
                    continue;
                }
                if !required.is_empty() && required.iter().all(|t| t.matches(&other.pod)) {
                    for t in &required {
                        out.affinity.add(&t.topology_key, node, 1);
                    }
                }
                for t in &anti {
                    if t.matches(&other.pod) {
                        out.anti.add(&t.topology_key, node, 1);
                    }
                }
                for (weight, t) in &preferred {
                    if t.matches(&other.pod) {
                        out.preferred.add(&t.topology_key, node, *weight);
                    }
                }
            }
            out.affinity_first = !required.is_empty()
                && out.affinity.0.is_empty()
                && required.iter().all(|t| t.matches(&pod.pod));
        }
        // The other direction: placed pods' terms that match this pod.
        for (other, node) in cache.placed_with_terms() {
            if other.key == pod.key {
                continue;
            }
            let Some(a) = other.pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
                continue;
            };
            let theirs = |t: &PodAffinityTerm| Term::new(&other.pod, t, cache);
            if let Some(anti) = &a.pod_anti_affinity {
                for t in &anti.required_during_scheduling_ignored_during_execution {
                    let t = theirs(t);
                    if t.matches(&pod.pod) {
                        out.existing_anti.add(&t.topology_key, node, 1);
                    }
                }
                for w in &anti.preferred_during_scheduling_ignored_during_execution {
                    if let Some(t) = w.pod_affinity_term.as_ref().map(theirs)
                        && t.matches(&pod.pod)
                    {
                        out.preferred
                            .add(&t.topology_key, node, -i64::from(w.weight));
                    }
                }
            }
            if let Some(aff) = &a.pod_affinity {
                // Kubernetes' hardPodAffinityWeight: a placed pod's required affinity for this
                // pod draws it with weight 1.
                for t in &aff.required_during_scheduling_ignored_during_execution {
                    let t = theirs(t);
                    if t.matches(&pod.pod) {
                        out.preferred.add(&t.topology_key, node, 1);
                    }
                }
                for w in &aff.preferred_during_scheduling_ignored_during_execution {
                    if let Some(t) = w.pod_affinity_term.as_ref().map(theirs)
                        && t.matches(&pod.pod)
                    {
                        out.preferred
                            .add(&t.topology_key, node, i64::from(w.weight));
                    }
                }
            }
        }
        if !constraints.is_empty() {
            out.spreads = spreads(cache, pod, &constraints);
        }
        out
    }

    /// The filter: `Err` with Kubernetes' reason when the node breaks a rule.
    pub fn check(&self, node: &NodeInfo) -> Result<(), Unfit> {
        if !self.affinity_keys.is_empty() {
            if self
                .affinity_keys
                .iter()
                .any(|k| !node.labels.contains_key(k))
            {
                return Err(Unfit::PodAffinity);
            }
            let everywhere = self
                .affinity_keys
                .iter()
                .all(|k| self.affinity.get(k, node) > 0);
            if !everywhere && !self.affinity_first {
                return Err(Unfit::PodAffinity);
            }
        }
        if self.anti.hits(node) {
            return Err(Unfit::PodAntiAffinity);
        }
        if self.existing_anti.hits(node) {
            return Err(Unfit::ExistingAntiAffinity);
        }
        for s in self.spreads.iter().filter(|s| s.hard) {
            let Some(value) = node.labels.get(&s.key) else {
                return Err(Unfit::SpreadMissingLabel);
            };
            let count = s.counts.get(value).copied().unwrap_or(0);
            if count + s.self_match - s.min > s.max_skew {
                return Err(Unfit::Spread);
            }
        }
        Ok(())
    }

    /// Preferred inter-pod affinity: summed weights of matching pods in the node's domains.
    pub fn affinity_score(&self, node: &NodeInfo) -> i64 {
        self.preferred
            .0
            .keys()
            .map(|k| self.preferred.get(k, node))
            .sum()
    }

    /// Soft spreading: matching pods in the node's domains, weighted (fewer is better); None when
    /// the pod has no ScheduleAnyway constraint.
    pub fn spread_load(&self, node: &NodeInfo) -> Option<f64> {
        let soft: Vec<&Spread> = self.spreads.iter().filter(|s| !s.hard).collect();
        if soft.is_empty() {
            return None;
        }
        Some(
            soft.iter()
                .map(|s| {
                    let count = node
                        .labels
                        .get(&s.key)
                        .and_then(|v| s.counts.get(v))
                        .copied()
                        .unwrap_or(0);
                    (count + s.self_match) as f64 * s.weight
                })
                .sum(),
        )
    }
}

fn spreads(cache: &Cache, pod: &PodInfo, constraints: &[&TopologySpreadConstraint]) -> Vec<Spread> {
    let meta = pod.pod.meta();
    let keys: Vec<&str> = constraints
        .iter()
        .map(|c| c.topology_key.as_str())
        .collect();
    let eligible = |node: &NodeInfo, c: &TopologySpreadConstraint| {
        node.known
            && keys.iter().all(|k| node.labels.contains_key(*k))
            && (c.node_affinity_policy.as_deref() == Some("Ignore")
                || filter::matches_selector(&pod.pod, node))
            && (c.node_taints_policy.as_deref() != Some("Honor")
                || filter::untolerated_taint(&pod.pod, &node.taints).is_none())
    };
    constraints
        .iter()
        .map(|c| {
            let selector = c.label_selector.as_ref().and_then(|spec| {
                let mut spec = spec.clone();
                for key in &c.match_label_keys {
                    if let Some(value) = meta.labels.get(key) {
                        spec.match_expressions.push(LabelSelectorRequirement {
                            key: key.clone(),
                            operator: "In".into(),
                            values: vec![value.clone()],
                        });
                    }
                }
                LabelSelector::from_spec(&spec).ok()
            });
            let matches = |p: &Pod| {
                p.meta().namespace == meta.namespace
                    && selector
                        .as_ref()
                        .is_some_and(|s| s.matches(&p.meta().labels))
            };
            let mut counts: HashMap<String, i64> = HashMap::new();
            let mut domains: BTreeMap<&str, ()> = BTreeMap::new();
            for node in cache.nodes().iter().filter(|n| eligible(n, c)) {
                if let Some(v) = node.labels.get(&c.topology_key) {
                    counts.entry(v.clone()).or_default();
                    domains.insert(v, ());
                }
            }
            for (other, node) in cache.placed() {
                if other.key == pod.key || other.terminating() || !eligible(node, c) {
                    continue;
                }
                if matches(&other.pod)
                    && let Some(v) = node.labels.get(&c.topology_key)
                {
                    *counts.entry(v.clone()).or_default() += 1;
                }
            }
            let mut min = counts.values().copied().min().unwrap_or(0);
            if c.min_domains
                .is_some_and(|m| usize::try_from(m).unwrap_or(0) > counts.len())
            {
                min = 0;
            }
            Spread {
                key: c.topology_key.clone(),
                max_skew: i64::from(c.max_skew.max(1)),
                hard: c.when_unsatisfiable != "ScheduleAnyway",
                self_match: i64::from(matches(&pod.pod)),
                weight: ((domains.len() + 2) as f64).ln(),
                counts,
                min,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::cache::tests::{bound, node, pod};
    use super::*;
    use skiff_api::v1;
    use skiff_api::v1::*;

    const HOST: &str = "kubernetes.io/hostname";

    fn cluster(nodes: &[(&str, &str)]) -> Cache {
        let mut cache = Cache::default();
        for (name, zone) in nodes {
            let mut n = node(name, "8", "8Gi", Some(zone));
            n.metadata
                .as_mut()
                .unwrap()
                .labels
                .insert(HOST.into(), name.to_string());
            cache.put_node(&n);
        }
        cache
    }

    fn labelled(name: &str, app: &str) -> Pod {
        let mut p = pod(name, "100m", "64Mi");
        p.metadata.as_mut().unwrap().labels = [("app".to_string(), app.to_string())].into();
        p
    }

    fn term(app: &str, key: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Some(v1::LabelSelector {
                match_labels: [("app".to_string(), app.to_string())].into(),
                ..Default::default()
            }),
            topology_key: key.into(),
            ..Default::default()
        }
    }

    fn anti(mut p: Pod, t: PodAffinityTerm) -> Pod {
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: vec![t],
                ..Default::default()
            }),
            ..Default::default()
        });
        p
    }

    fn fits(cache: &Cache, p: &Pod) -> Vec<(String, Result<(), Unfit>)> {
        let info = PodInfo::new("default/incoming", p.clone());
        let t = PodTopology::new(cache, &info);
        let mut out: Vec<_> = cache
            .nodes()
            .iter()
            .map(|n| (n.name.clone(), t.check(n)))
            .collect();
        out.sort();
        out
    }

    fn ok_nodes(cache: &Cache, p: &Pod) -> Vec<String> {
        fits(cache, p)
            .into_iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(n, _)| n)
            .collect()
    }

    #[test]
    fn required_anti_affinity_keeps_replicas_apart_both_ways() {
        let mut cache = cluster(&[("n1", "a"), ("n2", "a"), ("n3", "b")]);
        let web = |name| anti(labelled(name, "web"), term("web", HOST));
        assert_eq!(ok_nodes(&cache, &web("w1")), ["n1", "n2", "n3"]);
        cache.put_pod("default/w1", bound(web("w1"), "n1", 2));
        assert_eq!(ok_nodes(&cache, &web("w2")), ["n2", "n3"]);
        cache.put_pod("default/w2", bound(web("w2"), "n2", 3));
        cache.put_pod("default/w3", bound(web("w3"), "n3", 4));
        assert_eq!(
            fits(&cache, &web("w4"))[0].1,
            Err(Unfit::PodAntiAffinity),
            "every node holds a replica"
        );
        assert_eq!(
            super::super::filter::summary(
                3,
                &[
                    Unfit::PodAntiAffinity,
                    Unfit::PodAntiAffinity,
                    Unfit::PodAntiAffinity
                ]
            ),
            "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
        );
        // A pod without terms that the placed replicas' terms match is kept out too.
        assert_eq!(
            fits(&cache, &labelled("plain", "web"))[0].1,
            Err(Unfit::ExistingAntiAffinity)
        );
        // Another app is not concerned.
        assert_eq!(ok_nodes(&cache, &labelled("db", "db")), ["n1", "n2", "n3"]);
        // By zone: a replica in zone a keeps the next out of both its nodes.
        let mut cache = cluster(&[("n1", "a"), ("n2", "a"), ("n3", "b")]);
        let zoned = |name| anti(labelled(name, "web"), term("web", ZONE));
        cache.put_pod("default/z1", bound(zoned("z1"), "n1", 2));
        assert_eq!(ok_nodes(&cache, &zoned("z2")), ["n3"]);
    }

    const ZONE: &str = "topology.kubernetes.io/zone";

    #[test]
    fn required_affinity_follows_the_pods_it_names() {
        let mut cache = cluster(&[("n1", "a"), ("n2", "a"), ("n3", "b")]);
        let with_cache = |name: &str| {
            let mut p = labelled(name, "web");
            p.spec.as_mut().unwrap().affinity = Some(Affinity {
                pod_affinity: Some(PodAffinity {
                    required_during_scheduling_ignored_during_execution: vec![term("cache", ZONE)],
                    ..Default::default()
                }),
                ..Default::default()
            });
            p
        };
        assert_eq!(fits(&cache, &with_cache("w"))[0].1, Err(Unfit::PodAffinity));
        cache.put_pod("default/c", bound(labelled("c", "cache"), "n3", 2));
        assert_eq!(ok_nodes(&cache, &with_cache("w")), ["n3"]);
        // The first of a group that names itself may go anywhere.
        let mut own = labelled("first", "cache");
        own.spec.as_mut().unwrap().affinity = with_cache("x").spec.unwrap().affinity;
        let empty = cluster(&[("n1", "a"), ("n2", "b")]);
        assert_eq!(ok_nodes(&empty, &own), ["n1", "n2"]);
        // Another namespace's pods do not count unless the term names it.
        let mut cache = cluster(&[("n1", "a"), ("n2", "b")]);
        let mut other = labelled("c", "cache");
        other.metadata.as_mut().unwrap().namespace = "other".into();
        cache.put_pod("other/c", bound(other, "n2", 2));
        assert_eq!(fits(&cache, &with_cache("w"))[0].1, Err(Unfit::PodAffinity));
        let mut named = with_cache("w");
        let affinity = named.spec.as_mut().unwrap().affinity.as_mut().unwrap();
        affinity
            .pod_affinity
            .as_mut()
            .unwrap()
            .required_during_scheduling_ignored_during_execution[0]
            .namespaces = vec!["other".into()];
        assert_eq!(ok_nodes(&cache, &named), ["n2"]);
        let mut selected = with_cache("w");
        let affinity = selected.spec.as_mut().unwrap().affinity.as_mut().unwrap();
        affinity
            .pod_affinity
            .as_mut()
            .unwrap()
            .required_during_scheduling_ignored_during_execution[0]
            .namespace_selector = Some(v1::LabelSelector {
            match_labels: [("team".to_string(), "infra".to_string())].into(),
            ..Default::default()
        });
        assert_eq!(fits(&cache, &selected)[1].1, Err(Unfit::PodAffinity));
        cache.put_namespace("other", [("team".to_string(), "infra".to_string())].into());
        assert_eq!(ok_nodes(&cache, &selected), ["n2"]);
    }

    #[test]
    fn preferred_terms_score_both_ways() {
        let mut cache = cluster(&[("n1", "a"), ("n2", "b")]);
        cache.put_pod("default/c", bound(labelled("c", "cache"), "n2", 2));
        let mut p = labelled("w", "web");
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_affinity: Some(PodAffinity {
                preferred_during_scheduling_ignored_during_execution: vec![
                    WeightedPodAffinityTerm {
                        weight: 50,
                        pod_affinity_term: Some(term("cache", HOST)),
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        });
        let t = PodTopology::new(&cache, &PodInfo::new("default/w", p));
        assert_eq!(t.affinity_score(cache.node("n2").unwrap()), 50);
        assert_eq!(t.affinity_score(cache.node("n1").unwrap()), 0);
        // A placed pod that prefers to avoid web pods pushes them away.
        let mut shy = labelled("s", "batch");
        shy.spec.as_mut().unwrap().affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: vec![
                    WeightedPodAffinityTerm {
                        weight: 20,
                        pod_affinity_term: Some(term("web", HOST)),
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        });
        cache.put_pod("default/s", bound(shy, "n1", 3));
        let t = PodTopology::new(&cache, &PodInfo::new("default/w2", labelled("w2", "web")));
        assert_eq!(t.affinity_score(cache.node("n1").unwrap()), -20);
        assert_eq!(t.affinity_score(cache.node("n2").unwrap()), 0);
    }

    fn spread(p: Pod, key: &str, skew: i32, when: &str) -> Pod {
        let mut p = p;
        p.spec
            .as_mut()
            .unwrap()
            .topology_spread_constraints
            .push(TopologySpreadConstraint {
                max_skew: skew,
                topology_key: key.into(),
                when_unsatisfiable: when.into(),
                label_selector: term("web", HOST).label_selector,
                ..Default::default()
            });
        p
    }

    #[test]
    fn spread_constraints_bound_the_skew() {
        let mut cache = cluster(&[("a1", "a"), ("a2", "a"), ("b1", "b")]);
        let web = |name| spread(labelled(name, "web"), ZONE, 1, "DoNotSchedule");
        cache.put_pod("default/w1", bound(labelled("w1", "web"), "a1", 2));
        // Zone a has 1, zone b 0: another in a would make the skew 2.
        assert_eq!(ok_nodes(&cache, &web("w2")), ["b1"]);
        assert_eq!(fits(&cache, &web("w2"))[0].1, Err(Unfit::Spread));
        cache.put_pod("default/w2", bound(labelled("w2", "web"), "b1", 3));
        assert_eq!(ok_nodes(&cache, &web("w3")), ["a1", "a2", "b1"]);
        // A node without the key is out, with Kubernetes' words.
        let mut bare = node("bare", "8", "8Gi", None);
        bare.metadata.as_mut().unwrap().labels.clear();
        cache.put_node(&bare);
        let r = fits(&cache, &web("w3"));
        assert_eq!(
            r.iter().find(|(n, _)| n == "bare").unwrap().1,
            Err(Unfit::SpreadMissingLabel)
        );
        assert_eq!(
            Unfit::SpreadMissingLabel.to_string(),
            "node(s) didn't match pod topology spread constraints (missing required label)"
        );
        // minDomains 3 with two zones: the minimum counts as 0, so zone a (1) takes no more.
        let mut min3 = web("w3");
        min3.spec.as_mut().unwrap().topology_spread_constraints[0].min_domains = Some(3);
        assert!(ok_nodes(&cache, &min3).is_empty());
        // Nodes the pod's nodeSelector excludes are no domains (nodeAffinityPolicy Honor).
        let mut cache = cluster(&[("a1", "a"), ("b1", "b")]);
        cache.put_pod("default/w1", bound(labelled("w1", "web"), "a1", 2));
        let mut pinned = web("w2");
        pinned
            .spec
            .as_mut()
            .unwrap()
            .node_selector
            .insert(ZONE.into(), "a".into());
        assert_eq!(
            fits(&cache, &pinned)[0].1,
            Ok(()),
            "zone b is not a domain for a pod pinned to a"
        );
    }

    #[test]
    fn soft_spreading_scores_fewer_matching_pods_higher() {
        let mut cache = cluster(&[("n1", "a"), ("n2", "b")]);
        cache.put_pod("default/w1", bound(labelled("w1", "web"), "n1", 2));
        let p = spread(labelled("w2", "web"), HOST, 1, "ScheduleAnyway");
        let t = PodTopology::new(&cache, &PodInfo::new("default/w2", p.clone()));
        assert_eq!(ok_nodes(&cache, &p), ["n1", "n2"]);
        let (n1, n2) = (
            t.spread_load(cache.node("n1").unwrap()).unwrap(),
            t.spread_load(cache.node("n2").unwrap()).unwrap(),
        );
        assert!(n2 < n1, "{n1} {n2}");
    }
}
