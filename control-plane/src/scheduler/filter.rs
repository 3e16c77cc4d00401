//! Can a pod go on a node at all: the filters, pure functions over the cache's precomputed
//! [`PodInfo`] and [`NodeInfo`].
//!
//! In order, the first that fails being the node's reason: readiness (`Ready=True`: the node
//! lifecycle controller alone judges heartbeats, by the server's clock, and marks a silent node
//! `Unknown`), `spec.unschedulable`, runtime support
//! (`wasm` / `oci` runtime handlers), nodeSelector and required node affinity
//! (`nodeSelectorTerms`: In, NotIn, Exists, DoesNotExist, Gt, Lt, and `matchFields` on
//! `metadata.name`), NoSchedule/NoExecute taints, host ports, then requests (pod count, cpu,
//! memory) against allocatable minus what the node's pods — and pods nominated to it with at
//! least this pod's priority — request.
//!
//! Must not: score, do I/O, or look at other nodes.

use std::collections::BTreeMap;
use std::fmt;

use skiff_api::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint};

use super::cache::{HostPort, NodeInfo, PodInfo, Resources};

/// Why a node cannot take a pod; the text is what `0/N nodes are available: ...` counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unfit {
    NotReady,
    Unschedulable,
    Runtime(String),
    Selector,
    Taint(String),
    PodAffinity,
    PodAntiAffinity,
    ExistingAntiAffinity,
    Spread,
    SpreadMissingLabel,
    Ports,
    Pods,
    Cpu,
    Memory,
}

impl Unfit {
    /// Could evicting pods from the node cure this? Only a lack of room can be.
    pub fn resolvable_by_preemption(&self) -> bool {
        matches!(
            self,
            Unfit::Ports | Unfit::Pods | Unfit::Cpu | Unfit::Memory
        )
    }
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::NotReady => write!(f, "node(s) were not ready"),
            Unfit::Unschedulable => write!(f, "node(s) were unschedulable"),
            Unfit::Runtime(r) => write!(f, "node(s) did not support runtime {r:?}"),
            Unfit::Selector => write!(f, "node(s) didn't match Pod's node affinity/selector"),
            Unfit::Taint(t) => write!(f, "node(s) had untolerated taint {{{t}}}"),
            Unfit::PodAffinity => write!(f, "node(s) didn't match pod affinity rules"),
            Unfit::PodAntiAffinity => write!(f, "node(s) didn't match pod anti-affinity rules"),
            Unfit::ExistingAntiAffinity => {
                write!(
                    f,
                    "node(s) didn't satisfy existing pods anti-affinity rules"
                )
            }
            Unfit::Spread => write!(f, "node(s) didn't match pod topology spread constraints"),
            Unfit::SpreadMissingLabel => write!(
                f,
                "node(s) didn't match pod topology spread constraints (missing required label)"
            ),
            Unfit::Ports => write!(
                f,
                "node(s) didn't have free ports for the requested pod ports"
            ),
            Unfit::Pods => write!(f, "Too many pods"),
            Unfit::Cpu => write!(f, "Insufficient cpu"),
            Unfit::Memory => write!(f, "Insufficient memory"),
        }
    }
}

/// Every filter; the first that fails is the reason.
pub fn check(pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
    check_node(pod, node)?;
    check_room(pod, node, &node.requested, node.host_ports.iter())
}

/// The filters that other pods cannot change (preemption cannot help with these).
pub fn check_node(pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
    if !node.ready {
        return Err(Unfit::NotReady);
    }
    if node.unschedulable {
        return Err(Unfit::Unschedulable);
    }
    let runtimes_offered = match pod.runtime_mask {
        Some(mask) => node.runtime_mask & mask == mask,
        None => pod.runtimes.iter().all(|r| node.runtimes.contains(r)),
    };
    if !runtimes_offered
        && let Some(missing) = pod.runtimes.iter().find(|r| !node.runtimes.contains(r))
    {
        return Err(Unfit::Runtime(missing.clone()));
    }
    if !matches_selector(&pod.pod, node) {
        return Err(Unfit::Selector);
    }
    if let Some(taint) = untolerated_taint(&pod.pod, &node.taints) {
        let value = if taint.value.is_empty() {
            String::new()
        } else {
            format!(": {}", taint.value)
        };
        return Err(Unfit::Taint(format!("{}{value}", taint.key)));
    }
    Ok(())
}

