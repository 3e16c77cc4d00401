//! The node lifecycle controller: notices nodes that stopped heartbeating and moves their pods.
//!
//! - A Ready node whose heartbeat is older than `node_grace_period` becomes `Ready=Unknown`
//!   (`NodeStatusUnknown`) and gets the `node.kubernetes.io/unreachable:NoExecute` taint; a node
//!   whose agent reports `Ready=False` gets `node.kubernetes.io/not-ready:NoExecute`. The taints go
//!   when the node is Ready again. The scheduler places nothing on either.
//! - After `pod_eviction_timeout` not Ready (or a pod's own `tolerationSeconds` for the taint;
//!   never for a pod that tolerates it forever), the node's pods are evicted: deleted at once from
//!   an unreachable node (nobody there can confirm a graceful stop; the agent kills what it no
//!   longer owns when it comes back), gracefully from a reachable one. Their controllers replace
//!   them elsewhere.
//! - Pods bound to a node that no longer exists are deleted.
//!
//! Must not: change a node that heartbeats, or delete pods of a Ready node.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use skiff_api::ResourceExt;
use skiff_api::v1::{Condition, DeleteRequest, Node, Pod, Taint};

use super::informer::{self, Cache, Reconciler};
use super::podutil;
use super::recorder::Recorder;
use crate::auth::Identity;
use crate::error::ApiError;
use crate::registry::{Registry, prefix};
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

struct Controller {
    options: LifecycleOptions,
    nodes: Cache<Node>,
    pods: Cache<Pod>,
    /// Node name → keys of the pods bound to it.
    on_node: HashMap<String, BTreeSet<String>>,
    node_api: Registry<Node>,
    pod_api: Registry<Pod>,
    events: Recorder,
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
            nodes: Cache::default(),
            pods: Cache::default(),
            on_node: HashMap::new(),
            node_api: Registry::new(store.clone()),
            pod_api: Registry::new(store.clone()),
            events: Recorder::new(store, "node-lifecycle-controller"),
        }
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
        vec![prefix::<Node>(""), prefix::<Pod>("")]
    }

    fn observe(&mut self, kind: EventKind, kv: &KeyValue, dirty: &mut BTreeSet<String>) {
        if Cache::<Node>::owns(&kv.key) {
            let (old, new) = self.nodes.apply(kind, kv);
            if let Some(n) = new.as_ref().or(old.as_ref()) {
                dirty.insert(n.name().to_string());
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
            let age = ready
                .last_heartbeat_time
                .as_ref()
                .map_or(Duration::ZERO, skiff_api::time::since);
            if age < grace {
                self.set_taint(&node, None).await?;
                return Ok(Some(grace - age + Duration::from_millis(100)));
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
    use skiff_api::v1::{PodSpec, Toleration};

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
