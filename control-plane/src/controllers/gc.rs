//! The garbage collector: deletes objects whose owners (ownerReferences) are all gone, and
//! carries out the `Orphan` and `Foreground` deletion policies.
//!
//! - Background (the default): the owner goes at once; its dependents, then theirs, are deleted
//!   here once no owner of theirs is left (a Deployment → its ReplicaSets → their pods, which stop
//!   gracefully).
//! - Orphan: the owner waits with the `orphan` finalizer while its dependents lose their
//!   ownerReference to it; then the finalizer is removed and the owner goes.
//! - Foreground: the owner waits with the `foregroundDeletion` finalizer while its dependents are
//!   deleted; once none is left, the owner goes.
//!
//! An owner missing from the cache is looked up in the store before anything is deleted (the
//! watches of two kinds are not ordered with each other, so a dependent can be seen before its
//! owner). References to owners of unknown kinds are left alone.
//!
//! Must not: delete anything that still has a live owner, or touch Events, Nodes and Namespaces.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use skiff_api::kinds::{KINDS, KindInfo};
use skiff_api::v1::{DeleteRequest, ObjectMeta, OwnerReference};

use super::informer::{self, Reconciler};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::registry::Registry;
use crate::store::{EventKind, KeyValue, Store};

pub use crate::registry::{FOREGROUND, ORPHAN};

/// The kinds the collector follows.
fn followed(info: &KindInfo) -> bool {
    !matches!(info.kind, "Event" | "Node" | "Namespace")
}

/// Runs until aborted.
pub async fn run(store: Arc<dyn Store>) {
    let s = store.clone();
    informer::run_forever(
        "garbage-collector",
        store,
        Duration::from_secs(60),
        move || Collector::new(s.clone()),
    )
    .await;
}

#[derive(Debug, Clone)]
struct Meta {
    info: &'static KindInfo,
    namespace: String,
    name: String,
    uid: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
}

struct Collector {
    store: Arc<dyn Store>,
    objects: HashMap<String, Meta>,
    by_uid: HashMap<String, String>,
    /// Owner uid → keys of its dependents.
    dependents: HashMap<String, BTreeSet<String>>,
}

fn info_of_key(key: &str) -> Option<&'static KindInfo> {
    let plural = crate::registry::plural_of_key(key)?;
    KINDS.iter().find(|k| k.plural == plural)
}

