//! The disruption controller (Kubernetes' `DisruptionController`): keeps every
//! PodDisruptionBudget's status, which the eviction subresource spends
//! ([`crate::registry::eviction`]).
//!
//! For a budget and the pods it selects in its namespace:
//! - `expectedPods`: with an integer `minAvailable`, the number of selected pods; with a
//!   percentage `minAvailable` or any `maxUnavailable`, the replicas their controllers want (a
//!   ReplicaSet's `spec.replicas`, once per ReplicaSet). skiff departs from Kubernetes for a
//!   selected pod without a controller: it counts as one (Kubernetes refuses to compute such a
//!   budget), so a budget over bare pods still works;
//! - `desiredHealthy`: `minAvailable` (a percentage of expectedPods, rounded up), or expectedPods
//!   less `maxUnavailable` (a percentage rounded up), never below 0;
//! - `currentHealthy`: selected pods that are Ready and not being deleted, less those in
//!   `disruptedPods` (evicted, their deletion not seen yet);
//! - `disruptionsAllowed`: currentHealthy − desiredHealthy, at least 0;
//! - `disruptedPods`: entries go once the pod is gone or being deleted, or after 2 minutes;
//! - the `DisruptionAllowed` condition: True (`SufficientPods`) or False (`InsufficientPods`);
//! - `observedGeneration`: the budget's generation (an eviction refuses a budget not yet seen).
//!
//! Must not: delete or change pods, or write a budget's spec.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use skiff_api::v1::{Condition, Pod, PodDisruptionBudget, PodDisruptionBudgetStatus, ReplicaSet};
use skiff_api::{IntOrStringValue, ResourceExt, Timestamp};

use super::informer::{self, Cache, Reconciler};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::registry::eviction::{healthy, selects};
use crate::registry::{Registry, key, parse_key, prefix};
use crate::store::{EventKind, KeyValue, Store};

/// How long an evicted pod stays in `disruptedPods` when its deletion is never seen
/// (Kubernetes' `DeletionTimeout`).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs until aborted.
pub async fn run(store: Arc<dyn Store>) {
    let s = store.clone();
    informer::run_forever("disruption", store, Duration::from_secs(30), move || {
        Controller::new(s.clone())
    })
    .await;
}

struct Controller {
    budgets: Cache<PodDisruptionBudget>,
    pods: Cache<Pod>,
    replica_sets: Cache<ReplicaSet>,
    api: Registry<PodDisruptionBudget>,
}

impl Controller {
    fn new(store: Arc<dyn Store>) -> Self {
        Self {
            budgets: Cache::default(),
            pods: Cache::default(),
            replica_sets: Cache::default(),
            api: Registry::new(store),
        }
    }

    /// The budgets of `namespace` (a pod or ReplicaSet change there may change any of them).
    fn budgets_in(&self, namespace: &str) -> Vec<String> {
        self.budgets
            .values()
            .filter(|b| b.namespace() == namespace)
            .map(|b| key::<PodDisruptionBudget>(b.namespace(), b.name()))
            .collect()
    }
}

/// The replicas a pod's controller wants: (its uid, replicas), or None for a pod without one.
fn controller_scale(pod: &Pod, replica_sets: &Cache<ReplicaSet>) -> Option<(String, i32)> {
    let owner = pod
        .meta()
        .owner_references
        .iter()
        .find(|o| o.controller == Some(true))?;
    if owner.kind != "ReplicaSet" {
        return None;
    }
    let rs = replica_sets.get(pod.namespace(), &owner.name)?;
    if rs.meta().uid != owner.uid {
        return None;
    }
    Some((
        owner.uid.clone(),
        rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
    ))
}

