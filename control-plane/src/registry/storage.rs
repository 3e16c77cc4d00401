//! [`Registry`]: the storage object of one kind (Kubernetes' `genericregistry.Store`), the
//! one place that reads and writes objects of that kind in the store.
//!
//! create: server-set metadata, the strategy's defaults, mutating admission, validation,
//!         validating admission (the namespace must exist and not be terminating), then a create.
//! update: optimistic concurrency on resourceVersion, server-owned fields and status kept, the
//!         strategy's update rules (validation ratcheted: what the stored object already broke
//!         under older rules does not block it), generation bumped on spec change, no-op updates
//!         write nothing;
//!         removing the last finalizer of an object being deleted completes the deletion.
//! delete: finalizers and graceful kinds get a deletionTimestamp first, others go at once.
//! pools:  a Service's cluster IP and node ports are taken before its create or update is
//!         written and given back if the write fails; what an update or a deletion no longer
//!         holds is given back after it ([`allocator`](super::allocator)).
//! watch:  from a resourceVersion, with selectors applied to old and new values so that an object
//!         moving out of a selector is seen as DELETED and into it as ADDED.
//!
//! Must not: authorize — callers (the API servers) have done so; controllers are trusted.

use std::marker::PhantomData;
use std::sync::Arc;

use skiff_api::v1::{DeleteRequest, ListMeta, ListRequest, Node, WatchRequest};
use skiff_api::validation::FieldErrors;
use skiff_api::{Resource, ResourceExt};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::admission::{Attributes, Chain, Operation};
use super::allocator::{self, Claims};
use super::{Selectors, Strategy, decode, encode, key, prefix};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::store::{EventKind, KeyValue, Revision, Store};

/// Finalizer of an owner being deleted with `propagationPolicy: Orphan`.
pub const ORPHAN: &str = "orphan";
/// Finalizer of an owner being deleted with `propagationPolicy: Foreground`.
pub const FOREGROUND: &str = "foregroundDeletion";

const DEFAULT_NAMESPACE: &str = "default";

/// Typed access to one kind in the store, through the kind's [`Strategy`] and admission.
pub struct Registry<K> {
    pub(super) store: Arc<dyn Store>,
    admission: Arc<Chain>,
    _kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Registry<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            admission: self.admission.clone(),
            _kind: PhantomData,
        }
    }
}