/// Host ports and requests against what `used` (and `ports`) already take on the node.
pub fn check_room<'a>(
    pod: &PodInfo,
    node: &NodeInfo,
    used: &Resources,
    mut ports: impl Iterator<Item = &'a HostPort>,
) -> Result<(), Unfit> {
    if !pod.host_ports.is_empty() && ports.any(|p| pod.host_ports.iter().any(|w| w.conflicts(p))) {
        return Err(Unfit::Ports);
    }
    let mut used = *used;
    if !node.nominated.is_empty() {
        used.add(&node.reserved_for(pod));
    }
    let has = &node.allocatable;
    let wants = &pod.requests;
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

fn tolerated(pod: &Pod, taint: &Taint) -> bool {
    pod.spec.iter().flat_map(|s| &s.tolerations).any(|t| {
        let key_ok = t.key.is_empty() && t.operator == "Exists" || t.key == taint.key;
        let value_ok = t.operator == "Exists" || t.value == taint.value;
        let effect_ok = t.effect.is_empty() || t.effect == taint.effect;
        key_ok && value_ok && effect_ok
    })
}

pub fn untolerated_taint<'a>(pod: &Pod, taints: &'a [Taint]) -> Option<&'a Taint> {
    taints.iter().find(|taint| {
        matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerated(pod, taint)
    })
}

/// PreferNoSchedule taints the pod does not tolerate (a score, not a filter).
pub fn intolerable_preferences(pod: &Pod, taints: &[Taint]) -> usize {
    taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerated(pod, t))
        .count()
}

/// `nodeSelector` and `requiredDuringSchedulingIgnoredDuringExecution` both hold.
pub fn matches_selector(pod: &Pod, node: &NodeInfo) -> bool {
    let Some(spec) = &pod.spec else {
        return true;
    };
    if spec
        .node_selector
        .iter()
        .any(|(k, v)| node.labels.get(k) != Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        // Terms are ORed; as in Kubernetes, no term (or only empty ones) matches no node.
        Some(selector) => selector
            .node_selector_terms
            .iter()
            .any(|term| term_matches(term, &node.labels, &node.name)),
        None => true,
    }
}

