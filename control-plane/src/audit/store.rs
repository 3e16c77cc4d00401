//! The controllers' and the scheduler's writes in the audit log: a [`Store`] wrapper over the
//! handle they write through, recording each create, update and delete of an API object as
//! Kubernetes' audit log shows its controllers' calls.
//!
//! Who wrote is the controller the write ran under ([`as_controller`], a task-local name):
//! `system:kube-scheduler` for the scheduler, `system:serviceaccount:kube-system:NAME` for a
//! controller (kube-controller-manager's identities with `--use-service-account-credentials`),
//! `system:kube-controller-manager` when no name is known. The verb comes from the store
//! operation (a status write is an `update`); the request URI is the object's REST path.
//! Keys that hold no API object (allocations, keyvalue buckets) are not recorded.
//!
//! Must not: read or record values (Metadata level: a Secret's data never reaches the log), or
//! change what the wrapped store does.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use skiff_api::kinds::KINDS;

use super::{AuditLog, ObjectRef, Outcome, RequestInfo};
use crate::auth::Identity;
use crate::store::{EventStream, KeyValue, ListPage, Revision, Store, StoreError};

tokio::task_local! {
    static CONTROLLER: &'static str;
}

/// The scheduler's name for [`as_controller`].
pub const SCHEDULER: &str = "scheduler";

/// Runs `work` with its store writes recorded as controller `name`'s (`replicaset-controller`,
/// or [`SCHEDULER`]).
pub async fn as_controller<F: Future>(name: &'static str, work: F) -> F::Output {
    CONTROLLER.scope(name, work).await
}

/// The identity a write under `controller` is recorded with.
fn identity(controller: Option<&'static str>) -> Identity {
    match controller {
        Some(SCHEDULER) => Identity::User {
            name: "system:kube-scheduler".into(),
            groups: vec![],
        },
        Some(name) => Identity::ServiceAccount {
            namespace: "kube-system".into(),
            name: name.into(),
        },
        None => Identity::User {
            name: "system:kube-controller-manager".into(),
            groups: vec![],
        },
    }
}

/// The object a store key holds (`/pods/default/web`), if it is an API object's key.
fn object_of(key: &str) -> Option<(ObjectRef, String)> {
    let mut parts = key.strip_prefix('/')?.split('/');
    let plural = parts.next()?;
    let kind = KINDS.iter().find(|k| k.plural == plural)?;
    let (namespace, name) = match (kind.namespaced, parts.next(), parts.next()) {
        (true, Some(ns), Some(name)) => (ns, name),
        (false, Some(name), None) => ("", name),
        _ => return None,
    };
    if parts.next().is_some() || name.is_empty() {
        return None;
    }
    let (group, version) = kind
        .api_version
        .split_once('/')
        .unwrap_or(("", kind.api_version));
    let base = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let uri = if namespace.is_empty() {
        format!("{base}/{plural}/{name}")
    } else {
        format!("{base}/namespaces/{namespace}/{plural}/{name}")
    };
    let object = ObjectRef {
        resource: plural.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        api_group: group.to_string(),
        api_version: version.to_string(),
        subresource: String::new(),
    };
    Some((object, uri))
}

fn code_of(e: &StoreError) -> tonic::Code {
    match e {
        StoreError::NotFound(_) => tonic::Code::NotFound,
        StoreError::AlreadyExists(_) => tonic::Code::AlreadyExists,
        StoreError::Conflict { .. } => tonic::Code::Aborted,
        StoreError::Compacted { .. } => tonic::Code::OutOfRange,
        StoreError::Backend(_) => tonic::Code::Internal,
    }
}

/// A store whose writes of API objects are audited.
pub struct AuditedStore {
    inner: Arc<dyn Store>,
    log: Arc<AuditLog>,
}

impl AuditedStore {
    pub fn new(inner: Arc<dyn Store>, log: Arc<AuditLog>) -> Self {
        Self { inner, log }
    }

    fn record(
        &self,
        verb: &str,
        key: &str,
        received: time::OffsetDateTime,
        result: Result<(), &StoreError>,
    ) {
        let Some((object, uri)) = object_of(key) else {
            return;
        };
        let controller = CONTROLLER.try_with(|c| *c).ok();
        let info = RequestInfo {
            audit_id: uuid::Uuid::new_v4().to_string(),
            uri,
            source_ip: None,
            user_agent: format!("skiff-controller-manager/{}", controller.unwrap_or("")),
            received,
        };
        let message = result.err().map(ToString::to_string).unwrap_or_default();
        let outcome = Outcome {
            code: result.err().map_or(tonic::Code::Ok, code_of),
            message: &message,
        };
        let who = identity(controller);
        self.log.record(
            &info,
            Some(&who),
            verb,
            Some(&object),
            "ResponseComplete",
            outcome,
        );
    }
}

