//! One generic handler serves every kind: the rules of the API live here once.
//!
//! create: defaults, validation, namespace must exist, uid/timestamps/generation set by the server.
//! update: optimistic concurrency on resourceVersion, status kept (status subresource), generation
//!         bumped on spec change, no-op updates write nothing; removing the last finalizer of an
//!         object being deleted completes the deletion.
//! delete: finalizers and bound pods get a deletionTimestamp first (graceful), others go at once.
//! watch:  from a resourceVersion, with selectors applied to old and new values so that an object
//!         moving out of a selector is seen as DELETED and into it as ADDED.

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::v1::{DeleteRequest, ListMeta, ListRequest, Namespace, WatchRequest};
use skiff_api::{Resource, ResourceExt, validation};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use crate::auth::{Identity, Verb, authorize};
use crate::error::ApiError;
use crate::store::{EventKind, KeyValue, Revision, Store};

/// Typed access to one kind in the store.
pub struct Handler<K> {
    store: Arc<dyn Store>,
    _kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Handler<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            _kind: PhantomData,
        }
    }
}

/// The store key of an object: `/pods/default/web`, `/nodes/n1`.
pub fn key<K: Resource>(namespace: &str, name: &str) -> String {
    if K::NAMESPACED {
        format!("/{}/{namespace}/{name}", K::PLURAL)
    } else {
        format!("/{}/{name}", K::PLURAL)
    }
}

/// The store prefix of a list: `/pods/default/`, or `/pods/` for all namespaces.
pub fn prefix<K: Resource>(namespace: &str) -> String {
    if K::NAMESPACED && !namespace.is_empty() {
        format!("/{}/{namespace}/", K::PLURAL)
    } else {
        format!("/{}/", K::PLURAL)
    }
}

/// Decodes a stored value and stamps its resourceVersion.
pub fn decode<K: Resource>(kv: &KeyValue) -> Result<K, ApiError> {
    let mut obj = K::decode(kv.value.as_ref())
        .map_err(|e| ApiError::Internal(format!("corrupt object {}: {e}", kv.key)))?;
    obj.metadata_mut().resource_version = kv.mod_revision.to_string();
    Ok(obj)
}

pub(crate) fn encode<K: Resource>(obj: &K) -> Bytes {
    let mut copy = obj.clone();
    copy.metadata_mut().resource_version.clear();
    Bytes::from(copy.encode_to_vec())
}

/// Selectors of a list or watch, checked against what the kind supports.
struct Selectors {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selectors {
    fn parse<K: Resource>(label: &str, field: &str) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(label)
            .map_err(|e| ApiError::BadRequest(format!("labelSelector: {e}")))?;
        let fields = FieldSelector::parse(field)
            .map_err(|e| ApiError::BadRequest(format!("fieldSelector: {e}")))?;
        let probe = K::default();
        for path in fields.paths() {
            if probe.field(path).is_none() {
                return Err(ApiError::BadRequest(format!(
                    "fieldSelector: field {path:?} is not supported for {}",
                    K::PLURAL
                )));
            }
        }
        Ok(Self { labels, fields })
    }

    fn matches<K: Resource>(&self, obj: &K) -> bool {
        self.labels.matches(&obj.meta().labels) && self.fields.matches(|p| obj.field(p))
    }
}

const DEFAULT_NAMESPACE: &str = "default";

