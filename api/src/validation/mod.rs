//! Validation of objects, shared by the server (authoritative) and the CLI (early, before any write).
//!
//! Every error names the field path it is about, as Kubernetes does:
//! `spec.containers[0].resources.limits.memory: invalid quantity "64Mb" ...`.

mod autoscaling;
mod coordination;
mod core;
pub mod limit_range;
pub mod names;
mod networking;
mod pod;
mod pod_dns;
mod pod_semantics;
mod policy;
mod probe;
mod projected;
pub mod pull_secret;
mod rbac;
pub mod security;

use std::fmt;

pub use self::core::{
    validate_config_map, validate_deployment, validate_endpoints, validate_event,
    validate_namespace, validate_node, validate_pvc, validate_replica_set, validate_secret,
    validate_service,
};
pub use autoscaling::{REQUESTS_IN_FLIGHT, REQUESTS_PER_SECOND, SCALE_TARGET_KIND, validate_hpa};
pub use coordination::{NODE_LEASE_NAMESPACE, validate_lease};
pub use limit_range::validate_limit_range;
pub use names::{is_dns1123_label, is_dns1123_subdomain, validate_label_key};
pub use networking::{
    CLASS_ANNOTATION, DEFAULT_CLASS_ANNOTATION, INGRESS_CLASS, INGRESS_CONTROLLER, PATH_TYPES,
    class_of, class_serving, is_default_class, served_by, validate_ingress, validate_ingress_class,
};
pub use pod::{PRIORITY_CLASSES, priority_of_class, validate_pod, validate_pod_spec};
pub use policy::{UNHEALTHY_POD_EVICTION_POLICIES, validate_pdb};
pub use projected::{DOWNWARD_FIELDS, MIN_TOKEN_EXPIRATION_SECONDS, validate_projected};
pub use rbac::{
    RBAC_GROUP, is_path_segment_name, validate_cluster_role, validate_cluster_role_binding,
    validate_role, validate_role_binding, validate_service_account,
};

use crate::resource::{Resource, ResourceExt};
use crate::v1::ObjectMeta;

/// One problem at one field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// All problems found in one object.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct FieldErrors(pub Vec<FieldError>);

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl FieldErrors {
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

/// Largest encoded object the API accepts (etcd's default request limit is 1.5 MiB).
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;

/// Validates an object as submitted by a client (metadata and kind-specific rules).
pub fn validate<K: Resource>(obj: &K) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    validate_meta::<K>(obj.meta(), &mut errors);
    obj.validate_kind(&mut errors);
    if obj.encoded_len() > MAX_OBJECT_BYTES {
        errors.add(
            "",
            format!(
                "object is {} bytes, more than the limit of {MAX_OBJECT_BYTES}",
                obj.encoded_len()
            ),
        );
    }
    errors.into_result()
}

fn validate_meta<K: Resource>(meta: &ObjectMeta, errors: &mut FieldErrors) {
    let label_names = K::KIND == "Namespace" || K::KIND == "Service";
    // RBAC objects are named by path segments, as Kubernetes' (`system:aggregate-to-view`).
    let segment_names = K::API_VERSION == "rbac.authorization.k8s.io/v1";
    if meta.name.is_empty() {
        errors.add("metadata.name", "required");
    } else if segment_names {
        if !is_path_segment_name(&meta.name) {
            errors.add(
                "metadata.name",
                format!(
                    "{:?} is not a valid name: may not be '.' or '..' or contain '/' or '%'",
                    meta.name
                ),
            );
        }
    } else if label_names && !is_dns1123_label(&meta.name) {
        errors.add(
            "metadata.name",
            format!("{:?} is not a valid name: lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters", meta.name),
        );
    } else if !label_names && !is_dns1123_subdomain(&meta.name) {
        errors.add(
            "metadata.name",
            format!("{:?} is not a valid name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters", meta.name),
        );
    }
    if K::NAMESPACED {
        if !meta.namespace.is_empty() && !is_dns1123_label(&meta.namespace) {
            errors.add(
                "metadata.namespace",
                format!("{:?} is not a valid namespace name", meta.namespace),
            );
        }
    } else if !meta.namespace.is_empty() {
        errors.add(
            "metadata.namespace",
            format!("{} is not namespaced", K::KIND),
        );
    }
    validate_labels(&meta.labels, "metadata.labels", errors);
    for key in meta.annotations.keys() {
        if let Err(e) = validate_label_key(key) {
            errors.add(format!("metadata.annotations[{key}]"), e);
        }
    }
    let size: usize = meta
        .annotations
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    if size > 256 * 1024 {
        errors.add("metadata.annotations", "total size exceeds 256 KiB");
    }
    for (i, owner) in meta.owner_references.iter().enumerate() {
        if owner.kind.is_empty() || owner.name.is_empty() || owner.uid.is_empty() {
            errors.add(
                format!("metadata.ownerReferences[{i}]"),
                "kind, name and uid are required",
            );
        }
    }
}

/// Label keys (`prefix/name`) and values (at most 63 characters of `[A-Za-z0-9._-]`).
pub fn validate_labels(
    labels: &std::collections::BTreeMap<String, String>,
    path: &str,
    errors: &mut FieldErrors,
) {
    for (key, value) in labels {
        if let Err(e) = validate_label_key(key) {
            errors.add(format!("{path}[{key}]"), e);
        }
        if !names::is_label_value(value) {
            errors.add(
                format!("{path}[{key}]"),
                format!("{value:?} is not a valid label value: at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"),
            );
        }
    }
}

/// A quantity at `path`, which must parse and not be negative.
pub(crate) fn check_quantity(
    value: &str,
    path: &str,
    errors: &mut FieldErrors,
) -> Option<crate::quantity::Quantity> {
    match crate::quantity::Quantity::parse(value) {
        Ok(q) if q.is_negative() => {
            errors.add(path, format!("{value:?} must not be negative"));
            None
        }
        Ok(q) => Some(q),
        Err(e) => {
            errors.add(path, e.to_string());
            None
        }
    }
}

pub(crate) fn check_one_of(value: &str, allowed: &[&str], path: &str, errors: &mut FieldErrors) {
    if !value.is_empty() && !allowed.contains(&value) {
        errors.add(
            path,
            format!(
                "unsupported value {value:?}: supported values are {}",
                quoted(allowed)
            ),
        );
    }
}

pub(crate) fn check_port(port: i32, path: &str, errors: &mut FieldErrors) {
    if !(1..=65535).contains(&port) {
        errors.add(path, format!("{port} must be between 1 and 65535"));
    }
}

fn quoted(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