#[async_trait::async_trait]
impl Store for AuditedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, StoreError> {
        self.inner.list(prefix, start_after, limit).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        let received = time::OffsetDateTime::now_utc();
        let result = self.inner.create(key, value).await;
        self.record("create", key, received, result.as_ref().map(|_| ()));
        result
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        let received = time::OffsetDateTime::now_utc();
        let result = self.inner.update(key, value, expected).await;
        self.record("update", key, received, result.as_ref().map(|_| ()));
        result
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let received = time::OffsetDateTime::now_utc();
        let result = self.inner.delete(key, expected).await;
        self.record("delete", key, received, result.as_ref().map(|_| ()));
        result
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream, StoreError> {
        self.inner.watch(prefix, after).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};

    #[test]
    fn keys_of_api_objects_name_them() {
        let (pod, uri) = object_of("/pods/shop/web").unwrap();
        assert_eq!(
            (
                pod.resource.as_str(),
                pod.namespace.as_str(),
                pod.name.as_str()
            ),
            ("pods", "shop", "web")
        );
        assert_eq!(uri, "/api/v1/namespaces/shop/pods/web");
        let (rs, uri) = object_of("/replicasets/default/web-1").unwrap();
        assert_eq!(rs.api_group, "apps");
        assert_eq!(uri, "/apis/apps/v1/namespaces/default/replicasets/web-1");
        let (_, uri) = object_of("/nodes/n1").unwrap();
        assert_eq!(uri, "/api/v1/nodes/n1");
        for internal in [
            "/allocations/ips/10.0.0.1",
            "/pods/default",
            "/pods/a/b/c",
            "nodes",
        ] {
            assert!(object_of(internal).is_none(), "{internal}");
        }
    }

    #[tokio::test]
    async fn writes_are_recorded_as_the_controller_that_made_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&super::super::AuditOptions {
            path: path.clone(),
            max_size_mb: 0,
            max_backups: 0,
        })
        .unwrap();
        let inner = EmbeddedStore::open(&dir.path().join("store.redb"), EmbeddedOptions::default())
            .unwrap();
        let store = AuditedStore::new(Arc::new(inner), log);
        as_controller("replicaset-controller", async {
            store
                .create("/pods/default/web-1", Bytes::from_static(b"secret-bytes"))
                .await
                .unwrap();
            // A failed write is recorded with its code.
            assert!(
                store
                    .create("/pods/default/web-1", Bytes::from_static(b"x"))
                    .await
                    .is_err()
            );
        })
        .await;
        as_controller(SCHEDULER, async {
            store
                .update("/pods/default/web-1", Bytes::from_static(b"y"), None)
                .await
                .unwrap();
        })
        .await;
        store.delete("/pods/default/web-1", None).await.unwrap();
        // Not an API object: not recorded.
        store
            .create("/allocations/x", Bytes::from_static(b"z"))
            .await
            .unwrap();
        let mut text = String::new();
        for _ in 0..500 {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() >= 4 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let summary: Vec<(String, String, u64)> = lines
            .iter()
            .map(|l| {
                (
                    l["user"]["username"].as_str().unwrap().to_string(),
                    l["verb"].as_str().unwrap().to_string(),
                    l["responseStatus"]["code"].as_u64().unwrap(),
                )
            })
            .collect();
        let sa = "system:serviceaccount:kube-system:replicaset-controller".to_string();
        assert_eq!(
            summary,
            [
                (sa.clone(), "create".into(), 200),
                (sa, "create".into(), 409),
                ("system:kube-scheduler".into(), "update".into(), 200),
                (
                    "system:kube-controller-manager".into(),
                    "delete".into(),
                    200
                ),
            ]
        );
        assert_eq!(lines[0]["objectRef"]["name"], "web-1");
        assert_eq!(
            lines[0]["requestURI"],
            "/api/v1/namespaces/default/pods/web-1"
        );
        assert!(!text.contains("secret-bytes"));
        assert_eq!(text.lines().count(), 4, "{text}");
    }
}
