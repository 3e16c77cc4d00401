//! The Deployment controller: one ReplicaSet per revision of the pod template, rolled from old
//! to new by the strategy ([`rollout`]), with history and status.
//!
//! The ReplicaSet of the current template is named `<deployment>-<hash>`, its pods labelled
//! `pod-template-hash=<hash>` and it carries `deployment.kubernetes.io/revision`. A template that
//! goes back to an older one (a rollback) reuses that ReplicaSet with a new revision number. Sets
//! scaled to zero beyond `revisionHistoryLimit` (default 10) are deleted. Status sums the sets'
//! counts and keeps the `Available` and `Progressing` conditions, `Progressing=False` with
//! `ProgressDeadlineExceeded` when no progress was made for `progressDeadlineSeconds`.
//!
//! Must not: create or delete pods (the ReplicaSet controller does), or touch ReplicaSets it does
//! not own.

pub mod rollout;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use skiff_api::v1::{
    Condition, DeleteRequest, Deployment, DeploymentStatus, LabelSelector, ObjectMeta,
    OwnerReference, PodTemplateSpec, ReplicaSet, ReplicaSetSpec,
};
use skiff_api::{Resource, ResourceExt};

use super::informer::{self, Cache, Reconciler, controller_of};
use super::recorder::Recorder;
use crate::auth::Identity;
use crate::error::ApiError;
use crate::registry::Registry;
use crate::store::{EventKind, KeyValue, Store};
use rollout::SetView;

/// The label that ties a ReplicaSet and its pods to one template.
pub const TEMPLATE_HASH: &str = "pod-template-hash";
/// The annotation that numbers a ReplicaSet's revision.
pub const REVISION: &str = "deployment.kubernetes.io/revision";

const DEFAULT_HISTORY: i32 = 10;
const DEFAULT_DEADLINE_SECONDS: i32 = 600;

/// Runs until aborted.
pub async fn run(store: Arc<dyn Store>) {
    let s = store.clone();
    informer::run_forever("deployment", store, Duration::from_secs(30), move || {
        Controller::new(s.clone())
    })
    .await;
}

struct Controller {
    deployments: Cache<Deployment>,
    sets: Cache<ReplicaSet>,
    /// Deployment uid → its store key.
    by_uid: HashMap<String, String>,
    /// Deployment uid → keys of the ReplicaSets it controls.
    owned: HashMap<String, BTreeSet<String>>,
    deployment_api: Registry<Deployment>,
    set_api: Registry<ReplicaSet>,
    events: Recorder,
}

/// A short, stable hash of a pod template (and the collision count, when not zero).
pub fn template_hash(template: &PodTemplateSpec, collisions: i32) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(prost::Message::encode_to_vec(template));
    if collisions > 0 {
        hasher.update(collisions.to_be_bytes());
    }
    hasher
        .finalize()
        .iter()
        .take(5)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A ReplicaSet's template without the hash label: what is compared with the Deployment's.
pub fn template_of(rs: &ReplicaSet) -> PodTemplateSpec {
    let mut t = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    if let Some(m) = t.metadata.as_mut() {
        m.labels.remove(TEMPLATE_HASH);
    }
    t
}

pub fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.meta()
        .annotations
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn view(rs: &ReplicaSet) -> SetView {
    let status = rs.status.clone().unwrap_or_default();
    SetView {
        name: rs.name().to_string(),
        desired: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        current: status.replicas,
        available: status.available_replicas,
        revision: revision_of(rs),
    }
}

fn set_condition(conditions: &mut Vec<Condition>, mut c: Condition) {
    match conditions.iter_mut().find(|x| x.r#type == c.r#type) {
        Some(existing) => {
            if existing.status == c.status {
                c.last_transition_time = existing.last_transition_time;
                if existing.reason == c.reason && existing.message == c.message {
                    c.last_update_time = existing.last_update_time;
                }
            }
            *existing = c;
        }
        None => conditions.push(c),
    }
}

impl Controller {
    fn new(store: Arc<dyn Store>) -> Self {
        Self {
            deployments: Cache::default(),
            sets: Cache::default(),
            by_uid: HashMap::new(),
            owned: HashMap::new(),
            deployment_api: Registry::new(store.clone()),
            set_api: Registry::new(store.clone()),
            events: Recorder::new(store, "deployment-controller"),
        }
    }

    fn index_set(&mut self, set_key: &str, old: Option<&ReplicaSet>, new: Option<&ReplicaSet>) {
        if let Some(uid) = old.and_then(|s| controller_of(s, Deployment::KIND))
            && let Some(keys) = self.owned.get_mut(uid)
        {
            keys.remove(set_key);
        }
        if let Some(uid) = new.and_then(|s| controller_of(s, Deployment::KIND)) {
            self.owned
                .entry(uid.to_string())
                .or_default()
                .insert(set_key.to_string());
        }
    }