impl<K: Resource> Handler<K> {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            _kind: PhantomData,
        }
    }

    fn namespace_of(namespace: &str) -> String {
        if !K::NAMESPACED {
            String::new()
        } else if namespace.is_empty() {
            DEFAULT_NAMESPACE.to_string()
        } else {
            namespace.to_string()
        }
    }

    async fn current(&self, namespace: &str, name: &str) -> Result<(K, KeyValue), ApiError> {
        if name.is_empty() {
            return Err(ApiError::BadRequest("name: required".into()));
        }
        let kv = self
            .store
            .get(&key::<K>(namespace, name))
            .await
            .map_err(|e| ApiError::from_store(e, K::PLURAL, name))?
            .ok_or_else(|| ApiError::NotFound {
                plural: K::PLURAL,
                name: name.to_string(),
            })?;
        Ok((decode(&kv)?, kv))
    }

    fn invalid(obj: &K, errors: validation::FieldErrors) -> ApiError {
        ApiError::Invalid {
            kind: K::KIND,
            name: obj.name().to_string(),
            errors,
        }
    }

    async fn check_namespace_open(&self, namespace: &str) -> Result<(), ApiError> {
        if !K::NAMESPACED {
            return Ok(());
        }
        let kv = self
            .store
            .get(&key::<Namespace>("", namespace))
            .await
            .map_err(|e| ApiError::from_store(e, "namespaces", namespace))?
            .ok_or_else(|| ApiError::NotFound {
                plural: "namespaces",
                name: namespace.to_string(),
            })?;
        let ns: Namespace = decode(&kv)?;
        if ns.meta().deletion_timestamp.is_some() {
            return Err(ApiError::Precondition(format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            )));
        }
        Ok(())
    }

    pub async fn create(&self, who: &Identity, mut obj: K) -> Result<K, ApiError> {
        authorize(who, Verb::Create, K::KIND)
            .map_err(|s| ApiError::Forbidden(s.message().to_string()))?;
        let ns = Self::namespace_of(&obj.meta().namespace);
        {
            let meta = obj.metadata_mut();
            meta.namespace = ns.clone();
            if meta.name.is_empty() && !meta.generate_name.is_empty() {
                meta.name = format!("{}{}", meta.generate_name, random_suffix());
            }
            meta.uid = uuid::Uuid::new_v4().to_string();
            meta.resource_version.clear();
            meta.creation_timestamp = Some(skiff_api::time::now());
            meta.deletion_timestamp = None;
            meta.deletion_grace_period_seconds = None;
            meta.generation = 1;
        }
        prepare_for_create(&mut obj);
        validation::validate(&obj).map_err(|e| Self::invalid(&obj, e))?;
        self.check_namespace_open(&ns).await?;
        let name = obj.name().to_string();
        let kv = self
            .store
            .create(&key::<K>(&ns, &name), encode(&obj))
            .await
            .map_err(|e| ApiError::from_store(e, K::PLURAL, &name))?;
        obj.metadata_mut().resource_version = kv.mod_revision.to_string();
        Ok(obj)
    }

    pub async fn get(&self, who: &Identity, namespace: &str, name: &str) -> Result<K, ApiError> {
        authorize(who, Verb::Get, K::KIND)
            .map_err(|s| ApiError::Forbidden(s.message().to_string()))?;
        Ok(self.current(&Self::namespace_of(namespace), name).await?.0)
    }

    pub async fn list(
        &self,
        who: &Identity,
        req: &ListRequest,
    ) -> Result<(Vec<K>, ListMeta), ApiError> {
        authorize(who, Verb::List, K::KIND)
            .map_err(|s| ApiError::Forbidden(s.message().to_string()))?;
        let selectors = Selectors::parse::<K>(&req.label_selector, &req.field_selector)?;
        let prefix = prefix::<K>(&req.namespace);
        let mut start = if req.r#continue.is_empty() {
            None
        } else if req.r#continue.starts_with(&prefix) {
            Some(req.r#continue.clone())
        } else {
            return Err(ApiError::BadRequest(
                "continue: token does not belong to this list".into(),
            ));
        };
        let limit = usize::try_from(req.limit.max(0)).unwrap_or(0);
        let mut items = Vec::new();
        let mut revision = None;
        loop {
            let want = if limit == 0 {
                0
            } else {
                (limit - items.len()).max(64)
            };
            let page = self
                .store
                .list(&prefix, start.as_deref(), want)
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            revision.get_or_insert(page.revision);
            let mut last_key = None;
            for kv in &page.items {
                last_key = Some(kv.key.clone());
                let obj: K = decode(kv)?;
                if selectors.matches(&obj) {
                    items.push(obj);
                    if limit > 0 && items.len() == limit {
                        let more = page.more
                            || kv.key
                                != page.items.last().map(|k| k.key.clone()).unwrap_or_default();
                        let meta = ListMeta {
                            resource_version: revision.unwrap_or(0).to_string(),
                            r#continue: if more { kv.key.clone() } else { String::new() },
                        };
                        return Ok((items, meta));
                    }
                }
            }
            if !page.more {
                break;
            }
            start = last_key;
        }
        Ok((
            items,
            ListMeta {
                resource_version: revision.unwrap_or(0).to_string(),
                r#continue: String::new(),
            },
        ))
    }

    pub async fn update(&self, who: &Identity, mut obj: K) -> Result<K, ApiError> {
        authorize(who, Verb::Update, K::KIND)
            .map_err(|s| ApiError::Forbidden(s.message().to_string()))?;
        let ns = Self::namespace_of(&obj.meta().namespace);
        obj.metadata_mut().namespace = ns.clone();
        let name = obj.name().to_string();
        let (current, kv) = self.current(&ns, &name).await?;
        check_version(&obj, &kv, &name)?;
        prepare_for_update(&mut obj, &current)?;
        {
            let cur = current.meta();
            let meta = obj.metadata_mut();
            meta.uid = cur.uid.clone();
            meta.creation_timestamp = cur.creation_timestamp;
            meta.deletion_timestamp = cur.deletion_timestamp;
            meta.deletion_grace_period_seconds = cur.deletion_grace_period_seconds;
            meta.generation = cur.generation;
        }
        if K::HAS_STATUS {
            obj.set_status_from(&current);
        }
        if obj.spec_fingerprint() != current.spec_fingerprint() {
            obj.metadata_mut().generation = current.meta().generation + 1;
        }
        validation::validate(&obj).map_err(|e| Self::invalid(&obj, e))?;
        self.write_update(obj, current, kv).await
    }

    pub async fn update_status(&self, who: &Identity, obj: K) -> Result<K, ApiError> {
        authorize(who, Verb::UpdateStatus, K::KIND)
            .map_err(|s| ApiError::Forbidden(s.message().to_string()))?;
        if !K::HAS_STATUS {
            return Err(ApiError::BadRequest(format!("{} has no status", K::PLURAL)));
        }
        let ns = Self::namespace_of(&obj.meta().namespace);
        let name = obj.name().to_string();
        let (current, kv) = self.current(&ns, &name).await?;
        check_version(&obj, &kv, &name)?;
        let mut next = current.clone();
        next.set_status_from(&obj);
        validation::validate(&next).map_err(|e| Self::invalid(&next, e))?;
        self.write_update(next, current, kv).await
    }

    /// Writes `obj` over `current` (read at `kv`), or deletes it if its deletion is now complete.
    async fn write_update(&self, mut obj: K, current: K, kv: KeyValue) -> Result<K, ApiError> {
        let name = obj.name().to_string();
        let meta = obj.meta();
        if meta.deletion_timestamp.is_some()
            && meta.finalizers.is_empty()
            && !pod_awaits_node::<K>(&obj)
        {
            let deleted = self
                .store
                .delete(&kv.key, Some(kv.mod_revision))
                .await
                .map_err(|e| ApiError::from_store(e, K::PLURAL, &name))?;
            obj.metadata_mut().resource_version = deleted.mod_revision.to_string();
            return Ok(obj);
        }
        let mut unchanged = obj.clone();
        unchanged.metadata_mut().resource_version = current.meta().resource_version.clone();
        if unchanged == current {
            return Ok(current);
        }
        let written = self
            .store
            .update(&kv.key, encode(&obj), Some(kv.mod_revision))
            .await
            .map_err(|e| ApiError::from_store(e, K::PLURAL, &name))?;
        obj.metadata_mut().resource_version = written.mod_revision.to_string();
        Ok(obj)
    }

    pub async fn delete(&self, who: &Identity, req: &DeleteRequest) -> Result<K, ApiError> {
        authorize(who, Verb::Delete, K::KIND)
            .map_err(|s| ApiError::Forbidden(s.message().to_string()))?;
        match req.propagation_policy.as_str() {
            "" | "Background" | "Foreground" | "Orphan" => {}
            other => {
                return Err(ApiError::BadRequest(format!(
                    "propagationPolicy: unsupported value {other:?}: supported values are \"Background\", \"Foreground\", \"Orphan\""
                )));
            }
        }
        let ns = Self::namespace_of(&req.namespace);
        let (mut obj, kv) = self.current(&ns, &req.name).await?;
        if !req.resource_version.is_empty() && req.resource_version != kv.mod_revision.to_string() {
            return Err(ApiError::Conflict {
                plural: K::PLURAL,
                name: req.name.clone(),
            });
        }
        let grace = graceful_deletion(&obj, req.grace_period_seconds, &*self.store).await;
        // Orphan and Foreground make the owner wait for the garbage collector.
        let gc_finalizer = match req.propagation_policy.as_str() {
            "Orphan" => Some(crate::controllers::gc::ORPHAN),
            "Foreground" => Some(crate::controllers::gc::FOREGROUND),
            _ => None,
        }
        .filter(|_| !matches!(K::KIND, "Pod" | "Event" | "Node" | "Namespace"));
        let mut adds_finalizer = false;
        if let Some(f) = gc_finalizer
            && !obj.meta().finalizers.iter().any(|x| x == f)
        {
            obj.metadata_mut().finalizers.push(f.to_string());
            adds_finalizer = true;
        }
        let meta = obj.meta();
        if !meta.finalizers.is_empty() || grace.is_some() || K::KIND == "Namespace" {
            if meta.deletion_timestamp.is_some()
                && !adds_finalizer
                && grace.is_none_or(|g| Some(g) >= meta.deletion_grace_period_seconds)
            {
                return Ok(obj); // already being deleted
            }
            let m = obj.metadata_mut();
            m.deletion_timestamp = m.deletion_timestamp.or(Some(skiff_api::time::now()));
            m.deletion_grace_period_seconds = grace.or(Some(0));
            mark_terminating(&mut obj);
            let written = self
                .store
                .update(&kv.key, encode(&obj), Some(kv.mod_revision))
                .await
                .map_err(|e| ApiError::from_store(e, K::PLURAL, &req.name))?;
            obj.metadata_mut().resource_version = written.mod_revision.to_string();
            return Ok(obj);
        }
        let deleted = self
            .store
            .delete(&kv.key, Some(kv.mod_revision))
            .await
            .map_err(|e| ApiError::from_store(e, K::PLURAL, &req.name))?;
        obj.metadata_mut().resource_version = deleted.mod_revision.to_string();
        Ok(obj)
    }

    /// Watch events as (type, object), ending with an error if the watch cannot continue.
    pub async fn watch(
        &self,
        who: &Identity,
        req: &WatchRequest,
    ) -> Result<mpsc::Receiver<Result<(&'static str, K), ApiError>>, ApiError> {
        authorize(who, Verb::Watch, K::KIND)
            .map_err(|s| ApiError::Forbidden(s.message().to_string()))?;
        let selectors = Selectors::parse::<K>(&req.label_selector, &req.field_selector)?;
        let prefix = prefix::<K>(&req.namespace);
        let (tx, rx) = mpsc::channel(256);
        let mut initial = Vec::new();
        let after: Revision = if req.resource_version.is_empty() {
            let list = ListRequest {
                namespace: req.namespace.clone(),
                label_selector: req.label_selector.clone(),
                field_selector: req.field_selector.clone(),
                ..Default::default()
            };
            let (items, meta) = self.list(who, &list).await?;
            initial = items;
            meta.resource_version.parse().unwrap_or(0)
        } else {
            req.resource_version.parse().map_err(|_| {
                ApiError::BadRequest(format!(
                    "resourceVersion: {:?} is not a resource version",
                    req.resource_version
                ))
            })?
        };
        let mut events = self
            .store
            .watch(&prefix, after)
            .await
            .map_err(|e| ApiError::from_store(e, K::PLURAL, ""))?;
        tokio::spawn(async move {
            for obj in initial {
                if tx.send(Ok(("ADDED", obj))).await.is_err() {
                    return;
                }
            }
            loop {
                let event = tokio::select! {
                    e = events.next() => e,
                    () = tx.closed() => return,
                };
                let Some(event) = event else { return };
                let out = match event {
                    Err(e) => Err(ApiError::from_store(e, K::PLURAL, "")),
                    Ok(e) => match translate::<K>(&selectors, &e) {
                        Ok(Some(pair)) => Ok(pair),
                        Ok(None) => continue,
                        Err(e) => Err(e),
                    },
                };
                let stop = out.is_err();
                if tx.send(out).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

/// A store event as the watcher of `selectors` sees it.
fn translate<K: Resource>(
    selectors: &Selectors,
    e: &crate::store::Event,
) -> Result<Option<(&'static str, K)>, ApiError> {
    let obj: K = decode(&e.kv)?;
    let prev_matches = match &e.prev {
        Some(p) => selectors.matches(&decode::<K>(p)?),
        None => false,
    };
    Ok(match e.kind {
        EventKind::Delete => prev_matches.then_some(("DELETED", obj)),
        EventKind::Put => match (prev_matches, selectors.matches(&obj)) {
            (true, true) => Some(("MODIFIED", obj)),
            (false, true) => Some(("ADDED", obj)),
            (true, false) => Some(("DELETED", obj)),
            (false, false) => None,
        },
    })
}

fn check_version<K: Resource>(obj: &K, kv: &KeyValue, name: &str) -> Result<(), ApiError> {
    let rv = &obj.meta().resource_version;
    if !rv.is_empty() && *rv != kv.mod_revision.to_string() {
        return Err(ApiError::Conflict {
            plural: K::PLURAL,
            name: name.to_string(),
        });
    }
    Ok(())
}

fn random_suffix() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

// ---- kind-specific rules, kept small and in one place ----

fn as_any<K: Resource>(obj: &mut K) -> &mut dyn std::any::Any {
    obj
}

/// Server-set fields on create.
fn prepare_for_create<K: Resource>(obj: &mut K) {
    let any = as_any(obj);
    if let Some(secret) = any.downcast_mut::<skiff_api::v1::Secret>() {
        for (k, v) in std::mem::take(&mut secret.string_data) {
            secret.data.insert(k, v.into_bytes());
        }
        if secret.r#type.is_empty() {
            secret.r#type = "Opaque".into();
        }
    } else if let Some(ns) = any.downcast_mut::<Namespace>() {
        ns.status = Some(skiff_api::v1::NamespaceStatus {
            phase: "Active".into(),
        });
    } else if let Some(pod) = any.downcast_mut::<skiff_api::v1::Pod>() {
        // A built-in priority class gives the pod its priority (an unknown one fails validation).
        if let Some(spec) = pod.spec.as_mut()
            && spec.priority.is_none()
        {
            spec.priority = skiff_api::validation::priority_of_class(&spec.priority_class_name);
        }
        pod.status = Some(skiff_api::v1::PodStatus {
            phase: "Pending".into(),
            ..Default::default()
        });
    } else if let Some(pvc) = any.downcast_mut::<skiff_api::v1::PersistentVolumeClaim>() {
        pvc.status = Some(skiff_api::v1::PersistentVolumeClaimStatus {
            phase: "Pending".into(),
            ..Default::default()
        });
    } else if let Some(d) = any.downcast_mut::<skiff_api::v1::Deployment>() {
        d.status = None;
    } else if let Some(rs) = any.downcast_mut::<skiff_api::v1::ReplicaSet>() {
        rs.status = None;
    } else if let Some(s) = any.downcast_mut::<skiff_api::v1::Service>() {
        s.status = None;
        if let Some(spec) = s.spec.as_mut()
            && spec.r#type.is_empty()
        {
            spec.r#type = "ClusterIP".into();
        }
    }
}

/// Kind rules on update (immutability).
fn prepare_for_update<K: Resource>(obj: &mut K, current: &K) -> Result<(), ApiError> {
    let current_any: &dyn std::any::Any = current;
    let any = as_any(obj);
    if let (Some(new), Some(cur)) = (
        any.downcast_mut::<skiff_api::v1::Secret>(),
        current_any.downcast_ref::<skiff_api::v1::Secret>(),
    ) {
        for (k, v) in std::mem::take(&mut new.string_data) {
            new.data.insert(k, v.into_bytes());
        }
        if new.r#type.is_empty() {
            new.r#type = cur.r#type.clone();
        }
        if cur.immutable == Some(true) && (new.data != cur.data || new.immutable != cur.immutable) {
            return Err(ApiError::BadRequest(format!(
                "secrets {:?}: data: field is immutable when `immutable` is set",
                cur.name()
            )));
        }
        if new.r#type != cur.r#type {
            return Err(ApiError::BadRequest(format!(
                "secrets {:?}: type: field is immutable",
                cur.name()
            )));
        }
    }
    if let (Some(new), Some(cur)) = (
        any.downcast_mut::<skiff_api::v1::ConfigMap>(),
        current_any.downcast_ref::<skiff_api::v1::ConfigMap>(),
    ) && cur.immutable == Some(true)
        && (new.data != cur.data
            || new.binary_data != cur.binary_data
            || new.immutable != cur.immutable)
    {
        return Err(ApiError::BadRequest(format!(
            "configmaps {:?}: data: field is immutable when `immutable` is set",
            cur.name()
        )));
    }
    if let (Some(new), Some(cur)) = (
        any.downcast_mut::<skiff_api::v1::Pod>(),
        current_any.downcast_ref::<skiff_api::v1::Pod>(),
    ) {
        let bound = cur
            .spec
            .as_ref()
            .map(|s| s.node_name.clone())
            .unwrap_or_default();
        let wanted = new
            .spec
            .as_ref()
            .map(|s| s.node_name.clone())
            .unwrap_or_default();
        if !bound.is_empty() && wanted != bound {
            return Err(ApiError::BadRequest(format!(
                "pods {:?}: spec.nodeName: field is immutable once the pod is bound (to {bound})",
                cur.name()
            )));
        }
    }
    if let (Some(new), Some(cur)) = (
        any.downcast_mut::<skiff_api::v1::Node>(),
        current_any.downcast_ref::<skiff_api::v1::Node>(),
    ) && let Some(cs) = cur.spec.as_ref()
        && !cs.pod_cidr.is_empty()
    {
        // podCIDR is set once (by the node IPAM controller): an update that leaves it out keeps
        // it, one that changes it is refused, as in Kubernetes.
        let ns = new.spec.get_or_insert_with(Default::default);
        if ns.pod_cidr.is_empty() && ns.pod_cidrs.is_empty() {
            ns.pod_cidr = cs.pod_cidr.clone();
            ns.pod_cidrs = cs.pod_cidrs.clone();
        }
        if ns.pod_cidr != cs.pod_cidr || ns.pod_cidrs != cs.pod_cidrs {
            return Err(ApiError::BadRequest(format!(
                "nodes {:?}: spec.podCIDR: field is immutable once set (to {})",
                cur.name(),
                cs.pod_cidr
            )));
        }
    }
    if let (Some(new), Some(cur)) = (
        any.downcast_mut::<skiff_api::v1::Service>(),
        current_any.downcast_ref::<skiff_api::v1::Service>(),
    ) && let (Some(ns), Some(cs)) = (new.spec.as_mut(), cur.spec.as_ref())
    {
        if ns.r#type.is_empty() {
            ns.r#type = cs.r#type.clone();
        }
        if ns.cluster_ip.is_empty() {
            ns.cluster_ip = cs.cluster_ip.clone();
            ns.cluster_ips = cs.cluster_ips.clone();
        }
    }
    Ok(())
}

