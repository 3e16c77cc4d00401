//! The registry over the real embedded store: strategies, admission, the Binding rules.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use skiff_api::v1::*;
use skiff_api::{Resource, ResourceExt};

use super::*;
use crate::auth::Identity;
use crate::error::ApiError;
use crate::store::Store;
use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};

pub(crate) struct Harness {
    _dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
}

pub(crate) fn meta(namespace: &str, name: &str) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        namespace: namespace.into(),
        name: name.into(),
        ..Default::default()
    })
}

impl Harness {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(&dir.path().join("store.redb"), EmbeddedOptions::default())
                .unwrap(),
        );
        let h = Self { _dir: dir, store };
        h.namespace("default").await;
        h
    }

    pub fn registry<K: Strategy>(&self) -> Registry<K> {
        Registry::new(self.store.clone())
    }

    pub async fn namespace(&self, name: &str) -> Namespace {
        let ns = Namespace {
            metadata: meta("", name),
            ..Default::default()
        };
        self.registry().create(&Identity::Admin, ns).await.unwrap()
    }

    pub async fn create<K: Strategy>(&self, obj: K) -> Result<K, ApiError> {
        self.registry().create(&Identity::Admin, obj).await
    }
}

pub(crate) fn pod(namespace: &str, name: &str) -> Pod {
    Pod {
        metadata: meta(namespace, name),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: "file:app.wasm".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn binding(pod: &Pod, node: &str) -> Binding {
    Binding {
        namespace: pod.namespace().into(),
        name: pod.name().into(),
        node: node.into(),
        resource_version: pod.meta().resource_version.clone(),
        uid: pod.meta().uid.clone(),
    }
}

#[tokio::test]
async fn bind_sets_the_node_and_the_condition() {
    let h = Harness::new().await;
    let pods = h.registry::<Pod>();
    let p = h.create(pod("default", "a")).await.unwrap();
    let bound = pods
        .bind(&Identity::Admin, &binding(&p, "n1"))
        .await
        .unwrap();
    assert_eq!(bound.spec.as_ref().unwrap().node_name, "n1");
    let stored = pods.get("default", "a").await.unwrap();
    assert_eq!(stored, bound);
    let conditions = &stored.status.unwrap().conditions;
    assert!(
        conditions
            .iter()
            .any(|c| c.r#type == "PodScheduled" && c.status == "True")
    );
}

#[tokio::test]
async fn bind_of_an_already_bound_pod_is_refused() {
    let h = Harness::new().await;
    let pods = h.registry::<Pod>();
    let p = h.create(pod("default", "a")).await.unwrap();
    let bound = pods
        .bind(&Identity::Admin, &binding(&p, "n1"))
        .await
        .unwrap();
    // Even with the current version as precondition: a bound pod stays where it is.
    let again = pods.bind(&Identity::Admin, &binding(&bound, "n2")).await;
    let err = again.unwrap_err();
    assert!(
        matches!(&err, ApiError::BindConflict { reason, .. } if reason.contains("already assigned to node \"n1\"")),
        "{err}"
    );
    assert_eq!(
        tonic::Status::from(err).code(),
        tonic::Code::Aborted,
        "a refused bind is a conflict"
    );
    let stored = pods.get("default", "a").await.unwrap();
    assert_eq!(stored.spec.unwrap().node_name, "n1");
}

#[tokio::test]
async fn bind_that_races_a_spec_update_is_refused() {
    let h = Harness::new().await;
    let pods = h.registry::<Pod>();
    let seen = h.create(pod("default", "a")).await.unwrap();
    // The scheduler decided on `seen`; meanwhile the pod's spec changed.
    let mut changed = seen.clone();
    changed.spec.as_mut().unwrap().node_selector = [("disk".to_string(), "ssd".to_string())].into();
    let updated = pods.update(&Identity::Admin, changed).await.unwrap();
    assert_ne!(
        updated.meta().resource_version,
        seen.meta().resource_version
    );
    let err = pods
        .bind(&Identity::Admin, &binding(&seen, "n1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ApiError::BindConflict { reason, .. } if reason.contains("modified")),
        "{err}"
    );
    let stored = pods.get("default", "a").await.unwrap();
    assert_eq!(stored.spec.unwrap().node_name, "", "the pod stays unbound");
    // A bind on the new version goes through.
    pods.bind(&Identity::Admin, &binding(&updated, "n1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn bind_of_a_recreated_pod_is_refused() {
    let h = Harness::new().await;
    let pods = h.registry::<Pod>();
    let old = h.create(pod("default", "a")).await.unwrap();
    let delete = DeleteRequest {
        namespace: "default".into(),
        name: "a".into(),
        ..Default::default()
    };
    pods.delete(&Identity::Admin, &delete).await.unwrap();
    h.create(pod("default", "a")).await.unwrap();
    let mut b = binding(&old, "n1");
    b.resource_version.clear();
    let err = pods.bind(&Identity::Admin, &b).await.unwrap_err();
    assert!(matches!(err, ApiError::BindConflict { .. }), "{err}");
}

/// A pod whose deletion waits for a finalizer, so that it stays "being deleted".
async fn deleting_pod(h: &Harness, name: &str) -> (Pod, Pod) {
    let mut p = pod("default", name);
    p.metadata_mut().finalizers = vec!["test/hold".into()];
    let created = h.create(p).await.unwrap();
    let delete = DeleteRequest {
        namespace: "default".into(),
        name: name.into(),
        ..Default::default()
    };
    let deleting = h
        .registry::<Pod>()
        .delete(&Identity::Admin, &delete)
        .await
        .unwrap();
    assert!(deleting.meta().deletion_timestamp.is_some());
    (created, deleting)
}

fn refused_because(err: &ApiError, why: &str) -> bool {
    matches!(err, ApiError::BindConflict { reason, .. } if reason.contains(why))
}

#[tokio::test]
async fn bind_of_a_deleting_pod_is_refused() {
    let h = Harness::new().await;
    let pods = h.registry::<Pod>();
    let (_, deleting) = deleting_pod(&h, "a").await;
    let err = pods
        .bind(&Identity::Admin, &binding(&deleting, "n1"))
        .await
        .unwrap_err();
    assert!(refused_because(&err, "being deleted"), "{err}");
    assert_eq!(tonic::Status::from(err).code(), tonic::Code::Aborted);
    assert_eq!(
        pods.get("default", "a")
            .await
            .unwrap()
            .spec
            .unwrap()
            .node_name,
        ""
    );
}

/// The real store, counting the reads of single objects.
struct CountingStore {
    inner: Arc<dyn Store>,
    gets: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Store for CountingStore {
    async fn get(
        &self,
        key: &str,
    ) -> Result<Option<crate::store::KeyValue>, crate::store::StoreError> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<crate::store::ListPage, crate::store::StoreError> {
        self.inner.list(prefix, start_after, limit).await
    }
    async fn create(
        &self,
        key: &str,
        value: bytes::Bytes,
    ) -> Result<crate::store::KeyValue, crate::store::StoreError> {
        self.inner.create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        value: bytes::Bytes,
        expected: Option<crate::store::Revision>,
    ) -> Result<crate::store::KeyValue, crate::store::StoreError> {
        self.inner.update(key, value, expected).await
    }
    async fn delete(
        &self,
        key: &str,
        expected: Option<crate::store::Revision>,
    ) -> Result<crate::store::KeyValue, crate::store::StoreError> {
        self.inner.delete(key, expected).await
    }
    async fn watch(
        &self,
        prefix: &str,
        after: crate::store::Revision,
    ) -> Result<crate::store::EventStream, crate::store::StoreError> {
        self.inner.watch(prefix, after).await
    }
    async fn revision(&self) -> Result<crate::store::Revision, crate::store::StoreError> {
        self.inner.revision().await
    }
}

#[tokio::test]
async fn bind_known_writes_on_the_callers_version_without_reading_it() {
    let h = Harness::new().await;
    let counting = Arc::new(CountingStore {
        inner: h.store.clone(),
        gets: Default::default(),
    });
    let pods = Registry::<Pod>::new(counting.clone());
    let p = h.create(pod("default", "a")).await.unwrap();
    let bound = pods.bind_known(&Identity::Admin, &p, "n1").await.unwrap();
    assert_eq!(
        counting.gets.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a bind on the current version reads nothing"
    );
    assert_eq!(bound.spec.as_ref().unwrap().node_name, "n1");
    let stored = pods.get("default", "a").await.unwrap();
    assert_eq!(stored, bound, "what it returns is what it stored");
    assert!(
        stored
            .status
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.r#type == "PodScheduled" && c.status == "True")
    );
    assert_ne!(bound.meta().resource_version, p.meta().resource_version);
}

#[tokio::test]
async fn bind_known_refuses_as_bind_does() {
    let h = Harness::new().await;
    let pods = h.registry::<Pod>();
    let aborted = |e: ApiError| tonic::Status::from(e).code() == tonic::Code::Aborted;

    // Already bound: seen in the caller's copy, or found after the compare-and-swap failed on
    // a stale unbound copy.
    let p = h.create(pod("default", "a")).await.unwrap();
    let bound = pods.bind_known(&Identity::Admin, &p, "n1").await.unwrap();
    let err = pods
        .bind_known(&Identity::Admin, &bound, "n2")
        .await
        .unwrap_err();
    assert!(
        refused_because(&err, "already assigned to node \"n1\""),
        "{err}"
    );
    let err = pods
        .bind_known(&Identity::Admin, &p, "n2")
        .await
        .unwrap_err();
    assert!(
        refused_because(&err, "already assigned to node \"n1\""),
        "{err}"
    );
    assert!(aborted(err));
    assert_eq!(
        pods.get("default", "a")
            .await
            .unwrap()
            .spec
            .unwrap()
            .node_name,
        "n1"
    );

    // A spec update raced the decision: the stale copy is refused, the new one binds.
    let seen = h.create(pod("default", "b")).await.unwrap();
    let mut changed = seen.clone();
    changed.spec.as_mut().unwrap().node_selector = [("disk".to_string(), "ssd".to_string())].into();
    let updated = pods.update(&Identity::Admin, changed).await.unwrap();
    let err = pods
        .bind_known(&Identity::Admin, &seen, "n1")
        .await
        .unwrap_err();
    assert!(refused_because(&err, "modified"), "{err}");
    assert!(aborted(err));
    assert_eq!(
        pods.get("default", "b")
            .await
            .unwrap()
            .spec
            .unwrap()
            .node_name,
        ""
    );
    pods.bind_known(&Identity::Admin, &updated, "n1")
        .await
        .unwrap();

    // Re-created under the same name: the old copy's uid is not the pod's.
    let old = h.create(pod("default", "c")).await.unwrap();
    let delete = DeleteRequest {
        namespace: "default".into(),
        name: "c".into(),
        ..Default::default()
    };
    pods.delete(&Identity::Admin, &delete).await.unwrap();
    h.create(pod("default", "c")).await.unwrap();
    let err = pods
        .bind_known(&Identity::Admin, &old, "n1")
        .await
        .unwrap_err();
    assert!(refused_because(&err, "uid"), "{err}");
    assert!(aborted(err));
    assert_eq!(
        pods.get("default", "c")
            .await
            .unwrap()
            .spec
            .unwrap()
            .node_name,
        ""
    );

    // Being deleted: seen in the caller's copy, or found after a stale copy's swap failed.
    let (before, deleting) = deleting_pod(&h, "d").await;
    let err = pods
        .bind_known(&Identity::Admin, &deleting, "n1")
        .await
        .unwrap_err();
    assert!(refused_because(&err, "being deleted"), "{err}");
    let err = pods
        .bind_known(&Identity::Admin, &before, "n1")
        .await
        .unwrap_err();
    assert!(refused_because(&err, "being deleted"), "{err}");
    assert!(aborted(err));

    // Gone: not found.
    let gone = h.create(pod("default", "e")).await.unwrap();
    let delete = DeleteRequest {
        namespace: "default".into(),
        name: "e".into(),
        ..Default::default()
    };
    pods.delete(&Identity::Admin, &delete).await.unwrap();
    let err = pods
        .bind_known(&Identity::Admin, &gone, "n1")
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::NotFound { .. }), "{err}");

    // No node named.
    let f = h.create(pod("default", "f")).await.unwrap();
    let err = pods.bind_known(&Identity::Admin, &f, "").await.unwrap_err();
    assert!(matches!(err, ApiError::Invalid { .. }), "{err}");
}

#[tokio::test]
async fn admission_chain_runs_mutating_then_validating_links() {
    let h = Harness::new().await;
    let chain = admission::Chain::standard(h.store.clone());
    assert_eq!(
        chain.names(),
        [
            "Priority",
            "ServiceAccount",
            "DefaultIngressClass",
            "LimitRanger",
            "NamespaceLifecycle",
            "PodSecurity",
            "LimitRanger",
            "RBACEscalation",
            "NodeRestriction",
            "ScaleToZero"
        ]
    );

    // Priority: a built-in class gives the pod its priority.
    let mut p = pod("default", "p");
    p.spec.as_mut().unwrap().priority_class_name = "system-node-critical".into();
    let created = h.create(p).await.unwrap();
    assert_eq!(
        created.spec.unwrap().priority,
        validation_priority("system-node-critical")
    );

    // NamespaceLifecycle: no content in a namespace that does not exist, or is terminating.
    let err = h.create(pod("nowhere", "p")).await.unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::NotFound {
                plural: "namespaces",
                ..
            }
        ),
        "{err}"
    );
    h.namespace("team").await;
    let delete = DeleteRequest {
        name: "team".into(),
        ..Default::default()
    };
    let ns = h
        .registry::<Namespace>()
        .delete(&Identity::Admin, &delete)
        .await
        .unwrap();
    assert_eq!(ns.status.unwrap().phase, "Terminating");
    let err = h.create(pod("team", "p")).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Precondition(m) if m.contains("being terminated")),
        "{err}"
    );
}

fn validation_priority(class: &str) -> Option<i32> {
    skiff_api::validation::priority_of_class(class)
}

#[tokio::test]
async fn strategies_default_and_keep_server_owned_fields() {
    let h = Harness::new().await;
    // Service: type defaults to ClusterIP; an update that leaves clusterIP out keeps it.
    let svc = Service {
        metadata: meta("default", "web"),
        spec: Some(ServiceSpec {
            ports: vec![ServicePort {
                port: 80,
                ..Default::default()
            }],
            cluster_ip: "10.96.0.10".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = h.create(svc).await.unwrap();
    assert_eq!(created.spec.as_ref().unwrap().r#type, "ClusterIP");
    let mut next = created.clone();
    next.spec.as_mut().unwrap().cluster_ip.clear();
    next.spec.as_mut().unwrap().r#type.clear();
    let updated = h
        .registry::<Service>()
        .update(&Identity::Admin, next)
        .await
        .unwrap();
    let spec = updated.spec.unwrap();
    assert_eq!(
        (spec.r#type.as_str(), spec.cluster_ip.as_str()),
        ("ClusterIP", "10.96.0.10")
    );

    // Secret: stringData is folded into data; type defaults to Opaque and is immutable.
    let secret = Secret {
        metadata: meta("default", "s"),
        string_data: [("k".to_string(), "v".to_string())].into(),
        ..Default::default()
    };
    let created = h.create(secret).await.unwrap();
    assert_eq!(created.data.get("k").map(Vec::as_slice), Some(&b"v"[..]));
    assert!(created.string_data.is_empty());
    assert_eq!(created.r#type, "Opaque");
    let mut retyped = created.clone();
    retyped.r#type = "kubernetes.io/tls".into();
    let err = h
        .registry::<Secret>()
        .update(&Identity::Admin, retyped)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ApiError::Invalid { errors, .. } if errors.to_string() == "type: field is immutable"),
        "{err}"
    );

    // Pod: nodeName is set by a binding, not an update; kept by an update that leaves it
    // out, and cannot be changed.
    let pods = h.registry::<Pod>();
    let p = h.create(pod("default", "a")).await.unwrap();
    let mut self_bound = p.clone();
    self_bound.spec.as_mut().unwrap().node_name = "n1".into();
    let err = pods.update(&Identity::Admin, self_bound).await.unwrap_err();
    assert!(
        matches!(&err, ApiError::Invalid { errors, .. } if errors.0[0].path == "spec.nodeName"),
        "{err}"
    );
    let bound = pods
        .bind(&Identity::Admin, &binding(&p, "n1"))
        .await
        .unwrap();
    let mut next = bound.clone();
    next.spec.as_mut().unwrap().node_name.clear();
    next.metadata_mut().labels.insert("x".into(), "y".into());
    let updated = pods.update(&Identity::Admin, next).await.unwrap();
    assert_eq!(updated.spec.as_ref().unwrap().node_name, "n1");
    let mut moved = updated.clone();
    moved.spec.as_mut().unwrap().node_name = "n2".into();
    let err = pods.update(&Identity::Admin, moved).await.unwrap_err();
    assert!(matches!(err, ApiError::Invalid { .. }), "{err}");
    // Status is the status subresource's: an update does not change it.
    let mut status_change = updated.clone();
    status_change.status.as_mut().unwrap().phase = "Running".into();
    let same = pods.update(&Identity::Admin, status_change).await.unwrap();
    assert_eq!(same.status.unwrap().phase, "Pending");
    assert_eq!(<Pod as Resource>::KIND, "Pod");
}

#[tokio::test]
async fn paged_lists_keep_their_first_revision_and_a_watch_from_it_misses_nothing() {
    let h = Harness::new().await;
    let pods = h.registry::<Pod>();
    for i in 0..10 {
        let mut p = pod("default", &format!("p{i:02}"));
        if i % 2 == 0 {
            p.metadata_mut().labels.insert("even".into(), "yes".into());
        }
        h.create(p).await.unwrap();
    }
    let mut req = ListRequest {
        namespace: "default".into(),
        limit: 3,
        ..Default::default()
    };
    let mut names = Vec::new();
    let mut revisions = Vec::new();
    loop {
        let (items, meta) = pods.list(&req).await.unwrap();
        assert!(items.len() <= 3);
        names.extend(items.iter().map(|p| p.name().to_string()));
        revisions.push(meta.resource_version.clone());
        if names.len() == 3 {
            // A write while paging: later pages still report the first page's revision.
            h.create(pod("default", "zz-late")).await.unwrap();
        }
        assert!(
            !meta.r#continue.contains("/pods/"),
            "the token does not show store keys"
        );
        if meta.r#continue.is_empty() {
            break;
        }
        req.r#continue = meta.r#continue;
    }
    assert_eq!(names.len(), 11, "{names:?}");
    assert!(
        revisions.iter().all(|r| *r == revisions[0]),
        "{revisions:?}"
    );

    // A watch from the list's revision sees the write made while paging.
    let watch = WatchRequest {
        namespace: "default".into(),
        resource_version: revisions[0].clone(),
        ..Default::default()
    };
    let mut rx = pods.watch(&watch).await.unwrap();
    let (kind, obj) = rx.recv().await.unwrap().unwrap();
    assert_eq!((kind, obj.name()), ("ADDED", "zz-late"));

    // Selectors apply across pages; a limit larger than what is left ends the list.
    let (items, meta) = pods
        .list(&ListRequest {
            namespace: "default".into(),
            label_selector: "even=yes".into(),
            limit: 4,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(items.len(), 4);
    let (rest, end) = pods
        .list(&ListRequest {
            namespace: "default".into(),
            label_selector: "even=yes".into(),
            limit: 4,
            r#continue: meta.r#continue,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert!(end.r#continue.is_empty());

    for bad in ["zz", "/pods/default/p01", "3031"] {
        let req = ListRequest {
            r#continue: bad.into(),
            ..Default::default()
        };
        let err = pods.list(&req).await.unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)), "{bad}: {err}");
    }
}

/// A list not older than a resourceVersion the store has not reached is refused as Kubernetes
/// refuses it (504 Timeout, ResourceVersionTooLarge, "current" the store's revision), at once
/// without a watch cache, and through one only after waiting for the cache to reach it; one it
/// has reached is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_at_a_resource_version_the_store_has_not_reached_times_out() {
    use crate::store::cache::{CacheOptions, StoreFeed, WatchCache};
    let h = Harness::new().await;
    let created = h.create(pod("default", "a")).await.unwrap();
    let at: u64 = created.meta().resource_version.parse().unwrap();
    let list = |rv: u64| ListRequest {
        namespace: "default".into(),
        resource_version: rv.to_string(),
        resource_version_match: "NotOlderThan".into(),
        ..Default::default()
    };
    let too_large = |e: ApiError, want: u64| match e {
        ApiError::TooLargeResourceVersion {
            requested, current, ..
        } => {
            assert_eq!(requested, at + 100);
            assert_eq!(current, want);
        }
        other => panic!("expected a too large resourceVersion, got {other:?}"),
    };
    // No watch cache (the embedded store as served): refused at once.
    let plain: Registry<Pod> = h.registry();
    let (items, _) = plain.list(&list(at)).await.unwrap();
    assert_eq!(items.len(), 1);
    let now = h.store.revision().await.unwrap();
    too_large(plain.list(&list(at + 100)).await.unwrap_err(), now);
    // Through a watch cache: it waits for the cache, then asks the store, then refuses.
    let catch_up = std::time::Duration::from_millis(300);
    let cache = WatchCache::start(
        h.store.clone(),
        Arc::new(StoreFeed(h.store.clone())),
        CacheOptions {
            catch_up,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let cached: Registry<Pod> = Registry::new(Arc::new(cache));
    let (items, meta) = cached.list(&list(at)).await.unwrap();
    assert_eq!(items.len(), 1);
    assert!(meta.resource_version.parse::<u64>().unwrap() >= at);
    let started = std::time::Instant::now();
    too_large(cached.list(&list(at + 100)).await.unwrap_err(), now);
    assert!(started.elapsed() >= catch_up, "answered before the wait");
}

/// A store that counts the revision requests (etcd's quorum reads) sent through it.
struct CountingRevisions {
    inner: Arc<dyn Store>,
    sent: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Store for CountingRevisions {
    async fn get(
        &self,
        key: &str,
    ) -> Result<Option<crate::store::KeyValue>, crate::store::StoreError> {
        self.inner.get(key).await
    }
    async fn list(
        &self,
        p: &str,
        s: Option<&str>,
        l: usize,
    ) -> Result<crate::store::ListPage, crate::store::StoreError> {
        self.inner.list(p, s, l).await
    }
    async fn create(
        &self,
        key: &str,
        value: bytes::Bytes,
    ) -> Result<crate::store::KeyValue, crate::store::StoreError> {
        self.inner.create(key, value).await
    }
    async fn update(
        &self,
        k: &str,
        v: bytes::Bytes,
        e: Option<u64>,
    ) -> Result<crate::store::KeyValue, crate::store::StoreError> {
        self.inner.update(k, v, e).await
    }
    async fn delete(
        &self,
        key: &str,
        e: Option<u64>,
    ) -> Result<crate::store::KeyValue, crate::store::StoreError> {
        self.inner.delete(key, e).await
    }
    async fn watch(
        &self,
        prefix: &str,
        after: u64,
    ) -> Result<crate::store::EventStream, crate::store::StoreError> {
        self.inner.watch(prefix, after).await
    }
    async fn revision(&self) -> Result<u64, crate::store::StoreError> {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.revision().await
    }
}

/// The embedded store's feed, held back while `open` is false (a watch cache that is behind).
struct Gated {
    inner: crate::store::cache::StoreFeed,
    open: tokio::sync::watch::Receiver<bool>,
}

#[async_trait::async_trait]
impl crate::store::cache::Feed for Gated {
    async fn snapshot(&self) -> Result<crate::store::ListPage, crate::store::StoreError> {
        self.inner.snapshot().await
    }
    async fn follow(
        &self,
        after: u64,
    ) -> Result<crate::store::cache::ChangeStream, crate::store::StoreError> {
        use futures::StreamExt;
        let open = self.open.clone();
        let changes = self.inner.follow(after).await?;
        Ok(Box::pin(changes.then(move |change| {
            let mut open = open.clone();
            async move {
                let _ = open.wait_for(|o| *o).await;
                change
            }
        })))
    }
}

/// A status write starts from the watch cache's copy without a quorum read; when the cache is
/// behind, the write is made again on a fresh read: a client naming the newest version
/// succeeds, one naming an older version gets its Conflict, and nothing older is written over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_start_from_the_cache_and_read_again_when_it_is_behind() {
    use crate::store::cache::{CacheOptions, StoreFeed, WatchCache};
    use std::sync::atomic::Ordering;
    let h = Harness::new().await;
    let plain: Registry<Pod> = h.registry();
    let created = h.create(pod("default", "p")).await.unwrap();
    let counting = Arc::new(CountingRevisions {
        inner: h.store.clone(),
        sent: Default::default(),
    });
    let (gate, open) = tokio::sync::watch::channel(true);
    let cache = WatchCache::start(
        counting.clone(),
        Arc::new(Gated {
            inner: StoreFeed(h.store.clone()),
            open,
        }),
        CacheOptions {
            catch_up: std::time::Duration::from_millis(200),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let cached: Registry<Pod> = Registry::new(Arc::new(cache));
    let with_phase = |p: &Pod, phase: &str| {
        let mut p = p.clone();
        p.status.get_or_insert_with(Default::default).phase = phase.into();
        p
    };
    // The cache holds the pod: one write, no revision asked.
    let before = counting.sent.load(Ordering::SeqCst);
    let pending = cached
        .update_status(&Identity::Admin, with_phase(&created, "Pending"))
        .await
        .unwrap();
    assert_eq!(counting.sent.load(Ordering::SeqCst), before);
    // Another server writes while this cache is held back.
    gate.send_replace(false);
    let running = plain
        .update_status(&Identity::Admin, with_phase(&pending, "Running"))
        .await
        .unwrap();
    // Naming the newest version (which the cache has not seen): written on a fresh read.
    let failed = cached
        .update_status(&Identity::Admin, with_phase(&running, "Failed"))
        .await
        .unwrap();
    assert_eq!(failed.status.as_ref().unwrap().phase, "Failed");
    assert!(counting.sent.load(Ordering::SeqCst) > before);
    // Naming an older version: a Conflict, as from a fresh read.
    let err = cached
        .update_status(&Identity::Admin, with_phase(&pending, "Succeeded"))
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Conflict { .. }), "{err:?}");
    // Naming none: the cache's stale version loses the compare-and-swap, the fresh one wins.
    let mut any = with_phase(&pending, "Succeeded");
    any.metadata_mut().resource_version.clear();
    cached.update_status(&Identity::Admin, any).await.unwrap();
    gate.send_replace(true);
    let stored = plain.get("default", "p").await.unwrap();
    assert_eq!(stored.status.unwrap().phase, "Succeeded");
}
