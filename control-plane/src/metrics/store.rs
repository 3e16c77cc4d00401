//! Store metrics: `skiff_store_request_duration_seconds{operation, type}` (each call of the
//! [`Store`] interface, whichever backend serves it: redb embedded, etcd, or etcd behind the watch
//! cache; kube-apiserver's `etcd_request_duration_seconds` has the same labels but measures etcd
//! alone), `skiff_store_request_errors_total{operation, type}` (backend failures only: a conflict
//! or a missing key is an answer, not an error) and `skiff_store_write_batch_size` (writes the
//! embedded store commits in one redb transaction; etcd has no batches, one transaction a write).
//!
//! [`Instrumented`] wraps a store and times each call; `type` is the kind's plural from the key
//! (`/pods/default/web` → `pods`), or `other` for a key of no kind skiff serves.
//!
//! Must not: change what the store answers.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::store::{EventStream, KeyValue, ListPage, Revision, Store, StoreError};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    operation: &'static str,
    r#type: &'static str,
}

type Durations = Family<OpLabels, Histogram, fn() -> Histogram>;

pub(super) struct StoreMetrics {
    durations: Durations,
    errors: Family<OpLabels, Counter>,
    batch: Histogram,
}

fn fast_histogram() -> Histogram {
    Histogram::new(super::FAST_BUCKETS)
}

impl StoreMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let durations: Durations = Family::new_with_constructor(fast_histogram);
        let errors = Family::<OpLabels, Counter>::default();
        let batch = Histogram::new([
            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
        ]);
        registry.register_with_unit(
            "skiff_store_request_duration",
            "Store request latency in seconds for each operation and object type (the embedded redb store, or etcd and its watch cache)",
            Unit::Seconds,
            durations.clone(),
        );
        registry.register(
            "skiff_store_request_errors",
            "Store requests that failed in the backend, for each operation and object type",
            errors.clone(),
        );
        registry.register(
            "skiff_store_write_batch_size",
            "Writes committed together in one transaction of the embedded store",
            batch.clone(),
        );
        Self {
            durations,
            errors,
            batch,
        }
    }
}

/// The embedded store committed `writes` writes in one transaction.
pub fn write_batch(writes: usize) {
    super::store_metrics().batch.observe(writes as f64);
}

/// The `type` label of a key or prefix.
fn type_of(key: &str) -> &'static str {
    let plural = crate::registry::plural_of_key(key).unwrap_or("");
    skiff_api::kinds::KINDS
        .iter()
        .find(|k| k.plural == plural)
        .map_or("other", |k| k.plural)
}

fn observe<T>(
    operation: &'static str,
    key: &str,
    started: Instant,
    result: &Result<T, StoreError>,
) {
    let labels = OpLabels {
        operation,
        r#type: type_of(key),
    };
    let m = super::store_metrics();
    m.durations
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    if matches!(result, Err(StoreError::Backend(_))) {
        m.errors.get_or_create(&labels).inc();
    }
}

/// A store whose every call is timed.
pub struct Instrumented(pub Arc<dyn Store>);

#[async_trait::async_trait]
impl Store for Instrumented {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let t = Instant::now();
        let r = self.0.get(key).await;
        observe("get", key, t, &r);
        r
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, StoreError> {
        let t = Instant::now();
        let r = self.0.list(prefix, start_after, limit).await;
        observe("list", prefix, t, &r);
        r
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        let t = Instant::now();
        let r = self.0.create(key, value).await;
        observe("create", key, t, &r);
        r
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        let t = Instant::now();
        let r = self.0.update(key, value, expected).await;
        observe("update", key, t, &r);
        r
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let t = Instant::now();
        let r = self.0.delete(key, expected).await;
        observe("delete", key, t, &r);
        r
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream, StoreError> {
        let t = Instant::now();
        let r = self.0.watch(prefix, after).await;
        observe("watch", prefix, t, &r);
        r
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        let t = Instant::now();
        let r = self.0.revision().await;
        observe("revision", "", t, &r);
        r
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metrics::encode;
    use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};

    #[tokio::test]
    async fn each_call_is_timed_by_operation_and_type_and_batches_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let inner =
            EmbeddedStore::open(&dir.path().join("s.redb"), EmbeddedOptions::default()).unwrap();
        let store = Instrumented(Arc::new(inner));
        store
            .create("/configmaps/default/a", Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert!(store.get("/configmaps/default/b").await.unwrap().is_none());
        store.list("/no-such-kind/", None, 0).await.unwrap();
        let mut text = String::new();
        encode(false, &mut text).unwrap();
        for line in [
            r#"skiff_store_request_duration_seconds_count{operation="create",type="configmaps"} 1"#,
            r#"skiff_store_request_duration_seconds_count{operation="get",type="configmaps"} 1"#,
            r#"skiff_store_request_duration_seconds_count{operation="list",type="other"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        // A missing key is an answer, not a backend error.
        assert!(!text.contains("skiff_store_request_errors_total{"));
        let batches = text
            .lines()
            .find(|l| l.starts_with("skiff_store_write_batch_size_count "))
            .unwrap();
        assert_ne!(batches, "skiff_store_write_batch_size_count 0");
    }
}
