//! Unit tests of the watch cache over the embedded store (its conformance on etcd and on the
//! embedded store: control-plane/tests/store_conformance_cache.rs).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio_stream::StreamExt;

use super::cache::{CacheOptions, ChangeStream, Feed, StoreFeed, WatchCache};
use super::embedded::{EmbeddedOptions, EmbeddedStore};
use super::{EventKind, EventStream, KeyValue, ListPage, Revision, Store, StoreError};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn embedded(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    Arc::new(
        EmbeddedStore::open(&dir.path().join("store.redb"), EmbeddedOptions::default()).unwrap(),
    )
}

async fn cache(store: &Arc<dyn Store>, options: CacheOptions) -> WatchCache {
    WatchCache::start(store.clone(), Arc::new(StoreFeed(store.clone())), options)
        .await
        .unwrap()
}

async fn next(w: &mut EventStream) -> super::Event {
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(Ok(e))) => e,
        other => panic!(
            "expected an event, got {:?}",
            other.map(|o| o.map(|r| r.map(|e| e.revision())))
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_is_read_at_once_through_another_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded(&dir);
    // Two API servers' caches over one store.
    let a = cache(&store, CacheOptions::default()).await;
    let b_ = cache(&store, CacheOptions::default()).await;
    for i in 0..50 {
        let key = format!("/pods/ns/p{i:02}");
        a.create(&key, b(&i.to_string())).await.unwrap();
        let got = b_
            .get(&key)
            .await
            .unwrap()
            .expect("a write through A is read through B");
        assert_eq!(got.value, b(&i.to_string()));
    }
    let page = b_.list("/pods/ns/", None, 0).await.unwrap();
    assert_eq!(page.items.len(), 50);
    assert_eq!(page.revision, store.revision().await.unwrap());
    a.delete("/pods/ns/p07", None).await.unwrap();
    assert_eq!(b_.get("/pods/ns/p07").await.unwrap(), None);
    // A write straight to the store (a third server without a cache) too.
    let direct = store.update("/pods/ns/p08", b("x"), None).await.unwrap();
    assert_eq!(a.get("/pods/ns/p08").await.unwrap(), Some(direct));
    let page = a.list("/pods/ns/", Some("/pods/ns/p05"), 3).await.unwrap();
    let keys: Vec<_> = page.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/pods/ns/p06", "/pods/ns/p08", "/pods/ns/p09"]);
    assert!(page.more);
    assert_eq!(a.fallbacks(), 0, "every read was served by the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_come_from_the_ring_and_an_older_one_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded(&dir);
    let start = store.create("/other", b("o")).await.unwrap().mod_revision;
    for i in 0..20 {
        store.create(&format!("/w/{i:02}"), b("v")).await.unwrap();
    }
    // The cache starts after those writes, with a ring of 5 events.
    let c = cache(
        &store,
        CacheOptions {
            events: 5,
            ..CacheOptions::default()
        },
    )
    .await;
    for i in 20..30 {
        c.create(&format!("/w/{i:02}"), b("v")).await.unwrap();
        c.create(&format!("/x/{i:02}"), b("v")).await.unwrap();
    }
    c.delete("/w/00", None).await.unwrap();
    let end = c.revision().await.unwrap();
    // From before the cache began: the store's history serves it, in order, nothing missed.
    let mut old = c.watch("/w/", start).await.unwrap();
    let mut keys = Vec::new();
    loop {
        let e = next(&mut old).await;
        keys.push((e.kind, e.kv.key.clone()));
        if e.revision() == end {
            break;
        }
    }
    assert_eq!(keys.len(), 31);
    assert_eq!(keys[30], (EventKind::Delete, "/w/00".to_string()));
    // From inside the ring: served by the cache, only the prefix's events.
    let mut recent = c.watch("/w/", end - 3).await.unwrap();
    let e = next(&mut recent).await;
    assert_eq!((e.kv.key.as_str(), e.kind), ("/w/29", EventKind::Put));
    let e = next(&mut recent).await;
    assert_eq!((e.kv.key.as_str(), e.revision()), ("/w/00", end));
    let later = c.create("/w/new", b("n")).await.unwrap();
    let e = next(&mut recent).await;
    assert_eq!(e.revision(), later.mod_revision, "live events follow");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), recent.next())
            .await
            .is_err(),
        "no extra event"
    );
}