impl<K: Strategy> Registry<K> {
    /// A registry with the standard admission chain.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let admission = Arc::new(Chain::standard(store.clone()));
        Self {
            store,
            admission,
            _kind: PhantomData,
        }
    }

    /// The namespace an object of this kind lives in: `default` when left out, none for
    /// cluster-scoped kinds.
    pub fn namespace_of(namespace: &str) -> String {
        if !K::NAMESPACED {
            String::new()
        } else if namespace.is_empty() {
            DEFAULT_NAMESPACE.to_string()
        } else {
            namespace.to_string()
        }
    }

    pub(super) fn admission_chain(&self) -> &Chain {
        &self.admission
    }

    /// Validation of an update, ratcheted as Kubernetes ratchets tightened rules: an error the
    /// stored object has as well (stored under older rules, e.g. a pod's `hostPort`) does not
    /// block the update; only what the update brings in does.
    fn validate_ratcheted(obj: &K, current: &K) -> Result<(), ApiError> {
        let Err(errors) = obj.validate() else {
            return Ok(());
        };
        let before = current.validate().err().unwrap_or_default();
        let new: Vec<_> = errors
            .0
            .into_iter()
            .filter(|e| !before.0.contains(e))
            .collect();
        FieldErrors(new)
            .into_result()
            .map_err(|e| Self::invalid(obj, e))
    }

    fn invalid(obj: &K, errors: FieldErrors) -> ApiError {
        ApiError::Invalid {
            kind: K::KIND,
            name: obj.name().to_string(),
            errors,
        }
    }

    fn store_error(e: crate::store::StoreError, name: &str) -> ApiError {
        ApiError::from_store(e, K::PLURAL, name)
    }

    /// The stored object and its key-value (for a compare-and-swap on its revision).
    pub(super) async fn current(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<(K, KeyValue), ApiError> {
        let kv = self
            .store
            .get(&key::<K>(namespace, name))
            .await
            .map_err(|e| Self::store_error(e, name))?
            .ok_or_else(|| ApiError::NotFound {
                plural: K::PLURAL,
                name: name.to_string(),
            })?;
        Ok((decode(&kv)?, kv))
    }

    /// Each write operation is one read session of the watch cache (`store::cache::session`):
    /// admission's reads share one round trip to etcd.
    pub async fn create(&self, who: &Identity, obj: K) -> Result<K, ApiError> {
        crate::store::cache::session(self.create_once(who, obj)).await
    }

    async fn create_once(&self, who: &Identity, mut obj: K) -> Result<K, ApiError> {
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
        obj.prepare_for_create();
        let name = obj.name().to_string();
        let attrs = Attributes::new::<K>(Operation::Create, &ns, &name, who);
        self.admission.mutate(&attrs, &mut obj).await?;
        obj.validate().map_err(|e| Self::invalid(&obj, e))?;
        self.admission.validate(&attrs, &mut obj).await?;
        let claims = match allocator::claim(self.store.as_ref(), &mut obj, None).await {
            Ok(claims) => claims,
            // A second create of an object naming its values finds them taken by the first:
            // that is an AlreadyExists (which `apply` answers with an update), not a refusal.
            Err(e @ ApiError::Taken { .. }) => {
                return Err(match self.current(&ns, &name).await {
                    Ok(_) => ApiError::AlreadyExists {
                        plural: K::PLURAL,
                        name,
                    },
                    Err(_) => e,
                });
            }
            Err(e) => return Err(e),
        };
        let kv = match self
            .store
            .create(&key::<K>(&ns, &name), encode(&mut obj))
            .await
        {
            Ok(kv) => kv,
            Err(e) => {
                claims.revert(self.store.as_ref()).await;
                return Err(Self::store_error(e, &name));
            }
        };
        claims.commit(self.store.as_ref()).await;
        obj.metadata_mut().resource_version = kv.mod_revision.to_string();
        Ok(obj)
    }

    pub async fn get(&self, namespace: &str, name: &str) -> Result<K, ApiError> {
        Ok(self.current(&Self::namespace_of(namespace), name).await?.0)
    }

    /// A page of objects (all of them when `limit` is 0), and the list's resourceVersion and
    /// continue token.
    ///
    /// Every page of a paged list reports the resourceVersion of its first page, so a watch from
    /// it after the last page misses no change made while paging (an object changed meanwhile
    /// may be seen in a page and again in the watch, never lost). The continue token is opaque:
    /// that revision and where the page ended, relative to the list.
    ///
    /// A `resourceVersion` of `0` (any) or `N` (not older than N) is served by a watch cache as it
    /// is, or once it has N, without a quorum read ([`list_freshness`]); empty is the newest.
    /// An `N` the store has not reached either (the cache waited for it, then asked the store) is
    /// refused as Kubernetes refuses it: 504 Timeout, `ResourceVersionTooLarge`
    /// ([`not_older`]); never an answer older than asked.
    pub async fn list(&self, req: &ListRequest) -> Result<(Vec<K>, ListMeta), ApiError> {
        match list_freshness(req)? {
            Some(revision) => {
                let (items, meta) =
                    crate::store::cache::not_older_than(revision, self.list_pages(req)).await?;
                not_older(revision, &meta)?;
                Ok((items, meta))
            }
            None => self.list_pages(req).await,
        }
    }

    async fn list_pages(&self, req: &ListRequest) -> Result<(Vec<K>, ListMeta), ApiError> {
        let selectors = Selectors::parse::<K>(&req.label_selector, &req.field_selector)?;
        let prefix = prefix::<K>(&req.namespace);
        let (mut start, mut revision) = if req.r#continue.is_empty() {
            (None, None)
        } else {
            let token = ContinueToken::decode(&req.r#continue)?;
            (
                Some(format!("{prefix}{}", token.after)),
                Some(token.revision),
            )
        };
        let limit = usize::try_from(req.limit.max(0)).unwrap_or(0);
        let mut items = Vec::new();
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
                        let revision = revision.unwrap_or(0);
                        let token = more.then(|| ContinueToken {
                            revision,
                            after: kv.key[prefix.len()..].to_string(),
                        });
                        let meta = ListMeta {
                            resource_version: revision.to_string(),
                            r#continue: token.map(|t| t.encode()).unwrap_or_default(),
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

    /// Every object of the kind in `namespace` (all namespaces if empty), read page by page.
    pub async fn list_all(&self, namespace: &str) -> Result<Vec<K>, ApiError> {
        let mut out = Vec::new();
        let mut req = ListRequest {
            namespace: namespace.to_string(),
            limit: 500,
            ..Default::default()
        };
        loop {
            let (items, meta) = self.list(&req).await?;
            out.extend(items);
            if meta.r#continue.is_empty() {
                return Ok(out);
            }
            req.r#continue = meta.r#continue;
        }
    }

    pub async fn update(&self, who: &Identity, obj: K) -> Result<K, ApiError> {
        crate::store::cache::session(self.update_once(who, obj)).await
    }

    async fn update_once(&self, who: &Identity, mut obj: K) -> Result<K, ApiError> {
        let ns = Self::namespace_of(&obj.meta().namespace);
        obj.metadata_mut().namespace = ns.clone();
        let name = obj.name().to_string();
        let (mut current, kv) = self.current(&ns, &name).await?;
        check_version::<K>(&obj, &kv, &name)?;
        obj.prepare_for_update(&current);
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
        let attrs = Attributes::new::<K>(Operation::Update, &ns, &name, who);
        self.admission.mutate(&attrs, &mut obj).await?;
        Self::validate_ratcheted(&obj, &current)?;
        let mut errors = FieldErrors::default();
        obj.validate_update(&current, &mut errors);
        errors.into_result().map_err(|e| Self::invalid(&obj, e))?;
        self.admission.validate(&attrs, &mut obj).await?;
        let claims = allocator::claim(self.store.as_ref(), &mut obj, Some(&mut current)).await?;
        self.write_update(obj, current, kv, claims).await
    }

    /// A status write starts from the object as the watch cache holds it, without asking etcd
    /// for its revision first (Kubernetes' GuaranteedUpdate starts from its watch cache's
    /// object too): the write is a compare-and-swap on that version's revision, so when it
    /// succeeds the stored object *was* that version and the result is the one a fresh read
    /// would have given. Should the cache have been behind (the swap fails, or that version
    /// decided anything else), the write is made again on a fresh read, which decides.
    /// Without a watch cache every read is fresh and the first answer stands but for those
    /// refusals, which the second attempt repeats.
    pub async fn update_status(&self, who: &Identity, obj: K) -> Result<K, ApiError> {
        if !K::HAS_STATUS {
            return Err(ApiError::BadRequest(format!("{} has no status", K::PLURAL)));
        }
        let cached =
            crate::store::cache::not_older_than(0, self.update_status_once(who, obj.clone())).await;
        match cached {
            Err(
                ApiError::Conflict { .. }
                | ApiError::NotFound { .. }
                | ApiError::Invalid { .. }
                | ApiError::Forbidden(_)
                | ApiError::Precondition(_),
            ) => crate::store::cache::session(self.update_status_once(who, obj)).await,
            done => done,
        }
    }

    async fn update_status_once(&self, who: &Identity, obj: K) -> Result<K, ApiError> {
        let ns = Self::namespace_of(&obj.meta().namespace);
        let name = obj.name().to_string();
        let (current, kv) = self.current(&ns, &name).await?;
        check_version::<K>(&obj, &kv, &name)?;
        let mut next = current.clone();
        next.prepare_for_status_update(&obj);
        Self::validate_ratcheted(&next, &current)?;
        let attrs = Attributes::new::<K>(Operation::UpdateStatus, &ns, &name, who);
        self.admission.validate(&attrs, &mut next).await?;
        self.write_update(next, current, kv, Claims::none()).await
    }

    /// Writes `obj` over `current` (read at `kv`), or deletes it if its deletion is now complete;
    /// then commits what the update took from the pools (or reverts it if the write failed).
    pub(super) async fn write_update(
        &self,
        mut obj: K,
        mut current: K,
        kv: KeyValue,
        claims: Claims,
    ) -> Result<K, ApiError> {
        let store = self.store.as_ref();
        let name = obj.name().to_string();
        let meta = obj.meta();
        if meta.deletion_timestamp.is_some()
            && meta.finalizers.is_empty()
            && !obj.awaits_finalization()
        {
            // What the update took never reaches a stored object; what it held goes with it.
            claims.revert(store).await;
            let deleted = self
                .store
                .delete(&kv.key, Some(kv.mod_revision))
                .await
                .map_err(|e| Self::store_error(e, &name))?;
            allocator::release_held(store, &mut current).await;
            obj.metadata_mut().resource_version = deleted.mod_revision.to_string();
            return Ok(obj);
        }
        // Unchanged but for the resourceVersion it names? Compared in place, without a copy.
        let named = std::mem::replace(
            &mut obj.metadata_mut().resource_version,
            current.meta().resource_version.clone(),
        );
        if obj == current {
            claims.commit(store).await;
            return Ok(current);
        }
        obj.metadata_mut().resource_version = named;
        let written = match self
            .store
            .update(&kv.key, encode(&mut obj), Some(kv.mod_revision))
            .await
        {
            Ok(written) => written,
            Err(e) => {
                claims.revert(store).await;
                return Err(Self::store_error(e, &name));
            }
        };
        claims.commit(store).await;
        obj.metadata_mut().resource_version = written.mod_revision.to_string();
        Ok(obj)
    }

    pub async fn delete(&self, who: &Identity, req: &DeleteRequest) -> Result<K, ApiError> {
        crate::store::cache::session(self.delete_once(who, req)).await
    }

    async fn delete_once(&self, who: &Identity, req: &DeleteRequest) -> Result<K, ApiError> {
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
        let attrs = Attributes::new::<K>(Operation::Delete, &ns, &req.name, who);
        self.admission.validate(&attrs, &mut obj).await?;
        let grace = match obj.graceful_delete(req.grace_period_seconds) {
            Some(g) if self.node_exists(&g.node).await => Some(g.seconds),
            _ => None,
        };
        // Orphan and Foreground make the owner wait for the garbage collector.
        let gc_finalizer = match req.propagation_policy.as_str() {
            "Orphan" => Some(ORPHAN),
            "Foreground" => Some(FOREGROUND),
            _ => None,
        }
        .filter(|_| K::GC_FINALIZERS);
        let mut adds_finalizer = false;
        if let Some(f) = gc_finalizer
            && !obj.meta().finalizers.iter().any(|x| x == f)
        {
            obj.metadata_mut().finalizers.push(f.to_string());
            adds_finalizer = true;
        }
        let meta = obj.meta();
        if !meta.finalizers.is_empty() || grace.is_some() || K::ALWAYS_GRACEFUL {
            if meta.deletion_timestamp.is_some()
                && !adds_finalizer
                && grace.is_none_or(|g| Some(g) >= meta.deletion_grace_period_seconds)
            {
                return Ok(obj); // already being deleted
            }
            let m = obj.metadata_mut();
            m.deletion_timestamp = m.deletion_timestamp.or(Some(skiff_api::time::now()));
            m.deletion_grace_period_seconds = grace.or(Some(0));
            obj.mark_terminating();
            let written = self
                .store
                .update(&kv.key, encode(&mut obj), Some(kv.mod_revision))
                .await
                .map_err(|e| Self::store_error(e, &req.name))?;
            obj.metadata_mut().resource_version = written.mod_revision.to_string();
            return Ok(obj);
        }
        let deleted = self
            .store
            .delete(&kv.key, Some(kv.mod_revision))
            .await
            .map_err(|e| Self::store_error(e, &req.name))?;
        allocator::release_held(self.store.as_ref(), &mut obj).await;
        obj.metadata_mut().resource_version = deleted.mod_revision.to_string();
        Ok(obj)
    }

    async fn node_exists(&self, node: &str) -> bool {
        self.store
            .get(&key::<Node>("", node))
            .await
            .ok()
            .flatten()
            .is_some()
    }

    /// Watch events as (type, object), ending with an error if the watch cannot continue.
    pub async fn watch(
        &self,
        req: &WatchRequest,
    ) -> Result<mpsc::Receiver<Result<(&'static str, K), ApiError>>, ApiError> {
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
            let (items, meta) = self.list(&list).await?;
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
            .map_err(|e| Self::store_error(e, ""))?;
        tokio::spawn(async move {
            let _open = crate::metrics::api::Watcher::open::<K>();
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
                    Err(e) => Err(Self::store_error(e, "")),
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

/// Where a paged list goes on: the revision of its first page and the last key it returned,
/// relative to the list's prefix. On the wire: hex of `revision/after`, opaque to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ContinueToken {
    revision: Revision,
    after: String,
}

impl ContinueToken {
    fn encode(&self) -> String {
        format!("{}/{}", self.revision, self.after)
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn decode(text: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::BadRequest(format!("continue: {text:?} is not a continue token"));
        if !text.len().is_multiple_of(2) {
            return Err(bad());
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(bad)?;
        let plain = String::from_utf8(bytes).map_err(|_| bad())?;
        let (revision, after) = plain.split_once('/').ok_or_else(bad)?;
        let revision = revision.parse().map_err(|_| bad())?;
        if after.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            revision,
            after: after.to_string(),
        })
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

/// An update naming a resourceVersion must name the stored one.
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

/// The revision a list's `resourceVersion` and `resourceVersionMatch` ask for (Kubernetes'
/// rules): `None` for the newest (a consistent read); `Some(0)` for any; `Some(N)` for not older
/// than N (a non-empty `resourceVersion` without a match means that too). Refused in
/// Kubernetes' words: a match without a version, `Exact` with `0`, a match or a version with
/// `continue` (the token holds the list's revision), a value that is no revision. `Exact` is not
/// served (skiff keeps no old snapshots to list from) and says so.
pub fn list_freshness(req: &ListRequest) -> Result<Option<u64>, ApiError> {
    let (version, matching) = (
        req.resource_version.as_str(),
        req.resource_version_match.as_str(),
    );
    if version.is_empty() {
        if !matching.is_empty() {
            return Err(ApiError::BadRequest(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
            ));
        }
        return Ok(None);
    }
    if !req.r#continue.is_empty() {
        return Err(ApiError::BadRequest(if matching.is_empty() {
            "specifying resource version is not allowed when using continue".into()
        } else {
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue is provided".into()
        }));
    }
    let revision: u64 = version.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "resourceVersion: Invalid value: {version:?}: must be a resourceVersion the server gave"
        ))
    })?;
    match matching {
        "" | "NotOlderThan" => Ok(Some(revision)),
        "Exact" if revision == 0 => Err(ApiError::BadRequest(
            "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"".into(),
        )),
        "Exact" => Err(ApiError::BadRequest(
            "resourceVersionMatch: Unsupported value: \"Exact\": skiff lists at the newest revision or from its watch cache; supported values: \"NotOlderThan\"".into(),
        )),
        other => Err(ApiError::BadRequest(format!(
            "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\", \"\""
        ))),
    }
}

/// How long Kubernetes tells a client refused a too large resourceVersion to wait before asking
/// again (its watch cache's `resourceVersionTooHighRetrySeconds`).
const TOO_LARGE_RETRY_SECONDS: u32 = 1;

/// A list asked not older than `requested` and read at `meta`'s revision: refused when that is
/// older (with a watch cache, after its wait for `requested`; without one, at once).
fn not_older(requested: u64, meta: &ListMeta) -> Result<(), ApiError> {
    let current: u64 = meta.resource_version.parse().unwrap_or(0);
    if requested > current {
        return Err(ApiError::TooLargeResourceVersion {
            requested,
            current,
            retry_after_seconds: TOO_LARGE_RETRY_SECONDS,
        });
    }
    Ok(())
}

#[cfg(test)]
mod list_freshness_tests {
    use super::*;

    fn req(version: &str, matching: &str, cont: &str) -> ListRequest {
        ListRequest {
            resource_version: version.into(),
            resource_version_match: matching.into(),
            r#continue: cont.into(),
            ..Default::default()
        }
    }

    #[test]
    fn versions_and_matches_as_kubernetes_reads_them() {
        assert_eq!(list_freshness(&req("", "", "")).unwrap(), None);
        assert_eq!(list_freshness(&req("", "", "tok")).unwrap(), None);
        assert_eq!(list_freshness(&req("0", "", "")).unwrap(), Some(0));
        assert_eq!(list_freshness(&req("42", "", "")).unwrap(), Some(42));
        assert_eq!(
            list_freshness(&req("42", "NotOlderThan", "")).unwrap(),
            Some(42)
        );
        for (r, want) in [
            (
                req("", "NotOlderThan", ""),
                "unless resourceVersion is provided",
            ),
            (req("0", "Exact", ""), "forbidden for resourceVersion \"0\""),
            (req("7", "Exact", ""), "Unsupported value: \"Exact\""),
            (req("7", "Newest", ""), "Unsupported value: \"Newest\""),
            (req("7", "", "tok"), "not allowed when using continue"),
            (
                req("7", "NotOlderThan", "tok"),
                "forbidden when continue is provided",
            ),
            (
                req("abc", "", ""),
                "resourceVersion: Invalid value: \"abc\"",
            ),
        ] {
            let err = list_freshness(&r).unwrap_err();
            assert!(matches!(err, ApiError::BadRequest(_)), "{err}");
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    #[test]
    fn a_list_older_than_asked_is_refused_as_too_large() {
        let at = |rv: &str| ListMeta {
            resource_version: rv.into(),
            ..Default::default()
        };
        assert!(not_older(0, &at("7")).is_ok());
        assert!(not_older(7, &at("7")).is_ok());
        assert!(not_older(7, &at("9")).is_ok());
        let err = not_older(90, &at("42")).unwrap_err();
        assert!(
            matches!(
                err,
                ApiError::TooLargeResourceVersion {
                    requested: 90,
                    current: 42,
                    retry_after_seconds: 1
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "Timeout: Too large resource version: 90, current: 42"
        );
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        assert_eq!(status.metadata().get("retry-after").unwrap(), "1");
    }
}
