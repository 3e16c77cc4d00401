//! The store conformance suite on the etcd backend, against a real etcd (one member on loopback,
//! started by each test). A reopen is a `kill -9` of the member and a start on the same data:
//! acknowledged writes and the revision counter must survive it.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_control_plane::store::Store;
use skiff_control_plane::store::conformance::{self, Backend};
use skiff_control_plane::store::etcd::{EtcdOptions, EtcdStore};
use skiff_tests::etcd::EtcdCluster;

struct Etcd {
    cluster: Mutex<EtcdCluster>,
    stores: AtomicUsize,
    last_prefix: Mutex<String>,
}

impl Etcd {
    fn new() -> Self {
        Self {
            cluster: Mutex::new(EtcdCluster::start(1)),
            stores: AtomicUsize::new(0),
            last_prefix: Mutex::new(String::new()),
        }
    }

    fn connect(&self, prefix: &str, history: u64) -> Arc<dyn Store> {
        let mut options = EtcdOptions::new(self.cluster.lock().unwrap().endpoints());
        options.prefix = prefix.to_string();
        options.history = history;
        let store = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(EtcdStore::connect(options))
        })
        .expect("connect to etcd");
        Arc::new(store)
    }

    fn new_prefix(&self) -> String {
        let prefix = format!("/t{}", self.stores.fetch_add(1, Ordering::Relaxed));
        *self.last_prefix.lock().unwrap() = prefix.clone();
        prefix
    }
}

impl Backend for Etcd {
    fn fresh(&self) -> Arc<dyn Store> {
        self.connect(&self.new_prefix(), EtcdOptions::new(Vec::new()).history)
    }

    fn reopen(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        drop(store);
        {
            let mut cluster = self.cluster.lock().unwrap();
            cluster.kill(0);
            cluster.restart(0);
            cluster.wait_healthy(Duration::from_secs(30));
        }
        let prefix = self.last_prefix.lock().unwrap().clone();
        self.connect(&prefix, EtcdOptions::new(Vec::new()).history)
    }

    fn fresh_with_history(&self, events: u64) -> Arc<dyn Store> {
        self.connect(&self.new_prefix(), events)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_crud() {
    conformance::crud(&Etcd::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_list_prefix_and_pages() {
    conformance::list_prefix_and_pages(&Etcd::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_conflicts() {
    conformance::conflicts(&Etcd::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_watch_order() {
    conformance::watch_order(&Etcd::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_watch_resume() {
    conformance::watch_resume(&Etcd::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_watch_compacted() {
    conformance::watch_compacted(&Etcd::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_durable_across_reopen() {
    conformance::durable_across_reopen(&Etcd::new()).await;
}
