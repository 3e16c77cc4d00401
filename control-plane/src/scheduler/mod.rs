//! The scheduler: binds each pending pod to a Ready node that runs its runtime and has room for
//! its requests, preferring the least allocated; a pod that fits nowhere stays Pending with a
//! `PodScheduled=False` condition and a `FailedScheduling` event naming why
//! (`0/3 nodes are available: 3 Insufficient cpu.`).
//!
//! Level-triggered over list + watch of nodes and pods, with an in-memory cache; a bind is a
//! compare-and-swap on the pod, so a stale cache loses the race and retries rather than
//! double-binding. Must not: run anything, or touch pods already bound.

pub mod fit;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use skiff_api::v1::{Condition, Event, Node, Pod};
use skiff_api::{Resource, ResourceExt};
use tokio_stream::StreamExt;

use crate::auth::Identity;
use crate::server::handler::{Handler, decode, encode};
use crate::store::{EventKind, KeyValue, Store, StoreError};
use fit::Resources;

/// How often unschedulable pods are retried even when nothing changed.
const RETRY: Duration = Duration::from_secs(1);

/// Runs the scheduler until the task is aborted; relists after any store error.
pub async fn run(store: Arc<dyn Store>) {
    loop {
        let mut scheduler = Scheduler::new(store.clone());
        if let Err(e) = scheduler.sync().await {
            tracing::warn!(error = %e, "scheduler: relisting");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

struct Scheduler {
    store: Arc<dyn Store>,
    nodes: BTreeMap<String, Node>,
    /// Pods by store key.
    pods: HashMap<String, Pod>,
    /// The last unschedulable message reported per pod uid, so events are not repeated.
    reported: HashMap<String, String>,
    events: Handler<Event>,
    pod_handler: Handler<Pod>,
}

impl Scheduler {
    fn new(store: Arc<dyn Store>) -> Self {
        Self {
            events: Handler::new(store.clone()),
            pod_handler: Handler::new(store.clone()),
            store,
            nodes: BTreeMap::new(),
            pods: HashMap::new(),
            reported: HashMap::new(),
        }
    }

    async fn sync(&mut self) -> Result<(), StoreError> {
        let node_prefix = format!("/{}/", Node::PLURAL);
        let pod_prefix = format!("/{}/", Pod::PLURAL);
        let nodes = self.store.list(&node_prefix, None, 0).await?;
        let pods = self.store.list(&pod_prefix, None, 0).await?;
        for kv in &nodes.items {
            self.apply(EventKind::Put, kv);
        }
        for kv in &pods.items {
            self.apply(EventKind::Put, kv);
        }
        let node_events = self.store.watch(&node_prefix, nodes.revision).await?;
        let pod_events = self.store.watch(&pod_prefix, pods.revision).await?;
        let mut events = node_events.merge(pod_events);
        loop {
            self.schedule_pending().await;
            let first = tokio::select! {
                e = events.next() => e,
                _ = tokio::time::sleep(RETRY) => continue,
            };
            let Some(first) = first else {
                return Ok(());
            };
            let event = first?;
            self.apply(event.kind, &event.kv);
            // Take whatever else is already queued, then schedule once for the whole batch.
            while let Some(Some(next)) = events.next().now_or_never() {
                let event = next?;
                self.apply(event.kind, &event.kv);
            }
        }
    }

    fn apply(&mut self, kind: EventKind, kv: &KeyValue) {
        let is_node = kv.key.starts_with(&format!("/{}/", Node::PLURAL));
        match (kind, is_node) {
            (EventKind::Put, true) => {
                if let Ok(node) = decode::<Node>(kv) {
                    self.nodes.insert(node.name().to_string(), node);
                }
            }
            (EventKind::Delete, true) => {
                let name = kv.key.rsplit('/').next().unwrap_or_default();
                self.nodes.remove(name);
            }
            (EventKind::Put, false) => {
                if let Ok(pod) = decode::<Pod>(kv) {
                    self.pods.insert(kv.key.clone(), pod);
                }
            }
            (EventKind::Delete, false) => {
                if let Some(pod) = self.pods.remove(&kv.key) {
                    self.reported.remove(&pod.meta().uid);
                }
            }
        }
    }

    /// What the pods bound to each node request.
    fn usage(&self) -> HashMap<String, Resources> {
        let mut used: HashMap<String, Resources> = HashMap::new();
        for pod in self.pods.values().filter(|p| fit::holds_resources(p)) {
            let node = pod
                .spec
                .as_ref()
                .map(|s| s.node_name.clone())
                .unwrap_or_default();
            used.entry(node).or_default().add(&fit::pod_requests(pod));
        }
        used
    }

    async fn schedule_pending(&mut self) {
        let mut pending: Vec<(String, Pod)> = self
            .pods
            .iter()
            .filter(|(_, p)| fit::wants_scheduling(p))
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect();
        if pending.is_empty() {
            return;
        }
        // Higher priority first, then oldest first.
        pending.sort_by_key(|(_, p)| {
            let priority = p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
            let created = p.meta().creation_timestamp.map(|t| t.seconds).unwrap_or(0);
            (-i64::from(priority), created, p.name().to_string())
        });
        let mut used = self.usage();
        for (key, pod) in pending {
            let wants = fit::pod_requests(&pod);
            let mut best: Option<(i64, &str)> = None;
            let mut reasons = Vec::new();
            for (name, node) in &self.nodes {
                let on_node = used.get(name).copied().unwrap_or_default();
                match fit::check(&pod, &wants, node, &on_node) {
                    Ok(()) => {
                        let score = fit::score(&wants, node, &on_node);
                        if best.is_none_or(|(s, _)| score > s) {
                            best = Some((score, name));
                        }
                    }
                    Err(reason) => reasons.push(reason),
                }
            }
            match best.map(|(_, n)| n.to_string()) {
                Some(node) => match self.bind(&key, &pod, &node).await {
                    Ok(bound) => {
                        used.entry(node).or_default().add(&wants);
                        self.pods.insert(key, bound);
                    }
                    Err(e) => tracing::debug!(pod = %pod.name(), error = %e, "bind lost a race"),
                },
                None => {
                    let message = fit::summary(self.nodes.len(), &reasons);
                    self.unschedulable(&pod, message).await;
                }
            }
        }
    }

    /// Sets `spec.nodeName` and `PodScheduled=True` in one compare-and-swap on the version the
    /// cache holds.
    async fn bind(&self, key: &str, pod: &Pod, node: &str) -> Result<Pod, StoreError> {
        let mut bound = pod.clone();
        if let Some(spec) = bound.spec.as_mut() {
            spec.node_name = node.to_string();
        }
        set_condition(
            &mut bound,
            Condition {
                r#type: "PodScheduled".into(),
                status: "True".into(),
                last_transition_time: Some(skiff_api::time::now()),
                ..Default::default()
            },
        );
        let revision = pod.meta().resource_version.parse().ok();
        let written = self.store.update(key, encode(&bound), revision).await?;
        bound.metadata_mut().resource_version = written.mod_revision.to_string();
        tracing::debug!(pod = %pod.name(), %node, "bound");
        Ok(bound)
    }

    /// Records why the pod waits: a condition on the pod and one event per new reason.
    async fn unschedulable(&mut self, pod: &Pod, message: String) {
        let uid = pod.meta().uid.clone();
        if self.reported.get(&uid) == Some(&message) {
            return;
        }
        let mut status_pod = pod.clone();
        set_condition(
            &mut status_pod,
            Condition {
                r#type: "PodScheduled".into(),
                status: "False".into(),
                reason: "Unschedulable".into(),
                message: message.clone(),
                last_transition_time: Some(skiff_api::time::now()),
                ..Default::default()
            },
        );
        if let Err(e) = self
            .pod_handler
            .update_status(&Identity::Admin, status_pod)
            .await
        {
            tracing::debug!(pod = %pod.name(), error = %e, "recording unschedulable");
            return;
        }
        let event = skiff_api::events::pod_event(
            skiff_api::events::Reporter {
                component: "skiff-scheduler",
                host: "",
            },
            pod,
            None,
            true,
            "FailedScheduling",
            message.clone(),
        );
        if let Err(e) = self.events.create(&Identity::Admin, event).await {
            tracing::debug!(error = %e, "recording FailedScheduling event");
        }
        self.reported.insert(uid, message);
    }
}

/// Replaces (or adds) the condition of the same type, keeping its transition time when the
/// status did not change.
pub fn set_condition(pod: &mut Pod, condition: Condition) {
    let conditions = &mut pod.status.get_or_insert_with(Default::default).conditions;
    match conditions.iter_mut().find(|c| c.r#type == condition.r#type) {
        Some(existing) => {
            let keep = existing.status == condition.status;
            let transition = existing.last_transition_time;
            *existing = condition;
            if keep {
                existing.last_transition_time = transition;
            }
        }
        None => conditions.push(condition),
    }
}
