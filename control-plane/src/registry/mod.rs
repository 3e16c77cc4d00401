//! The registry layer: the one path every write takes between the API servers (gRPC today,
//! REST later), the scheduler, the controllers and the [`Store`](crate::store::Store), as
//! Kubernetes' `pkg/registry`.
//!
//! - [`Registry`] (`storage.rs`): the storage object of one kind, generic over [`Strategy`]:
//!   create, get, list, update, update status, delete (finalizers, graceful deletion), watch.
//! - [`Strategy`] (`strategy.rs`): a kind's rules — defaulting, validation, what create and
//!   update may change, server-owned fields, status vs. spec, graceful deletion.
//! - [`eviction`]: the `pods/eviction` subresource, a delete that honours PodDisruptionBudgets.
//! - [`Binding`] (`binding.rs`): the `pods/binding` subresource the scheduler binds through (on
//!   the version its cache holds, with no read unless the compare-and-swap fails).
//! - [`admission`]: the chain of mutating, then validating links every write passes.
//! - [`allocator`]: a Service's cluster IP and node ports, taken and given back on the write
//!   path (one store key per value taken), and the repair loop.
//! - store keys and encoding (this file): `/pods/default/web`; values are the kind's protobuf
//!   with the resourceVersion taken out (it is the key's revision).
//!
//! Must not: authorize (the API servers do, before calling in), or be bypassed: nothing outside
//! this module builds a store key or encodes an object for the store.

pub mod admission;
pub mod allocator;
mod binding;
pub mod eviction;
pub mod keyvalue;
pub mod limit_ranger;
mod namespace;
pub mod node_restriction;
pub mod pod_security;
mod rbac_escalation;
pub mod scale_to_zero;
pub mod service_account;
mod storage;
mod strategy;
pub mod warnings;

use bytes::Bytes;
use skiff_api::Resource;
use skiff_api::selector::{FieldSelector, LabelSelector};

use crate::error::ApiError;
use crate::store::KeyValue;

pub use binding::{Binding, set_condition};
pub use storage::{FOREGROUND, ORPHAN, Registry};
pub use strategy::{GracefulDelete, Strategy};

/// The store key of an object: `/pods/default/web`, `/nodes/n1`.
pub fn key<K: Resource>(namespace: &str, name: &str) -> String {
    if K::NAMESPACED {
        format!("/{}/{namespace}/{name}", K::PLURAL)
    } else {
        format!("/{}/{name}", K::PLURAL)
    }
}

/// The store prefix of a list: `/pods/default/`, or `/pods/` for all namespaces.
pub fn prefix<K: Resource>(namespace: &str) -> String {
    if K::NAMESPACED && !namespace.is_empty() {
        format!("/{}/{namespace}/", K::PLURAL)
    } else {
        format!("/{}/", K::PLURAL)
    }
}

/// The store prefix of every object of the kind named by `plural` (for kind-generic readers such
/// as the garbage collector), or of one namespace of it.
pub fn prefix_of_plural(plural: &str, namespace: &str) -> String {
    if namespace.is_empty() {
        format!("/{plural}/")
    } else {
        format!("/{plural}/{namespace}/")
    }
}

/// The plural of the kind a store key holds: `pods` of `/pods/default/web`.
pub fn plural_of_key(store_key: &str) -> Option<&str> {
    store_key.strip_prefix('/')?.split('/').next()
}

/// Does this store key hold an object of kind `K`?
pub fn owns<K: Resource>(store_key: &str) -> bool {
    store_key
        .strip_prefix('/')
        .and_then(|k| k.strip_prefix(K::PLURAL))
        .is_some_and(|k| k.starts_with('/'))
}

/// (namespace, name) of a store key of kind `K` (namespace empty for cluster-scoped kinds).
pub fn parse_key<K: Resource>(store_key: &str) -> Option<(String, String)> {
    let rest = store_key
        .strip_prefix('/')?
        .strip_prefix(K::PLURAL)?
        .strip_prefix('/')?;
    if K::NAMESPACED {
        let (ns, name) = rest.split_once('/')?;
        Some((ns.to_string(), name.to_string()))
    } else {
        Some((String::new(), rest.to_string()))
    }
}

