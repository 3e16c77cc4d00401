//! The scheduler's view of the cluster, precomputed once per object version so that placing a
//! pod costs arithmetic, not parsing.
//!
//! Per pod ([`PodInfo`]): its requests (cpu, memory, one pod slot), runtime, priority, owner (for
//! spreading) and host ports. Per node ([`NodeInfo`]): parsed allocatable, labels, zone, taints,
//! readiness, runtimes, and what the pods accounted to it use — request sums, host ports, pod
//! keys — plus the reservations of pods nominated to it by preemption. The cache also counts
//! each owner's replicas per node and per zone ([`Cache::spread`]).
//!
//! Placing a pod reads hundreds of nodes, so what the filters and scores read per node is kept
//! in the node's slot itself, not behind pointers to chase: runtimes known by name as bits, the
//! zone as a small number, and each owner's replicas per node in one table per owner (keyed by
//! the slot's serial number) rather than a table in every node. Chasing those pointers — cache
//! misses, 5 or 6 per node — was most of the scheduler's time at 5,000 nodes.
//!
//! It is updated incrementally from watch events and from the scheduler's own decisions: an
//! **assumed** pod (a bind in flight) counts on its node at once so the next pod sees it, as
//! kube-scheduler's assume cache does; a bind that loses its compare-and-swap is forgotten.
//!
//! Must not: do I/O, decide placements, or parse a quantity outside of a node or pod update.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use skiff_api::ResourceExt;
use skiff_api::quantity::Quantity;
use skiff_api::v1::{Node, Pod, Taint};

/// The node label zone spreading reads.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// What a pod asks for, or what a node has or has given out.
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

    pub fn sub(&mut self, other: &Resources) {
        self.cpu_millis -= other.cpu_millis;
        self.memory -= other.memory;
        self.pods -= other.pods;
    }
}

fn quantity(map: &BTreeMap<String, String>, key: &str) -> Option<Quantity> {
    map.get(key).and_then(|q| Quantity::parse(q).ok())
}

/// A host port a container asks for: `0.0.0.0` (all addresses) when the pod names no host IP.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

pub const ANY_IP: &str = "0.0.0.0";

/// The runtime handlers known by name, as bits: a node's runtimes are checked with a mask.
const KNOWN_RUNTIMES: [&str; 2] = [
    skiff_api::workload::WASM_RUNTIME,
    skiff_api::workload::OCI_RUNTIME,
];

fn runtime_bit(name: &str) -> Option<u8> {
    KNOWN_RUNTIMES
        .iter()
        .position(|r| *r == name)
        .map(|i| 1 << i)
}

/// The mask of `names`, if every one is known.
fn runtime_mask<'a>(names: impl IntoIterator<Item = &'a String>) -> Option<u8> {
    names
        .into_iter()
        .try_fold(0, |mask, n| runtime_bit(n).map(|b| mask | b))
}

/// Hashes the cache's own serial numbers (FxHash's step): they are counted here, not chosen by
/// users, so there are no crafted collisions to fear, and SipHash would cost more than the
/// lookup.
#[derive(Default)]
pub struct SerialHasher(u64);

impl Hasher for SerialHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Replicas of one owner per node, by the node slot's serial number.
pub type PerNode = HashMap<u64, u32, BuildHasherDefault<SerialHasher>>;

impl HostPort {
    /// Same port and protocol, and the same address or one of them is all addresses.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == ANY_IP || other.ip == ANY_IP)
    }
}

/// What the scheduler needs of a pod, computed once per version.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub key: String,
    pub pod: Pod,
    /// The store revision of this version (its resourceVersion).
    pub revision: u64,
    pub requests: Resources,
    /// Runtime handlers the node must offer.
    pub runtimes: Vec<String>,
    /// Their bits, if every one is known by name.
    pub runtime_mask: Option<u8>,
    pub priority: i32,
    /// The replica group spreading counts: the controller's uid, else the namespace and labels.
    pub owner: Option<String>,
    pub host_ports: Vec<HostPort>,
    /// Has pod affinity or anti-affinity terms, which other pods' placements must respect.
    pub has_pod_terms: bool,
}

