//! PATCH bodies applied to an object's JSON: JSON patch (RFC 6902,
//! `application/json-patch+json`), JSON merge patch (RFC 7386, `application/merge-patch+json`)
//! and Kubernetes' strategic merge patch (`application/strategic-merge-patch+json`, what
//! client-side `kubectl apply`, `label`, `scale`, `rollout restart` send), with the built-in
//! kinds' merge keys ([`merge_key`]: containers by `name`, ports by `containerPort`, ...), the
//! `$patch: delete|replace` directives, `$retainKeys`, `$deleteFromPrimitiveList/…` and
//! `$setElementOrder/…` (read, not ordered by). Server-side apply is later work: a 415 naming
//! the docs.
//!
//! Must not: know objects beyond their JSON, or write anything.

use serde_json::{Map, Value};

use super::RestError;

/// The kinds of patch Kubernetes takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
}

impl PatchKind {
    /// The patch kind of a Content-Type.
    pub fn of(content_type: &str) -> Result<Self, RestError> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/json-patch+json" => Ok(Self::Json),
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Err(RestError::unsupported_media_type(
                    "server-side apply (application/apply-patch+yaml) is not supported by skiff yet: use client-side `kubectl apply` (the default; without --server-side); see docs/kubernetes-api.md",
                ))
            }
            _ => Err(RestError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {media:?})"
            ))),
        }
    }
}

/// The object `current` (JSON) with `patch` applied; `kind` picks strategic merge keys.
pub fn apply(
    kind: PatchKind,
    object_kind: &str,
    current: &Value,
    patch: &[u8],
) -> Result<Value, RestError> {
    let patch: Value = serde_json::from_slice(patch)
        .map_err(|e| RestError::bad_request(format!("the patch is not valid JSON: {e}")))?;
    match kind {
        PatchKind::Json => json_patch(current.clone(), &patch),
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err(RestError::bad_request(
                    "a merge patch must be a JSON object",
                ));
            }
            Ok(merge_patch(current.clone(), &patch))
        }
        PatchKind::Strategic => {
            if !patch.is_object() {
                return Err(RestError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            }
            strategic(current.clone(), &patch, object_kind, "")
        }
    }
}

/// RFC 7386.
pub fn merge_patch(target: Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut t = match target {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            let old = t.remove(k).unwrap_or(Value::Null);
            t.insert(k.clone(), merge_patch(old, v));
        }
    }
    Value::Object(t)
}

/// The merge key of the list field `field` in an object of kind `kind` (strategic merge patch:
/// Kubernetes' `patchMergeKey`), `Some("")` for lists of scalars merged as sets (finalizers),
/// `None` for lists replaced whole. Shared with the OpenAPI documents
/// (`x-kubernetes-patch-merge-key`).
pub fn merge_key(kind: &str, field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates"
        | "secrets" => "name",
        "ports" if kind == "Service" => "port",
        "ports" => "containerPort",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "conditions" | "addresses" => "type",
        "ownerReferences" => "uid",
        "finalizers" => "",
        _ => return None,
    })
}

fn bad(message: impl Into<String>) -> RestError {
    RestError::bad_request(message.into())
}

/// Kubernetes' strategic merge patch of `target` with `patch` (both maps).
fn strategic(target: Value, patch: &Value, kind: &str, path: &str) -> Result<Value, RestError> {
    let Value::Object(p) = patch else {
        return Ok(patch.clone());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut out = p.clone();
            out.remove("$patch");
            return Ok(Value::Object(out));
        }
        Some("delete") => return Ok(Value::Null),
        Some(other) if other != "merge" => {
            return Err(bad(format!("{path}: unknown $patch directive {other:?}")));
        }
        _ => {}
    }
    let mut t = match target {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if let Some(retain) = p.get("$retainKeys") {
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| bad(format!("{path}: $retainKeys must be a list")))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        let field_path = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let gone = v.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = t.get_mut(field) {
                items.retain(|i| !gone.contains(i));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        let old = t.remove(k).unwrap_or(Value::Null);
        let merged = match v {
            Value::Object(_) => strategic(old, v, kind, &field_path)?,
            Value::Array(items) => strategic_list(old, items, kind, k, &field_path)?,
            _ => v.clone(),
        };
        if !merged.is_null() {
            t.insert(k.clone(), merged);
        }
    }
    Ok(Value::Object(t))
}

