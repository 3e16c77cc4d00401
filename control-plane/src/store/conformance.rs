//! The store conformance suite: what every [`Store`] backend must do, as runnable checks.
//!
//! A backend's test file implements [`Backend`] and calls each check (see
//! `control-plane/tests/store_conformance.rs`). The checks panic with a message on failure.

#![allow(clippy::unwrap_used)] // a test suite: a panic is the failure report

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_stream::StreamExt;

use super::{EventKind, EventStream, Revision, Store, StoreError};

/// How the suite gets stores from a backend.
pub trait Backend: Send + Sync {
    /// A store over fresh, empty data.
    fn fresh(&self) -> Arc<dyn Store>;
    /// Closes `store` (dropping it) and opens the same data again, as after a restart.
    fn reopen(&self, store: Arc<dyn Store>) -> Arc<dyn Store>;
    /// A fresh store that keeps at most about `events` events of history.
    fn fresh_with_history(&self, events: u64) -> Arc<dyn Store>;
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next(stream: &mut EventStream) -> super::Event {
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(e))) => e,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within 10 s"),
    }
}

/// Create, get, update, delete and their errors.
pub async fn crud(backend: &dyn Backend) {
    let s = backend.fresh();
    assert_eq!(s.get("/a/x").await.unwrap(), None);
    let created = s.create("/a/x", b("1")).await.unwrap();
    assert_eq!(created.create_revision, created.mod_revision);
    assert_eq!(s.revision().await.unwrap(), created.mod_revision);
    assert_eq!(
        s.create("/a/x", b("2")).await,
        Err(StoreError::AlreadyExists("/a/x".into()))
    );
    let got = s
        .get("/a/x")
        .await
        .unwrap()
        .expect("created key is readable");
    assert_eq!(got, created);
    let updated = s
        .update("/a/x", b("2"), Some(created.mod_revision))
        .await
        .unwrap();
    assert!(
        updated.mod_revision > created.mod_revision,
        "update bumps the revision"
    );
    assert_eq!(
        updated.create_revision, created.create_revision,
        "create revision is kept"
    );
    assert_eq!(s.get("/a/x").await.unwrap().unwrap().value, b("2"));
    let unconditional = s.update("/a/x", b("3"), None).await.unwrap();
    assert!(unconditional.mod_revision > updated.mod_revision);
    let deleted = s.delete("/a/x", None).await.unwrap();
    assert_eq!(deleted.value, b("3"), "delete returns the last value");
    assert!(
        deleted.mod_revision > unconditional.mod_revision,
        "a delete has its own revision"
    );
    assert_eq!(s.get("/a/x").await.unwrap(), None);
    assert_eq!(
        s.update("/a/x", b("4"), None).await,
        Err(StoreError::NotFound("/a/x".into()))
    );
    assert_eq!(
        s.delete("/a/x", None).await,
        Err(StoreError::NotFound("/a/x".into()))
    );
    let again = s.create("/a/x", b("5")).await.unwrap();
    assert!(
        again.create_revision > deleted.mod_revision,
        "re-creation is a new key life"
    );
}

/// Lists see only their prefix, in key order, in pages.
pub async fn list_prefix_and_pages(backend: &dyn Backend) {
    let s = backend.fresh();
    for key in [
        "/pods/ns/b",
        "/pods/ns/a",
        "/pods/ns2/a",
        "/pods/nsx",
        "/services/ns/a",
        "/pods/ns/c",
    ] {
        s.create(key, b(key)).await.unwrap();
    }
    let page = s.list("/pods/ns/", None, 0).await.unwrap();
    let keys: Vec<_> = page.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/pods/ns/a", "/pods/ns/b", "/pods/ns/c"]);
    assert_eq!(page.revision, s.revision().await.unwrap());
    assert!(!page.more);
    let first = s.list("/pods/", None, 2).await.unwrap();
    assert_eq!(first.items.len(), 2);
    assert!(first.more);
    let rest = s
        .list("/pods/", Some(&first.items[1].key), 0)
        .await
        .unwrap();
    let all: Vec<_> = first
        .items
        .iter()
        .chain(&rest.items)
        .map(|kv| kv.key.clone())
        .collect();
    assert_eq!(
        all,
        [
            "/pods/ns/a",
            "/pods/ns/b",
            "/pods/ns/c",
            "/pods/ns2/a",
            "/pods/nsx"
        ]
    );
    assert!(s.list("/nothing/", None, 0).await.unwrap().items.is_empty());
}

