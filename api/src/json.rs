//! Objects as Kubernetes writes them in JSON and YAML: the one conversion the REST API, `skiff get
//! -o json|yaml` and manifests share.
//!
//! The generated serde (pbjson, with Kubernetes' spellings set as `json_name` in the protos) writes
//! proto3 JSON: default values left out and timestamps as `+00:00`. [`to_kube_value`] turns that
//! into what Kubernetes writes: `apiVersion` and `kind` first, RFC 3339 timestamps in UTC with `Z`
//! (`2024-05-01T10:00:00Z`), the fields Kubernetes always prints even when zero (`restartCount: 0`,
//! `ready: false`, a Service's `status.loadBalancer: {}`…), and a pod spec's deprecated
//! `serviceAccount` beside `serviceAccountName`. [`from_kube_value`] reads what people and clients
//! write: quantities as numbers (`cpu: 1`, `cpu: 0.5`), `serviceAccount` for `serviceAccountName`,
//! and refuses unknown fields naming their path.
//!
//! Must not: validate (that is [`crate::validation`]'s), or accept a field it would drop.

use serde_json::{Map, Value};

use crate::resource::Resource;
use crate::v1::ObjectMeta;

/// A field that could not be read: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct DecodeError {
    /// `spec.containers[0].image`; empty for the whole object.
    pub path: String,
    pub message: String,
}

/// `obj` as Kubernetes writes it: `apiVersion`, `kind`, then its fields.
pub fn to_kube_value<K: Resource>(obj: &K) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(K::API_VERSION.into()));
    out.insert("kind".into(), Value::String(K::KIND.into()));
    if let Ok(Value::Object(fields)) = serde_json::to_value(obj) {
        out.extend(fields);
    }
    let mut value = Value::Object(out);
    kube_timestamps(&mut value);
    always_present(K::KIND, &mut value);
    if let Some(spec) = pod_spec_mut(K::KIND, &mut value)
        && let Some(name) = spec.get("serviceAccountName").cloned()
    {
        spec.insert("serviceAccount".into(), name);
    }
    value
}

/// Metadata as Kubernetes writes it (for `PartialObjectMetadata` and the like).
pub fn meta_value(meta: &ObjectMeta) -> Value {
    let mut value = serde_json::to_value(meta).unwrap_or_default();
    kube_timestamps(&mut value);
    value
}

/// A timestamp as Kubernetes writes it: `2024-05-01T10:00:00Z` (whole seconds, as `metav1.Time`).
pub fn timestamp_text(ts: &pbjson_types::Timestamp) -> String {
    let whole = pbjson_types::Timestamp {
        seconds: ts.seconds,
        nanos: 0,
    };
    match serde_json::to_value(whole) {
        Ok(Value::String(s)) => zulu(&s),
        _ => String::new(),
    }
}

/// Reads an object as Kubernetes clients write it. `apiVersion` and `kind`, when present, must be
/// `K`'s; unknown fields are refused with their path.
pub fn from_kube_value<K: Resource>(mut value: Value) -> Result<K, DecodeError> {
    let err = |path: &str, message: String| DecodeError {
        path: path.into(),
        message,
    };
    let Value::Object(map) = &mut value else {
        return Err(err("", "an object must be a JSON object".into()));
    };
    match map.remove("apiVersion") {
        None => {}
        Some(Value::String(v)) if v == K::API_VERSION => {}
        Some(v) => {
            return Err(err(
                "apiVersion",
                format!(
                    "{v} does not serve kind {}; use {:?}",
                    K::KIND,
                    K::API_VERSION
                ),
            ));
        }
    }
    match map.remove("kind") {
        None => {}
        Some(Value::String(k)) if k == K::KIND => {}
        Some(k) => return Err(err("kind", format!("{k} is not {}", K::KIND))),
    }
    normalize(K::KIND, &mut value);
    decode(&value)
}

/// What [`from_kube_value`] does to the fields before decoding, for a body without `apiVersion`
/// and `kind` (a manifest's): quantities written as numbers become text, and a pod spec's
/// deprecated `serviceAccount` fills `serviceAccountName` (Kubernetes' rule: only when that is
/// empty; dropped otherwise).
pub fn normalize(kind: &str, value: &mut Value) {
    quantities_as_text(value);
    if let Some(spec) = pod_spec_mut(kind, value)
        && let Some(alias) = spec.remove("serviceAccount")
    {
        let empty = spec
            .get("serviceAccountName")
            .is_none_or(|v| v.as_str().is_some_and(str::is_empty));
        if empty && alias.as_str().is_some_and(|s| !s.is_empty()) {
            spec.insert("serviceAccountName".into(), alias);
        }
    }
}