    fn sets_of(&self, d: &Deployment) -> Vec<ReplicaSet> {
        self.owned
            .get(&d.meta().uid)
            .into_iter()
            .flatten()
            .filter_map(|k| self.sets.get_key(k).cloned())
            .filter(|rs| rs.meta().deletion_timestamp.is_none())
            .collect()
    }

    /// Creates the ReplicaSet of the Deployment's current template, or finds one a racing pass
    /// created.
    async fn create_set(
        &mut self,
        d: &Deployment,
        template: &PodTemplateSpec,
        replicas: i32,
        revision: i64,
    ) -> Result<ReplicaSet, ApiError> {
        let collisions = d.status.as_ref().map_or(0, |s| s.collision_count);
        let hash = template_hash(template, collisions);
        let mut t = template.clone();
        t.metadata
            .get_or_insert_with(Default::default)
            .labels
            .insert(TEMPLATE_HASH.into(), hash.clone());
        let spec = d.spec.clone().unwrap_or_default();
        let mut selector = spec.selector.clone().unwrap_or_default();
        selector
            .match_labels
            .insert(TEMPLATE_HASH.into(), hash.clone());
        let mut labels = t
            .metadata
            .as_ref()
            .map(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(TEMPLATE_HASH.into(), hash.clone());
        let rs = ReplicaSet {
            metadata: Some(ObjectMeta {
                name: format!("{}-{hash}", d.name()),
                namespace: d.namespace().to_string(),
                labels,
                annotations: [(REVISION.to_string(), revision.to_string())].into(),
                owner_references: vec![OwnerReference {
                    api_version: Deployment::API_VERSION.into(),
                    kind: Deployment::KIND.into(),
                    name: d.name().to_string(),
                    uid: d.meta().uid.clone(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }],
                ..Default::default()
            }),
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector: Some(LabelSelector {
                    match_labels: selector.match_labels,
                    match_expressions: selector.match_expressions,
                }),
                template: Some(t),
            }),
            status: None,
        };
        match self.set_api.create(&Identity::Admin, rs).await {
            Ok(created) => Ok(created),
            Err(ApiError::AlreadyExists { .. }) => {
                let existing = self
                    .set_api
                    .get(d.namespace(), &format!("{}-{hash}", d.name()))
                    .await?;
                if controller_of(&existing, Deployment::KIND) == Some(d.meta().uid.as_str())
                    && template_of(&existing) == *template
                {
                    return Ok(existing);
                }
                // Someone else's ReplicaSet has the name: hash again with one more collision.
                let mut bumped = d.clone();
                let status = bumped.status.get_or_insert_with(Default::default);
                status.collision_count += 1;
                let written = self
                    .deployment_api
                    .update_status(&Identity::Admin, bumped)
                    .await?;
                self.deployments.remember(written);
                Err(ApiError::Conflict {
                    plural: ReplicaSet::PLURAL,
                    name: existing.name().to_string(),
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn scale(
        &mut self,
        d: &Deployment,
        rs: &ReplicaSet,
        replicas: i32,
    ) -> Result<(), ApiError> {
        let mut updated = rs.clone();
        updated.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
        let written = self.set_api.update(&Identity::Admin, updated).await?;
        tracing::info!(replicaset = %rs.name(), replicas, "scaled");
        let was = view(rs).desired;
        let direction = if replicas > was { "up" } else { "down" };
        self.events
            .normal(
                d,
                "ScalingReplicaSet",
                format!(
                    "Scaled {direction} replica set {} from {was} to {replicas}",
                    rs.name()
                ),
            )
            .await;
        self.sets.remember(written);
        Ok(())
    }

    async fn set_revision(
        &mut self,
        rs: &ReplicaSet,
        revision: i64,
    ) -> Result<ReplicaSet, ApiError> {
        let mut updated = rs.clone();
        updated
            .metadata_mut()
            .annotations
            .insert(REVISION.into(), revision.to_string());
        let written = self.set_api.update(&Identity::Admin, updated).await?;
        self.sets.remember(written.clone());
        Ok(written)
    }

    /// Deletes sets at zero beyond the history limit, oldest first.
    async fn prune_history(&mut self, d: &Deployment, olds: &[ReplicaSet]) {
        let limit = d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(DEFAULT_HISTORY);
        let limit = usize::try_from(limit).unwrap_or(0);
        let idle: Vec<&ReplicaSet> = olds
            .iter()
            .filter(|rs| {
                let v = view(rs);
                v.desired == 0 && v.current == 0
            })
            .collect();
        if idle.len() <= limit {
            return;
        }
        for rs in &idle[..idle.len() - limit] {
            let request = DeleteRequest {
                namespace: rs.namespace().to_string(),
                name: rs.name().to_string(),
                ..Default::default()
            };
            match self.set_api.delete(&Identity::Admin, &request).await {
                Ok(_) | Err(ApiError::NotFound { .. }) => {
                    self.sets.forget(rs.namespace(), rs.name());
                }
                Err(e) => tracing::debug!(replicaset = %rs.name(), error = %e, "pruning"),
            }
        }
    }

    /// Sums the sets' counts into the Deployment's status and keeps its conditions. Returns when
    /// to look again (the progress deadline).
    async fn update_status(
        &mut self,
        d: &Deployment,
        new: Option<&ReplicaSet>,
        all: &[ReplicaSet],
        progressed: bool,
        unavailable_allowed: i32,
    ) -> Result<Option<Duration>, ApiError> {
        let spec = d.spec.clone().unwrap_or_default();
        let want = spec.replicas.unwrap_or(1);
        let views: Vec<SetView> = all.iter().map(view).collect();
        let desired: i32 = views.iter().map(|v| v.desired).sum();
        let current: i32 = views.iter().map(|v| v.current).sum();
        let available: i32 = views.iter().map(|v| v.available).sum();
        let ready: i32 = all
            .iter()
            .map(|rs| rs.status.as_ref().map_or(0, |s| s.ready_replicas))
            .sum();
        let updated = new.map_or(0, |rs| view(rs).current);
        let new_available = new.map_or(0, |rs| view(rs).available);
        let old = d.status.clone().unwrap_or_default();
        let mut conditions = old.conditions.clone();
        let now = skiff_api::time::now();
        let (available_status, available_reason, available_message) =
            if available >= want - unavailable_allowed {
                (
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                )
            } else {
                (
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                )
            };
        set_condition(
            &mut conditions,
            Condition {
                r#type: "Available".into(),
                status: available_status.into(),
                reason: available_reason.into(),
                message: available_message.into(),
                last_transition_time: Some(now),
                last_update_time: Some(now),
                ..Default::default()
            },
        );
        let new_name = new.map(|rs| rs.name().to_string()).unwrap_or_default();
        let complete =
            updated == want && current == want && new_available == want && desired == want;
        let deadline = Duration::from_secs(
            u64::try_from(
                spec.progress_deadline_seconds
                    .unwrap_or(DEFAULT_DEADLINE_SECONDS),
            )
            .unwrap_or(600),
        );
        let last_progress = conditions
            .iter()
            .find(|c| c.r#type == "Progressing")
            .and_then(|c| c.last_update_time);
        let mut recheck = None;
        let changed_counts = old.updated_replicas != updated || old.available_replicas != available;
        let progressing = if spec.paused {
            None
        } else if complete {
            Some((
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet {new_name:?} has successfully progressed."),
            ))
        } else if progressed || changed_counts || last_progress.is_none() {
            recheck = Some(deadline);
            Some((
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet {new_name:?} is progressing."),
            ))
        } else {
            let since = last_progress
                .as_ref()
                .map_or(Duration::ZERO, skiff_api::time::since);
            if since >= deadline {
                Some((
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet {new_name:?} has timed out progressing."),
                ))
            } else {
                recheck = Some(deadline - since);
                None
            }
        };
        if let Some((status, reason, message)) = progressing {
            let fresh = progressed || changed_counts;
            let mut c = Condition {
                r#type: "Progressing".into(),
                status: status.into(),
                reason: reason.into(),
                message,
                last_transition_time: Some(now),
                last_update_time: Some(now),
                ..Default::default()
            };
            if !fresh
                && let Some(at) = last_progress
                && reason == "ReplicaSetUpdated"
            {
                c.last_update_time = Some(at);
            }
            set_condition(&mut conditions, c);
        }
        let status = DeploymentStatus {
            observed_generation: d.meta().generation,
            replicas: current,
            updated_replicas: updated,
            ready_replicas: ready,
            available_replicas: available,
            unavailable_replicas: (desired.max(want) - available).max(0),
            conditions,
            collision_count: old.collision_count,
        };
        if d.status.as_ref() != Some(&status) {
            let mut next = d.clone();
            next.status = Some(status);
            match self
                .deployment_api
                .update_status(&Identity::Admin, next)
                .await
            {
                Ok(written) => self.deployments.remember(written),
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(recheck)
    }
}

#[async_trait::async_trait]
impl Reconciler for Controller {
    fn prefixes(&self) -> Vec<String> {
        vec![
            crate::registry::prefix::<Deployment>(""),
            crate::registry::prefix::<ReplicaSet>(""),
        ]
    }

    fn observe(&mut self, kind: EventKind, kv: &KeyValue, dirty: &mut BTreeSet<String>) {
        if Cache::<Deployment>::owns(&kv.key) {
            let (old, new) = self.deployments.apply(kind, kv);
            if let Some(old) = &old {
                self.by_uid.remove(&old.meta().uid);
            }
            if let Some(new) = &new {
                self.by_uid.insert(new.meta().uid.clone(), kv.key.clone());
            }
            if old.is_some() || new.is_some() {
                dirty.insert(kv.key.clone());
            }
        } else if Cache::<ReplicaSet>::owns(&kv.key) {
            let (old, new) = self.sets.apply(kind, kv);
            self.index_set(&kv.key, old.as_deref(), new.as_deref());
            for rs in old.iter().chain(new.iter()) {
                if let Some(d) =
                    controller_of(&**rs, Deployment::KIND).and_then(|uid| self.by_uid.get(uid))
                {
                    dirty.insert(d.clone());
                }
            }
        }
    }

    fn all_keys(&self) -> Vec<String> {
        self.deployments.keys().cloned().collect()
    }

    async fn reconcile(&mut self, key: &str) -> Result<Option<Duration>, ApiError> {
        let Some(d) = self.deployments.get_key(key).cloned() else {
            return Ok(None);
        };
        if d.meta().deletion_timestamp.is_some() {
            return Ok(None);
        }
        let spec = d.spec.clone().unwrap_or_default();
        let want = spec.replicas.unwrap_or(1);
        let template = spec.template.clone().unwrap_or_default();
        let mut sets = self.sets_of(&d);
        sets.sort_by_key(|rs| {
            (
                revision_of(rs),
                rs.meta().creation_timestamp.map(|t| t.seconds),
            )
        });
        let position = sets.iter().position(|rs| template_of(rs) == template);
        let mut new = position.map(|i| sets.remove(i));
        let olds = sets;
        let max_old = olds.iter().map(revision_of).max().unwrap_or(0);
        let strategy = spec.strategy.clone().unwrap_or_default();
        let rolling = strategy.rolling_update.clone().unwrap_or_default();
        let (surge, unavailable) = rollout::resolve_limits(
            want,
            rolling.max_surge.as_ref(),
            rolling.max_unavailable.as_ref(),
        );
        let unavailable_allowed = if strategy.r#type == "Recreate" {
            want
        } else {
            unavailable
        };
        let mut progressed = false;

        if !spec.paused {
            // The current template's set, numbered after every older one.
            match &new {
                Some(rs) if revision_of(rs) <= max_old => {
                    new = Some(self.set_revision(rs, max_old + 1).await?);
                    progressed = true;
                }
                Some(_) => {}
                None => {
                    let old_views: Vec<SetView> = olds.iter().map(view).collect();
                    let empty = SetView {
                        name: String::new(),
                        desired: 0,
                        current: 0,
                        available: 0,
                        revision: 0,
                    };
                    let initial = if strategy.r#type == "Recreate" {
                        0
                    } else {
                        rollout::rolling(want, surge, unavailable, &empty, &old_views)
                            .into_iter()
                            .find(|(name, _)| name.is_empty())
                            .map_or(0, |(_, n)| n)
                    };
                    let created = self.create_set(&d, &template, initial, max_old + 1).await?;
                    tracing::info!(deployment = %d.name(), replicaset = %created.name(), "new revision");
                    if initial > 0 {
                        self.events
                            .normal(
                                &d,
                                "ScalingReplicaSet",
                                format!(
                                    "Scaled up replica set {} from 0 to {initial}",
                                    created.name()
                                ),
                            )
                            .await;
                    }
                    self.sets.remember(created.clone());
                    self.index_set(
                        &crate::registry::key::<ReplicaSet>(created.namespace(), created.name()),
                        None,
                        Some(&created),
                    );
                    new = Some(created);
                    progressed = true;
                }
            }
            if let Some(new_rs) = &new {
                let new_view = view(new_rs);
                let old_views: Vec<SetView> = olds.iter().map(view).collect();
                let plan = if strategy.r#type == "Recreate" {
                    rollout::recreate(want, &new_view, &old_views)
                } else {
                    rollout::rolling(want, surge, unavailable, &new_view, &old_views)
                };
                for (name, replicas) in plan {
                    let target = if name == new_view.name {
                        Some(new_rs.clone())
                    } else {
                        olds.iter().find(|rs| rs.name() == name).cloned()
                    };
                    if let Some(rs) = target {
                        self.scale(&d, &rs, replicas).await?;
                        progressed = true;
                    }
                }
            }
            self.prune_history(&d, &olds).await;
        }
        let all = self.sets_of(&d);
        let new = new.and_then(|n| all.iter().find(|rs| rs.name() == n.name()).cloned());
        self.update_status(&d, new.as_ref(), &all, progressed, unavailable_allowed)
            .await
    }
}
