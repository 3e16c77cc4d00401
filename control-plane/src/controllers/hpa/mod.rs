//! The HorizontalPodAutoscaler controller (Kubernetes' `podautoscaler`): every sync period
//! (`--horizontal-pod-autoscaler-sync-period`, 15 s by default) each HPA reads its target
//! Deployment's pods' latest figures ([`crate::pod_metrics`], reported by the agents), asks each
//! metric for a replica count ([`algorithm::proposal`]: `ceil(current * usage / target)`, 0.1
//! tolerance), takes the highest, applies the behavior (stabilisation windows, policies, min and
//! max: [`algorithm::Behavior::normalize`]) and writes the Deployment's `spec.replicas` through
//! the registry. Status carries currentReplicas, desiredReplicas, currentMetrics, lastScaleTime and
//! the conditions AbleToScale, ScalingActive and ScalingLimited with Kubernetes' reasons; a rescale
//! is an Event `SuccessfulRescale`.
//!
//! Scale to zero (`minReplicas: 0`, Wasm templates only: admission's `ScaleToZero`): an idle
//! target goes to 0 once the scale-down window has seen nothing but 0 (a pod that served requests
//! since its last report, or has one in flight, is not idle). At 0 nothing is measured: the
//! controller publishes the Services that select such a target ([`state::Holds`]), each node's
//! proxy holds their connections, and the first one wakes the target ([`state::Autoscaling::wake`]).
//! Where skiff differs: Kubernetes leaves an HPA at 0 replicas alone (`ScalingDisabled`); skiff
//! does too unless `minReplicas` is 0, when the condition is ScalingActive `ScaledToZero`.
//!
//! Must not: create or delete pods (the Deployment's ReplicaSet does), or scale anything but
//! Deployments.

pub mod algorithm;
mod measure;
pub mod state;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_api::selector::LabelSelector;
use skiff_api::v1::{
    Condition, Deployment, HorizontalPodAutoscaler, HorizontalPodAutoscalerStatus, MetricSpec, Pod,
    Service,
};
use skiff_api::{Resource, ResourceExt};

use super::informer::{self, Cache, Reconciler};
use super::podutil;
use super::recorder::Recorder;
use crate::auth::Identity;
use crate::error::ApiError;
use crate::pod_metrics::PodSample;
use crate::registry::scale_to_zero::wasm_only;
use crate::registry::{Registry, prefix};
use crate::store::{EventKind, KeyValue, Store};
use algorithm::Behavior;
pub use state::Autoscaling;

/// Kubernetes' default `--horizontal-pod-autoscaler-sync-period`.
pub const DEFAULT_SYNC_PERIOD: Duration = Duration::from_secs(15);
/// The metric of an HPA that names none: 80% of the pods' cpu requests.
const DEFAULT_CPU_UTILIZATION: f64 = 80.0;
/// The reconcile key of the published set of held Services.
const HOLDS_KEY: &str = "holds";

/// `--horizontal-pod-autoscaler-sync-period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HpaOptions {
    pub sync_period: Duration,
}

impl Default for HpaOptions {
    fn default() -> Self {
        Self {
            sync_period: DEFAULT_SYNC_PERIOD,
        }
    }
}

/// Runs until aborted.
pub async fn run(store: Arc<dyn Store>, autoscaling: Autoscaling, options: HpaOptions) {
    let s = store.clone();
    informer::run_forever(
        "horizontal-pod-autoscaler",
        store,
        options.sync_period,
        move || Controller::new(s.clone(), autoscaling.clone()),
    )
    .await;
}

struct Controller {
    hpas: Cache<HorizontalPodAutoscaler>,
    deployments: Cache<Deployment>,
    pods: Cache<Pod>,
    services: Cache<Service>,
    deployment_api: Registry<Deployment>,
    hpa_api: Registry<HorizontalPodAutoscaler>,
    events: Recorder,
    shared: Autoscaling,
}

fn condition(kind: &str, status: bool, reason: &str, message: impl Into<String>) -> Condition {
    Condition {
        r#type: kind.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        last_transition_time: Some(skiff_api::time::now()),
        ..Default::default()
    }
}

/// Replaces the condition of the same type, keeping its transition time when its status stays.
fn set(conditions: &mut Vec<Condition>, mut c: Condition) {
    match conditions.iter_mut().find(|x| x.r#type == c.r#type) {
        Some(existing) => {
            if existing.status == c.status {
                c.last_transition_time = existing.last_transition_time;
            }
            *existing = c;
        }
        None => conditions.push(c),
    }
}