/// A term's expressions and fields are ANDed; an empty term matches nothing.
pub fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    name: &str,
) -> bool {
    if term.match_expressions.is_empty() && term.match_fields.is_empty() {
        return false;
    }
    term.match_expressions
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && term.match_fields.iter().all(|r| {
            // metadata.name is the only node field Kubernetes supports here.
            r.key == "metadata.name"
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && requirement_matches(r, Some(name))
        })
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let listed = |v: &str| r.values.iter().any(|x| x == v);
    let number = |v: &str| v.parse::<i64>().ok();
    let bound = || match r.values.as_slice() {
        [one] => number(one),
        _ => None,
    };
    match r.operator.as_str() {
        "In" => value.is_some_and(listed),
        "NotIn" => !value.is_some_and(listed),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => matches!((value.and_then(number), bound()), (Some(v), Some(b)) if v > b),
        "Lt" => matches!((value.and_then(number), bound()), (Some(v), Some(b)) if v < b),
        _ => false,
    }
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

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::cache::tests::{node, pod};
    use super::super::cache::{Cache, PodInfo};
    use super::*;
    use skiff_api::v1::*;

    fn info(p: Pod) -> PodInfo {
        PodInfo::new("default/p", p)
    }

    fn node_info(n: Node) -> NodeInfo {
        let mut cache = Cache::default();
        let name = n.metadata.as_ref().unwrap().name.clone();
        cache.put_node(&n);
        cache.node(&name).unwrap().clone()
    }

    fn with_required(terms: Vec<NodeSelectorTerm>) -> PodInfo {
        let mut p = pod("p", "100m", "64Mi");
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: terms,
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        info(p)
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn term(exprs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: exprs,
            ..Default::default()
        }
    }

    #[test]
    fn readiness_is_the_ready_condition_not_the_agents_clock() {
        // An agent's heartbeat stamp an hour old (its clock is off, or it posts status only on
        // change): the node is Ready until the lifecycle controller says otherwise.
        let mut n = node("n", "2", "1Gi", None);
        let mut stale = skiff_api::time::now();
        stale.seconds -= 3600;
        n.status.as_mut().unwrap().conditions[0].last_heartbeat_time = Some(stale);
        let p = info(pod("p", "100m", "64Mi"));
        assert_eq!(check(&p, &node_info(n.clone())), Ok(()));
        n.status.as_mut().unwrap().conditions[0].status = "Unknown".into();
        assert_eq!(check(&p, &node_info(n)), Err(Unfit::NotReady));
    }

    #[test]
    fn filters_name_their_reason() {
        let n = node_info(node("n", "2", "1Gi", None));
        let p = info(pod("p", "500m", "64Mi"));
        assert!(check(&p, &n).is_ok());
        let busy = Resources {
            cpu_millis: 1800,
            ..Default::default()
        };
        assert_eq!(
            check_room(&p, &n, &busy, std::iter::empty()),
            Err(Unfit::Cpu)
        );
        let full_memory = Resources {
            memory: 1 << 30,
            ..Default::default()
        };
        assert_eq!(
            check_room(&p, &n, &full_memory, std::iter::empty()),
            Err(Unfit::Memory)
        );
        let full = Resources {
            pods: 110,
            ..Default::default()
        };
        assert_eq!(
            check_room(&p, &n, &full, std::iter::empty()),
            Err(Unfit::Pods)
        );
        let mut oci = pod("p", "1", "64Mi");
        oci.spec.as_mut().unwrap().runtime_class_name.clear();
        assert_eq!(check(&info(oci), &n), Err(Unfit::Runtime("oci".into())));
        // A handler known by no name of skiff's is compared by name.
        let mut other = pod("p", "1", "64Mi");
        other.spec.as_mut().unwrap().runtime_class_name = "gvisor".into();
        let other = info(other);
        assert_eq!(other.runtime_mask, None);
        assert_eq!(check(&other, &n), Err(Unfit::Runtime("gvisor".into())));
        let mut offers = node("n", "2", "1Gi", None);
        let handlers = &mut offers.status.as_mut().unwrap().runtime_handlers;
        handlers.push(NodeRuntimeHandler {
            name: "gvisor".into(),
        });
        handlers.push(NodeRuntimeHandler { name: "oci".into() });
        let offers = node_info(offers);
        assert_eq!(offers.runtime_mask, 0b11);
        assert_eq!(check(&other, &offers), Ok(()));
        let mut oci = pod("p", "1", "64Mi");
        oci.spec.as_mut().unwrap().runtime_class_name.clear();
        assert_eq!(check(&info(oci), &offers), Ok(()));
        let mut cordoned = n.clone();
        cordoned.unschedulable = true;
        assert_eq!(check(&p, &cordoned), Err(Unfit::Unschedulable));
        let mut not_ready = n.clone();
        not_ready.ready = false;
        assert_eq!(check(&p, &not_ready), Err(Unfit::NotReady));
    }

    #[test]
    fn taints_need_tolerations() {
        let mut tainted = node_info(node("n", "2", "1Gi", None));
        tainted.taints.push(Taint {
            key: "dedicated".into(),
            value: "gpu".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        });
        let p = pod("p", "500m", "64Mi");
        assert_eq!(
            check(&info(p.clone()), &tainted),
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
        assert!(check(&info(tolerant), &tainted).is_ok());
        // PreferNoSchedule only scores.
        tainted.taints[0].effect = "PreferNoSchedule".into();
        assert!(check(&info(p.clone()), &tainted).is_ok());
        assert_eq!(intolerable_preferences(&p, &tainted.taints), 1);
    }

    #[test]
    fn node_selector_and_required_affinity() {
        let mut n = node("n1", "2", "1Gi", Some("z1"));
        let labels = &mut n.metadata.as_mut().unwrap().labels;
        labels.insert("disk".into(), "ssd".into());
        labels.insert("cores".into(), "8".into());
        let n = node_info(n);
        let mut selected = pod("p", "100m", "64Mi");
        selected
            .spec
            .as_mut()
            .unwrap()
            .node_selector
            .insert("disk".into(), "hdd".into());
        assert_eq!(check(&info(selected), &n), Err(Unfit::Selector));

        let fits = |terms| check(&with_required(terms), &n).is_ok();
        assert!(fits(vec![term(vec![req("disk", "In", &["ssd", "nvme"])])]));
        assert!(!fits(vec![term(vec![req("disk", "In", &["hdd"])])]));
        assert!(fits(vec![term(vec![req("disk", "NotIn", &["hdd"])])]));
        assert!(fits(vec![term(vec![req("gpu", "NotIn", &["a100"])])]));
        assert!(fits(vec![term(vec![req("disk", "Exists", &[])])]));
        assert!(!fits(vec![term(vec![req("disk", "DoesNotExist", &[])])]));
        assert!(fits(vec![term(vec![req("gpu", "DoesNotExist", &[])])]));
        assert!(fits(vec![term(vec![req("cores", "Gt", &["4"])])]));
        assert!(!fits(vec![term(vec![req("cores", "Gt", &["8"])])]));
        assert!(fits(vec![term(vec![req("cores", "Lt", &["16"])])]));
        assert!(
            !fits(vec![term(vec![req("disk", "Lt", &["16"])])]),
            "not a number"
        );
        // Within a term: AND; across terms: OR.
        assert!(!fits(vec![term(vec![
            req("disk", "In", &["ssd"]),
            req("cores", "Gt", &["8"])
        ])]));
        assert!(fits(vec![
            term(vec![req("disk", "In", &["hdd"])]),
            term(vec![req("cores", "Gt", &["4"])]),
        ]));
        assert!(!fits(vec![NodeSelectorTerm::default()]), "empty term");
        let by_name = |op: &str, name: &str| NodeSelectorTerm {
            match_fields: vec![req("metadata.name", op, &[name])],
            ..Default::default()
        };
        assert!(fits(vec![by_name("In", "n1")]));
        assert!(!fits(vec![by_name("In", "n2")]));
        assert!(fits(vec![by_name("NotIn", "n2")]));
        assert_eq!(
            check(
                &with_required(vec![term(vec![req("disk", "In", &["hdd"])])]),
                &n,
            ),
            Err(Unfit::Selector)
        );
    }

    #[test]
    fn host_ports_conflict_by_port_protocol_and_address() {
        let port = |ip: &str, protocol: &str, port: i32| HostPort {
            ip: ip.into(),
            protocol: protocol.into(),
            port,
        };
        assert!(port("0.0.0.0", "TCP", 80).conflicts(&port("10.0.0.1", "TCP", 80)));
        assert!(port("10.0.0.1", "TCP", 80).conflicts(&port("0.0.0.0", "TCP", 80)));
        assert!(port("10.0.0.1", "TCP", 80).conflicts(&port("10.0.0.1", "TCP", 80)));
        assert!(!port("10.0.0.1", "TCP", 80).conflicts(&port("10.0.0.2", "TCP", 80)));
        assert!(!port("0.0.0.0", "TCP", 80).conflicts(&port("0.0.0.0", "UDP", 80)));
        assert!(!port("0.0.0.0", "TCP", 80).conflicts(&port("0.0.0.0", "TCP", 81)));

        let with_port = |name: &str, host_port: i32, ip: &str| {
            let mut p = pod(name, "100m", "64Mi");
            p.spec.as_mut().unwrap().containers[0]
                .ports
                .push(ContainerPort {
                    container_port: 8080,
                    host_port,
                    host_ip: ip.into(),
                    ..Default::default()
                });
            p
        };
        let mut cache = Cache::default();
        cache.put_node(&node("n", "4", "4Gi", None));
        let mut first = with_port("a", 80, "");
        first.spec.as_mut().unwrap().node_name = "n".into();
        cache.put_pod("default/a", first);
        let n = cache.node("n").unwrap();
        assert_eq!(n.host_ports, vec![port("0.0.0.0", "TCP", 80)]);
        let clash = PodInfo::new("default/b", with_port("b", 80, "127.0.0.1"));
        assert_eq!(check(&clash, n), Err(Unfit::Ports));
        let other = PodInfo::new("default/c", with_port("c", 81, ""));
        assert_eq!(check(&other, n), Ok(()));
        // Container ports without a host port take nothing on the node.
        let plain = PodInfo::new("default/d", with_port("d", 0, ""));
        assert!(plain.host_ports.is_empty());
        assert_eq!(
            summary(1, &[Unfit::Ports]),
            "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
        );
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
