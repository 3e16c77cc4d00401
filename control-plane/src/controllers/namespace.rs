//! The namespace controller: a namespace with a deletionTimestamp (`status.phase: Terminating`)
//! has everything in it deleted through the registry — finalizers, garbage collection and pods'
//! grace periods honoured, so a pod gets its deletionTimestamp and its agent stops it as for any
//! pod delete — and is removed (the registry's `finalize`) once nothing is left in it.
//!
//! Must not: delete anything from the store directly, or remove a namespace that is not empty.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use skiff_api::ResourceExt;
use skiff_api::kinds::KINDS;
use skiff_api::v1::{DeleteRequest, Namespace};

use super::informer::{self, Cache, Reconciler};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::registry::{Registry, prefix};
use crate::store::{EventKind, KeyValue, Store};

/// How often a terminating namespace is looked at while its contents go.
const POLL: Duration = Duration::from_secs(1);

/// Runs until aborted.
pub async fn run(store: Arc<dyn Store>) {
    let s = store.clone();
    informer::run_forever("namespace", store, Duration::from_secs(30), move || {
        Controller::new(s.clone())
    })
    .await;
}

struct Controller {
    store: Arc<dyn Store>,
    namespaces: Cache<Namespace>,
    api: Registry<Namespace>,
}

fn terminating(ns: &Namespace) -> bool {
    ns.meta().deletion_timestamp.is_some()
}

impl Controller {
    fn new(store: Arc<dyn Store>) -> Self {
        Self {
            api: Registry::new(store.clone()),
            store,
            namespaces: Cache::default(),
        }
    }

    /// Deletes what is in `namespace`; returns how many objects are still there (being deleted
    /// gracefully, or waiting for their finalizers).
    async fn delete_contents(&self, namespace: &str) -> Result<usize, ApiError> {
        let mut remaining = 0;
        for info in KINDS.iter().filter(|k| k.namespaced) {
            remaining += skiff_api::with_kind!(info, K => {
                delete_all::<K>(&Registry::<K>::new(self.store.clone()), namespace).await?
            });
        }
        // Its wasi:keyvalue buckets (no pod is left to use them once the pods are gone).
        if remaining == 0 {
            crate::registry::keyvalue::Buckets::new(self.store.clone())
                .delete_namespace(namespace)
                .await?;
        }
        Ok(remaining)
    }
}

