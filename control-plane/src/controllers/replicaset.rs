//! The ReplicaSet controller: keeps `spec.replicas` active pods of a ReplicaSet's template, each
//! owned by it (a controller ownerReference), and reports how many are ready and available.
//!
//! Missing pods are created together; extra pods are removed in [`podutil::removal_order`]
//! (unscheduled, not ready and crowded first); finished pods are deleted and so replaced. Its own
//! writes go into its caches at once, so a reconcile that runs before their watch events never
//! creates a pod twice.
//!
//! Must not: touch pods it does not own (adoption of orphans is not done), or delete pods of a
//! ReplicaSet being deleted (the garbage collector does).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use skiff_api::v1::{DeleteRequest, ObjectMeta, OwnerReference, Pod, ReplicaSet, ReplicaSetStatus};
use skiff_api::{Resource, ResourceExt};

use super::informer::{self, Cache, Reconciler, controller_of};
use super::podutil;
use super::recorder::Recorder;
use crate::auth::Identity;
use crate::error::ApiError;
use crate::registry::{Registry, key, prefix};
use crate::store::{EventKind, KeyValue, Store};

/// Runs until aborted.
pub async fn run(store: Arc<dyn Store>) {
    let s = store.clone();
    informer::run_forever("replicaset", store, Duration::from_secs(30), move || {
        Controller::new(s.clone())
    })
    .await;
}

struct Controller {
    sets: Cache<ReplicaSet>,
    pods: Cache<Pod>,
    /// ReplicaSet uid → its store key.
    by_uid: HashMap<String, String>,
    /// ReplicaSet uid → keys of the pods it controls.
    owned: HashMap<String, BTreeSet<String>>,
    set_api: Registry<ReplicaSet>,
    pod_api: Registry<Pod>,
    events: Recorder,
}

impl Controller {
    fn new(store: Arc<dyn Store>) -> Self {
        Self {
            sets: Cache::default(),
            pods: Cache::default(),
            by_uid: HashMap::new(),
            owned: HashMap::new(),
            set_api: Registry::new(store.clone()),
            pod_api: Registry::new(store.clone()),
            events: Recorder::new(store, "replicaset-controller"),
        }
    }

    fn index_pod(&mut self, pod_key: &str, old: Option<&Pod>, new: Option<&Pod>) {
        if let Some(uid) = old.and_then(|p| controller_of(p, ReplicaSet::KIND))
            && let Some(set) = self.owned.get_mut(uid)
        {
            set.remove(pod_key);
        }
        if let Some(uid) = new.and_then(|p| controller_of(p, ReplicaSet::KIND)) {
            self.owned
                .entry(uid.to_string())
                .or_default()
                .insert(pod_key.to_string());
        }
    }

