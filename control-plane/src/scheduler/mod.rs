//! The scheduler: binds each pending pod to the best node that can take it (and records
//! `Scheduled: Successfully assigned NS/NAME to NODE`, [`events`]); a pod that fits
//! nowhere stays Pending with a `PodScheduled=False` condition and a `FailedScheduling` event
//! naming why (`0/3 nodes are available: 3 Insufficient cpu.`), after preempting lower-priority
//! pods if that would make room.
//!
//! - [`cache`]: nodes and pods, parsed once and updated incrementally (with assumed binds).
//! - [`filter`]: can the pod go there (readiness, runtime, selector and node affinity, taints,
//!   host ports, requests).
//! - [`topology`]: pod affinity and anti-affinity, topology spread constraints (filter and score).
//! - [`score`]: which node is best (least allocated, balanced allocation, spreading over nodes
//!   and zones, preferred node and pod affinity, soft spread constraints, PreferNoSchedule taints).
//! - [`preempt`]: whom to evict when nothing fits.
//!
//! Level-triggered over list + watch of nodes and pods. Pods are taken highest priority first,
//! then oldest. Like kube-scheduler, with many nodes it stops filtering once it has found
//! [`score::nodes_to_find`] feasible ones (50% − 1% per 125 nodes, at least 5% and 100 nodes),
//! starting each pod where the last one stopped, and scores only those. A bind goes through the
//! registry's `pods/binding` subresource on the pod version the cache holds (a compare-and-swap
//! on it, with no read first: `Registry::bind_known`), run with up to [`MAX_BINDS_IN_FLIGHT`]
//! at once so that the store's group commit shares fsyncs; the placement is assumed in the cache
//! at once so the next pod sees it, and a bind that loses its race is forgotten and retried
//! once the watch brings the newer version. Pods that fit nowhere wait until a node or a freed
//! pod changes things, or for [`RETRY`].
//!
//! Must not: run anything, or touch pods already bound (except to evict preemption victims).

pub mod cache;
pub mod events;
pub mod filter;
pub mod preempt;
pub mod score;
pub mod topology;

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use skiff_api::ResourceExt;
use skiff_api::v1::{Condition, DeleteRequest, Namespace, Node, Pod};
use tokio::task::JoinSet;
use tokio_stream::StreamExt;

use crate::auth::Identity;
use crate::controllers::recorder::Recorder;
use crate::error::ApiError;
pub use crate::registry::set_condition;
use crate::registry::{Registry, decode, owns, parse_key, prefix};
use crate::store::{EventKind, KeyValue, Store, StoreError};
use cache::{Cache, PodInfo};
use filter::Unfit;

/// How often pods that fit nowhere are retried even when nothing changed.
pub const RETRY: Duration = Duration::from_secs(1);

/// The component named in the scheduler's events.
pub const COMPONENT: &str = "skiff-scheduler";

/// Binds written concurrently (each a compare-and-swap; the store commits them in groups).
pub const MAX_BINDS_IN_FLIGHT: usize = 64;

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

/// A finished bind: the pod's key, the revision it was bound from, and what the store said.
type BindResult = (String, u64, Result<Box<Pod>, ApiError>);

enum Wake {
    Event(Option<Result<crate::store::Event, StoreError>>),
    Bind(Option<Result<BindResult, tokio::task::JoinError>>),
    Retry,
}

struct Scheduler {
    store: Arc<dyn Store>,
    cache: Cache,
    /// Pods to try in the next pass.
    active: HashSet<String>,
    /// Pods that fit nowhere, waiting for a change.
    parked: HashSet<String>,
    /// Pods whose bind lost its race from this revision: wait for a newer version.
    conflicted: HashMap<String, u64>,
    /// The last unschedulable message reported per pod uid, so events are not repeated.
    reported: HashMap<String, String>,
    binds: JoinSet<BindResult>,
    /// Where the next pod's search over the nodes starts.
    next_start: usize,
    recorder: Recorder,
    pod_api: Registry<Pod>,
    scheduled: events::ScheduledEvents,
}

fn is_node_key(key: &str) -> bool {
    owns::<Node>(key)
}

impl Scheduler {
    fn new(store: Arc<dyn Store>) -> Self {
        Self {
            recorder: Recorder::new(store.clone(), COMPONENT),
            pod_api: Registry::new(store.clone()),
            scheduled: events::ScheduledEvents::spawn(store.clone()),
            store,
            cache: Cache::default(),
            active: HashSet::new(),
            parked: HashSet::new(),
            conflicted: HashMap::new(),
            reported: HashMap::new(),
            binds: JoinSet::new(),
            next_start: 0,
        }
    }

