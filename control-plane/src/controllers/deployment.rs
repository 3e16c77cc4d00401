//! The Deployment controller (first version): keeps `replicas` pods of the current template,
//! each owned by its Deployment (ownerReferences) and labelled `pod-template-hash`.
//!
//! A template change creates the new pods first and deletes the old ones only once as many new
//! pods are Ready as the Deployment wants (a surge of up to 100%: never fewer ready pods than
//! before). Pods whose owning Deployment is gone are deleted. The scheduling issue replaces this
//! with ReplicaSet-style revisions, maxSurge/maxUnavailable, rollback and `rollout status`.
//!
//! Must not: touch pods it does not own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use skiff_api::v1::{Deployment, DeploymentStatus, ObjectMeta, OwnerReference, Pod};
use skiff_api::{Resource, ResourceExt};
use tokio_stream::StreamExt;

use crate::auth::Identity;
use crate::server::handler::{Handler, decode};
use crate::store::{Store, StoreError};

/// The label that ties a pod to its template.
pub const TEMPLATE_HASH: &str = "pod-template-hash";

/// Runs until aborted; relists after any store error, and at least every few seconds.
pub async fn run(store: Arc<dyn Store>) {
    loop {
        if let Err(e) = sync(&store).await {
            tracing::warn!(error = %e, "deployment controller: relisting");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn sync(store: &Arc<dyn Store>) -> Result<(), StoreError> {
    let controller = Controller {
        deployments: Handler::new(store.clone()),
        pods: Handler::new(store.clone()),
    };
    // Reconcile everything, then again whenever a deployment or pod changes.
    let revision = controller.reconcile_all(store).await?;
    let deploy_events = store
        .watch(&format!("/{}/", Deployment::PLURAL), revision)
        .await?;
    let pod_events = store.watch(&format!("/{}/", Pod::PLURAL), revision).await?;
    let mut events = deploy_events.merge(pod_events);
    loop {
        let next = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
        match next {
            Ok(Some(Err(e))) => return Err(e),
            Ok(None) => return Ok(()),
            Ok(Some(Ok(_))) | Err(_) => {}
        }
        // Coalesce a burst of events into one pass.
        tokio::time::sleep(Duration::from_millis(20)).await;
        while let Ok(Some(item)) =
            tokio::time::timeout(Duration::from_millis(0), events.next()).await
        {
            item?;
        }
        controller.reconcile_all(store).await?;
    }
}

struct Controller {
    deployments: Handler<Deployment>,
    pods: Handler<Pod>,
}

/// A short, stable hash of the pod template.
fn template_hash(d: &Deployment) -> String {
    use sha2::{Digest, Sha256};
    let template = d
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let bytes = prost::Message::encode_to_vec(&template);
    Sha256::digest(&bytes)
        .iter()
        .take(5)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.meta()
        .owner_references
        .iter()
        .find(|o| o.kind == "Deployment" && o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|s| &s.conditions)
        .any(|c| c.r#type == "Ready" && c.status == "True")
}

fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("");
    pod.meta().deletion_timestamp.is_none() && !matches!(phase, "Succeeded" | "Failed")
}

impl Controller {
    async fn reconcile_all(&self, store: &Arc<dyn Store>) -> Result<u64, StoreError> {
        let deployments = store
            .list(&format!("/{}/", Deployment::PLURAL), None, 0)
            .await?;
        let pods = store.list(&format!("/{}/", Pod::PLURAL), None, 0).await?;
        let revision = deployments.revision.max(pods.revision);
        let deployments: Vec<Deployment> = deployments
            .items
            .iter()
            .filter_map(|kv| decode(kv).ok())
            .collect();
        let pods: Vec<Pod> = pods.items.iter().filter_map(|kv| decode(kv).ok()).collect();
        let live: HashSet<&str> = deployments.iter().map(|d| d.meta().uid.as_str()).collect();
        let mut owned: HashMap<&str, Vec<&Pod>> = HashMap::new();
        for pod in &pods {
            if let Some(uid) = controller_uid(pod) {
                if live.contains(uid) {
                    owned.entry(uid).or_default().push(pod);
                } else if pod.meta().deletion_timestamp.is_none() {
                    // Its Deployment is gone: garbage-collect it.
                    self.delete(pod).await;
                }
            }
        }
        for d in &deployments {
            let mine = owned.remove(d.meta().uid.as_str()).unwrap_or_default();
            self.reconcile(d, &mine).await;
        }
        Ok(revision)
    }

    async fn delete(&self, pod: &Pod) {
        let request = skiff_api::v1::DeleteRequest {
            namespace: pod.namespace().to_string(),
            name: pod.name().to_string(),
            ..Default::default()
        };
        if let Err(e) = self.pods.delete(&Identity::Admin, &request).await {
            tracing::debug!(pod = %pod.name(), error = %e, "deleting pod");
        }
    }

    async fn reconcile(&self, d: &Deployment, pods: &[&Pod]) {
        if d.meta().deletion_timestamp.is_some() {
            return;
        }
        let Some(spec) = &d.spec else { return };
        let want = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
        let hash = template_hash(d);
        let active: Vec<&Pod> = pods.iter().copied().filter(|p| is_active(p)).collect();
        let (current, old): (Vec<&Pod>, Vec<&Pod>) = active
            .iter()
            .partition(|p| p.meta().labels.get(TEMPLATE_HASH) == Some(&hash));
        // Finished pods of a Deployment are replaced: remove them.
        for pod in pods
            .iter()
            .filter(|p| !is_active(p) && p.meta().deletion_timestamp.is_none())
        {
            self.delete(pod).await;
        }
        if current.len() < want {
            for _ in current.len()..want {
                self.create_pod(d, &hash).await;
            }
        } else if current.len() > want {
            let mut extra: Vec<&&Pod> = current.iter().collect();
            // Not-ready pods go first, then the newest.
            extra.sort_by_key(|p| {
                (
                    is_ready(p),
                    std::cmp::Reverse(p.meta().creation_timestamp.map(|t| t.seconds)),
                )
            });
            for pod in extra.into_iter().take(current.len() - want) {
                self.delete(pod).await;
            }
        }
        let ready_current = current.iter().filter(|p| is_ready(p)).count();
        if ready_current >= want {
            for pod in &old {
                self.delete(pod).await;
            }
        }
        let status = DeploymentStatus {
            observed_generation: d.meta().generation,
            replicas: count(active.len()),
            updated_replicas: count(current.len()),
            ready_replicas: count(active.iter().filter(|p| is_ready(p)).count()),
            available_replicas: count(active.iter().filter(|p| is_ready(p)).count()),
            unavailable_replicas: count(
                want.saturating_sub(active.iter().filter(|p| is_ready(p)).count()),
            ),
            conditions: d
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default(),
            collision_count: 0,
        };
        if d.status.as_ref() != Some(&status) {
            let mut updated = d.clone();
            updated.status = Some(status);
            if let Err(e) = self
                .deployments
                .update_status(&Identity::Admin, updated)
                .await
            {
                tracing::debug!(deployment = %d.name(), error = %e, "status");
            }
        }
    }

    async fn create_pod(&self, d: &Deployment, hash: &str) {
        let template = d
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .unwrap_or_default();
        let template_meta = template.metadata.unwrap_or_default();
        let mut labels: BTreeMap<String, String> = template_meta.labels;
        labels.insert(TEMPLATE_HASH.into(), hash.into());
        let pod = Pod {
            metadata: Some(ObjectMeta {
                generate_name: format!("{}-{hash}-", d.name()),
                namespace: d.namespace().to_string(),
                labels,
                annotations: template_meta.annotations,
                owner_references: vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: d.name().to_string(),
                    uid: d.meta().uid.clone(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }],
                ..Default::default()
            }),
            spec: template.spec,
            status: None,
        };
        if let Err(e) = self.pods.create(&Identity::Admin, pod).await {
            tracing::warn!(deployment = %d.name(), error = %e, "creating pod");
        }
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
