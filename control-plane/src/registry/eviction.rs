//! The `pods/eviction` subresource (Kubernetes' `EvictionREST`): a delete of a pod that honours
//! the PodDisruptionBudget selecting it.
//!
//! The rules, as Kubernetes':
//! - a pod already being deleted, or one that is not running (Pending, Succeeded, Failed), is
//!   deleted without looking at budgets;
//! - no budget selects it: deleted;
//! - more than one budget selects it: refused (500, Kubernetes' words);
//! - a pod that is running but not Ready is deleted without spending the budget when the budget's
//!   `unhealthyPodEvictionPolicy` is `AlwaysAllow`, or (`IfHealthyBudget`, the default) when the
//!   budget is met (`currentHealthy >= desiredHealthy > 0`);
//! - otherwise the budget must allow a disruption: its status must be current
//!   (`observedGeneration`), and `disruptionsAllowed` above zero, else 429 TooManyRequests
//!   ("Cannot evict pod as it would violate the pod's disruption budget."). The eviction takes
//!   one: `disruptionsAllowed` goes down by one and the pod is recorded in `disruptedPods` (a
//!   compare-and-swap on the budget, retried on a conflict), then the pod is deleted gracefully
//!   with the eviction's delete options.
//!
//! Must not: authorize (the API servers do: `create` on `pods/eviction`), or compute a budget's
//! status (the disruption controller does; this only spends what it granted).

use std::sync::Arc;

use skiff_api::ResourceExt;
use skiff_api::selector::LabelSelector;
use skiff_api::v1::{
    DeleteOptions, DeleteRequest, Eviction, ListRequest, Pod, PodDisruptionBudget,
};

use super::Registry;
use crate::auth::Identity;
use crate::error::ApiError;
use crate::store::Store;

/// Kubernetes' refusal, word for word (what `kubectl drain` prints while it retries).
pub const REFUSED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";
/// How many pods a budget may hold in `disruptedPods` (Kubernetes' `MaxDisruptedPodSize`).
pub const MAX_DISRUPTED_PODS: usize = 2000;
/// Compare-and-swap tries on a budget before giving up with a conflict.
const TRIES: usize = 5;

/// What an eviction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evicted {
    /// The pod was deleted (or its graceful deletion began); the budget was spent if named.
    Deleted { budget: Option<String> },
    /// A dry run: the pod could have been evicted.
    DryRun,
}

/// The eviction subresource over the pods and budgets of one store.
#[derive(Clone)]
pub struct Evictions {
    pods: Registry<Pod>,
    budgets: Registry<PodDisruptionBudget>,
}