fn strategic_list(
    target: Value,
    patch: &[Value],
    kind: &str,
    field: &str,
    path: &str,
) -> Result<Value, RestError> {
    // `{"$patch": "replace"}` among the items: the list is the other items.
    let replace = patch
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
    let Some(key) = merge_key(kind, field).filter(|_| !replace) else {
        let items: Vec<Value> = patch
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .cloned()
            .collect();
        return Ok(Value::Array(items));
    };
    let mut items = match target {
        Value::Array(a) => a,
        _ => Vec::new(),
    };
    if key.is_empty() {
        for v in patch {
            if !items.contains(v) {
                items.push(v.clone());
            }
        }
        return Ok(Value::Array(items));
    }
    for (i, item) in patch.iter().enumerate() {
        let Some(id) = item.get(key) else {
            return Err(bad(format!(
                "{path}[{i}]: the merge key {key:?} is missing from the patch's item"
            )));
        };
        let at = items.iter().position(|x| x.get(key) == Some(id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (at, delete) {
            (Some(at), true) => {
                items.remove(at);
            }
            (None, true) => {}
            (Some(at), false) => {
                let old = std::mem::take(&mut items[at]);
                items[at] = strategic(old, item, kind, &format!("{path}[{at}]"))?;
            }
            (None, false) => {
                let new = strategic(Value::Null, item, kind, &format!("{path}[{i}]"))?;
                items.push(new);
            }
        }
    }
    Ok(Value::Array(items))
}

/// RFC 6902.
pub fn json_patch(mut doc: Value, patch: &Value) -> Result<Value, RestError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| bad("a JSON patch must be a list of operations"))?;
    for (i, op) in ops.iter().enumerate() {
        let at = |field: &str| {
            op.get(field)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("JSON patch operation {i}: {field} is required")))
        };
        let name = at("op")?;
        let path = at("path")?;
        match name {
            "add" => add(&mut doc, path, value_of(op, i)?)?,
            "remove" => {
                remove(&mut doc, path)?;
            }
            "replace" => {
                remove(&mut doc, path)?;
                add(&mut doc, path, value_of(op, i)?)?;
            }
            "move" => {
                let from = at("from")?;
                let v = remove(&mut doc, from)?;
                add(&mut doc, path, v)?;
            }
            "copy" => {
                let from = at("from")?;
                let v = doc
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| bad(format!("JSON patch operation {i}: {from:?} not found")))?;
                add(&mut doc, path, v)?;
            }
            "test" => {
                let want = value_of(op, i)?;
                if doc.pointer(path) != Some(&want) {
                    return Err(RestError::new(
                        422,
                        "Invalid",
                        format!("JSON patch operation {i}: test of {path:?} failed"),
                    ));
                }
            }
            other => {
                return Err(bad(format!(
                    "JSON patch operation {i}: unknown op {other:?}"
                )));
            }
        }
    }
    Ok(doc)
}

fn value_of(op: &Value, i: usize) -> Result<Value, RestError> {
    op.get("value")
        .cloned()
        .ok_or_else(|| bad(format!("JSON patch operation {i}: value is required")))
}