impl Collector {
    fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            objects: HashMap::new(),
            by_uid: HashMap::new(),
            dependents: HashMap::new(),
        }
    }

    fn forget(&mut self, key: &str) -> Option<Meta> {
        let old = self.objects.remove(key)?;
        self.by_uid.remove(&old.uid);
        for o in &old.owners {
            if let Some(deps) = self.dependents.get_mut(&o.uid) {
                deps.remove(key);
                if deps.is_empty() {
                    self.dependents.remove(&o.uid);
                }
            }
        }
        Some(old)
    }

    /// Is the owner still there (same uid)? Asks the store when the cache does not know it.
    async fn alive(&self, owner: &OwnerReference, namespace: &str) -> Result<bool, ApiError> {
        if self.by_uid.contains_key(&owner.uid) {
            return Ok(true);
        }
        let Some(info) = KindInfo::by_kind(&owner.kind) else {
            return Ok(true); // a kind we do not serve: never collect on its account
        };
        let namespace = if info.namespaced { namespace } else { "" };
        let found = skiff_api::with_kind!(info, K => {
            use skiff_api::ResourceExt;
            Registry::<K>::new(self.store.clone())
                .get(namespace, &owner.name)
                .await
                .map(|o| o.meta().uid.clone())
        });
        match found {
            Ok(uid) => Ok(uid == owner.uid),
            Err(ApiError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, m: &Meta) -> Result<(), ApiError> {
        let request = DeleteRequest {
            namespace: m.namespace.clone(),
            name: m.name.clone(),
            ..Default::default()
        };
        let result = skiff_api::with_kind!(m.info, K => Registry::<K>::new(self.store.clone())
            .delete(&Identity::Admin, &request)
            .await
            .map(|_| ()));
        match result {
            Ok(()) | Err(ApiError::NotFound { .. }) => {
                tracing::info!(kind = m.info.kind, namespace = %m.namespace, name = %m.name, "garbage-collected");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Rewrites an object's metadata through the API rules (removing the last finalizer of an
    /// object being deleted completes its deletion there).
    async fn edit(&self, m: &Meta, f: impl FnOnce(&mut ObjectMeta) + Send) -> Result<(), ApiError> {
        let result = skiff_api::with_kind!(m.info, K => {
            let handler = Registry::<K>::new(self.store.clone());
            match handler.get(&m.namespace, &m.name).await {
                Ok(mut obj) => {
                    use skiff_api::Resource;
                    f(obj.metadata_mut());
                    handler.update(&Identity::Admin, obj).await.map(|_| ())
                }
                Err(e) => Err(e),
            }
        });
        match result {
            Ok(()) | Err(ApiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn dependents_of(&self, uid: &str) -> Vec<Meta> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|k| self.objects.get(k).cloned())
            .collect()
    }
}

#[async_trait::async_trait]
impl Reconciler for Collector {
    fn prefixes(&self) -> Vec<String> {
        KINDS
            .iter()
            .filter(|k| followed(k))
            .map(|k| crate::registry::prefix_of_plural(k.plural, ""))
            .collect()
    }

    fn observe(&mut self, kind: EventKind, kv: &KeyValue, dirty: &mut BTreeSet<String>) {
        let old = self.forget(&kv.key);
        let new = match kind {
            EventKind::Delete => None,
            EventKind::Put => {
                let info = info_of_key(&kv.key);
                let meta = crate::registry::decode_meta(kv).ok();
                info.zip(meta).map(|(info, meta)| Meta {
                    info,
                    namespace: meta.namespace,
                    name: meta.name,
                    uid: meta.uid,
                    owners: meta.owner_references,
                    deleting: meta.deletion_timestamp.is_some(),
                    finalizers: meta.finalizers,
                })
            }
        };
        if let Some(m) = &new {
            self.by_uid.insert(m.uid.clone(), kv.key.clone());
            for o in &m.owners {
                self.dependents
                    .entry(o.uid.clone())
                    .or_default()
                    .insert(kv.key.clone());
            }
            if !m.owners.is_empty() || m.deleting {
                dirty.insert(kv.key.clone());
            }
            self.objects.insert(kv.key.clone(), m.clone());
        }
        // An owner that went away or started deleting: its dependents are to be looked at.
        let gone_or_deleting = new.as_ref().is_none_or(|m| m.deleting);
        if let Some(o) = old.as_ref().or(new.as_ref())
            && gone_or_deleting
        {
            dirty.extend(self.dependents.get(&o.uid).into_iter().flatten().cloned());
        }
        // A dependent that went away may let a foreground-deleting owner finish.
        if new.is_none()
            && let Some(o) = &old
        {
            for owner in &o.owners {
                if let Some(k) = self.by_uid.get(&owner.uid) {
                    dirty.insert(k.clone());
                }
            }
        }
    }

    fn all_keys(&self) -> Vec<String> {
        self.objects
            .iter()
            .filter(|(_, m)| !m.owners.is_empty() || m.deleting)
            .map(|(k, _)| k.clone())
            .collect()
    }

    async fn reconcile(&mut self, key: &str) -> Result<Option<Duration>, ApiError> {
        let Some(m) = self.objects.get(key).cloned() else {
            return Ok(None);
        };
        if m.deleting && m.finalizers.iter().any(|f| f == ORPHAN) {
            for dep in self.dependents_of(&m.uid) {
                let uid = m.uid.clone();
                self.edit(&dep, move |meta| {
                    meta.owner_references.retain(|o| o.uid != uid)
                })
                .await?;
            }
            self.edit(&m, |meta| meta.finalizers.retain(|f| f != ORPHAN))
                .await?;
            return Ok(None);
        }
        if m.deleting && m.finalizers.iter().any(|f| f == FOREGROUND) {
            let deps = self.dependents_of(&m.uid);
            if deps.is_empty() {
                self.edit(&m, |meta| meta.finalizers.retain(|f| f != FOREGROUND))
                    .await?;
            } else {
                for dep in deps.iter().filter(|d| !d.deleting) {
                    self.delete(dep).await?;
                }
            }
            return Ok(None);
        }
        if m.owners.is_empty() {
            return Ok(None);
        }
        let mut dangling = Vec::new();
        for owner in &m.owners {
            if !self.alive(owner, &m.namespace).await? {
                dangling.push(owner.uid.clone());
            }
        }
        if dangling.len() == m.owners.len() {
            if !m.deleting {
                self.delete(&m).await?;
            }
        } else if !dangling.is_empty() {
            self.edit(&m, move |meta| {
                meta.owner_references.retain(|o| !dangling.contains(&o.uid))
            })
            .await?;
        }
        Ok(None)
    }
}
