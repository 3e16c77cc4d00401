//! What the HPA controller shares with the API server ([`Autoscaling`]): the pods' latest figures
//! as the agents report them, the Services that can scale from zero (published by the controller,
//! streamed to every node's proxy), each HPA's history (recommendations and scale events, kept
//! across the controller's relists), and [`Autoscaling::wake`], the one write scale from zero makes.
//!
//! Wake: the Service's target Deployment goes from 0 to 1 replica through the registry (a no-op
//! when it has replicas); its controller scales the current ReplicaSet next, as for any scale.
//! (Writing the ReplicaSet here too, one hop sooner, was tried: the Deployment controller, which
//! reconciles a lone event at once, wrote it first in nearly every wake, and the loser of the two
//! writes got a Conflict.) Concurrent wakes of one target wait on one lock and the later ones find
//! it awake. The wake is remembered as a recommendation of 1 in the HPA's history, so the
//! scale-down window runs from the wake, not from the idle spell before it.
//!
//! Must not: decide replicas beyond 0 → 1 (the controller does), or write anything but the target.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;
use skiff_api::v1::{Deployment, HorizontalPodAutoscaler, ObjectMeta};
use tokio::sync::{Mutex, watch};

use super::algorithm::History;
use crate::auth::Identity;
use crate::controllers::recorder::Recorder;
use crate::error::ApiError;
use crate::pod_metrics::PodMetrics;
use crate::registry::Registry;
use crate::store::Store;

/// `(namespace, name)`.
pub type ObjectKey = (String, String);

/// What a held Service wakes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldTarget {
    pub hpa: String,
    pub hpa_uid: String,
    pub deployment: String,
}

/// Service → what it wakes, for every Service that can scale from zero.
pub type Holds = BTreeMap<ObjectKey, HoldTarget>;

/// Shared by the controller and the API server; cheap to clone.
#[derive(Clone)]
pub struct Autoscaling {
    inner: Arc<Shared>,
}

struct Shared {
    metrics: PodMetrics,
    holds: watch::Sender<Arc<Holds>>,
    /// HPA `(namespace, name)` → its history.
    histories: DashMap<ObjectKey, History>,
    /// HPA → when a wake scaled its target from zero (taken by the controller's next sync).
    woken: DashMap<ObjectKey, Instant>,
    /// Deployment → the lock its wakes take turns on.
    waking: DashMap<ObjectKey, Arc<Mutex<()>>>,
    deployments: Registry<Deployment>,
    events: Recorder,
}

/// Why a wake did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WakeError {
    #[error(
        "Service {0}/{1} does not scale from zero (no HorizontalPodAutoscaler with minReplicas 0 targets a Wasm Deployment it selects)"
    )]
    NotHeld(String, String),
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl Autoscaling {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            inner: Arc::new(Shared {
                metrics: PodMetrics::default(),
                holds: watch::channel(Arc::new(Holds::new())).0,
                histories: DashMap::new(),
                woken: DashMap::new(),
                waking: DashMap::new(),
                deployments: Registry::new(store.clone()),
                events: Recorder::new(store, "horizontal-pod-autoscaler"),
            }),
        }
    }

    pub fn metrics(&self) -> &PodMetrics {
        &self.inner.metrics
    }

    /// The Services that can scale from zero now, and every later set.
    pub fn holds(&self) -> watch::Receiver<Arc<Holds>> {
        self.inner.holds.subscribe()
    }

    /// Publishes a new set (the controller's), if it changed.
    pub(super) fn publish(&self, holds: Holds) {
        self.inner.holds.send_if_modified(|current| {
            if **current == holds {
                false
            } else {
                *current = Arc::new(holds);
                true
            }
        });
    }

    pub(super) fn history(&self, hpa: &ObjectKey) -> History {
        self.inner
            .histories
            .get(hpa)
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    pub(super) fn set_history(&self, hpa: ObjectKey, history: History) {
        self.inner.histories.insert(hpa, history);
    }

    pub(super) fn forget(&self, hpa: &ObjectKey) {
        self.inner.histories.remove(hpa);
        self.inner.woken.remove(hpa);
    }

    /// When a wake last scaled `hpa`'s target from zero, taken (once).
    pub(super) fn take_woken(&self, hpa: &ObjectKey) -> Option<Instant> {
        self.inner.woken.remove(hpa).map(|(_, at)| at)
    }

    /// Wakes the workload behind Service `namespace/name`: see the module doc. Returns the
    /// Deployment's name and its replicas after the wake.
    pub async fn wake(&self, namespace: &str, service: &str) -> Result<(String, i32), WakeError> {
        let key = (namespace.to_string(), service.to_string());
        let Some(target) = self.inner.holds.borrow().get(&key).cloned() else {
            return Err(WakeError::NotHeld(key.0, key.1));
        };
        let deployment = (namespace.to_string(), target.deployment.clone());
        let lock = self
            .inner
            .waking
            .entry(deployment.clone())
            .or_default()
            .clone();
        let _turn = lock.lock().await;
        let mut tries = 0;
        loop {
            tries += 1;
            let mut d = self
                .inner
                .deployments
                .get(namespace, &target.deployment)
                .await?;
            let spec = d.spec.get_or_insert_with(Default::default);
            let replicas = spec.replicas.unwrap_or(1);
            if replicas > 0 {
                return Ok((target.deployment, replicas));
            }
            spec.replicas = Some(1);
            // Before the write: the controller's sync that the write triggers sees the wake.
            self.inner
                .woken
                .insert((namespace.to_string(), target.hpa.clone()), Instant::now());
            match self.inner.deployments.update(&Identity::Admin, d).await {
                Ok(_) => break,
                Err(ApiError::Conflict { .. }) if tries < 5 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let hpa = HorizontalPodAutoscaler {
            metadata: Some(ObjectMeta {
                name: target.hpa.clone(),
                namespace: namespace.to_string(),
                uid: target.hpa_uid.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let events = self.inner.events.clone();
        let message =
            format!("New size: 1; reason: a connection to Service {service} woke it from zero");
        tokio::spawn(async move { events.normal(&hpa, "SuccessfulRescale", message).await });
        Ok((target.deployment, 1))
    }
}
