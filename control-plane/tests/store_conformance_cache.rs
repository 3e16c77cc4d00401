//! The store conformance suite through the watch cache: on a real etcd (one member on loopback,
//! started by each test; a reopen is a `kill -9` of the member and a new cache over the same
//! data) as the API servers run it, and on the embedded store. The cache's ring is as long as
//! the history asked for, so a watch from before it gets the store's `Compacted`.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_control_plane::store::Store;
use skiff_control_plane::store::cache::{CacheOptions, StoreFeed, WatchCache};
use skiff_control_plane::store::conformance::{self, Backend};
use skiff_control_plane::store::embedded::{EmbeddedOptions, EmbeddedStore};
use skiff_control_plane::store::etcd::{EtcdOptions, EtcdStore};
use skiff_tests::etcd::EtcdCluster;

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

fn options(history: u64) -> CacheOptions {
    CacheOptions {
        events: usize::try_from(history).unwrap_or(usize::MAX),
        ..CacheOptions::default()
    }
}

/// One etcd; each fresh store a new key prefix in it.
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
        let mut etcd = EtcdOptions::new(self.cluster.lock().unwrap().endpoints());
        etcd.prefix = prefix.to_string();
        etcd.history = history;
        let store = block_on(EtcdStore::connect(etcd)).expect("connect to etcd");
        let cache = block_on(WatchCache::start(
            Arc::new(store.clone()),
            Arc::new(store),
            options(history),
        ))
        .expect("start the watch cache");
        Arc::new(cache)
    }

    fn new_prefix(&self) -> String {
        let prefix = format!("/c{}", self.stores.fetch_add(1, Ordering::Relaxed));
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

/// redb files in one temp dir.
struct Embedded {
    dir: tempfile::TempDir,
    paths: Mutex<Vec<PathBuf>>,
}

impl Embedded {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            paths: Mutex::new(Vec::new()),
        }
    }

    fn open(&self, path: &std::path::Path, history: u64) -> Arc<dyn Store> {
        // A reopened file may still be held for a moment by a finishing watch task.
        for _ in 0..100 {
            if let Ok(s) = EmbeddedStore::open(path, EmbeddedOptions { history }) {
                let s: Arc<dyn Store> = Arc::new(s);
                let cache = block_on(WatchCache::start(
                    s.clone(),
                    Arc::new(StoreFeed(s)),
                    options(history),
                ))
                .expect("start the watch cache");
                return Arc::new(cache);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("cannot open {}", path.display());
    }

    fn new_path(&self) -> PathBuf {
        let mut paths = self.paths.lock().unwrap();
        let path = self.dir.path().join(format!("store-{}.redb", paths.len()));
        paths.push(path.clone());
        path
    }
}

impl Backend for Embedded {
    fn fresh(&self) -> Arc<dyn Store> {
        self.open(&self.new_path(), EmbeddedOptions::default().history)
    }

    fn reopen(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        let path = self.paths.lock().unwrap().last().expect("a store").clone();
        drop(store);
        self.open(&path, EmbeddedOptions::default().history)
    }

    fn fresh_with_history(&self, events: u64) -> Arc<dyn Store> {
        self.open(&self.new_path(), events)
    }
}

macro_rules! suite {
    ($($name:ident => $check:ident),* $(,)?) => {
        mod on_etcd {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    conformance::$check(&Etcd::new()).await;
                }
            )*
        }
        mod on_embedded {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    conformance::$check(&Embedded::new()).await;
                }
            )*
        }
    };
}

suite! {
    cache_crud => crud,
    cache_list_prefix_and_pages => list_prefix_and_pages,
    cache_conflicts => conflicts,
    cache_watch_order => watch_order,
    cache_watch_resume => watch_resume,
    cache_watch_compacted => watch_compacted,
    cache_durable_across_reopen => durable_across_reopen,
}