/// A store whose revision requests are slow and counted.
struct Counting {
    inner: Arc<dyn Store>,
    revisions: AtomicUsize,
}

#[async_trait::async_trait]
impl Store for Counting {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, p: &str, s: Option<&str>, l: usize) -> Result<ListPage, StoreError> {
        self.inner.list(p, s, l).await
    }
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        self.inner.create(key, value).await
    }
    async fn update(&self, k: &str, v: Bytes, e: Option<Revision>) -> Result<KeyValue, StoreError> {
        self.inner.update(k, v, e).await
    }
    async fn delete(&self, key: &str, e: Option<Revision>) -> Result<KeyValue, StoreError> {
        self.inner.delete(key, e).await
    }
    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream, StoreError> {
        self.inner.watch(prefix, after).await
    }
    async fn revision(&self) -> Result<Revision, StoreError> {
        self.revisions.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.inner.revision().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_share_their_revision_requests() {
    let dir = tempfile::tempdir().unwrap();
    let inner = embedded(&dir);
    inner.create("/k", b("v")).await.unwrap();
    let counting = Arc::new(Counting {
        inner: inner.clone(),
        revisions: AtomicUsize::new(0),
    });
    let source: Arc<dyn Store> = counting.clone();
    let c = WatchCache::start(source, Arc::new(StoreFeed(inner)), CacheOptions::default())
        .await
        .unwrap();
    let reads: Vec<_> = (0..64)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.get("/k").await.unwrap().unwrap().value })
        })
        .collect();
    for r in reads {
        assert_eq!(r.await.unwrap(), b("v"));
    }
    let sent = counting.revisions.load(Ordering::SeqCst);
    assert!(
        sent < 16,
        "64 concurrent reads sent {sent} revision requests"
    );
}

/// A feed that never delivers a change, or whose first follow finds its revision compacted.
struct Feeds {
    inner: StoreFeed,
    stalled: bool,
    compacted_once: AtomicBool,
}