/// Decodes fields (no `apiVersion`/`kind`) into `K`, unknown fields and wrong types refused with
/// their path (`spec.containers[0].imagePullPolicyy: unknown field (did you mean
/// "imagePullPolicy"?)`).
pub fn decode<K: Resource>(value: &Value) -> Result<K, DecodeError> {
    serde_path_to_error::deserialize::<_, K>(value).map_err(|e| {
        let path = clean_path(&e.path().to_string());
        let (path, message) = explain(path, &e.inner().to_string());
        DecodeError { path, message }
    })
}

/// The pod spec inside an object of `kind`: a Pod's `spec`, a workload's `spec.template.spec`.
fn pod_spec_mut<'a>(kind: &str, value: &'a mut Value) -> Option<&'a mut Map<String, Value>> {
    let pointer = match kind {
        "Pod" => "/spec",
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => "/spec/template/spec",
        _ => return None,
    };
    value.pointer_mut(pointer)?.as_object_mut()
}

/// Quantities are strings in the API, but a manifest may write one as a YAML number
/// (`cpu: 1`, `averageValue: 10`), as Kubernetes accepts: such a number becomes its text before
/// decoding. Quantities are the entries of `limits`, `requests`, `capacity` and `allocatable`
/// (and of a LimitRange item's `max`, `min`, `default`, `defaultRequest`, `maxLimitRequestRatio`),
/// `sizeLimit`, `storage`… and `value`/`averageValue` of an HPA metric's `target` (or status
/// `current`).
pub fn quantities_as_text(value: &mut Value) {
    fn text(v: &mut Value) {
        if let Value::Number(n) = v {
            *v = Value::String(n.to_string());
        }
    }
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match (key.as_str(), &mut *v) {
                    (
                        "limits"
                        | "requests"
                        | "capacity"
                        | "allocatable"
                        | "max"
                        | "min"
                        | "default"
                        | "defaultRequest"
                        | "maxLimitRequestRatio",
                        Value::Object(m),
                    ) => {
                        m.values_mut().for_each(text);
                    }
                    ("target" | "current", Value::Object(m)) => {
                        for field in ["value", "averageValue"] {
                            if let Some(q) = m.get_mut(field) {
                                text(q);
                            }
                        }
                    }
                    ("sizeLimit", v) => text(v),
                    _ => {}
                }
                quantities_as_text(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(quantities_as_text),
        _ => {}
    }
}

/// The names of timestamp fields (every `metav1.Time` of the served kinds).
const TIMESTAMP_FIELDS: &[&str] = &[
    "creationTimestamp",
    "deletionTimestamp",
    "lastTransitionTime",
    "lastProbeTime",
    "lastUpdateTime",
    "lastHeartbeatTime",
    "startTime",
    "startedAt",
    "finishedAt",
    "firstTimestamp",
    "lastTimestamp",
    "eventTime",
    "timeAdded",
    "acquireTime",
    "renewTime",
    "lastScaleTime",
    "expirationTimestamp",
];

/// Fields holding users' strings (maps of them): never rewritten.
const USER_MAPS: &[&str] = &[
    "labels",
    "annotations",
    "data",
    "stringData",
    "binaryData",
    "nodeSelector",
    "selector",
    "matchLabels",
];

