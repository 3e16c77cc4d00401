//! The watch cache on a real etcd (one member on loopback, started by each test): one etcd watch
//! serves every watch of an API server, and two servers' caches read each other's writes at once.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use skiff_control_plane::store::Store;
use skiff_control_plane::store::cache::{CacheOptions, WatchCache};
use skiff_control_plane::store::etcd::{EtcdOptions, EtcdStore};
use skiff_tests::etcd::EtcdCluster;
use tokio_stream::StreamExt;

async fn server(etcd: &EtcdCluster) -> (EtcdStore, WatchCache) {
    let store = EtcdStore::connect(EtcdOptions::new(etcd.endpoints()))
        .await
        .unwrap();
    let cache = WatchCache::start(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        CacheOptions::default(),
    )
    .await
    .unwrap();
    (store, cache)
}

async fn wait_for_watchers(etcd: &EtcdCluster, at_least: u64) -> u64 {
    for _ in 0..100 {
        let n = etcd.watchers();
        if n >= at_least {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    etcd.watchers()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_etcd_watch_serves_every_watch_of_a_server() {
    let etcd = EtcdCluster::start(1);
    let (store, cache) = server(&etcd).await;
    let before = wait_for_watchers(&etcd, 1).await;
    assert_eq!(before, 1, "the cache holds one etcd watch");
    let from = cache.revision().await.unwrap();
    let mut watches = Vec::new();
    for i in 0..30 {
        watches.push(
            cache
                .watch(&format!("/pods/ns{}/", i % 3), from)
                .await
                .unwrap(),
        );
    }
    for i in 0..3 {
        cache
            .create(&format!("/pods/ns{i}/a"), Bytes::from_static(b"v"))
            .await
            .unwrap();
    }
    for (i, w) in watches.iter_mut().enumerate() {
        let e = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(e.kv.key, format!("/pods/ns{}/a", i % 3));
    }
    assert_eq!(
        etcd.watchers(),
        1,
        "30 watches through the cache add no etcd watch"
    );
    // The same 30 straight on the etcd store: one etcd watch each (what the metric counts).
    let mut direct = Vec::new();
    for i in 0..30 {
        direct.push(
            store
                .watch(&format!("/pods/ns{}/", i % 3), from)
                .await
                .unwrap(),
        );
    }
    assert!(wait_for_watchers(&etcd, 31).await >= 31);
    assert_eq!(cache.fallbacks(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_read_each_others_writes_at_once() {
    let etcd = EtcdCluster::start(1);
    let (_, a) = server(&etcd).await;
    let (b_store, b) = server(&etcd).await;
    // A key outside the data (as the leader election's) moves etcd's revision on too.
    let mut kv = b_store.client().kv_client();
    for i in 0..100 {
        let key = format!("/pods/default/p{i}");
        let (writer, reader) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let created = writer
            .create(&key, Bytes::from(i.to_string()))
            .await
            .unwrap();
        assert_eq!(reader.get(&key).await.unwrap(), Some(created));
        if i % 10 == 0 {
            kv.put(format!("/skiff-leader/x{i}"), "leader", None)
                .await
                .unwrap();
            let listed = reader.list("/pods/default/", None, 0).await.unwrap();
            assert_eq!(listed.items.len(), i + 1);
            writer.delete(&key, None).await.unwrap();
            assert_eq!(reader.get(&key).await.unwrap(), None);
            writer.create(&key, Bytes::from("again")).await.unwrap();
        }
    }
    assert_eq!(
        (a.fallbacks(), b.fallbacks()),
        (0, 0),
        "every read was answered by the caches"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_starts_on_more_data_than_one_etcd_reply_holds() {
    let etcd = EtcdCluster::start(1);
    let store = EtcdStore::connect(EtcdOptions::new(etcd.endpoints()))
        .await
        .unwrap();
    // 1,200 values of 10 KiB: 12 MiB, three times etcd-client's default reply limit.
    let value = Bytes::from(vec![b'x'; 10 << 10]);
    let mut writers = Vec::new();
    for w in 0..8 {
        let (store, value) = (store.clone(), value.clone());
        writers.push(tokio::spawn(async move {
            for i in (w..1200).step_by(8) {
                store
                    .create(&format!("/configmaps/default/c{i:04}"), value.clone())
                    .await
                    .unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let (_, cache) = server(&etcd).await;
    let page = cache.list("/configmaps/default/", None, 0).await.unwrap();
    assert_eq!(page.items.len(), 1200);
    assert!(page.items.iter().all(|kv| kv.value == value));
    assert_eq!(cache.fallbacks(), 0);
}