/// Deletes every object of kind `K` in `namespace`; returns how many are still there.
async fn delete_all<K: crate::registry::Strategy>(
    api: &Registry<K>,
    namespace: &str,
) -> Result<usize, ApiError> {
    let mut remaining = 0;
    for obj in api.list_all(namespace).await? {
        if obj.meta().deletion_timestamp.is_some() {
            remaining += 1; // already going
            continue;
        }
        let request = DeleteRequest {
            namespace: namespace.to_string(),
            name: obj.name().to_string(),
            ..Default::default()
        };
        match api.delete(&Identity::Admin, &request).await {
            Ok(left) if left.meta().deletion_timestamp.is_some() => remaining += 1,
            Ok(_) | Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(remaining)
}

#[async_trait::async_trait]
impl Reconciler for Controller {
    fn prefixes(&self) -> Vec<String> {
        vec![prefix::<Namespace>("")]
    }

    fn observe(&mut self, kind: EventKind, kv: &KeyValue, dirty: &mut BTreeSet<String>) {
        let (_, new) = self.namespaces.apply(kind, kv);
        if new.as_deref().is_some_and(terminating) {
            dirty.insert(kv.key.clone());
        }
    }

    fn all_keys(&self) -> Vec<String> {
        self.namespaces
            .keys()
            .filter(|k| self.namespaces.get_key(k).is_some_and(terminating))
            .cloned()
            .collect()
    }

    async fn reconcile(&mut self, key: &str) -> Result<Option<Duration>, ApiError> {
        let Some(ns) = self.namespaces.get_key(key).cloned() else {
            return Ok(None);
        };
        if !terminating(&ns) {
            return Ok(None);
        }
        let name = ns.name();
        let remaining = self.delete_contents(name).await?;
        if remaining > 0 {
            tracing::debug!(namespace = %name, remaining, "namespace terminating");
            return Ok(Some(POLL));
        }
        match self.api.finalize(name).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => {
                tracing::info!(namespace = %name, "namespace deleted");
                self.namespaces.forget("", name);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use skiff_api::Resource;
    use skiff_api::v1::*;

    use super::*;
    use crate::registry::tests::{Harness, meta, pod};

    /// One pass of the controller over what the store holds now.
    async fn pass(h: &Harness) -> Vec<Option<Duration>> {
        let mut c = Controller::new(h.store.clone());
        let page = h
            .store
            .list(&prefix::<Namespace>(""), None, 0)
            .await
            .unwrap();
        let mut dirty = BTreeSet::new();
        for kv in &page.items {
            c.observe(EventKind::Put, kv, &mut dirty);
        }
        let mut out = Vec::new();
        for key in dirty {
            out.push(c.reconcile(&key).await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn a_namespace_is_emptied_through_the_registry_then_removed() {
        let h = Harness::new().await;
        h.namespace("team").await;
        let node = Node {
            metadata: meta("", "n1"),
            ..Default::default()
        };
        h.create(node).await.unwrap();
        // A running pod with a 5 s grace period, a pod never scheduled, a ConfigMap, and a
        // ConfigMap held by a finalizer.
        let mut running = pod("team", "running");
        {
            let spec = running.spec.as_mut().unwrap();
            spec.node_name = "n1".into();
            spec.termination_grace_period_seconds = Some(5);
        }
        h.create(running).await.unwrap();
        h.create(pod("team", "pending")).await.unwrap();
        let cm = ConfigMap {
            metadata: meta("team", "plain"),
            ..Default::default()
        };
        h.create(cm).await.unwrap();
        let mut held = ConfigMap {
            metadata: meta("team", "held"),
            ..Default::default()
        };
        held.metadata_mut().finalizers = vec!["example.com/hold".into()];
        h.create(held).await.unwrap();

        let namespaces = h.registry::<Namespace>();
        let delete = DeleteRequest {
            name: "team".into(),
            ..Default::default()
        };
        namespaces.delete(&Identity::Admin, &delete).await.unwrap();
        assert_eq!(pass(&h).await, [Some(POLL)], "contents remain: look again");

        // The running pod is being deleted gracefully, with its grace period; the pending pod
        // and the plain ConfigMap are gone; the held one waits for its finalizer.
        let pods = h.registry::<Pod>();
        let p = pods.get("team", "running").await.unwrap();
        assert!(p.meta().deletion_timestamp.is_some());
        assert_eq!(p.meta().deletion_grace_period_seconds, Some(5));
        assert!(matches!(
            pods.get("team", "pending").await,
            Err(ApiError::NotFound { .. })
        ));
        let cms = h.registry::<ConfigMap>();
        assert!(cms.get("team", "plain").await.is_err());
        let held = cms.get("team", "held").await.unwrap();
        assert!(held.meta().deletion_timestamp.is_some());
        let ns = namespaces.get("", "team").await.unwrap();
        assert_eq!(ns.status.unwrap().phase, "Terminating");

        // The agent reports the pod stopped (as for any pod delete); the finalizer is removed.
        let mut stopped = p.clone();
        stopped.status.as_mut().unwrap().phase = "Succeeded".into();
        pods.update_status(&Identity::Admin, stopped).await.unwrap();
        assert!(
            pods.get("team", "running").await.is_err(),
            "deletion finished"
        );
        assert_eq!(pass(&h).await, [Some(POLL)], "the held ConfigMap remains");
        let mut release = held.clone();
        release.metadata_mut().finalizers.clear();
        cms.update(&Identity::Admin, release).await.unwrap();

        assert_eq!(pass(&h).await, [None]);
        assert!(matches!(
            namespaces.get("", "team").await,
            Err(ApiError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn an_update_does_not_remove_a_terminating_namespace() {
        let h = Harness::new().await;
        h.namespace("team").await;
        h.create(pod("team", "p")).await.unwrap();
        let namespaces = h.registry::<Namespace>();
        let delete = DeleteRequest {
            name: "team".into(),
            ..Default::default()
        };
        let ns = namespaces.delete(&Identity::Admin, &delete).await.unwrap();
        let mut labelled = ns.clone();
        labelled
            .metadata_mut()
            .labels
            .insert("a".into(), "b".into());
        namespaces.update(&Identity::Admin, labelled).await.unwrap();
        assert!(namespaces.get("", "team").await.is_ok());
        assert!(
            namespaces.finalize("default").await.is_err(),
            "only a terminating namespace is finalized"
        );
    }
}