/// Seconds of graceful deletion for a running pod bound to an existing node; None: delete at once.
async fn graceful_deletion<K: Resource>(
    obj: &K,
    requested: Option<i32>,
    store: &dyn Store,
) -> Option<i32> {
    let pod = (obj as &dyn std::any::Any).downcast_ref::<skiff_api::v1::Pod>()?;
    let spec = pod.spec.as_ref()?;
    let phase = pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("");
    if spec.node_name.is_empty() || matches!(phase, "Succeeded" | "Failed") || requested == Some(0)
    {
        return None;
    }
    let node_exists = store
        .get(&key::<skiff_api::v1::Node>("", &spec.node_name))
        .await
        .ok()
        .flatten()
        .is_some();
    node_exists.then(|| {
        requested
            .or(spec.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(1)
    })
}

/// A pod with a deletionTimestamp stays until its node reports it stopped (or it never ran).
fn pod_awaits_node<K: Resource>(obj: &K) -> bool {
    let Some(pod) = (obj as &dyn std::any::Any).downcast_ref::<skiff_api::v1::Pod>() else {
        return false;
    };
    let phase = pod.status.as_ref().map(|s| s.phase.as_str()).unwrap_or("");
    pod.spec.as_ref().is_some_and(|s| !s.node_name.is_empty())
        && !matches!(phase, "Succeeded" | "Failed")
}

fn mark_terminating<K: Resource>(obj: &mut K) {
    if let Some(ns) = as_any(obj).downcast_mut::<Namespace>() {
        ns.status.get_or_insert_with(Default::default).phase = "Terminating".into();
    }
}