impl Evictions {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            pods: Registry::new(store.clone()),
            budgets: Registry::new(store),
        }
    }

    /// Evicts pod `namespace/name` as `eviction` asks (its name must be the pod's, or empty).
    pub async fn evict(
        &self,
        who: &Identity,
        namespace: &str,
        name: &str,
        eviction: &Eviction,
    ) -> Result<Evicted, ApiError> {
        let named = eviction.metadata.as_ref().map_or("", |m| m.name.as_str());
        if !named.is_empty() && named != name {
            return Err(ApiError::BadRequest(format!(
                "name in URL does not match name in Eviction object ({name:?} vs {named:?})"
            )));
        }
        let namespace = Registry::<Pod>::namespace_of(namespace);
        let options = eviction.delete_options.clone().unwrap_or_default();
        let dry_run = dry_run(&options)?;
        for _ in 0..TRIES {
            let pod = self.pods.get(&namespace, name).await?;
            check_preconditions(&pod, &options)?;
            let budget = if can_ignore_budget(&pod) {
                None
            } else {
                self.budget_of(&pod).await?
            };
            let Some(budget) = budget else {
                return self.delete(who, &pod, &options, None, dry_run).await;
            };
            if !healthy(&pod) && unhealthy_may_go(&budget) {
                return self.delete(who, &pod, &options, None, dry_run).await;
            }
            let spent = spend(&budget, name, skiff_api::time::now())?;
            if dry_run {
                return Ok(Evicted::DryRun);
            }
            match self.budgets.update_status(who, spent).await {
                Ok(_) => {
                    let budget = Some(budget.name().to_string());
                    return self.delete(who, &pod, &options, budget, false).await;
                }
                // The controller (or another eviction) wrote the budget since: read it again.
                Err(ApiError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::Conflict {
            plural: "poddisruptionbudgets",
            name: name.to_string(),
        })
    }

    /// The one budget selecting `pod`, if any (Kubernetes refuses a pod with several).
    async fn budget_of(&self, pod: &Pod) -> Result<Option<PodDisruptionBudget>, ApiError> {
        let list = ListRequest {
            namespace: pod.namespace().to_string(),
            ..Default::default()
        };
        let (budgets, _) = self.budgets.list(&list).await?;
        let mut matching = budgets.into_iter().filter(|b| selects(b, pod));
        let first = matching.next();
        if matching.next().is_some() {
            return Err(ApiError::Internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.".into(),
            ));
        }
        Ok(first)
    }

    async fn delete(
        &self,
        who: &Identity,
        pod: &Pod,
        options: &DeleteOptions,
        budget: Option<String>,
        dry_run: bool,
    ) -> Result<Evicted, ApiError> {
        if dry_run {
            return Ok(Evicted::DryRun);
        }
        let request = DeleteRequest {
            namespace: pod.namespace().to_string(),
            name: pod.name().to_string(),
            resource_version: options
                .preconditions
                .as_ref()
                .and_then(|p| p.resource_version.clone())
                .unwrap_or_default(),
            propagation_policy: options.propagation_policy.clone(),
            grace_period_seconds: options.grace_period_seconds,
        };
        match self.pods.delete(who, &request).await {
            Ok(_) => Ok(Evicted::Deleted { budget }),
            // Gone between the read and the delete: what the eviction wanted.
            Err(ApiError::NotFound { .. }) if budget.is_none() => {
                Ok(Evicted::Deleted { budget: None })
            }
            Err(e) => Err(e),
        }
    }
}

/// `dryRun: [All]` or none; anything else is refused, as Kubernetes does.
fn dry_run(options: &DeleteOptions) -> Result<bool, ApiError> {
    match options.dry_run.as_slice() {
        [] => Ok(false),
        [all] if all == "All" => Ok(true),
        other => Err(ApiError::BadRequest(format!(
            "deleteOptions.dryRun: Unsupported value: {other:?}: supported values: \"All\""
        ))),
    }
}

fn check_preconditions(pod: &Pod, options: &DeleteOptions) -> Result<(), ApiError> {
    let Some(pre) = &options.preconditions else {
        return Ok(());
    };
    let meta = pod.meta();
    if let Some(uid) = &pre.uid
        && *uid != meta.uid
    {
        return Err(ApiError::Conflict {
            plural: "pods",
            name: pod.name().to_string(),
        });
    }
    if let Some(rv) = &pre.resource_version
        && *rv != meta.resource_version
    {
        return Err(ApiError::Conflict {
            plural: "pods",
            name: pod.name().to_string(),
        });
    }
    Ok(())
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().map_or("", |s| s.phase.as_str())
}

/// Kubernetes' `canIgnorePDB`: a pod being deleted, or not running, costs no budget.
fn can_ignore_budget(pod: &Pod) -> bool {
    pod.meta().deletion_timestamp.is_some()
        || matches!(phase(pod), "Succeeded" | "Failed" | "Pending" | "")
}

/// Running and Ready.
pub fn healthy(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.r#type == "Ready" && c.status == "True")
    })
}

/// Does `budget` select `pod` (same namespace; an empty selector selects every pod, a missing
/// one none, as policy/v1)?
pub fn selects(budget: &PodDisruptionBudget, pod: &Pod) -> bool {
    if budget.namespace() != pod.namespace() {
        return false;
    }
    let Some(selector) = budget.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    LabelSelector::from_spec(selector).is_ok_and(|s| s.matches(&pod.meta().labels))
}

