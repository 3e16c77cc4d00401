//! The node lifecycle controller: notices nodes that stopped heartbeating and moves their pods.
//!
//! - A node heartbeats by renewing its Lease (`kube-node-lease/<node>`) and, when its status
//!   changes, by posting a Ready condition with a new heartbeat time. Staleness is judged by this
//!   controller's clock, never the agent's: it keeps, per node, when it last *saw* either change
//!   ([`Probes`], Kubernetes' probe timestamps), so a node whose clock is off is judged fairly. A
//!   restarted controller starts every node's clock afresh.
//! - A Ready node not seen heartbeating for `node_grace_period` becomes `Ready=Unknown`
//!   (`NodeStatusUnknown`) and gets the `node.kubernetes.io/unreachable:NoExecute` taint; a node
//!   whose agent reports `Ready=False` gets `node.kubernetes.io/not-ready:NoExecute`. The taints go
//!   when the node is Ready again. The scheduler places nothing on either.
//! - After `pod_eviction_timeout` not Ready (or a pod's own `tolerationSeconds` for the taint;
//!   never for a pod that tolerates it forever), the node's pods are evicted: deleted at once from
//!   an unreachable node (nobody there can confirm a graceful stop; the agent kills what it no
//!   longer owns when it comes back), gracefully from a reachable one. Their controllers replace
//!   them elsewhere.
//! - Pods bound to a node that no longer exists are deleted.
//! - NoExecute taints an admin puts on a Ready node (Kubernetes' taint manager): a pod that does
//!   not tolerate one is evicted (gracefully) at once; one that tolerates it for
//!   `tolerationSeconds` is evicted that long after the taint appeared (its `timeAdded`, else when
//!   this controller first saw it); one that tolerates it forever stays.
//!
//! Must not: change a node that heartbeats, or delete pods of a Ready node.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use skiff_api::ResourceExt;
use skiff_api::v1::{Condition, DeleteRequest, Lease, Node, Pod, Taint};
use skiff_api::validation::NODE_LEASE_NAMESPACE;
use tokio::time::Instant;

use super::informer::{self, Cache, Reconciler};
use super::podutil;
use super::recorder::Recorder;
use crate::auth::Identity;
use crate::error::ApiError;
use crate::registry::{Registry, decode, parse_key, prefix};
use crate::store::{EventKind, KeyValue, Store};

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// The controller's two durations (`skiff server --node-grace-period --pod-eviction-timeout`).
#[derive(Debug, Clone, Copy)]
pub struct LifecycleOptions {
    pub node_grace_period: Duration,
    pub pod_eviction_timeout: Duration,
}

impl Default for LifecycleOptions {
    fn default() -> Self {
        Self {
            node_grace_period: Duration::from_secs(40),
            pod_eviction_timeout: Duration::from_secs(300),
        }
    }
}

/// Runs until aborted.
pub async fn run(store: Arc<dyn Store>, options: LifecycleOptions) {
    let s = store.clone();
    informer::run_forever(
        "node-lifecycle",
        store,
        Duration::from_secs(10),
        move || Controller::new(s.clone(), options),
    )
    .await;
}

/// What a node last showed of its heartbeats, and when this controller saw it change.
#[derive(Debug, Clone, PartialEq)]
struct Probe {
    /// The Lease's `renewTime` (the agent's clock: compared for change only).
    renewed: Option<skiff_api::Timestamp>,
    /// The Ready condition's `lastHeartbeatTime` (likewise).
    heartbeat: Option<skiff_api::Timestamp>,
    /// When either last changed, by this controller's clock.
    seen: Instant,
}

/// Per node, when it was last seen heartbeating (Kubernetes' `nodeHealthData.probeTimestamp`).
#[derive(Debug, Default)]
pub(crate) struct Probes {
    nodes: HashMap<String, Probe>,
}

impl Probes {
    fn entry(&mut self, node: &str, now: Instant) -> &mut Probe {
        self.nodes.entry(node.to_string()).or_insert(Probe {
            renewed: None,
            heartbeat: None,
            seen: now,
        })
    }