    /// Lists namespaces, nodes and pods into the cache; returns the revisions to watch from.
    async fn list(&mut self) -> Result<(u64, u64, u64), StoreError> {
        let node_prefix = prefix::<Node>("");
        let pod_prefix = prefix::<Pod>("");
        let namespaces = self.store.list(&prefix::<Namespace>(""), None, 0).await?;
        let nodes = self.store.list(&node_prefix, None, 0).await?;
        let pods = self.store.list(&pod_prefix, None, 0).await?;
        for kv in &namespaces.items {
            self.apply(EventKind::Put, kv);
        }
        for kv in &nodes.items {
            self.apply(EventKind::Put, kv);
        }
        for kv in &pods.items {
            self.apply(EventKind::Put, kv);
        }
        Ok((namespaces.revision, nodes.revision, pods.revision))
    }

    async fn sync(&mut self) -> Result<(), StoreError> {
        let (ns_rev, node_rev, pod_rev) = self.list().await?;
        let ns_events = self.store.watch(&prefix::<Namespace>(""), ns_rev).await?;
        let node_events = self.store.watch(&prefix::<Node>(""), node_rev).await?;
        let pod_events = self.store.watch(&prefix::<Pod>(""), pod_rev).await?;
        let mut events = ns_events.merge(node_events).merge(pod_events);
        let mut retry = tokio::time::interval(RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.schedule_pending().await;
            let wake = tokio::select! {
                e = events.next() => Wake::Event(e),
                b = self.binds.join_next(), if !self.binds.is_empty() => Wake::Bind(b),
                _ = retry.tick() => Wake::Retry,
            };
            match wake {
                Wake::Event(None) => return Ok(()),
                Wake::Event(Some(event)) => {
                    let event = event?;
                    self.apply(event.kind, &event.kv);
                    // Take whatever else is already queued, then schedule once for the batch.
                    while let Some(Some(next)) = events.next().now_or_never() {
                        let event = next?;
                        self.apply(event.kind, &event.kv);
                    }
                }
                Wake::Bind(done) => {
                    if let Some(done) = done {
                        self.finish_bind(done);
                    }
                }
                Wake::Retry => self.unpark_all(),
            }
            while let Some(done) = self.binds.try_join_next() {
                self.finish_bind(done);
            }
        }
    }

    fn unpark_all(&mut self) {
        self.active.extend(self.parked.drain());
    }

    fn apply(&mut self, kind: EventKind, kv: &KeyValue) {
        if owns::<Namespace>(&kv.key) {
            // Their labels are what pod affinity terms' namespaceSelectors read.
            match kind {
                EventKind::Put => {
                    if let Ok(ns) = decode::<Namespace>(kv) {
                        self.cache
                            .put_namespace(ns.name(), ns.meta().labels.clone());
                        self.unpark_all();
                    }
                }
                EventKind::Delete => {
                    if let Some((_, name)) = parse_key::<Namespace>(&kv.key) {
                        self.cache.delete_namespace(&name);
                    }
                }
            }
            return;
        }
        match (kind, is_node_key(&kv.key)) {
            (EventKind::Put, true) => {
                if let Ok(node) = decode::<Node>(kv)
                    && self.cache.put_node(&node)
                {
                    self.unpark_all();
                }
            }
            (EventKind::Delete, true) => {
                if let Some((_, name)) = parse_key::<Node>(&kv.key) {
                    self.cache.delete_node(&name);
                }
            }
            (EventKind::Put, false) => {
                if self
                    .cache
                    .pod(&kv.key)
                    .is_some_and(|p| p.revision >= kv.mod_revision)
                {
                    return; // in already: a bind's own answer, taken before its event
                }
                let Ok(pod) = decode::<Pod>(kv) else { return };
                let held = self
                    .cache
                    .pod(&kv.key)
                    .is_some_and(|p| p.holding_node().is_some());
                let info = self.cache.put_pod(&kv.key, pod);
                if self
                    .conflicted
                    .get(&kv.key)
                    .is_some_and(|&r| info.revision > r)
                {
                    self.conflicted.remove(&kv.key);
                }
                if info.wants_scheduling() && !self.cache.is_assumed(&kv.key) {
                    self.parked.remove(&kv.key);
                    self.active.insert(kv.key.clone());
                } else {
                    self.parked.remove(&kv.key);
                    self.active.remove(&kv.key);
                }
                if held && info.holding_node().is_none() {
                    self.unpark_all(); // a pod finished: its room is free
                }
            }
            (EventKind::Delete, false) => {
                self.active.remove(&kv.key);
                self.parked.remove(&kv.key);
                self.conflicted.remove(&kv.key);
                if let Some(pod) = self.cache.delete_pod(&kv.key) {
                    self.reported.remove(&pod.pod.meta().uid);
                    if pod.holding_node().is_some() {
                        self.unpark_all();
                    }
                }
            }
        }
    }