/// May a running pod that is not Ready go without spending `budget`?
fn unhealthy_may_go(budget: &PodDisruptionBudget) -> bool {
    let policy = budget
        .spec
        .as_ref()
        .map_or("", |s| s.unhealthy_pod_eviction_policy.as_str());
    if policy == "AlwaysAllow" {
        return true;
    }
    let status = budget.status.clone().unwrap_or_default();
    status.current_healthy >= status.desired_healthy && status.desired_healthy > 0
}

/// The budget after evicting `pod`, or why it may not be spent (Kubernetes' `checkAndDecrement`).
fn spend(
    budget: &PodDisruptionBudget,
    pod: &str,
    now: skiff_api::Timestamp,
) -> Result<PodDisruptionBudget, ApiError> {
    let name = budget.name();
    let status = budget.status.clone().unwrap_or_default();
    let too_many = |cause: String| ApiError::TooManyRequests {
        message: REFUSED.to_string(),
        causes: vec![("DisruptionBudget", cause)],
    };
    if budget.status.is_none() || status.observed_generation < budget.meta().generation {
        return Err(too_many(format!(
            "The disruption budget {name} is still being processed by the server."
        )));
    }
    if status.disruptions_allowed < 0 {
        return Err(ApiError::Forbidden(
            "pdb disruptions allowed is negative".into(),
        ));
    }
    if status.disrupted_pods.len() > MAX_DISRUPTED_PODS {
        return Err(ApiError::Forbidden(
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller".into(),
        ));
    }
    if status.disruptions_allowed == 0 {
        return Err(too_many(format!(
            "The disruption budget {name} needs {} healthy pods and has {} currently",
            status.desired_healthy, status.current_healthy
        )));
    }
    let mut spent = budget.clone();
    let s = spent.status.get_or_insert_with(Default::default);
    s.disruptions_allowed -= 1;
    s.disrupted_pods.insert(pod.to_string(), now);
    Ok(spent)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::registry::tests::{Harness, meta};
    use skiff_api::IntOrString;
    use skiff_api::Resource;
    use skiff_api::v1::*;

    fn ready_pod(name: &str, app: &str, ready: bool) -> Pod {
        let mut pod = crate::registry::tests::pod("default", name);
        pod.metadata_mut()
            .labels
            .insert("app".to_string(), app.to_string());
        Pod {
            status: Some(PodStatus {
                phase: "Running".into(),
                conditions: vec![Condition {
                    r#type: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..pod
        }
    }

    async fn running(h: &Harness, pod: Pod) -> Pod {
        let created = h.create(pod.clone()).await.unwrap();
        let mut with_status = created.clone();
        with_status.status = pod.status;
        h.registry::<Pod>()
            .update_status(&Identity::Admin, with_status)
            .await
            .unwrap()
    }

    async fn budget(h: &Harness, allowed: i32, healthy: i32, desired: i32) {
        let pdb = PodDisruptionBudget {
            metadata: meta("default", "web"),
            spec: Some(PodDisruptionBudgetSpec {
                min_available: Some(IntOrString::int(desired)),
                selector: Some(skiff_api::v1::LabelSelector {
                    match_labels: [("app".into(), "web".into())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        };
        let mut created = h.create(pdb).await.unwrap();
        created.status = Some(PodDisruptionBudgetStatus {
            observed_generation: created.meta().generation,
            disruptions_allowed: allowed,
            current_healthy: healthy,
            desired_healthy: desired,
            expected_pods: healthy,
            ..Default::default()
        });
        h.registry::<PodDisruptionBudget>()
            .update_status(&Identity::Admin, created)
            .await
            .unwrap();
    }

    fn eviction() -> Eviction {
        Eviction::default()
    }

    #[tokio::test]
    async fn a_budget_with_room_is_spent_and_then_refuses_with_429() {
        let h = Harness::new().await;
        running(&h, ready_pod("web-1", "web", true)).await;
        running(&h, ready_pod("web-2", "web", true)).await;
        budget(&h, 1, 2, 1).await;
        let ev = Evictions::new(h.store.clone());
        let done = ev
            .evict(&Identity::Admin, "default", "web-1", &eviction())
            .await
            .unwrap();
        assert_eq!(
            done,
            Evicted::Deleted {
                budget: Some("web".into())
            }
        );
        let pdb = h
            .registry::<PodDisruptionBudget>()
            .get("default", "web")
            .await
            .unwrap();
        let status = pdb.status.unwrap();
        assert_eq!(status.disruptions_allowed, 0);
        assert!(status.disrupted_pods.contains_key("web-1"));
        // Unbound pods go at once.
        assert!(matches!(
            h.registry::<Pod>().get("default", "web-1").await,
            Err(ApiError::NotFound { .. })
        ));

        let refused = ev
            .evict(&Identity::Admin, "default", "web-2", &eviction())
            .await
            .unwrap_err();
        match refused {
            ApiError::TooManyRequests { message, causes } => {
                assert_eq!(message, REFUSED);
                assert_eq!(
                    causes,
                    [(
                        "DisruptionBudget",
                        "The disruption budget web needs 1 healthy pods and has 2 currently"
                            .to_string()
                    )]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(h.registry::<Pod>().get("default", "web-2").await.is_ok());
    }

    #[tokio::test]
    async fn pods_without_a_budget_pending_or_unready_under_a_met_budget_go_freely() {
        let h = Harness::new().await;
        running(&h, ready_pod("other", "db", true)).await;
        running(&h, ready_pod("web-1", "web", true)).await;
        running(&h, ready_pod("sick", "web", false)).await;
        // Created pods are Pending until a node says otherwise.
        h.create(ready_pod("pending", "web", true)).await.unwrap();
        budget(&h, 0, 1, 1).await;
        let ev = Evictions::new(h.store.clone());
        for name in ["other", "pending", "sick"] {
            let done = ev
                .evict(&Identity::Admin, "default", name, &eviction())
                .await
                .unwrap();
            assert_eq!(done, Evicted::Deleted { budget: None }, "{name}");
        }
        assert!(matches!(
            ev.evict(&Identity::Admin, "default", "web-1", &eviction())
                .await,
            Err(ApiError::TooManyRequests { .. })
        ));
        assert!(matches!(
            ev.evict(&Identity::Admin, "default", "gone", &eviction())
                .await,
            Err(ApiError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn stale_budgets_two_budgets_dry_runs_and_wrong_names_are_refused() {
        let h = Harness::new().await;
        running(&h, ready_pod("web-1", "web", true)).await;
        // A budget whose status the controller has not written yet.
        h.create(PodDisruptionBudget {
            metadata: meta("default", "fresh"),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::int(1)),
                selector: Some(skiff_api::v1::LabelSelector::default()),
                ..Default::default()
            }),
            status: None,
        })
        .await
        .unwrap();
        let ev = Evictions::new(h.store.clone());
        match ev
            .evict(&Identity::Admin, "default", "web-1", &eviction())
            .await
        {
            Err(ApiError::TooManyRequests { causes, .. }) => {
                assert!(
                    causes[0].1.contains("is still being processed"),
                    "{causes:?}"
                )
            }
            other => panic!("{other:?}"),
        }
        budget(&h, 1, 1, 0).await;
        assert!(matches!(
            ev.evict(&Identity::Admin, "default", "web-1", &eviction()).await,
            Err(ApiError::Internal(m)) if m.contains("more than one PodDisruptionBudget")
        ));
        let named_other = Eviction {
            metadata: meta("default", "web-2"),
            ..Default::default()
        };
        assert!(matches!(
            ev.evict(&Identity::Admin, "default", "web-1", &named_other)
                .await,
            Err(ApiError::BadRequest(_))
        ));
        h.registry::<PodDisruptionBudget>()
            .delete(
                &Identity::Admin,
                &DeleteRequest {
                    namespace: "default".into(),
                    name: "fresh".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let dry = Eviction {
            delete_options: Some(DeleteOptions {
                dry_run: vec!["All".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            ev.evict(&Identity::Admin, "default", "web-1", &dry)
                .await
                .unwrap(),
            Evicted::DryRun
        );
        assert!(h.registry::<Pod>().get("default", "web-1").await.is_ok());
        let status = h
            .registry::<PodDisruptionBudget>()
            .get("default", "web")
            .await
            .unwrap()
            .status
            .unwrap();
        assert_eq!(status.disruptions_allowed, 1, "a dry run spends nothing");
    }
}