    /// The node's Lease now shows `renewed`.
    pub(crate) fn lease(
        &mut self,
        node: &str,
        renewed: Option<skiff_api::Timestamp>,
        now: Instant,
    ) {
        let p = self.entry(node, now);
        if p.renewed != renewed {
            p.renewed = renewed;
            p.seen = now;
        }
    }

    /// The node's Ready condition now shows `heartbeat`.
    pub(crate) fn status(
        &mut self,
        node: &str,
        heartbeat: Option<skiff_api::Timestamp>,
        now: Instant,
    ) {
        let p = self.entry(node, now);
        if p.heartbeat != heartbeat {
            p.heartbeat = heartbeat;
            p.seen = now;
        }
    }

    pub(crate) fn forget(&mut self, node: &str) {
        self.nodes.remove(node);
    }

    /// How long since the node was last seen heartbeating (a node never seen starts now).
    pub(crate) fn silent_for(&mut self, node: &str, now: Instant) -> Duration {
        now.saturating_duration_since(self.entry(node, now).seen)
    }
}

struct Controller {
    options: LifecycleOptions,
    probes: Probes,
    nodes: Cache<Node>,
    pods: Cache<Pod>,
    /// Node name → keys of the pods bound to it.
    on_node: HashMap<String, BTreeSet<String>>,
    node_api: Registry<Node>,
    pod_api: Registry<Pod>,
    events: Recorder,
    /// (node, taint key, value) → when an admin's NoExecute taint without `timeAdded` was first
    /// seen.
    taint_seen: HashMap<(String, String, String), Instant>,
}

fn bound_node(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .map(|s| s.node_name.as_str())
        .unwrap_or("")
}

fn ready_condition(node: &Node) -> Option<&Condition> {
    node.status
        .iter()
        .flat_map(|s| &s.conditions)
        .find(|c| c.r#type == "Ready")
}

/// Whether toleration `t` tolerates `taint` (Kubernetes' `ToleratesTaint`).
fn tolerates(t: &skiff_api::v1::Toleration, taint: &Taint) -> bool {
    if !t.effect.is_empty() && t.effect != taint.effect {
        return false;
    }
    if !t.key.is_empty() && t.key != taint.key {
        return false;
    }
    match t.operator.as_str() {
        "Exists" => true,
        "" | "Equal" => !t.key.is_empty() && t.value == taint.value,
        _ => false,
    }
}

/// How much longer a pod may stay on a node with these NoExecute taints (each with how long it
/// has been there): zero when one is not tolerated or a `tolerationSeconds` ran out, `None`
/// forever.
fn stay_left(pod: &Pod, taints: &[(Taint, Duration)]) -> Option<Duration> {
    let tolerations: Vec<_> = pod.spec.iter().flat_map(|s| &s.tolerations).collect();
    let mut left: Option<Duration> = None;
    for (taint, age) in taints {
        let matching: Vec<_> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(Duration::ZERO);
        }
        // The shortest bounded toleration applies; unbounded ones alone let it stay forever.
        let bounded = matching
            .iter()
            .filter_map(|t| t.toleration_seconds)
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
            .min();
        if let Some(allowed) = bounded {
            let remaining = allowed.saturating_sub(*age);
            left = Some(left.map_or(remaining, |l| l.min(remaining)));
        }
    }
    left
}

/// How long a pod may stay on a node with this NoExecute taint: `None` forever (a matching
/// toleration without `tolerationSeconds`), else its toleration's seconds or the default.
fn tolerated_for(pod: &Pod, taint: &str, default: Duration) -> Option<Duration> {
    let tolerations = pod.spec.iter().flat_map(|s| &s.tolerations);
    for t in tolerations {
        let key_matches = t.key == taint || (t.key.is_empty() && t.operator == "Exists");
        let effect_matches = t.effect.is_empty() || t.effect == "NoExecute";
        if key_matches && effect_matches {
            return t
                .toleration_seconds
                .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)));
        }
    }
    Some(default)
}

impl Controller {
    fn new(store: Arc<dyn Store>, options: LifecycleOptions) -> Self {
        Self {
            options,
            probes: Probes::default(),
            nodes: Cache::default(),
            pods: Cache::default(),
            on_node: HashMap::new(),
            node_api: Registry::new(store.clone()),
            pod_api: Registry::new(store.clone()),
            events: Recorder::new(store, "node-lifecycle-controller"),
            taint_seen: HashMap::new(),
        }
    }