    /// One pass over the active queue.
    async fn schedule_pending(&mut self) {
        if self.active.is_empty() {
            return;
        }
        let mut queue: Vec<Arc<PodInfo>> = self
            .active
            .drain()
            .filter_map(|k| self.cache.pod(&k).cloned())
            .collect();
        // Higher priority first, then oldest first.
        queue.sort_by(|a, b| {
            let created = |p: &PodInfo| {
                p.pod
                    .meta()
                    .creation_timestamp
                    .map_or((0, 0), |t| (t.seconds, t.nanos))
            };
            (Reverse(a.priority), created(a), &a.key).cmp(&(
                Reverse(b.priority),
                created(b),
                &b.key,
            ))
        });
        for queued in queue {
            // Binds finishing meanwhile may have moved the pod on.
            let Some(pod) = self.cache.pod(&queued.key).cloned() else {
                continue;
            };
            if !pod.wants_scheduling() || self.cache.is_assumed(&pod.key) {
                continue;
            }
            if self
                .conflicted
                .get(&pod.key)
                .is_some_and(|&r| pod.revision <= r)
            {
                continue; // the watch brings the newer version and requeues it
            }
            let attempt = std::time::Instant::now();
            let found = self.find_node(&pod);
            crate::metrics::scheduler::attempt(
                match found {
                    Ok(_) => crate::metrics::scheduler::Outcome::Scheduled,
                    Err(_) => crate::metrics::scheduler::Outcome::Unschedulable,
                },
                Some(attempt.elapsed()),
            );
            match found {
                Ok(node) => {
                    self.cache.assume(&pod.key, &node);
                    let pods = self.pod_api.clone();
                    let span = crate::telemetry::bind_span(&pod.pod, &node);
                    self.binds.spawn(tracing::Instrument::instrument(
                        async move {
                            let result = pods
                                .bind_known(&Identity::Admin, &pod.pod, &node)
                                .await
                                .map(Box::new);
                            (pod.key.clone(), pod.revision, result)
                        },
                        span,
                    ));
                    if self.binds.len() >= MAX_BINDS_IN_FLIGHT
                        && let Some(done) = self.binds.join_next().await
                    {
                        self.finish_bind(done);
                    }
                }
                Err(reasons) => {
                    self.parked.insert(pod.key.clone());
                    self.no_fit(&pod, reasons).await;
                }
            }
        }
    }

    /// The best node for the pod, or every node's reason why not.
    fn find_node(&mut self, pod: &PodInfo) -> Result<String, Vec<Unfit>> {
        self.cache.rank_names();
        let cache = &self.cache;
        let nodes = cache.nodes();
        if nodes.is_empty() {
            return Err(Vec::new());
        }
        let want = score::nodes_to_find(cache.node_count());
        let spread = cache.spread(pod);
        let topology = topology::PodTopology::new(cache, pod);
        let start = self.next_start % nodes.len();
        let mut candidates = Vec::with_capacity(want);
        let mut reasons = Vec::new();
        let mut examined = 0;
        for step in 0..nodes.len() {
            let i = (start + step) % nodes.len();
            examined += 1;
            let node = &nodes[i];
            if !node.known {
                continue;
            }
            match filter::check(pod, node).and_then(|()| topology.check(node)) {
                Ok(()) => {
                    candidates.push(score::candidate(pod, node, i, &spread, &topology));
                    if candidates.len() >= want {
                        break;
                    }
                }
                Err(reason) => reasons.push(reason),
            }
        }
        let chosen =
            score::best(&candidates, nodes).map(|c| nodes[candidates[c].index].name.clone());
        self.next_start = (start + examined) % nodes.len();
        chosen.ok_or(reasons)
    }