/// `…+00:00` → `…Z` in every timestamp field.
fn kube_timestamps(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if USER_MAPS.contains(&key.as_str()) {
                    continue;
                }
                match v {
                    Value::String(s) if TIMESTAMP_FIELDS.contains(&key.as_str()) => *s = zulu(s),
                    _ => kube_timestamps(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(kube_timestamps),
        _ => {}
    }
}

/// RFC 3339 in UTC with a `Z`: Kubernetes' spelling of what chrono writes as `+00:00`.
fn zulu(s: &str) -> String {
    match s.strip_suffix("+00:00") {
        Some(rest) => format!("{rest}Z"),
        None => s.to_string(),
    }
}

/// Fields Kubernetes always writes, even when zero or empty (its Go types have no `omitempty`,
/// or are structs, which `omitempty` never leaves out), per kind: a path from the object's root
/// (`[]` walks every item of an array) and the value written when the field is absent. A field
/// is only added where its parent exists.
fn always_present(kind: &str, value: &mut Value) {
    use serde_json::json;
    let container_status = |base: &str| -> Vec<(String, Value)> {
        [
            ("name", json!("")),
            ("state", json!({})),
            ("lastState", json!({})),
            ("ready", json!(false)),
            ("restartCount", json!(0)),
            ("image", json!("")),
            ("imageID", json!("")),
            ("state.terminated.exitCode", json!(0)),
            ("lastState.terminated.exitCode", json!(0)),
        ]
        .into_iter()
        .map(|(f, v)| (format!("{base}[].{f}"), v))
        .collect()
    };
    let pod_spec = |base: &str| -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for list in ["containers", "initContainers"] {
            out.push((format!("{base}.{list}[].ports[].containerPort"), json!(0)));
        }
        out
    };
    let mut fields: Vec<(String, Value)> = Vec::new();
    let mut add = |path: &str, v: Value| fields.push((path.to_string(), v));
    match kind {
        "Pod" => {
            add("spec", json!({}));
            add("status", json!({}));
            fields.extend(pod_spec("spec"));
            fields.extend(container_status("status.containerStatuses"));
            fields.extend(container_status("status.initContainerStatuses"));
            fields.push(("status.podIPs[].ip".into(), json!("")));
            // A metav1.Time struct: written as null when unset.
            fields.push(("status.conditions[].lastProbeTime".into(), Value::Null));
        }
        "Deployment" | "ReplicaSet" => {
            add("spec", json!({}));
            add("status", json!({}));
            if kind == "ReplicaSet" {
                add("status.replicas", json!(0));
            }
            fields.extend(pod_spec("spec.template.spec"));
        }
        "Service" => {
            add("spec", json!({}));
            add("status", json!({}));
            add("status.loadBalancer", json!({}));
            add("spec.ports[].port", json!(0));
        }
        "Endpoints" => add("subsets[].ports[].port", json!(0)),
        "Node" => {
            add("spec", json!({}));
            add("status", json!({}));
            for f in [
                "machineID",
                "systemUUID",
                "bootID",
                "kernelVersion",
                "osImage",
                "containerRuntimeVersion",
                "kubeletVersion",
                "kubeProxyVersion",
                "operatingSystem",
                "architecture",
            ] {
                add(&format!("status.nodeInfo.{f}"), json!(""));
            }
            add("status.daemonEndpoints.kubeletEndpoint.Port", json!(0));
            add("spec.taints[].key", json!(""));
            add("spec.taints[].effect", json!(""));
        }
        "Event" => {
            add("involvedObject", json!({}));
            add("reportingComponent", json!(""));
            add("reportingInstance", json!(""));
        }
        "PersistentVolumeClaim" | "Namespace" => {
            add("spec", json!({}));
            add("status", json!({}));
        }
        "HorizontalPodAutoscaler" => {
            add("status", json!({}));
            add("status.desiredReplicas", json!(0));
            add("spec.maxReplicas", json!(0));
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            add("roleRef.apiGroup", json!(""));
            add("subjects[].kind", json!(""));
            add("subjects[].name", json!(""));
        }
        _ => {}
    }
    for (path, default) in fields {
        let segments: Vec<&str> = path.split('.').collect();
        insert_default(value, &segments, &default);
    }
}

/// Inserts `default` at `path` below `value` where absent; `name[]` walks an array's items.
fn insert_default(value: &mut Value, path: &[&str], default: &Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Value::Object(map) = value else {
        return;
    };
    if let Some(array) = first.strip_suffix("[]") {
        if let Some(Value::Array(items)) = map.get_mut(array) {
            for item in items {
                if rest.is_empty() {
                    continue;
                }
                insert_default(item, rest, default);
            }
        }
        return;
    }
    if rest.is_empty() {
        map.entry(*first).or_insert_with(|| default.clone());
    } else if let Some(child) = map.get_mut(*first) {
        insert_default(child, rest, default);
    }
}

/// `spec.containers[0].?` → `spec.containers[0]` (serde_path_to_error's marker for an unknown segment).
fn clean_path(path: &str) -> String {
    let p = path.trim_end_matches(".?").trim_end_matches('?');
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

/// Turns serde's `unknown field `x`, expected one of ...` into `path.x: unknown field`, with a hint.
fn explain(path: String, message: &str) -> (String, String) {
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once('`')
    {
        let full = if path.is_empty() || path.ends_with(&format!(".{field}")) || path == field {
            if path.is_empty() {
                field.to_string()
            } else {
                path.clone()
            }
        } else {
            format!("{path}.{field}")
        };
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let hint = candidates
            .iter()
            .filter(|c| !c.contains('_'))
            .map(|c| (edit_distance(field, c), *c))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, c)| format!(" (did you mean {c:?}?)"))
            .unwrap_or_default();
        return (full, format!("unknown field{hint}"));
    }
    (path, message.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests;