    /// Evicts the pods of a Ready node that its admins' NoExecute taints no longer let stay;
    /// when to look again (the nearest `tolerationSeconds` running out).
    async fn admin_taints(&mut self, node: &Node) -> Result<Option<Duration>, ApiError> {
        let name = node.name().to_string();
        let taints: Vec<Taint> = node
            .spec
            .iter()
            .flat_map(|s| &s.taints)
            .filter(|t| t.effect == "NoExecute" && t.key != UNREACHABLE && t.key != NOT_READY)
            .cloned()
            .collect();
        self.taint_seen.retain(|(n, k, v), _| {
            *n != name || taints.iter().any(|t| t.key == *k && t.value == *v)
        });
        if taints.is_empty() {
            return Ok(None);
        }
        let now = Instant::now();
        let aged: Vec<(Taint, Duration)> = taints
            .into_iter()
            .map(|t| {
                let age = match &t.time_added {
                    Some(added) => skiff_api::time::since(added),
                    None => {
                        let key = (name.clone(), t.key.clone(), t.value.clone());
                        now - *self.taint_seen.entry(key).or_insert(now)
                    }
                };
                (t, age)
            })
            .collect();
        let mut next: Option<Duration> = None;
        for pod in self.pods_on(&name) {
            let phase = pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("");
            if matches!(phase, "Succeeded" | "Failed") || !podutil::is_active(&pod) {
                continue;
            }
            match stay_left(&pod, &aged) {
                Some(left) if left.is_zero() => self.evict(&pod, false).await?,
                Some(left) => {
                    let wait = left + Duration::from_millis(100);
                    next = Some(next.map_or(wait, |n| n.min(wait)));
                }
                None => {}
            }
        }
        Ok(next)
    }