impl PodInfo {
    pub fn new(key: &str, pod: Pod) -> Self {
        let revision = pod.meta().resource_version.parse().unwrap_or(0);
        let runtimes = pod_runtimes(&pod);
        Self {
            key: key.to_string(),
            revision,
            requests: pod_requests(&pod),
            runtime_mask: runtime_mask(&runtimes),
            runtimes,
            priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
            owner: owner_key(&pod),
            host_ports: host_ports(&pod),
            has_pod_terms: has_pod_terms(&pod),
            pod,
        }
    }

    /// The node this version is bound to, if it holds resources there (bound and not finished).
    pub fn holding_node(&self) -> Option<&str> {
        let node = self.node_name();
        let phase = self.pod.status.as_ref().map(|s| s.phase.as_str());
        (!node.is_empty() && !matches!(phase, Some("Succeeded" | "Failed"))).then_some(node)
    }

    pub fn node_name(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .map(|s| s.node_name.as_str())
            .unwrap_or("")
    }

    /// `status.nominatedNodeName` of a pod still waiting for its node.
    pub fn nominated_node(&self) -> Option<&str> {
        let nominated = self.pod.status.as_ref()?.nominated_node_name.as_str();
        (!nominated.is_empty() && self.node_name().is_empty()).then_some(nominated)
    }

    pub fn terminating(&self) -> bool {
        self.pod.meta().deletion_timestamp.is_some()
    }

    /// Does this scheduler own the pod: unbound, not being deleted, and for skiff's scheduler?
    pub fn wants_scheduling(&self) -> bool {
        let Some(spec) = &self.pod.spec else {
            return false;
        };
        spec.node_name.is_empty()
            && !self.terminating()
            && matches!(
                spec.scheduler_name.as_str(),
                "" | "default-scheduler" | "skiff-scheduler"
            )
    }
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

/// The runtime handlers a pod needs: `wasm` and/or `oci`, per its containers' kinds (a mixed
/// pod needs both); another `runtimeClassName` names its handler as it is.
pub fn pod_runtimes(pod: &Pod) -> Vec<String> {
    match pod.spec.as_ref().map(|s| s.runtime_class_name.as_str()) {
        None | Some("" | skiff_api::workload::WASM_RUNTIME) => {
            skiff_api::workload::pod_runtimes(pod)
                .into_iter()
                .map(str::to_string)
                .collect()
        }
        Some(other) => vec![other.to_string()],
    }
}

fn has_pod_terms(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
}

fn owner_key(pod: &Pod) -> Option<String> {
    let meta = pod.meta();
    if let Some(owner) = meta
        .owner_references
        .iter()
        .find(|o| o.controller == Some(true))
    {
        return Some(format!("{}/uid:{}", meta.namespace, owner.uid));
    }
    if meta.labels.is_empty() {
        return None;
    }
    let labels: Vec<String> = meta
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Some(format!("{}/labels:{}", meta.namespace, labels.join(",")))
}

fn host_ports(pod: &Pod) -> Vec<HostPort> {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| &c.ports)
        .filter(|p| p.host_port > 0)
        .map(|p| HostPort {
            ip: if p.host_ip.is_empty() {
                ANY_IP.to_string()
            } else {
                p.host_ip.clone()
            },
            protocol: if p.protocol.is_empty() {
                "TCP".to_string()
            } else {
                p.protocol.clone()
            },
            port: p.host_port,
        })
        .collect()
}

/// What the scheduler knows of a node: its own fields, parsed, and what is placed on it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: String,
    /// The slot's number, never reused: the key of the per-owner tables.
    pub serial: u64,
    /// The name's place among the names of the slots when the cache last ranked them
    /// ([`Cache::rank_names`]), or [`UNRANKED`]: ties between nodes are broken by name, and
    /// comparing ranks reads no string.
    pub name_rank: u32,
    /// False for a placeholder that only holds the accounting of pods bound to a node the
    /// cache has not seen (yet, or any more).
    pub known: bool,
    pub labels: BTreeMap<String, String>,
    pub zone: Option<String>,
    /// The zone's number in the cache ([`Cache::zone_name`]).
    pub zone_id: Option<usize>,
    pub unschedulable: bool,
    pub taints: Vec<Taint>,
    pub runtimes: Vec<String>,
    /// The known ones among them, as bits.
    pub runtime_mask: u8,
    /// `Ready=True` (kept honest by the node lifecycle controller, which judges heartbeats).
    pub ready: bool,
    pub allocatable: Resources,
    /// What the pods accounted here request.
    pub requested: Resources,
    pub host_ports: Vec<HostPort>,
    /// (Replicas per owner are the cache's: [`Cache::spread`].)
    pub pods: HashSet<String>,
    /// Pods nominated here by preemption: key, priority, requests.
    pub nominated: Vec<(String, i32, Resources)>,
}