/// (parent pointer, last token unescaped).
fn split_pointer(path: &str) -> Result<(&str, String), RestError> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| bad(format!("JSON patch: {path:?} is not a JSON pointer")))?;
    Ok((parent, last.replace("~1", "/").replace("~0", "~")))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), RestError> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.insert(last, value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let index = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= a.len())
                    .ok_or_else(|| {
                        bad(format!(
                            "JSON patch: index {last:?} out of range in {path:?}"
                        ))
                    })?
            };
            a.insert(index, value);
            Ok(())
        }
        _ => Err(bad(format!(
            "JSON patch: the parent of {path:?} does not exist"
        ))),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, RestError> {
    let (parent, last) = split_pointer(path)?;
    let missing = || bad(format!("JSON patch: {path:?} does not exist"));
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => m.remove(&last).ok_or_else(missing),
        Some(Value::Array(a)) => {
            let i = last
                .parse::<usize>()
                .ok()
                .filter(|i| *i < a.len())
                .ok_or_else(missing)?;
            Ok(a.remove(i))
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "x"}, "finalizers": ["a"]},
            "spec": {"replicas": 1, "template": {"spec": {
                "containers": [
                    {"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                     "ports": [{"containerPort": 80, "name": "http"}]},
                    {"name": "side", "image": "s:1"}
                ],
                "tolerations": [{"key": "k", "operator": "Exists"}]
            }}}
        })
    }

    fn sm(patch: Value) -> Value {
        apply(
            PatchKind::Strategic,
            "Deployment",
            &deployment(),
            patch.to_string().as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn strategic_merges_lists_by_their_keys() {
        let out = sm(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "a:2", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
             "ports": [{"containerPort": 8080}]}
        ]}}}}));
        let c = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(c.as_array().unwrap().len(), 2, "the sidecar stays");
        assert_eq!(c[0]["image"], "a:2");
        assert_eq!(
            c[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}])
        );
        assert_eq!(c[0]["ports"].as_array().unwrap().len(), 2);
        assert_eq!(c[1]["image"], "s:1");
    }

    #[test]
    fn strategic_directives() {
        let out = sm(json!({
            "metadata": {"labels": {"tier": null, "new": "y"}, "finalizers": ["b"]},
            "spec": {"template": {"spec": {
                "containers": [{"name": "side", "$patch": "delete"}],
                "tolerations": [{"key": "other", "operator": "Exists"}]
            }}}
        }));
        assert_eq!(out["metadata"]["labels"], json!({"app": "web", "new": "y"}));
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        let spec = &out["spec"]["template"]["spec"];
        assert_eq!(spec["containers"].as_array().unwrap().len(), 1);
        // No merge key: the list is replaced.
        assert_eq!(
            spec["tolerations"],
            json!([{"key": "other", "operator": "Exists"}])
        );
        let out = sm(json!({"metadata": {"labels": {"$patch": "replace", "only": "me"}}}));
        assert_eq!(out["metadata"]["labels"], json!({"only": "me"}));
        let out = sm(
            json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "solo", "image": "z"}]}}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "solo", "image": "z"}])
        );
        let out = sm(json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!([]));
        let out = sm(json!({"spec": {"$retainKeys": ["template"], "template": {}}}));
        assert!(out["spec"].get("replicas").is_none());
    }

    #[test]
    fn service_ports_merge_by_port() {
        let svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}]}});
        let out = apply(
            PatchKind::Strategic,
            "Service",
            &svc,
            br#"{"spec":{"ports":[{"port":80,"targetPort":8080}]}}"#,
        )
        .unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "name": "http", "targetPort": 8080}])
        );
    }

    #[test]
    fn merge_patch_replaces_lists() {
        let out = apply(PatchKind::Merge, "Deployment", &deployment(), br#"{"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"x","image":"y"}]}}},"metadata":{"labels":{"app":null}}}"#).unwrap();
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(out["metadata"]["labels"], json!({"tier": "x"}));
    }

    #[test]
    fn json_patch_operations() {
        let out = apply(
            PatchKind::Json,
            "Deployment",
            &deployment(),
            br#"[
            {"op":"replace","path":"/spec/replicas","value":5},
            {"op":"add","path":"/metadata/labels/a~1b","value":"c"},
            {"op":"remove","path":"/spec/template/spec/containers/1"},
            {"op":"add","path":"/metadata/finalizers/-","value":"z"},
            {"op":"test","path":"/spec/replicas","value":5},
            {"op":"copy","from":"/metadata/name","path":"/metadata/generateName"},
            {"op":"move","from":"/metadata/generateName","path":"/metadata/annotations"}
        ]"#,
        )
        .unwrap();
        assert_eq!(out["spec"]["replicas"], 5);
        assert_eq!(out["metadata"]["labels"]["a/b"], "c");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "z"]));
        assert_eq!(out["metadata"]["annotations"], "web");
        let e = apply(
            PatchKind::Json,
            "D",
            &deployment(),
            br#"[{"op":"test","path":"/spec/replicas","value":9}]"#,
        )
        .unwrap_err();
        assert_eq!(e.code, 422);
        let e = apply(
            PatchKind::Json,
            "D",
            &deployment(),
            br#"[{"op":"remove","path":"/nope"}]"#,
        )
        .unwrap_err();
        assert_eq!(e.code, 400);
    }

    #[test]
    fn server_side_apply_is_refused_with_415() {
        let e = PatchKind::of("application/apply-patch+yaml").unwrap_err();
        assert_eq!((e.code, e.reason), (415, "UnsupportedMediaType"));
        assert!(e.message.contains("docs/kubernetes-api.md"));
        assert_eq!(
            PatchKind::of("application/merge-patch+json; charset=utf-8").unwrap(),
            PatchKind::Merge
        );
    }
}