/// A stale expected revision is a conflict, and concurrent compare-and-swap writers lose nothing.
pub async fn conflicts(backend: &dyn Backend) {
    let s = backend.fresh();
    let v1 = s.create("/c/k", b("0")).await.unwrap();
    let v2 = s
        .update("/c/k", b("1"), Some(v1.mod_revision))
        .await
        .unwrap();
    match s.update("/c/k", b("x"), Some(v1.mod_revision)).await {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => {
            assert_eq!((expected, actual), (v1.mod_revision, v2.mod_revision));
        }
        other => panic!("stale update must conflict, got {other:?}"),
    }
    assert!(matches!(
        s.delete("/c/k", Some(v1.mod_revision)).await,
        Err(StoreError::Conflict { .. })
    ));

    // 8 writers each add 1 to a counter 40 times by read-modify-write with the read revision.
    let writers = 8;
    let rounds = 40;
    let conflicts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let s = s.clone();
        let conflicts = conflicts.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..rounds {
                loop {
                    let cur = s.get("/c/k").await.unwrap().unwrap();
                    let n: u64 = std::str::from_utf8(&cur.value).unwrap().parse().unwrap();
                    match s
                        .update("/c/k", b(&(n + 1).to_string()), Some(cur.mod_revision))
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => {
                            conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let end = s.get("/c/k").await.unwrap().unwrap();
    let n: u64 = std::str::from_utf8(&end.value).unwrap().parse().unwrap();
    assert_eq!(
        n,
        1 + writers * rounds,
        "no lost update ({} conflicts retried)",
        conflicts.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// Concurrent writes are watched in revision order, each exactly once, with deletes and prev values.
pub async fn watch_order(backend: &dyn Backend) {
    let s = backend.fresh();
    s.create("/other/x", b("x")).await.unwrap();
    let start = s.revision().await.unwrap();
    let mut w = s.watch("/w/", start).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let key = format!("/w/{t}-{i}");
                s.create(&key, b("a")).await.unwrap();
                s.create(&format!("/other/{t}-{i}"), b("a")).await.unwrap();
                if i % 5 == 0 {
                    s.update(&key, b("b"), None).await.unwrap();
                    s.delete(&key, None).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let expected = 4 * (25 + 5 * 2);
    let mut last: Revision = start;
    let mut state: BTreeMap<String, Bytes> = BTreeMap::new();
    for _ in 0..expected {
        let e = next(&mut w).await;
        assert!(
            e.revision() > last,
            "revisions increase: {} after {last}",
            e.revision()
        );
        assert!(
            e.kv.key.starts_with("/w/"),
            "prefix respected: {}",
            e.kv.key
        );
        last = e.revision();
        match e.kind {
            EventKind::Put => {
                let prev = state.insert(e.kv.key.clone(), e.kv.value.clone());
                assert_eq!(prev, e.prev.map(|p| p.value), "prev value of {}", e.kv.key);
            }
            EventKind::Delete => {
                assert_eq!(
                    state.remove(&e.kv.key),
                    Some(e.kv.value.clone()),
                    "a delete carries the last value"
                );
            }
        }
    }
    let list = s.list("/w/", None, 0).await.unwrap();
    let listed: BTreeMap<String, Bytes> = list
        .items
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect();
    assert_eq!(listed, state, "replaying the watch gives the listed state");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), w.next())
            .await
            .is_err(),
        "no duplicate or extra event"
    );
}

/// A watch resumed from the last revision seen continues exactly where the first one stopped.
pub async fn watch_resume(backend: &dyn Backend) {
    let s = backend.fresh();
    let start = s.revision().await.unwrap();
    for i in 0..30 {
        s.create(&format!("/r/{i:02}"), b("v")).await.unwrap();
    }
    let mut first = s.watch("/r/", start).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..10 {
        seen.push(next(&mut first).await.revision());
    }
    drop(first);
    let mut resumed = s.watch("/r/", *seen.last().unwrap()).await.unwrap();
    for i in 30..40 {
        s.create(&format!("/r/{i:02}"), b("v")).await.unwrap();
    }
    for _ in 0..30 {
        seen.push(next(&mut resumed).await.revision());
    }
    let expected: Vec<Revision> = (start + 1..=start + 40).collect();
    assert_eq!(seen, expected, "no gap and no duplicate across the resume");
}

/// A watch from before the retained history fails with `Compacted`, never silently skips.
pub async fn watch_compacted(backend: &dyn Backend) {
    let s = backend.fresh_with_history(10);
    s.create("/k", b("0")).await.unwrap();
    for i in 0..3000 {
        s.update("/k", b(&i.to_string()), None).await.unwrap();
    }
    let rev = s.revision().await.unwrap();
    match s.watch("/", 1).await {
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!(requested, 1);
            assert!(oldest > 1 && oldest <= rev);
        }
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(mut w) => match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
            Ok(Some(Err(StoreError::Compacted { .. }))) => {}
            other => panic!(
                "expected Compacted, got {:?}",
                other.map(|o| o.map(|r| r.map(|e| e.revision())))
            ),
        },
    }
    let mut recent = s.watch("/", rev - 5).await.unwrap();
    assert_eq!(
        next(&mut recent).await.revision(),
        rev - 4,
        "recent history is still served"
    );
}

/// Acknowledged writes and the revision counter survive a close and reopen; watches resume across it.
pub async fn durable_across_reopen(backend: &dyn Backend) {
    let s = backend.fresh();
    for i in 0..200 {
        s.create(&format!("/d/{i:03}"), b(&i.to_string()))
            .await
            .unwrap();
    }
    s.delete("/d/000", None).await.unwrap();
    let rev = s.revision().await.unwrap();
    let s = backend.reopen(s);
    assert_eq!(s.revision().await.unwrap(), rev, "revision survives");
    let page = s.list("/d/", None, 0).await.unwrap();
    assert_eq!(page.items.len(), 199);
    assert_eq!(page.items[0].key, "/d/001");
    let mut w = s.watch("/d/", rev - 1).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!(
        (e.kind, e.kv.key.as_str(), e.revision()),
        (EventKind::Delete, "/d/000", rev)
    );
    let created = s.create("/d/new", b("n")).await.unwrap();
    assert_eq!(
        created.mod_revision,
        rev + 1,
        "revisions continue after reopen"
    );
}

/// Runs every check, each on its own fresh store.
pub async fn run_all(backend: &dyn Backend) {
    crud(backend).await;
    list_prefix_and_pages(backend).await;
    conflicts(backend).await;
    watch_order(backend).await;
    watch_resume(backend).await;
    watch_compacted(backend).await;
    durable_across_reopen(backend).await;
}