    fn finish_bind(&mut self, done: Result<BindResult, tokio::task::JoinError>) {
        let (key, revision, result) = match done {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "scheduler: a bind task failed");
                return;
            }
        };
        match result {
            Ok(bound) => {
                let node = bound.spec.as_ref().map_or("", |s| s.node_name.as_str());
                tracing::debug!(pod = %key, %node, "bound");
                self.scheduled.scheduled(&bound, node);
                self.cache.confirm(&key, *bound);
                self.conflicted.remove(&key);
            }
            Err(e) => {
                tracing::debug!(pod = %key, error = %e, "bind lost a race");
                self.cache.forget(&key);
                let Some(pod) = self.cache.pod(&key) else {
                    return;
                };
                if !pod.wants_scheduling() {
                    return;
                }
                match e {
                    ApiError::Conflict { .. }
                    | ApiError::BindConflict { .. }
                    | ApiError::NotFound { .. } => {
                        if pod.revision > revision {
                            self.active.insert(key);
                        } else {
                            self.conflicted.insert(key, revision);
                        }
                    }
                    _ => {
                        crate::metrics::scheduler::attempt(
                            crate::metrics::scheduler::Outcome::Error,
                            None,
                        );
                        self.parked.insert(key);
                    }
                }
            }
        }
    }

    /// Waits for every bind in flight (tests, and nothing else, need a quiet scheduler).
    #[cfg(test)]
    async fn drain_binds(&mut self) {
        while let Some(done) = self.binds.join_next().await {
            self.finish_bind(done);
        }
    }

    /// The pod fits nowhere: preempt if that helps, then say why it waits.
    async fn no_fit(&mut self, pod: &PodInfo, reasons: Vec<Unfit>) {
        let message = filter::summary(self.cache.node_count(), &reasons);
        let mut nominated = None;
        if reasons.iter().any(Unfit::resolvable_by_preemption)
            && preempt::eligible(&self.cache, pod)
            && let Some(chosen) = preempt::select(&self.cache, pod)
        {
            self.evict(pod, &chosen).await;
            nominated = Some(chosen.node);
        }
        self.unschedulable(pod, message, nominated).await;
    }

    async fn evict(&self, pod: &PodInfo, chosen: &preempt::Preemption) {
        let preemptor = format!("{}/{}", pod.pod.namespace(), pod.pod.name());
        for victim in &chosen.victims {
            let v = &victim.pod;
            tracing::info!(victim = %v.name(), %preemptor, node = %chosen.node, "preempting");
            self.recorder
                .normal(
                    v,
                    "Preempted",
                    format!("Preempted by {preemptor} on node {}", chosen.node),
                )
                .await;
            let request = DeleteRequest {
                namespace: v.namespace().to_string(),
                name: v.name().to_string(),
                ..Default::default()
            };
            match self.pod_api.delete(&Identity::Admin, &request).await {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => tracing::warn!(victim = %v.name(), error = %e, "preempting"),
            }
        }
    }

    /// Records why the pod waits — a condition (and the nominated node, after preemption) on the
    /// pod and one event per new reason.
    async fn unschedulable(&mut self, pod: &PodInfo, message: String, nominated: Option<String>) {
        let uid = pod.pod.meta().uid.clone();
        if nominated.is_none() && self.reported.get(&uid) == Some(&message) {
            return;
        }
        let change = |p: &mut Pod| {
            set_condition(
                p,
                Condition {
                    r#type: "PodScheduled".into(),
                    status: "False".into(),
                    reason: "Unschedulable".into(),
                    message: message.clone(),
                    last_transition_time: Some(skiff_api::time::now()),
                    ..Default::default()
                },
            );
            if let Some(node) = &nominated {
                p.status
                    .get_or_insert_with(Default::default)
                    .nominated_node_name = node.clone();
            }
        };
        let mut status_pod = pod.pod.clone();
        change(&mut status_pod);
        let mut written = self
            .pod_api
            .update_status(&Identity::Admin, status_pod)
            .await;
        if matches!(written, Err(ApiError::Conflict { .. })) {
            // The cache is behind; the nominated node must not be lost, so read and retry once.
            match self.pod_api.get(pod.pod.namespace(), pod.pod.name()).await {
                Ok(mut fresh) => {
                    change(&mut fresh);
                    written = self.pod_api.update_status(&Identity::Admin, fresh).await;
                }
                Err(e) => written = Err(e),
            }
        }
        if let Err(e) = written {
            tracing::debug!(pod = %pod.pod.name(), error = %e, "recording unschedulable");
            return;
        }
        if self.reported.get(&uid) == Some(&message) {
            return;
        }
        self.recorder
            .warning(&pod.pod, "FailedScheduling", message.clone())
            .await;
        self.reported.insert(uid, message);
    }
}

#[cfg(test)]
mod tests;
