//! The store conformance suite through the secrets-at-rest wrapper: sealing every key (prefix
//! `/`) over the embedded backend changes none of the store's semantics.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use skiff_control_plane::store::Store;
use skiff_control_plane::store::conformance::{self, Backend};
use skiff_control_plane::store::embedded::{EmbeddedOptions, EmbeddedStore};
use skiff_control_plane::store::encrypt::EncryptedStore;
use skiff_control_plane::store::keyring::Keyring;

struct Sealed {
    dir: tempfile::TempDir,
    keyring: Keyring,
    paths: Mutex<Vec<PathBuf>>,
}

impl Sealed {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            keyring: Keyring::generate().unwrap(),
            paths: Mutex::new(Vec::new()),
        }
    }

    fn open(&self, path: &std::path::Path, history: u64) -> Arc<dyn Store> {
        for _ in 0..100 {
            if let Ok(s) = EmbeddedStore::open(path, EmbeddedOptions { history }) {
                let inner: Arc<dyn Store> = Arc::new(s);
                return Arc::new(EncryptedStore::new(inner, &self.keyring, vec!["/".into()]));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
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

impl Backend for Sealed {
    fn fresh(&self) -> Arc<dyn Store> {
        self.open(&self.new_path(), EmbeddedOptions::default().history)
    }

    fn reopen(&self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        let path = self.paths.lock().unwrap().last().unwrap().clone();
        drop(store);
        self.open(&path, EmbeddedOptions::default().history)
    }

    fn fresh_with_history(&self, events: u64) -> Arc<dyn Store> {
        self.open(&self.new_path(), events)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_store_passes_conformance() {
    conformance::run_all(&Sealed::new()).await;
}