/// The rank of a slot created since the names were last ranked.
pub const UNRANKED: u32 = u32::MAX;

impl NodeInfo {
    fn from_node(node: &Node) -> Self {
        let mut info = NodeInfo {
            name: node.name().to_string(),
            name_rank: UNRANKED,
            ..Default::default()
        };
        info.set_node(node);
        info
    }

    /// Replaces the node's own fields, keeping the accounting.
    fn set_node(&mut self, node: &Node) {
        self.known = true;
        self.labels = node.meta().labels.clone();
        self.zone = self.labels.get(ZONE_LABEL).cloned();
        self.unschedulable = node.spec.as_ref().is_some_and(|s| s.unschedulable);
        self.taints = node
            .spec
            .as_ref()
            .map(|s| s.taints.clone())
            .unwrap_or_default();
        let status = node.status.as_ref();
        self.runtimes = status
            .iter()
            .flat_map(|s| &s.runtime_handlers)
            .map(|h| h.name.clone())
            .collect();
        self.runtime_mask = self
            .runtimes
            .iter()
            .filter_map(|r| runtime_bit(r))
            .fold(0, |m, b| m | b);
        let ready = status
            .iter()
            .flat_map(|s| &s.conditions)
            .find(|c| c.r#type == "Ready");
        self.ready = ready.is_some_and(|c| c.status == "True");
        self.allocatable = status.map_or_else(Resources::default, |s| Resources {
            cpu_millis: quantity(&s.allocatable, "cpu").map_or(0, |q| q.millis()),
            memory: quantity(&s.allocatable, "memory").map_or(0, |q| q.value()),
            pods: quantity(&s.allocatable, "pods").map_or(0, |q| q.value()),
        });
    }

    /// The fields filters read, without the heartbeat: has a node update changed what fits?
    fn shape(&self) -> impl PartialEq + '_ {
        (
            self.known,
            &self.labels,
            self.unschedulable,
            &self.taints,
            &self.runtimes,
            self.ready,
            self.allocatable,
        )
    }

    /// The order of the two nodes' names, from their ranks when both have one (the relative
    /// order of ranked names holds until the next ranking, since names do not change).
    pub fn name_order(a: &NodeInfo, b: &NodeInfo) -> std::cmp::Ordering {
        if a.name_rank != UNRANKED && b.name_rank != UNRANKED {
            a.name_rank.cmp(&b.name_rank)
        } else {
            a.name.cmp(&b.name)
        }
    }

    /// Reservations for nominated pods that `pod` must leave room for: those of at least its
    /// priority, other than itself.
    pub fn reserved_for(&self, pod: &PodInfo) -> Resources {
        let mut total = Resources::default();
        for (key, priority, requests) in &self.nominated {
            if *priority >= pod.priority && key != &pod.key {
                total.add(requests);
            }
        }
        total
    }

    fn account(&mut self, pod: &PodInfo) {
        self.requested.add(&pod.requests);
        self.host_ports.extend(pod.host_ports.iter().cloned());
        self.pods.insert(pod.key.clone());
    }

    fn unaccount(&mut self, pod: &PodInfo) {
        self.requested.sub(&pod.requests);
        for port in &pod.host_ports {
            if let Some(i) = self.host_ports.iter().position(|p| p == port) {
                self.host_ports.swap_remove(i);
            }
        }
        self.pods.remove(&pod.key);
    }

    fn is_empty(&self) -> bool {
        self.pods.is_empty() && self.nominated.is_empty()
    }
}

struct PodEntry {
    info: Arc<PodInfo>,
    /// The node whose accounting holds this pod, and the zone it was counted in there.
    accounted: Option<(String, Option<String>)>,
    /// The node a bind in flight put it on.
    assumed: bool,
    /// The node whose reservations hold this pod.
    nominated: Option<String>,
}