/// Decodes a stored value and stamps its resourceVersion.
pub fn decode<K: Resource>(kv: &KeyValue) -> Result<K, ApiError> {
    let mut obj = K::decode(kv.value.as_ref())
        .map_err(|e| ApiError::Internal(format!("corrupt object {}: {e}", kv.key)))?;
    obj.metadata_mut().resource_version = kv.mod_revision.to_string();
    Ok(obj)
}

/// Any kind's metadata: every kind's message has `ObjectMeta metadata = 1`, and prost skips the
/// rest, so one decode serves all kinds.
#[derive(Clone, PartialEq, prost::Message)]
struct MetaOnly {
    #[prost(message, optional, tag = "1")]
    metadata: Option<skiff_api::v1::ObjectMeta>,
}

/// The metadata of a stored object of any kind (for kind-generic readers: the garbage collector).
pub fn decode_meta(kv: &KeyValue) -> Result<skiff_api::v1::ObjectMeta, ApiError> {
    let meta = <MetaOnly as prost::Message>::decode(kv.value.as_ref())
        .map_err(|e| ApiError::Internal(format!("corrupt object {}: {e}", kv.key)))?;
    let mut meta = meta.metadata.unwrap_or_default();
    meta.resource_version = kv.mod_revision.to_string();
    Ok(meta)
}

/// The stored form of an object (its resourceVersion is the key's revision, not stored): the
/// resourceVersion is taken out for the encoding and put back, so no copy is made.
fn encode<K: Resource>(obj: &mut K) -> Bytes {
    let version = std::mem::take(&mut obj.metadata_mut().resource_version);
    let bytes = Bytes::from(obj.encode_to_vec());
    obj.metadata_mut().resource_version = version;
    bytes
}

/// Selectors of a list or watch, checked against what the kind supports.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selectors {
    pub fn parse<K: Resource>(label: &str, field: &str) -> Result<Self, ApiError> {
        use skiff_api::ResourceExt;
        let labels = LabelSelector::parse(label)
            .map_err(|e| ApiError::BadRequest(format!("labelSelector: {e}")))?;
        let fields = FieldSelector::parse(field)
            .map_err(|e| ApiError::BadRequest(format!("fieldSelector: {e}")))?;
        let probe = K::default();
        for path in fields.paths() {
            if probe.field(path).is_none() {
                return Err(ApiError::BadRequest(format!(
                    "fieldSelector: field {path:?} is not supported for {}",
                    K::PLURAL
                )));
            }
        }
        Ok(Self { labels, fields })
    }

    pub fn matches<K: Resource>(&self, obj: &K) -> bool {
        use skiff_api::ResourceExt;
        self.labels.matches(&obj.meta().labels) && self.fields.matches(|p| obj.field(p))
    }
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod property_tests;

#[cfg(test)]
mod key_tests {
    use super::*;
    use skiff_api::v1::{Namespace, Node, Pod};

    #[test]
    fn keys_round_trip() {
        assert_eq!(key::<Pod>("default", "web"), "/pods/default/web");
        assert_eq!(key::<Node>("ignored", "n1"), "/nodes/n1");
        assert_eq!(prefix::<Pod>(""), "/pods/");
        assert_eq!(prefix::<Pod>("a"), "/pods/a/");
        assert_eq!(prefix::<Namespace>("a"), "/namespaces/");
        assert!(owns::<Pod>("/pods/a/b"));
        assert!(!owns::<Pod>("/podsx/a/b"));
        assert!(!owns::<Node>("/pods/a/b"));
        assert_eq!(
            parse_key::<Pod>("/pods/a/b"),
            Some(("a".to_string(), "b".to_string()))
        );
        assert_eq!(
            parse_key::<Node>("/nodes/n1"),
            Some((String::new(), "n1".to_string()))
        );
        assert_eq!(parse_key::<Pod>("/nodes/n1"), None);
        assert_eq!(prefix_of_plural("pods", "a"), prefix::<Pod>("a"));
    }
}