/// A budget's status over the pods it selects (pure: `scale` answers for a pod's controller).
pub fn compute(
    budget: &PodDisruptionBudget,
    pods: &[&Pod],
    scale: impl Fn(&Pod) -> Option<(String, i32)>,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let spec = budget.spec.clone().unwrap_or_default();
    let before = budget.status.clone().unwrap_or_default();
    let by_controllers = match (&spec.min_available, &spec.max_unavailable) {
        (Some(min), _) => matches!(min.value, Some(IntOrStringValue::Str(_))),
        (None, Some(_)) => true,
        (None, None) => false,
    };
    let expected = if by_controllers {
        let mut controllers: BTreeMap<String, i32> = BTreeMap::new();
        let mut bare = 0;
        for pod in pods {
            match scale(pod) {
                Some((uid, replicas)) => {
                    controllers.insert(uid, replicas);
                }
                None => bare += 1,
            }
        }
        controllers.values().sum::<i32>() + bare
    } else {
        i32::try_from(pods.len()).unwrap_or(i32::MAX)
    };
    let desired = match (&spec.min_available, &spec.max_unavailable) {
        (Some(min), _) => min.scaled_value(expected, true).unwrap_or(0),
        (None, Some(max)) => expected - max.scaled_value(expected, true).unwrap_or(0),
        // Neither: policy/v1 defaults to minAvailable 1.
        (None, None) => 1,
    }
    .max(0);
    // Evicted pods whose deletion is not seen yet, until they go or the timeout passes.
    let disrupted: BTreeMap<String, Timestamp> = before
        .disrupted_pods
        .iter()
        .filter(|(name, at)| {
            let live = pods
                .iter()
                .any(|p| p.name() == name.as_str() && p.meta().deletion_timestamp.is_none());
            let recent = now.seconds - at.seconds < DELETION_TIMEOUT.as_secs() as i64;
            live && recent
        })
        .map(|(n, t)| (n.clone(), *t))
        .collect();
    let current = pods
        .iter()
        .filter(|p| {
            p.meta().deletion_timestamp.is_none() && healthy(p) && !disrupted.contains_key(p.name())
        })
        .count();
    let current = i32::try_from(current).unwrap_or(i32::MAX);
    let allowed = (current - desired).max(0);
    let (status, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let mut condition = Condition {
        r#type: "DisruptionAllowed".into(),
        status: status.into(),
        reason: reason.into(),
        observed_generation: budget.meta().generation,
        last_transition_time: Some(now),
        ..Default::default()
    };
    if let Some(old) = before
        .conditions
        .iter()
        .find(|c| c.r#type == "DisruptionAllowed" && c.status == status)
    {
        condition.last_transition_time = old.last_transition_time;
    }
    PodDisruptionBudgetStatus {
        observed_generation: budget.meta().generation,
        disrupted_pods: disrupted,
        disruptions_allowed: allowed,
        current_healthy: current,
        desired_healthy: desired,
        expected_pods: expected,
        conditions: vec![condition],
    }
}

/// When the earliest entry of `disruptedPods` expires, if any.
fn next_expiry(status: &PodDisruptionBudgetStatus, now: &Timestamp) -> Option<Duration> {
    status
        .disrupted_pods
        .values()
        .map(|at| {
            let due = at.seconds + DELETION_TIMEOUT.as_secs() as i64 - now.seconds;
            Duration::from_secs(u64::try_from(due.max(1)).unwrap_or(1))
        })
        .min()
}

#[async_trait::async_trait]
impl Reconciler for Controller {
    fn prefixes(&self) -> Vec<String> {
        vec![
            prefix::<PodDisruptionBudget>(""),
            prefix::<Pod>(""),
            prefix::<ReplicaSet>(""),
        ]
    }

    fn observe(&mut self, kind: EventKind, kv: &KeyValue, dirty: &mut BTreeSet<String>) {
        if Cache::<PodDisruptionBudget>::owns(&kv.key) {
            let (old, new) = self.budgets.apply(kind, kv);
            if old.is_some() || new.is_some() {
                dirty.insert(kv.key.clone());
            }
        } else if Cache::<Pod>::owns(&kv.key) {
            let (old, new) = self.pods.apply(kind, kv);
            if let Some(p) = new.as_deref().or(old.as_deref()) {
                dirty.extend(self.budgets_in(p.namespace()));
            }
        } else if Cache::<ReplicaSet>::owns(&kv.key) {
            let (old, new) = self.replica_sets.apply(kind, kv);
            if let Some(rs) = new.as_deref().or(old.as_deref()) {
                dirty.extend(self.budgets_in(rs.namespace()));
            }
        }
    }

    fn all_keys(&self) -> Vec<String> {
        self.budgets.keys().cloned().collect()
    }

    async fn reconcile(&mut self, budget_key: &str) -> Result<Option<Duration>, ApiError> {
        let Some(budget) = self.budgets.get_key(budget_key).cloned() else {
            return Ok(None);
        };
        if parse_key::<PodDisruptionBudget>(budget_key).is_none()
            || budget.meta().deletion_timestamp.is_some()
        {
            return Ok(None);
        }
        let pods: Vec<&Pod> = self.pods.values().filter(|p| selects(&budget, p)).collect();
        let now = skiff_api::time::now();
        let status = compute(
            &budget,
            &pods,
            |p| controller_scale(p, &self.replica_sets),
            now,
        );
        let again = next_expiry(&status, &now);
        if budget.status.as_ref() == Some(&status) {
            return Ok(again);
        }
        let mut next = budget.clone();
        next.status = Some(status);
        let written = self.api.update_status(&Identity::Admin, next).await?;
        self.budgets.remember(written);
        Ok(again)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::IntOrString;
    use skiff_api::v1::{ObjectMeta, PodDisruptionBudgetSpec, PodStatus};

    fn pod(name: &str, ready: bool, owner: Option<&str>) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                owner_references: owner
                    .map(|uid| skiff_api::v1::OwnerReference {
                        kind: "ReplicaSet".into(),
                        name: "rs".into(),
                        uid: uid.into(),
                        controller: Some(true),
                        ..Default::default()
                    })
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
            spec: None,
            status: Some(PodStatus {
                phase: "Running".into(),
                conditions: vec![Condition {
                    r#type: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn budget(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                namespace: "default".into(),
                generation: 2,
                ..Default::default()
            }),
            spec: Some(PodDisruptionBudgetSpec {
                min_available: min,
                max_unavailable: max,
                ..Default::default()
            }),
            status: None,
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    #[test]
    fn min_available_counts_the_ready_pods() {
        let pods = [
            pod("a", true, None),
            pod("b", true, None),
            pod("c", false, None),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let s = compute(
            &budget(Some(IntOrString::int(1)), None),
            &refs,
            |_| None,
            at(1000),
        );
        assert_eq!(
            (
                s.expected_pods,
                s.desired_healthy,
                s.current_healthy,
                s.disruptions_allowed
            ),
            (3, 1, 2, 1)
        );
        assert_eq!(s.observed_generation, 2);
        assert_eq!(s.conditions[0].status, "True");
        assert_eq!(s.conditions[0].reason, "SufficientPods");
        let s = compute(
            &budget(Some(IntOrString::int(2)), None),
            &refs,
            |_| None,
            at(1000),
        );
        assert_eq!(s.disruptions_allowed, 0);
        assert_eq!(s.conditions[0].reason, "InsufficientPods");
    }

    #[test]
    fn max_unavailable_and_percentages_use_the_controllers_scale() {
        // Three pods of a ReplicaSet that wants four (one missing): maxUnavailable 1 leaves 3
        // desired, 3 healthy, nothing to spare.
        let pods = [
            pod("a", true, Some("rs-1")),
            pod("b", true, Some("rs-1")),
            pod("c", true, Some("rs-1")),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let scale = |p: &Pod| {
            p.meta()
                .owner_references
                .first()
                .map(|o| (o.uid.clone(), 4))
        };
        let s = compute(
            &budget(None, Some(IntOrString::int(1))),
            &refs,
            scale,
            at(0),
        );
        assert_eq!(
            (s.expected_pods, s.desired_healthy, s.disruptions_allowed),
            (4, 3, 0)
        );
        // 50% of 4 available: 2 desired, 1 to spare.
        let s = compute(
            &budget(Some(IntOrString::string("50%")), None),
            &refs,
            scale,
            at(0),
        );
        assert_eq!(
            (s.expected_pods, s.desired_healthy, s.disruptions_allowed),
            (4, 2, 1)
        );
        // maxUnavailable 25% of 4 rounds up to 1.
        let s = compute(
            &budget(None, Some(IntOrString::string("25%"))),
            &refs,
            scale,
            at(0),
        );
        assert_eq!(s.desired_healthy, 3);
    }

    #[test]
    fn evicted_pods_are_unhealthy_until_their_deletion_is_seen_or_times_out() {
        let pods = [pod("a", true, None), pod("b", true, None)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let mut b = budget(Some(IntOrString::int(1)), None);
        b.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: [("a".to_string(), at(1000)), ("gone".to_string(), at(1000))].into(),
            ..Default::default()
        });
        let s = compute(&b, &refs, |_| None, at(1010));
        assert_eq!(s.disrupted_pods.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!((s.current_healthy, s.disruptions_allowed), (1, 0));
        assert_eq!(next_expiry(&s, &at(1010)), Some(Duration::from_secs(110)));
        let s = compute(&b, &refs, |_| None, at(1000 + 121));
        assert!(s.disrupted_pods.is_empty());
        assert_eq!(s.disruptions_allowed, 1);
    }
}