/// Nodes and pods as the scheduler sees them.
#[derive(Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    known: usize,
    pods: HashMap<String, PodEntry>,
    /// Owner → zone → replicas.
    zones: HashMap<String, HashMap<String, u32>>,
    /// Owner → node serial → replicas.
    per_node: HashMap<String, PerNode>,
    /// Every zone seen, by number.
    zone_names: Vec<String>,
    zone_ids: HashMap<String, usize>,
    next_serial: u64,
    /// Some slot has no name rank yet.
    unranked: bool,
    /// Placed pods with pod affinity or anti-affinity terms (their terms bind later pods).
    with_terms: HashSet<String>,
    /// Namespace labels, for the namespaceSelector of pod affinity terms.
    namespaces: HashMap<String, BTreeMap<String, String>>,
}

/// An owner's replicas where a pod might go, looked up once per pod: on a node by its serial, in
/// a zone by its number.
pub struct Spread<'a> {
    owned: bool,
    per_node: Option<&'a PerNode>,
    per_zone: Vec<u32>,
}

impl Spread<'_> {
    /// Replicas of the pod's owner on `node` and in its zone (None: the node has no zone).
    pub fn counts(&self, node: &NodeInfo) -> (u32, Option<u32>) {
        if !self.owned {
            return (0, node.zone_id.map(|_| 0));
        }
        let on_node = self
            .per_node
            .and_then(|m| m.get(&node.serial))
            .copied()
            .unwrap_or(0);
        let in_zone = node
            .zone_id
            .map(|z| self.per_zone.get(z).copied().unwrap_or(0));
        (on_node, in_zone)
    }
}

