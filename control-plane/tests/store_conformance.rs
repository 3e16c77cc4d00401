//! The store conformance suite on the embedded (redb) backend.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use skiff_control_plane::store::Store;
use skiff_control_plane::store::conformance::{self, Backend};
use skiff_control_plane::store::embedded::{EmbeddedOptions, EmbeddedStore};

struct Embedded {
    dir: tempfile::TempDir,
    paths: Mutex<Vec<(usize, PathBuf)>>,
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
            match EmbeddedStore::open(path, EmbeddedOptions { history }) {
                Ok(s) => return Arc::new(s),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
        panic!("cannot open {}", path.display());
    }

    fn new_path(&self) -> PathBuf {
        let mut paths = self.paths.lock().unwrap();
        let path = self.dir.path().join(format!("store-{}.redb", paths.len()));
        let n = paths.len();
        paths.push((n, path.clone()));
        path
    }
}

impl Backend for Embedded {
    fn fresh(&self) -> Arc<dyn Store> {
        self.open(&self.new_path(), EmbeddedOptions::default().history)
    }

    fn reopen(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        let path = self
            .paths
            .lock()
            .unwrap()
            .last()
            .expect("a store was opened")
            .1
            .clone();
        drop(store);
        self.open(&path, EmbeddedOptions::default().history)
    }

    fn fresh_with_history(&self, events: u64) -> Arc<dyn Store> {
        self.open(&self.new_path(), events)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud() {
    conformance::crud(&Embedded::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_prefix_and_pages() {
    conformance::list_prefix_and_pages(&Embedded::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts() {
    conformance::conflicts(&Embedded::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_order() {
    conformance::watch_order(&Embedded::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resume() {
    conformance::watch_resume(&Embedded::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_compacted() {
    conformance::watch_compacted(&Embedded::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_across_reopen() {
    conformance::durable_across_reopen(&Embedded::new()).await;
}