    async fn create_pods(&mut self, rs: &ReplicaSet, count: usize) -> Result<(), ApiError> {
        let pod = pod_for(rs);
        let creates = (0..count).map(|_| self.pod_api.create(&Identity::Admin, pod.clone()));
        let mut first_error = None;
        for result in futures::future::join_all(creates).await {
            match result {
                Ok(created) => {
                    self.events
                        .normal(
                            rs,
                            "SuccessfulCreate",
                            format!("Created pod: {}", created.name()),
                        )
                        .await;
                    let pod_key = key::<Pod>(created.namespace(), created.name());
                    self.index_pod(&pod_key, None, Some(&created));
                    self.pods.remember(created);
                }
                Err(e) => {
                    tracing::warn!(replicaset = %rs.name(), error = %e, "creating pod");
                    self.events
                        .warning(rs, "FailedCreate", format!("Error creating: {e}"))
                        .await;
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn delete_pods(&mut self, rs: &ReplicaSet, pods: Vec<Pod>) -> Result<(), ApiError> {
        let requests: Vec<DeleteRequest> = pods
            .iter()
            .map(|p| DeleteRequest {
                namespace: p.namespace().to_string(),
                name: p.name().to_string(),
                ..Default::default()
            })
            .collect();
        let deletes = requests
            .iter()
            .map(|r| self.pod_api.delete(&Identity::Admin, r));
        let results = futures::future::join_all(deletes).await;
        let mut first_error = None;
        for (pod, result) in pods.iter().zip(results) {
            match result {
                Ok(after) => {
                    self.events
                        .normal(
                            rs,
                            "SuccessfulDelete",
                            format!("Deleted pod: {}", pod.name()),
                        )
                        .await;
                    // Either gone, or terminating: both stop counting toward replicas.
                    let pod_key = key::<Pod>(pod.namespace(), pod.name());
                    if after.meta().deletion_timestamp.is_some() {
                        self.pods.remember(after);
                    } else {
                        self.index_pod(&pod_key, Some(pod), None);
                        self.pods.forget(pod.namespace(), pod.name());
                    }
                }
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A new pod of the set's template, owned by the set.
fn pod_for(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: Some(ObjectMeta {
            generate_name: format!("{}-", rs.name()),
            namespace: rs.namespace().to_string(),
            labels: meta.labels,
            annotations: meta.annotations,
            owner_references: vec![OwnerReference {
                api_version: ReplicaSet::API_VERSION.into(),
                kind: ReplicaSet::KIND.into(),
                name: rs.name().to_string(),
                uid: rs.meta().uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }],
            ..Default::default()
        }),
        spec: template.spec,
        status: None,
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[async_trait::async_trait]
impl Reconciler for Controller {
    fn prefixes(&self) -> Vec<String> {
        vec![prefix::<ReplicaSet>(""), prefix::<Pod>("")]
    }

    fn observe(&mut self, kind: EventKind, kv: &KeyValue, dirty: &mut BTreeSet<String>) {
        if Cache::<ReplicaSet>::owns(&kv.key) {
            let (old, new) = self.sets.apply(kind, kv);
            if let Some(old) = &old {
                self.by_uid.remove(&old.meta().uid);
            }
            if let Some(new) = &new {
                self.by_uid.insert(new.meta().uid.clone(), kv.key.clone());
            }
            if old.is_some() || new.is_some() {
                dirty.insert(kv.key.clone());
            }
        } else if Cache::<Pod>::owns(&kv.key) {
            let (old, new) = self.pods.apply(kind, kv);
            if old.is_none() && new.is_none() {
                return;
            }
            self.index_pod(&kv.key, old.as_deref(), new.as_deref());
            for pod in old.iter().chain(new.iter()) {
                if let Some(set_key) =
                    controller_of(&**pod, ReplicaSet::KIND).and_then(|uid| self.by_uid.get(uid))
                {
                    dirty.insert(set_key.clone());
                }
            }
        }
    }

    fn all_keys(&self) -> Vec<String> {
        self.sets.keys().cloned().collect()
    }

    async fn reconcile(&mut self, set_key: &str) -> Result<Option<Duration>, ApiError> {
        let Some(rs) = self.sets.get_key(set_key).cloned() else {
            return Ok(None);
        };
        if rs.meta().deletion_timestamp.is_some() {
            return Ok(None);
        }
        let spec = rs.spec.clone().unwrap_or_default();
        let want = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
        let uid = rs.meta().uid.clone();
        let mine: Vec<Pod> = self
            .owned
            .get(&uid)
            .into_iter()
            .flatten()
            .filter_map(|k| self.pods.get_key(k).cloned())
            .collect();

        let finished: Vec<Pod> = mine
            .iter()
            .filter(|p| podutil::is_finished(p))
            .cloned()
            .collect();
        let mut result = self.delete_pods(&rs, finished).await;

        let active: Vec<&Pod> = mine.iter().filter(|p| podutil::is_active(p)).collect();
        if active.len() < want {
            let made = self.create_pods(&rs, want - active.len()).await;
            result = result.and(made);
        } else if active.len() > want {
            let mut ranked = active.clone();
            podutil::removal_order(&mut ranked);
            let extra = ranked[..active.len() - want]
                .iter()
                .map(|p| (*p).clone())
                .collect();
            result = result.and(self.delete_pods(&rs, extra).await);
        }

        // Status from what the caches hold now (including this pass's own writes).
        let now_mine: Vec<Pod> = self
            .owned
            .get(&uid)
            .into_iter()
            .flatten()
            .filter_map(|k| self.pods.get_key(k).cloned())
            .filter(podutil::is_active)
            .collect();
        let selector = spec
            .template
            .as_ref()
            .and_then(|t| t.metadata.as_ref())
            .map(|m| m.labels.clone())
            .unwrap_or_default();
        let labeled = now_mine
            .iter()
            .filter(|p| {
                selector
                    .iter()
                    .all(|(k, v)| p.meta().labels.get(k) == Some(v))
            })
            .count();
        let ready = now_mine.iter().filter(|p| podutil::is_ready(p)).count();
        let available = now_mine
            .iter()
            .filter(|p| podutil::is_available(p, spec.min_ready_seconds))
            .count();
        let status = ReplicaSetStatus {
            replicas: count(now_mine.len()),
            fully_labeled_replicas: count(labeled),
            ready_replicas: count(ready),
            available_replicas: count(available),
            observed_generation: rs.meta().generation,
            conditions: rs
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default(),
        };
        if rs.status.as_ref() != Some(&status) {
            let mut updated = rs.clone();
            updated.status = Some(status);
            match self.set_api.update_status(&Identity::Admin, updated).await {
                Ok(written) => self.sets.remember(written),
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => result = result.and(Err(e)),
            }
        }
        result?;
        // A ready pod that is not yet available becomes so later without any event.
        let soonest = now_mine
            .iter()
            .filter_map(|p| podutil::available_in(p, spec.min_ready_seconds))
            .min();
        Ok(soonest.map(|d| d + Duration::from_millis(50)))
    }
}