#[async_trait::async_trait]
impl Feed for Feeds {
    async fn snapshot(&self) -> Result<ListPage, StoreError> {
        self.inner.snapshot().await
    }
    async fn follow(&self, after: Revision) -> Result<ChangeStream, StoreError> {
        if self.stalled {
            return Ok(Box::pin(tokio_stream::pending()));
        }
        if !self.compacted_once.swap(true, Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return Err(StoreError::Compacted {
                requested: after,
                oldest: after + 1,
            });
        }
        self.inner.follow(after).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_that_cannot_catch_up_reads_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded(&dir);
    let feed = Feeds {
        inner: StoreFeed(store.clone()),
        stalled: true,
        compacted_once: AtomicBool::new(true),
    };
    let c = WatchCache::start(
        store.clone(),
        Arc::new(feed),
        CacheOptions {
            catch_up: Duration::from_millis(100),
            ..CacheOptions::default()
        },
    )
    .await
    .unwrap();
    c.create("/k", b("v")).await.unwrap();
    assert_eq!(c.get("/k").await.unwrap().unwrap().value, b("v"));
    assert_eq!(c.list("/", None, 0).await.unwrap().items.len(), 1);
    assert_eq!(c.fallbacks(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_past_the_history_reads_everything_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded(&dir);
    store.create("/a", b("1")).await.unwrap();
    store.create("/gone", b("1")).await.unwrap();
    let start = store.revision().await.unwrap();
    let feed = Feeds {
        inner: StoreFeed(store.clone()),
        stalled: false,
        compacted_once: AtomicBool::new(false),
    };
    let c = WatchCache::start(store.clone(), Arc::new(feed), CacheOptions::default())
        .await
        .unwrap();
    // While the first follow fails, the store moves on; the cache reads it again.
    store.update("/a", b("2"), None).await.unwrap();
    store.delete("/gone", None).await.unwrap();
    let page = c.list("/", None, 0).await.unwrap();
    let got: Vec<_> = page
        .items
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.clone()))
        .collect();
    assert_eq!(got, [("/a", b("2"))]);
    assert_eq!(c.fallbacks(), 0);
    // A watch from before the re-read continues from the store's own history.
    let mut w = c.watch("/", start).await.unwrap();
    assert_eq!(next(&mut w).await.kind, EventKind::Put);
    assert_eq!(next(&mut w).await.kind, EventKind::Delete);
    c.create("/b", b("1")).await.unwrap();
    assert_eq!(next(&mut w).await.kv.key, "/b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reads_at_its_first_revision_or_its_own_writes() {
    use super::cache::session;
    let dir = tempfile::tempdir().unwrap();
    let inner = embedded(&dir);
    inner.create("/k", b("0")).await.unwrap();
    let counting = Arc::new(Counting {
        inner: inner.clone(),
        revisions: AtomicUsize::new(0),
    });
    let source: Arc<dyn Store> = counting.clone();
    let c = WatchCache::start(
        source,
        Arc::new(StoreFeed(inner.clone())),
        CacheOptions::default(),
    )
    .await
    .unwrap();
    let sent = || counting.revisions.load(Ordering::SeqCst);
    session(async {
        for _ in 0..5 {
            assert_eq!(c.get("/k").await.unwrap().unwrap().value, b("0"));
        }
        assert_eq!(sent(), 1, "one revision request for the session's reads");
        // Its own write is read back without asking again.
        let v1 = c.update("/k", b("1"), None).await.unwrap();
        assert_eq!(c.get("/k").await.unwrap().unwrap(), v1);
        assert_eq!(
            c.list("/", None, 0).await.unwrap().revision,
            v1.mod_revision
        );
        assert_eq!(sent(), 1);
        // Another server's write, then a conflict: the session asks the store again.
        inner.update("/k", b("2"), None).await.unwrap();
        assert!(matches!(
            c.update("/k", b("x"), Some(v1.mod_revision)).await,
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(c.get("/k").await.unwrap().unwrap().value, b("2"));
        assert_eq!(sent(), 2);
    })
    .await;
    // Outside a session every read asks.
    c.get("/k").await.unwrap();
    c.get("/k").await.unwrap();
    assert_eq!(sent(), 4);
}

/// `resourceVersion=0` and `N` (not older than N) lists are served from the cache without asking
/// the store for its revision; `N` waits until the cache has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_at_a_resource_version_need_no_quorum_read() {
    use super::cache::not_older_than;
    let dir = tempfile::tempdir().unwrap();
    let inner = embedded(&dir);
    inner.create("/k", b("0")).await.unwrap();
    let counting = Arc::new(Counting {
        inner: inner.clone(),
        revisions: AtomicUsize::new(0),
    });
    let source: Arc<dyn Store> = counting.clone();
    let c = WatchCache::start(
        source,
        Arc::new(StoreFeed(inner.clone())),
        CacheOptions::default(),
    )
    .await
    .unwrap();
    let sent = || counting.revisions.load(Ordering::SeqCst);
    let any = not_older_than(0, c.list("/", None, 0)).await.unwrap();
    assert_eq!(any.items.len(), 1);
    assert_eq!(sent(), 0, "resourceVersion=0 asked the store");
    // Another server's write: a list not older than its revision waits for the cache to have
    // it, and still asks nothing.
    let written = inner.create("/l", b("1")).await.unwrap();
    let newer = not_older_than(written.mod_revision, c.list("/", None, 0))
        .await
        .unwrap();
    assert_eq!(newer.items.len(), 2);
    assert!(newer.revision >= written.mod_revision);
    assert_eq!(sent(), 0);
    assert_eq!(c.fallbacks(), 0);
    // A plain list asks.
    c.list("/", None, 0).await.unwrap();
    assert_eq!(sent(), 1);
}