impl Controller {
    fn new(store: Arc<dyn Store>, shared: Autoscaling) -> Self {
        Self {
            hpas: Cache::default(),
            deployments: Cache::default(),
            pods: Cache::default(),
            services: Cache::default(),
            deployment_api: Registry::new(store.clone()),
            hpa_api: Registry::new(store.clone()),
            events: Recorder::new(store, "horizontal-pod-autoscaler"),
            shared,
        }
    }

    fn target_of(hpa: &HorizontalPodAutoscaler) -> Option<&str> {
        hpa.spec
            .as_ref()?
            .scale_target_ref
            .as_ref()
            .filter(|t| t.kind == Deployment::KIND)
            .map(|t| t.name.as_str())
    }

    /// The target's pods that count: active, matching its selector.
    fn pods_of(&self, d: &Deployment) -> Vec<Pod> {
        let Some(selector) = d
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| LabelSelector::from_spec(s).ok())
            .filter(|s| !s.is_empty())
        else {
            return Vec::new();
        };
        self.pods
            .values()
            .filter(|p| p.namespace() == d.namespace() && podutil::is_active(p))
            .filter(|p| selector.matches(&p.meta().labels))
            .cloned()
            .collect()
    }

    /// A pod's figures, if its own node reported them for this very pod.
    fn sample(&self, pod: &Pod) -> Option<PodSample> {
        let running = pod.status.as_ref().is_some_and(|s| s.phase == "Running");
        let node = pod.spec.as_ref().map(|s| s.node_name.as_str())?;
        self.shared
            .metrics()
            .get(pod.namespace(), pod.name(), node)
            .filter(|s| running && s.uid == pod.meta().uid)
    }

    /// The Services of every HPA that may scale its target from zero.
    fn holds(&self) -> state::Holds {
        let mut holds = state::Holds::new();
        for hpa in self.hpas.values() {
            let Some(spec) = &hpa.spec else { continue };
            if spec.min_replicas != Some(0) || hpa.meta().deletion_timestamp.is_some() {
                continue;
            }
            let Some(d) =
                Self::target_of(hpa).and_then(|t| self.deployments.get(hpa.namespace(), t))
            else {
                continue;
            };
            let template = d.spec.as_ref().and_then(|s| s.template.as_ref());
            if wasm_only(template).is_err() {
                continue;
            }
            let labels = template
                .and_then(|t| t.metadata.as_ref())
                .map(|m| m.labels.clone())
                .unwrap_or_default();
            for svc in self.services.values() {
                let selector = svc.spec.as_ref().map(|s| &s.selector);
                if svc.namespace() != hpa.namespace() || selector.is_none_or(|s| s.is_empty()) {
                    continue;
                }
                if LabelSelector::from_map(selector.unwrap_or(&Default::default())).matches(&labels)
                {
                    holds.insert(
                        (svc.namespace().to_string(), svc.name().to_string()),
                        state::HoldTarget {
                            hpa: hpa.name().to_string(),
                            hpa_uid: hpa.meta().uid.clone(),
                            deployment: d.name().to_string(),
                        },
                    );
                }
            }
        }
        holds
    }

    async fn sync(&mut self, hpa: HorizontalPodAutoscaler) -> Result<(), ApiError> {
        let spec = hpa.spec.clone().unwrap_or_default();
        let ns = hpa.namespace().to_string();
        let key = (ns.clone(), hpa.name().to_string());
        let now = Instant::now();
        let mut history = self.shared.history(&key);
        if let Some(at) = self.shared.take_woken(&key) {
            history.recommendations.push((at, 1));
            history.ups.push((at, 1));
        }
        let behavior = Behavior::of(spec.behavior.as_ref());
        let min = spec.min_replicas.unwrap_or(1);
        let max = spec.max_replicas;
        let mut status = hpa.status.clone().unwrap_or_default();
        let target = Self::target_of(&hpa).unwrap_or_default().to_string();
        let Some(d) = self.deployments.get(&ns, &target).cloned() else {
            set(
                &mut status.conditions,
                condition(
                    "AbleToScale",
                    false,
                    "FailedGetScale",
                    format!(
                        "the HPA controller was unable to get the target's current scale: deployments {target:?} not found"
                    ),
                ),
            );
            self.events
                .warning(
                    &hpa,
                    "FailedGetScale",
                    format!("deployments {target:?} not found"),
                )
                .await;
            return self.write_status(&hpa, status).await;
        };
        let current = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let mut desired = current;
        let mut reason = String::new();
        let mut metrics = Vec::new();
        if current == 0 && min != 0 {
            set(
                &mut status.conditions,
                condition(
                    "ScalingActive",
                    false,
                    "ScalingDisabled",
                    "scaling is disabled since the replica count of the target is zero",
                ),
            );
        } else if current == 0 {
            set(
                &mut status.conditions,
                condition(
                    "ScalingActive",
                    true,
                    "ScaledToZero",
                    "the target is at zero replicas: the first connection to a Service of it wakes it",
                ),
            );
        } else if current > max {
            desired = max;
            reason = "Current number of replicas above Spec.MaxReplicas".into();
        } else if current < min {
            desired = min;
            reason = "Current number of replicas below Spec.MinReplicas".into();
        } else {
            let pods: Vec<(Pod, Option<PodSample>)> = self
                .pods_of(&d)
                .into_iter()
                .map(|p| {
                    let s = self.sample(&p);
                    (p, s)
                })
                .collect();
            let default_metric;
            let specs: &[MetricSpec] = if spec.metrics.is_empty() {
                default_metric = vec![MetricSpec {
                    r#type: "Resource".into(),
                    resource: Some(skiff_api::v1::ResourceMetricSource {
                        name: "cpu".into(),
                        target: Some(skiff_api::v1::MetricTarget {
                            r#type: "Utilization".into(),
                            average_utilization: Some(DEFAULT_CPU_UTILIZATION as i32),
                            ..Default::default()
                        }),
                    }),
                    ..Default::default()
                }];
                &default_metric
            } else {
                &spec.metrics
            };
            let mut best: Option<(i32, String)> = None;
            let mut failure = None;
            for metric in specs {
                match measure::measure(metric, current, &pods) {
                    Ok(m) => {
                        metrics.push(m.status);
                        if best.as_ref().is_none_or(|(r, _)| m.replicas > *r) {
                            best = Some((m.replicas, m.name));
                        }
                    }
                    Err(f) => failure = Some(f),
                }
            }
            match best {
                None => {
                    let (why, message) =
                        failure.unwrap_or(("FailedGetResourceMetric", "no metrics".into()));
                    set(
                        &mut status.conditions,
                        condition("ScalingActive", false, why, message.clone()),
                    );
                    self.events.warning(&hpa, why, message).await;
                }
                Some((mut proposed, metric)) => {
                    set(
                        &mut status.conditions,
                        condition(
                            "ScalingActive",
                            true,
                            "ValidMetricFound",
                            format!(
                                "the HPA was able to successfully calculate a replica count from {metric}"
                            ),
                        ),
                    );
                    // Not idle: a pod with a request in flight, or that served any since its
                    // last report, keeps one replica.
                    let busy = pods.iter().filter_map(|(_, s)| s.as_ref()).any(|s| {
                        s.requests_in_flight().is_some_and(|n| n > 0)
                            || s.requests_per_second.is_some_and(|r| r > 0.0)
                    });
                    if busy {
                        proposed = proposed.max(1);
                    }
                    let floor =
                        if wasm_only(d.spec.as_ref().and_then(|s| s.template.as_ref())).is_ok() {
                            min
                        } else {
                            min.max(1)
                        };
                    let n = behavior.normalize(&mut history, now, current, proposed, (floor, max));
                    set(
                        &mut status.conditions,
                        condition("AbleToScale", true, n.able.0, n.able.1),
                    );
                    set(
                        &mut status.conditions,
                        condition("ScalingLimited", n.limited.0, n.limited.1, n.limited.2),
                    );
                    desired = n.replicas;
                    reason = if desired > current {
                        format!("{metric} above target")
                    } else {
                        "All metrics below target".into()
                    };
                }
            }
        }
        if desired != current {
            let mut scaled = d.clone();
            scaled.spec.get_or_insert_with(Default::default).replicas = Some(desired);
            match self.deployment_api.update(&Identity::Admin, scaled).await {
                Ok(written) => {
                    self.deployments.remember(written);
                    history.rescaled(&behavior, now, current, desired);
                    status.last_scale_time = Some(skiff_api::time::now());
                    set(
                        &mut status.conditions,
                        condition(
                            "AbleToScale",
                            true,
                            "SucceededRescale",
                            format!(
                                "the HPA controller was able to update the target scale to {desired}"
                            ),
                        ),
                    );
                    self.events
                        .normal(
                            &hpa,
                            "SuccessfulRescale",
                            format!("New size: {desired}; reason: {reason}"),
                        )
                        .await;
                }
                Err(e) => {
                    set(
                        &mut status.conditions,
                        condition(
                            "AbleToScale",
                            false,
                            "FailedUpdateScale",
                            format!(
                                "the HPA controller was unable to update the target scale: {e}"
                            ),
                        ),
                    );
                    self.events
                        .warning(
                            &hpa,
                            "FailedRescale",
                            format!("New size: {desired}; reason: {reason}; error: {e}"),
                        )
                        .await;
                    desired = current;
                }
            }
        }
        self.shared.set_history(key, history);
        status.observed_generation = Some(hpa.meta().generation);
        status.current_replicas = d.status.as_ref().map_or(current, |s| s.replicas);
        status.desired_replicas = desired;
        status.current_metrics = metrics;
        self.write_status(&hpa, status).await
    }

    async fn write_status(
        &mut self,
        hpa: &HorizontalPodAutoscaler,
        status: HorizontalPodAutoscalerStatus,
    ) -> Result<(), ApiError> {
        if hpa.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut updated = hpa.clone();
        updated.status = Some(status);
        match self.hpa_api.update_status(&Identity::Admin, updated).await {
            Ok(written) => {
                self.hpas.remember(written);
                Ok(())
            }
            Err(ApiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[async_trait::async_trait]
impl Reconciler for Controller {
    fn prefixes(&self) -> Vec<String> {
        vec![
            prefix::<HorizontalPodAutoscaler>(""),
            prefix::<Deployment>(""),
            prefix::<Service>(""),
            prefix::<Pod>(""),
        ]
    }

    fn observe(&mut self, kind: EventKind, kv: &KeyValue, dirty: &mut BTreeSet<String>) {
        if Cache::<HorizontalPodAutoscaler>::owns(&kv.key) {
            let (old, new) = self.hpas.apply(kind, kv);
            if let (Some(old), None) = (&old, &new) {
                self.shared
                    .forget(&(old.namespace().to_string(), old.name().to_string()));
            }
            if old.is_some() || new.is_some() {
                dirty.insert(kv.key.clone());
                dirty.insert(HOLDS_KEY.to_string());
            }
        } else if Cache::<Deployment>::owns(&kv.key) {
            let (old, new) = self.deployments.apply(kind, kv);
            // A replica count changed by someone else (a wake, `skiff scale`) is looked at now;
            // a template change may change what is held.
            let changed = |a: &Deployment, b: &Deployment| a.spec != b.spec;
            let relevant = match (&old, &new) {
                (Some(a), Some(b)) => changed(a, b),
                (None, None) => false,
                _ => true,
            };
            if !relevant {
                return;
            }
            dirty.insert(HOLDS_KEY.to_string());
            let Some(d) = old.as_ref().or(new.as_ref()) else {
                return;
            };
            let mut by_target: HashMap<(&str, &str), Vec<String>> = HashMap::new();
            for hpa in self.hpas.values() {
                if let Some(t) = Self::target_of(hpa) {
                    by_target.entry((hpa.namespace(), t)).or_default().push(
                        crate::registry::key::<HorizontalPodAutoscaler>(
                            hpa.namespace(),
                            hpa.name(),
                        ),
                    );
                }
            }
            if let Some(keys) = by_target.remove(&(d.namespace(), d.name())) {
                dirty.extend(keys);
            }
        } else if Cache::<Service>::owns(&kv.key) {
            let (old, new) = self.services.apply(kind, kv);
            let selector = |s: &Option<Arc<Service>>| {
                s.as_ref()
                    .and_then(|s| s.spec.as_ref().map(|x| x.selector.clone()))
            };
            if selector(&old) != selector(&new) {
                dirty.insert(HOLDS_KEY.to_string());
            }
        } else if Cache::<Pod>::owns(&kv.key) {
            self.pods.apply(kind, kv);
        }
    }

    fn all_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.hpas.keys().cloned().collect();
        keys.push(HOLDS_KEY.to_string());
        keys
    }

    async fn reconcile(&mut self, key: &str) -> Result<Option<Duration>, ApiError> {
        if key == HOLDS_KEY {
            let holds = self.holds();
            self.shared.publish(holds);
            return Ok(None);
        }
        let Some(hpa) = self.hpas.get_key(key).cloned() else {
            return Ok(None);
        };
        if hpa.meta().deletion_timestamp.is_some() {
            return Ok(None);
        }
        self.sync(hpa).await?;
        Ok(None)
    }
}