impl Cache {
    /// Every node slot, placeholders included (check [`NodeInfo::known`]).
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index
            .get(name)
            .map(|&i| &self.nodes[i])
            .filter(|n| n.known)
    }

    /// Registered nodes.
    pub fn node_count(&self) -> usize {
        self.known
    }

    pub fn pod(&self, key: &str) -> Option<&Arc<PodInfo>> {
        self.pods.get(key).map(|e| &e.info)
    }

    pub fn pod_keys(&self) -> impl Iterator<Item = &String> {
        self.pods.keys()
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|e| e.assumed)
    }

    /// Replicas of `owner` in `zone`.
    pub fn zone_count(&self, owner: &str, zone: &str) -> u32 {
        self.zones
            .get(owner)
            .and_then(|z| z.get(zone))
            .copied()
            .unwrap_or(0)
    }

    /// Ranks every slot's name (see [`NodeInfo::name_rank`]) if some slot has none; the
    /// scheduler calls this before placing a pod.
    pub fn rank_names(&mut self) {
        if !self.unranked {
            return;
        }
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        order.sort_unstable_by(|&a, &b| self.nodes[a].name.cmp(&self.nodes[b].name));
        for (rank, i) in order.into_iter().enumerate() {
            self.nodes[i].name_rank = u32::try_from(rank).unwrap_or(UNRANKED);
        }
        self.unranked = false;
    }

    /// The name of zone number `id`.
    pub fn zone_name(&self, id: usize) -> Option<&str> {
        self.zone_names.get(id).map(String::as_str)
    }

    /// The pod's owner's replicas, ready to be read node by node.
    pub fn spread(&self, pod: &PodInfo) -> Spread<'_> {
        let Some(owner) = &pod.owner else {
            return Spread {
                owned: false,
                per_node: None,
                per_zone: Vec::new(),
            };
        };
        let zones = self.zones.get(owner);
        Spread {
            owned: true,
            per_node: self.per_node.get(owner),
            per_zone: self
                .zone_names
                .iter()
                .map(|z| zones.and_then(|m| m.get(z)).copied().unwrap_or(0))
                .collect(),
        }
    }

    fn zone_id(&mut self, zone: &str) -> usize {
        if let Some(&id) = self.zone_ids.get(zone) {
            return id;
        }
        self.zone_names.push(zone.to_string());
        self.zone_ids
            .insert(zone.to_string(), self.zone_names.len() - 1);
        self.zone_names.len() - 1
    }

    fn new_serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    fn slot(&mut self, name: &str) -> &mut NodeInfo {
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                let serial = self.new_serial();
                self.nodes.push(NodeInfo {
                    name: name.to_string(),
                    serial,
                    name_rank: UNRANKED,
                    ..Default::default()
                });
                self.unranked = true;
                self.index.insert(name.to_string(), self.nodes.len() - 1);
                self.nodes.len() - 1
            }
        };
        &mut self.nodes[i]
    }

    fn drop_slot_if_unused(&mut self, name: &str) {
        let Some(&i) = self.index.get(name) else {
            return;
        };
        if self.nodes[i].known || !self.nodes[i].is_empty() {
            return;
        }
        self.index.remove(name);
        self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
    }

    /// Adds or updates a node; true if it is new or what fits on it may have changed.
    pub fn put_node(&mut self, node: &Node) -> bool {
        let name = node.name();
        let zone_id = node.meta().labels.get(ZONE_LABEL).map(|z| self.zone_id(z));
        match self.index.get(name) {
            Some(&i) => {
                let was_known = self.nodes[i].known;
                let before = NodeInfo::from_node(node);
                let changed = before.shape() != self.nodes[i].shape();
                self.nodes[i].set_node(node);
                self.nodes[i].zone_id = zone_id;
                if !was_known {
                    self.known += 1;
                }
                changed
            }
            None => {
                let mut info = NodeInfo::from_node(node);
                info.serial = self.new_serial();
                info.zone_id = zone_id;
                self.nodes.push(info);
                self.unranked = true;
                self.index.insert(name.to_string(), self.nodes.len() - 1);
                self.known += 1;
                true
            }
        }
    }

    pub fn delete_node(&mut self, name: &str) {
        let Some(&i) = self.index.get(name) else {
            return;
        };
        if self.nodes[i].known {
            self.known -= 1;
        }
        let slot = &mut self.nodes[i];
        *slot = NodeInfo {
            name: slot.name.clone(),
            serial: slot.serial,
            name_rank: slot.name_rank,
            zone: slot.zone.clone(),
            zone_id: slot.zone_id,
            requested: slot.requested,
            host_ports: std::mem::take(&mut slot.host_ports),
            pods: std::mem::take(&mut slot.pods),
            nominated: std::mem::take(&mut slot.nominated),
            ..Default::default()
        };
        self.drop_slot_if_unused(name);
    }

    pub fn put_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) {
        self.namespaces.insert(name.to_string(), labels);
    }

    pub fn delete_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    /// Every namespace with its labels.
    pub fn namespaces(&self) -> impl Iterator<Item = (&String, &BTreeMap<String, String>)> {
        self.namespaces.iter()
    }

    /// Every pod counted on a node (bound, or assumed by a bind in flight), with that node.
    pub fn placed(&self) -> impl Iterator<Item = (&PodInfo, &NodeInfo)> {
        self.pods.values().filter_map(|e| {
            let (node, _) = e.accounted.as_ref()?;
            let &i = self.index.get(node)?;
            Some((e.info.as_ref(), &self.nodes[i]))
        })
    }

    /// The placed pods that have pod affinity or anti-affinity terms, with their nodes.
    pub fn placed_with_terms(&self) -> impl Iterator<Item = (&PodInfo, &NodeInfo)> {
        self.with_terms.iter().filter_map(|key| {
            let e = self.pods.get(key)?;
            let (node, _) = e.accounted.as_ref()?;
            let &i = self.index.get(node)?;
            Some((e.info.as_ref(), &self.nodes[i]))
        })
    }

    /// Counts the pod on `node`; returns where it was counted.
    fn account(&mut self, info: &PodInfo, node: &str) -> (String, Option<String>) {
        if info.has_pod_terms {
            self.with_terms.insert(info.key.clone());
        }
        let slot = self.slot(node);
        slot.account(info);
        let zone = slot.zone.clone();
        let serial = slot.serial;
        if let Some(owner) = &info.owner {
            *self
                .per_node
                .entry(owner.clone())
                .or_default()
                .entry(serial)
                .or_default() += 1;
        }
        if let (Some(owner), Some(zone)) = (&info.owner, &zone) {
            *self
                .zones
                .entry(owner.clone())
                .or_default()
                .entry(zone.clone())
                .or_default() += 1;
        }
        (node.to_string(), zone)
    }

    fn unaccount(&mut self, info: &PodInfo, (node, zone): &(String, Option<String>)) {
        self.with_terms.remove(&info.key);
        if let Some(&i) = self.index.get(node) {
            self.nodes[i].unaccount(info);
            let serial = self.nodes[i].serial;
            if let Some(owner) = &info.owner
                && let Some(nodes) = self.per_node.get_mut(owner)
                && let Some(n) = nodes.get_mut(&serial)
            {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    nodes.remove(&serial);
                    if nodes.is_empty() {
                        self.per_node.remove(owner);
                    }
                }
            }
        }
        if let (Some(owner), Some(zone)) = (&info.owner, zone)
            && let Some(zones) = self.zones.get_mut(owner)
            && let Some(n) = zones.get_mut(zone)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                zones.remove(zone);
                if zones.is_empty() {
                    self.zones.remove(owner);
                }
            }
        }
        self.drop_slot_if_unused(node);
    }

    fn set_nominated(&mut self, info: &PodInfo, from: Option<String>, to: Option<&str>) {
        if from.as_deref() == to && from.is_none() {
            return;
        }
        if let Some(old) = &from
            && let Some(&i) = self.index.get(old.as_str())
        {
            self.nodes[i].nominated.retain(|(k, _, _)| k != &info.key);
            self.drop_slot_if_unused(old);
        }
        if let Some(node) = to {
            let priority = info.priority;
            let requests = info.requests;
            self.slot(node)
                .nominated
                .push((info.key.clone(), priority, requests));
        }
    }

    /// Adds or updates a pod from the store. A version older than the cached one is ignored
    /// (a bind's answer can arrive after the watch moved on). While a bind is in flight, a
    /// version that is still unbound keeps the assumed placement; a bound one replaces it.
    pub fn put_pod(&mut self, key: &str, pod: Pod) -> Arc<PodInfo> {
        let info = Arc::new(PodInfo::new(key, pod));
        let (old_accounted, assumed, old_nominated) = match self.pods.get(key) {
            Some(e) if e.info.revision > info.revision => return e.info.clone(),
            Some(e) => (e.accounted.clone(), e.assumed, e.nominated.clone()),
            None => (None, false, None),
        };
        let keep_assumed = assumed && info.node_name().is_empty() && !info.terminating();
        let target = if keep_assumed {
            old_accounted.as_ref().map(|(n, _)| n.clone())
        } else {
            info.holding_node().map(str::to_string)
        };
        if let Some(old) = &old_accounted
            && let Some(e) = self.pods.get(key)
        {
            let old_info = e.info.clone();
            self.unaccount(&old_info, old);
        }
        let accounted = target.map(|node| self.account(&info, &node));
        let nominated = info.nominated_node().map(str::to_string);
        self.set_nominated(&info, old_nominated, nominated.as_deref());
        self.pods.insert(
            key.to_string(),
            PodEntry {
                info: info.clone(),
                accounted,
                assumed: keep_assumed,
                nominated,
            },
        );
        info
    }

    /// Like [`Cache::put_pod`], but only for a pod still cached: the answer of a bind for a pod
    /// whose deletion the watch already delivered must not bring it back.
    pub fn confirm(&mut self, key: &str, pod: Pod) {
        if self.pods.contains_key(key) {
            self.put_pod(key, pod);
        }
    }

    pub fn delete_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let entry = self.pods.remove(key)?;
        if let Some(node) = &entry.accounted {
            self.unaccount(&entry.info, node);
        }
        self.set_nominated(&entry.info, entry.nominated, None);
        Some(entry.info)
    }

    /// Counts a pod on `node` before its bind is acknowledged.
    pub fn assume(&mut self, key: &str, node: &str) {
        let Some(entry) = self.pods.get(key) else {
            return;
        };
        let info = entry.info.clone();
        if let Some(old) = entry.accounted.clone() {
            self.unaccount(&info, &old);
        }
        let accounted = self.account(&info, node);
        if let Some(e) = self.pods.get_mut(key) {
            e.accounted = Some(accounted);
            e.assumed = true;
        }
    }

    /// Undoes [`Cache::assume`] after a lost bind: the pod counts where its cached version says.
    pub fn forget(&mut self, key: &str) {
        let Some(entry) = self.pods.get(key).filter(|e| e.assumed) else {
            return;
        };
        let info = entry.info.clone();
        if let Some(old) = entry.accounted.clone() {
            self.unaccount(&info, &old);
        }
        let accounted = info
            .holding_node()
            .map(str::to_string)
            .map(|node| self.account(&info, &node));
        if let Some(e) = self.pods.get_mut(key) {
            e.accounted = accounted;
            e.assumed = false;
        }
    }

    /// The pods accounted to a node.
    pub fn pods_on<'a>(&'a self, node: &NodeInfo) -> impl Iterator<Item = &'a Arc<PodInfo>> + 'a {
        let keys: Vec<&String> = self
            .index
            .get(&node.name)
            .map(|&i| self.nodes[i].pods.iter().collect())
            .unwrap_or_default();
        keys.into_iter().filter_map(|k| self.pod(k))
    }

    /// Keys of the pods this scheduler should place.
    pub fn pending(&self) -> impl Iterator<Item = &Arc<PodInfo>> {
        self.pods
            .values()
            .filter(|e| !e.assumed && e.info.wants_scheduling())
            .map(|e| &e.info)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use skiff_api::v1::*;

    pub fn node(name: &str, cpu: &str, memory: &str, zone: Option<&str>) -> Node {
        let mut status = NodeStatus {
            conditions: vec![Condition {
                r#type: "Ready".into(),
                status: "True".into(),
                last_heartbeat_time: Some(skiff_api::time::now()),
                ..Default::default()
            }],
            runtime_handlers: vec![NodeRuntimeHandler {
                name: "wasm".into(),
            }],
            ..Default::default()
        };
        status.allocatable.insert("cpu".into(), cpu.into());
        status.allocatable.insert("memory".into(), memory.into());
        status.allocatable.insert("pods".into(), "110".into());
        let mut labels = BTreeMap::new();
        if let Some(z) = zone {
            labels.insert(ZONE_LABEL.to_string(), z.to_string());
        }
        Node {
            metadata: Some(ObjectMeta {
                name: name.into(),
                labels,
                ..Default::default()
            }),
            spec: Some(NodeSpec::default()),
            status: Some(status),
        }
    }

    pub fn pod(name: &str, cpu: &str, memory: &str) -> Pod {
        let mut res = ResourceRequirements::default();
        res.requests.insert("cpu".into(), cpu.into());
        res.requests.insert("memory".into(), memory.into());
        Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                labels: [("app".to_string(), "web".to_string())].into(),
                resource_version: "1".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                runtime_class_name: "wasm".into(),
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(res),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: "Pending".into(),
                ..Default::default()
            }),
        }
    }

    pub fn bound(mut p: Pod, node: &str, revision: u64) -> Pod {
        p.spec.as_mut().unwrap().node_name = node.into();
        p.metadata.as_mut().unwrap().resource_version = revision.to_string();
        p
    }

    #[test]
    fn requests_are_parsed_once_into_pod_info() {
        let info = PodInfo::new("default/a", pod("a", "250m", "64Mi"));
        assert_eq!(
            info.requests,
            Resources {
                cpu_millis: 250,
                memory: 64 << 20,
                pods: 1
            }
        );
        assert_eq!(info.runtimes, ["wasm"]);
        assert_eq!(info.owner.as_deref(), Some("default/labels:app=web"));
        let mut owned = pod("b", "1", "1Gi");
        owned
            .metadata
            .as_mut()
            .unwrap()
            .owner_references
            .push(OwnerReference {
                uid: "rs-1".into(),
                controller: Some(true),
                ..Default::default()
            });
        assert_eq!(
            PodInfo::new("k", owned).owner.as_deref(),
            Some("default/uid:rs-1")
        );
    }

    #[test]
    fn accounting_follows_binds_deletes_and_zones() {
        let mut cache = Cache::default();
        cache.put_node(&node("n1", "4", "4Gi", Some("z1")));
        cache.put_pod("default/a", bound(pod("a", "1", "1Gi"), "n1", 2));
        let n1 = cache.node("n1").unwrap();
        assert_eq!(n1.requested.cpu_millis, 1000);
        let another = PodInfo::new("default/b", pod("b", "1", "1Gi"));
        assert_eq!(cache.spread(&another).counts(n1), (1, Some(1)));
        assert_eq!(cache.zone_count("default/labels:app=web", "z1"), 1);
        assert_eq!(cache.zone_name(n1.zone_id.unwrap()), Some("z1"));
        // A finished pod frees its node.
        let mut done = bound(pod("a", "1", "1Gi"), "n1", 3);
        done.status.as_mut().unwrap().phase = "Succeeded".into();
        cache.put_pod("default/a", done);
        assert_eq!(cache.node("n1").unwrap().requested, Resources::default());
        assert_eq!(cache.zone_count("default/labels:app=web", "z1"), 0);
        assert_eq!(
            cache.spread(&another).counts(cache.node("n1").unwrap()),
            (0, Some(0))
        );
        // An older version arriving late changes nothing.
        cache.put_pod("default/a", bound(pod("a", "1", "1Gi"), "n1", 2));
        assert_eq!(cache.node("n1").unwrap().requested, Resources::default());
        assert!(cache.delete_pod("default/a").is_some());
        assert_eq!(cache.pod_count(), 0);
    }

    #[test]
    fn pods_on_an_unknown_node_wait_in_a_placeholder() {
        let mut cache = Cache::default();
        cache.put_pod("default/a", bound(pod("a", "1", "1Gi"), "later", 2));
        assert_eq!(cache.node_count(), 0);
        assert!(cache.node("later").is_none());
        cache.put_node(&node("later", "4", "4Gi", None));
        assert_eq!(cache.node("later").unwrap().requested.cpu_millis, 1000);
        cache.delete_node("later");
        assert_eq!(cache.node_count(), 0);
        cache.delete_pod("default/a");
        assert!(
            cache.nodes().is_empty(),
            "the placeholder goes with its last pod"
        );
    }

    #[test]
    fn assume_counts_at_once_and_forget_undoes_it() {
        let mut cache = Cache::default();
        cache.put_node(&node("n1", "4", "4Gi", None));
        cache.put_pod("default/a", pod("a", "1", "1Gi"));
        cache.assume("default/a", "n1");
        assert!(cache.is_assumed("default/a"));
        assert_eq!(cache.pending().count(), 0);
        assert_eq!(cache.node("n1").unwrap().requested.cpu_millis, 1000);
        // An unbound update while the bind is in flight keeps the assumption.
        let mut touched = pod("a", "1", "1Gi");
        touched.metadata.as_mut().unwrap().resource_version = "5".into();
        cache.put_pod("default/a", touched);
        assert_eq!(cache.node("n1").unwrap().requested.cpu_millis, 1000);
        cache.forget("default/a");
        assert!(!cache.is_assumed("default/a"));
        assert_eq!(cache.node("n1").unwrap().requested, Resources::default());
        assert_eq!(cache.pending().count(), 1);
        // The watch's bound version settles it.
        cache.assume("default/a", "n1");
        cache.put_pod("default/a", bound(pod("a", "1", "1Gi"), "n1", 6));
        assert!(!cache.is_assumed("default/a"));
        assert_eq!(cache.node("n1").unwrap().requested.cpu_millis, 1000);
        cache.forget("default/a");
        assert_eq!(
            cache.node("n1").unwrap().requested.cpu_millis,
            1000,
            "forgetting a confirmed pod changes nothing"
        );
        // A bind answer for a pod deleted meanwhile does not resurrect it.
        cache.delete_pod("default/a");
        cache.confirm("default/a", bound(pod("a", "1", "1Gi"), "n1", 6));
        assert_eq!(cache.pod_count(), 0);
    }

    #[test]
    fn nominated_pods_reserve_room_for_equal_or_higher_priority() {
        let mut cache = Cache::default();
        cache.put_node(&node("n1", "4", "4Gi", None));
        let mut high = pod("high", "2", "1Gi");
        high.spec.as_mut().unwrap().priority = Some(100);
        high.status.as_mut().unwrap().nominated_node_name = "n1".into();
        cache.put_pod("default/high", high);
        let low = PodInfo::new("default/low", pod("low", "1", "1Gi"));
        let n1 = cache.node("n1").unwrap();
        assert_eq!(n1.reserved_for(&low).cpu_millis, 2000);
        let me = cache.pod("default/high").unwrap().clone();
        assert_eq!(n1.reserved_for(&me), Resources::default());
        cache.delete_pod("default/high");
        assert!(cache.node("n1").unwrap().nominated.is_empty());
    }
}