    fn pods_on(&self, node: &str) -> Vec<Pod> {
        self.on_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|k| self.pods.get_key(k).cloned())
            .collect()
    }

    /// Sets exactly the wanted lifecycle taint (or none) on the node.
    async fn set_taint(&mut self, node: &Node, wanted: Option<&str>) -> Result<Node, ApiError> {
        let taints = node
            .spec
            .as_ref()
            .map(|s| s.taints.clone())
            .unwrap_or_default();
        let mut next: Vec<Taint> = taints
            .iter()
            .filter(|t| {
                !(t.effect == "NoExecute" && (t.key == UNREACHABLE || t.key == NOT_READY))
                    || Some(t.key.as_str()) == wanted
            })
            .cloned()
            .collect();
        if let Some(key) = wanted
            && !next.iter().any(|t| t.key == key && t.effect == "NoExecute")
        {
            next.push(Taint {
                key: key.into(),
                value: String::new(),
                effect: "NoExecute".into(),
                time_added: Some(skiff_api::time::now()),
            });
        }
        if next == taints {
            return Ok(node.clone());
        }
        let mut updated = node.clone();
        updated.spec.get_or_insert_with(Default::default).taints = next;
        let written = self.node_api.update(&Identity::Admin, updated).await?;
        self.nodes.remember(written.clone());
        Ok(written)
    }

    async fn evict(&mut self, pod: &Pod, force: bool) -> Result<(), ApiError> {
        self.events
            .normal(
                pod,
                "TaintManagerEviction",
                format!(
                    "Marking for deletion Pod {}/{}",
                    pod.namespace(),
                    pod.name()
                ),
            )
            .await;
        let request = DeleteRequest {
            namespace: pod.namespace().to_string(),
            name: pod.name().to_string(),
            grace_period_seconds: force.then_some(0),
            ..Default::default()
        };
        match self.pod_api.delete(&Identity::Admin, &request).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => {
                tracing::info!(pod = %pod.name(), node = %bound_node(pod), "evicted");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[async_trait::async_trait]
impl Reconciler for Controller {
    fn prefixes(&self) -> Vec<String> {
        vec![
            prefix::<Node>(""),
            prefix::<Pod>(""),
            prefix::<Lease>(NODE_LEASE_NAMESPACE),
        ]
    }

    fn observe(&mut self, kind: EventKind, kv: &KeyValue, dirty: &mut BTreeSet<String>) {
        let now = Instant::now();
        if Cache::<Node>::owns(&kv.key) {
            let (old, new) = self.nodes.apply(kind, kv);
            match &new {
                Some(n) => self.probes.status(
                    n.name(),
                    ready_condition(n).and_then(|c| c.last_heartbeat_time),
                    now,
                ),
                None if kind == EventKind::Delete => {
                    if let Some(o) = &old {
                        self.probes.forget(o.name());
                    }
                }
                None => {}
            }
            if let Some(n) = new.as_deref().or(old.as_deref()) {
                dirty.insert(n.name().to_string());
            }
        } else if Cache::<Lease>::owns(&kv.key) {
            // A renewal needs no reconcile: a Ready node's requeue looks at its probe when the
            // grace would run out, and a node marked Unknown is Ready again when its agent says so.
            if kind == EventKind::Put
                && let Some((_, node)) = parse_key::<Lease>(&kv.key)
                && let Ok(lease) = decode::<Lease>(kv)
            {
                let renewed = lease.spec.as_ref().and_then(|s| s.renew_time);
                self.probes.lease(&node, renewed, now);
            }
        } else if Cache::<Pod>::owns(&kv.key) {
            let (old, new) = self.pods.apply(kind, kv);
            if let Some(old) = &old
                && let Some(keys) = self.on_node.get_mut(bound_node(old))
            {
                keys.remove(&kv.key);
            }
            if let Some(new) = &new
                && !bound_node(new).is_empty()
            {
                let node = bound_node(new).to_string();
                self.on_node
                    .entry(node.clone())
                    .or_default()
                    .insert(kv.key.clone());
                // Only a pod on a node that is missing or not Ready needs a look.
                let ready = self
                    .nodes
                    .get("", &node)
                    .and_then(ready_condition)
                    .is_some_and(|c| c.status == "True");
                if !ready {
                    dirty.insert(node);
                }
            }
        }
    }

    fn all_keys(&self) -> Vec<String> {
        let mut names: BTreeSet<String> =
            self.nodes.values().map(|n| n.name().to_string()).collect();
        names.extend(
            self.on_node
                .iter()
                .filter(|(_, p)| !p.is_empty())
                .map(|(n, _)| n.clone()),
        );
        names.into_iter().collect()
    }

    async fn reconcile(&mut self, name: &str) -> Result<Option<Duration>, ApiError> {
        let Some(node) = self.nodes.get("", name).cloned() else {
            // Pods bound to a node that no longer exists cannot run anywhere.
            for pod in self.pods_on(name) {
                self.evict(&pod, true).await?;
            }
            return Ok(None);
        };
        let grace = self.options.node_grace_period;
        let Some(ready) = ready_condition(&node).cloned() else {
            return Ok(None); // not yet registered fully
        };
        let mut ready = ready;
        let mut node = node;
        if ready.status == "True" {
            let age = self.probes.silent_for(name, Instant::now());
            if age < grace {
                let node = self.set_taint(&node, None).await?;
                let requeue = grace - age + Duration::from_millis(100);
                let tainted = self.admin_taints(&node).await?;
                return Ok(Some(tainted.map_or(requeue, |t| t.min(requeue))));
            }
            // No heartbeat for the grace period: the agent is gone or cut off.
            let mut updated = node.clone();
            let now = skiff_api::time::now();
            for c in updated
                .status
                .get_or_insert_with(Default::default)
                .conditions
                .iter_mut()
                .filter(|c| c.r#type == "Ready")
            {
                c.status = "Unknown".into();
                c.reason = "NodeStatusUnknown".into();
                c.message = "The node agent stopped posting node status.".into();
                c.last_transition_time = Some(now);
            }
            node = self
                .node_api
                .update_status(&Identity::Admin, updated)
                .await?;
            self.nodes.remember(node.clone());
            ready = ready_condition(&node).cloned().unwrap_or_default();
            tracing::warn!(node = %name, "node stopped heartbeating: NotReady");
            self.events
                .normal(
                    &node,
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                )
                .await;
        }
        let unreachable = ready.status == "Unknown";
        let taint = if unreachable { UNREACHABLE } else { NOT_READY };
        self.set_taint(&node, Some(taint)).await?;
        let since = ready
            .last_transition_time
            .as_ref()
            .map_or(Duration::ZERO, skiff_api::time::since);
        let mut next: Option<Duration> = None;
        for pod in self.pods_on(name) {
            let phase = pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("");
            if matches!(phase, "Succeeded" | "Failed") {
                continue;
            }
            // A reachable node stops its terminating pods itself; an unreachable one cannot.
            if !podutil::is_active(&pod) && !unreachable {
                continue;
            }
            let Some(allowed) = tolerated_for(&pod, taint, self.options.pod_eviction_timeout)
            else {
                continue;
            };
            if since >= allowed {
                self.evict(&pod, unreachable).await?;
            } else {
                let wait = allowed - since + Duration::from_millis(100);
                next = Some(next.map_or(wait, |n| n.min(wait)));
            }
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{LeaseSpec, NodeStatus, PodSpec, Toleration};

    use crate::registry::tests::{Harness, meta};

    fn stamp(seconds: i64) -> Option<skiff_api::Timestamp> {
        Some(skiff_api::Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn probes_go_by_the_observers_clock() {
        let t0 = Instant::now();
        let later = |s| t0 + Duration::from_secs(s);
        let mut probes = Probes::default();
        // First sight starts the clock, whatever the stamps say.
        probes.lease("n1", stamp(1), t0);
        assert_eq!(probes.silent_for("n1", later(30)), Duration::from_secs(30));
        // The same renewTime seen again is no renewal; a different one (even an older one, from
        // an agent whose clock went back) is.
        probes.lease("n1", stamp(1), later(10));
        assert_eq!(probes.silent_for("n1", later(30)), Duration::from_secs(30));
        probes.lease("n1", stamp(0), later(20));
        assert_eq!(probes.silent_for("n1", later(30)), Duration::from_secs(10));
        // A new Ready heartbeat counts as well.
        probes.status("n1", stamp(5), later(25));
        assert_eq!(probes.silent_for("n1", later(30)), Duration::from_secs(5));
        probes.status("n1", stamp(5), later(28));
        assert_eq!(probes.silent_for("n1", later(30)), Duration::from_secs(5));
        // A node never seen is given its whole grace from now.
        assert_eq!(probes.silent_for("n2", later(30)), Duration::ZERO);
        probes.forget("n1");
        assert_eq!(probes.silent_for("n1", later(40)), Duration::ZERO);
    }

    fn ready_node(name: &str, heartbeat: Option<skiff_api::Timestamp>) -> Node {
        Node {
            metadata: meta("", name),
            spec: None,
            status: Some(NodeStatus {
                conditions: vec![Condition {
                    r#type: "Ready".into(),
                    status: "True".into(),
                    last_heartbeat_time: heartbeat,
                    last_transition_time: heartbeat,
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn ready_status(node: &Node) -> String {
        ready_condition(node)
            .map(|c| c.status.clone())
            .unwrap_or_default()
    }

    /// Staleness is judged by when the controller saw the Lease renewed: a node whose agent's
    /// clock is an hour behind stays Ready while it renews, and one whose clock is an hour ahead
    /// goes Unknown once it stops.
    #[tokio::test]
    async fn a_node_is_ready_while_its_lease_is_renewed_whatever_its_clock() {
        let h = Harness::new().await;
        h.namespace(NODE_LEASE_NAMESPACE).await;
        let now = skiff_api::time::now().seconds;
        let nodes = h.registry::<Node>();
        let leases = h.registry::<Lease>();
        for (name, skew) in [("behind", -3600), ("ahead", 3600)] {
            h.create(ready_node(name, stamp(now + skew))).await.unwrap();
            let lease = Lease {
                metadata: meta(NODE_LEASE_NAMESPACE, name),
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.into()),
                    lease_duration_seconds: Some(1),
                    renew_time: stamp(now + skew),
                    ..Default::default()
                }),
            };
            h.create(lease).await.unwrap();
        }
        let options = LifecycleOptions {
            node_grace_period: Duration::from_millis(1500),
            pod_eviction_timeout: Duration::from_secs(300),
        };
        let store = h.store.clone();
        let controller = tokio::spawn(async move {
            let mut c = Controller::new(store.clone(), options);
            informer::drive(&store, &mut c, Duration::from_secs(60)).await
        });
        // "behind" renews every 300 ms for 3 s (twice the grace), stamping its slow clock;
        // "ahead" never renews.
        for i in 1..=10 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut lease = leases.get(NODE_LEASE_NAMESPACE, "behind").await.unwrap();
            lease.spec.as_mut().unwrap().renew_time = stamp(now - 3600 + i);
            leases.update(&Identity::Admin, lease).await.unwrap();
        }
        let behind = nodes.get("", "behind").await.unwrap();
        let ahead = nodes.get("", "ahead").await.unwrap();
        assert_eq!(ready_status(&behind), "True", "{behind:?}");
        assert_eq!(ready_status(&ahead), "Unknown", "{ahead:?}");
        let taints = &ahead.spec.as_ref().unwrap().taints;
        assert!(
            taints
                .iter()
                .any(|t| t.key == UNREACHABLE && t.effect == "NoExecute"),
            "{taints:?}"
        );
        // Once "behind" stops renewing, it goes the same way.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let behind = nodes.get("", "behind").await.unwrap();
        assert_eq!(ready_status(&behind), "Unknown", "{behind:?}");
        controller.abort();
    }

    fn pod_with(tolerations: Vec<Toleration>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                tolerations,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn admin_no_execute_taints_evict_as_the_taint_manager() {
        let taint = |key: &str, value: &str| Taint {
            key: key.into(),
            value: value.into(),
            effect: "NoExecute".into(),
            time_added: None,
        };
        let tol = |key: &str, op: &str, value: &str, secs: Option<i32>| Toleration {
            key: key.into(),
            operator: op.into(),
            value: value.into(),
            effect: "NoExecute".into(),
            toleration_seconds: secs,
        };
        let maint = [(taint("maintenance", "yes"), Duration::from_secs(3))];
        assert_eq!(stay_left(&pod_with(vec![]), &maint), Some(Duration::ZERO));
        // Equal compares the value; Exists does not.
        let wrong_value = pod_with(vec![tol("maintenance", "Equal", "no", None)]);
        assert_eq!(stay_left(&wrong_value, &maint), Some(Duration::ZERO));
        let forever = pod_with(vec![tol("maintenance", "Exists", "", None)]);
        assert_eq!(stay_left(&forever, &maint), None);
        let ten = pod_with(vec![tol("maintenance", "Equal", "yes", Some(10))]);
        assert_eq!(stay_left(&ten, &maint), Some(Duration::from_secs(7)));
        let two = pod_with(vec![tol("maintenance", "Equal", "yes", Some(2))]);
        assert_eq!(stay_left(&two, &maint), Some(Duration::ZERO));
        // Every taint must be tolerated.
        let both = [
            (taint("maintenance", "yes"), Duration::ZERO),
            (taint("gpu", "broken"), Duration::ZERO),
        ];
        assert_eq!(stay_left(&forever, &both), Some(Duration::ZERO));
        let everything = pod_with(vec![tol("", "Exists", "", None)]);
        assert_eq!(stay_left(&everything, &both), None);
    }

    #[test]
    fn tolerations_decide_how_long_a_pod_stays() {
        let default = Duration::from_secs(300);
        assert_eq!(
            tolerated_for(&pod_with(vec![]), UNREACHABLE, default),
            Some(default)
        );
        let forever = Toleration {
            key: UNREACHABLE.into(),
            operator: "Exists".into(),
            effect: "NoExecute".into(),
            ..Default::default()
        };
        assert_eq!(
            tolerated_for(&pod_with(vec![forever.clone()]), UNREACHABLE, default),
            None
        );
        let briefly = Toleration {
            toleration_seconds: Some(5),
            ..forever
        };
        assert_eq!(
            tolerated_for(&pod_with(vec![briefly]), UNREACHABLE, default),
            Some(Duration::from_secs(5))
        );
        let other = Toleration {
            key: NOT_READY.into(),
            operator: "Exists".into(),
            ..Default::default()
        };
        assert_eq!(
            tolerated_for(&pod_with(vec![other]), UNREACHABLE, default),
            Some(default)
        );
    }
}
