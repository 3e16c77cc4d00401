//! Objects to and from Kubernetes JSON for the REST API, with [`skiff_api::json`] (the shape
//! `skiff get -o json` and manifests share): on the way in, JSON or YAML decoded with the same
//! field paths and conveniences as manifests (quantities as numbers, `serviceAccount`), checked
//! against the URL's kind and namespace, with Kubernetes' `fieldValidation` (Strict by default
//! in skiff: a documented departure from Kubernetes' Warn).
//!
//! Must not: validate objects (the registry does) or know how they are stored.

use serde_json::Value;
use skiff_api::{Resource, ResourceExt};

use super::RestError;

/// An object as the REST API writes it: Kubernetes' JSON ([`skiff_api::json::to_kube_value`],
/// shared with `skiff get -o json`): `apiVersion`, `kind`, then its fields.
pub fn to_value<K: Resource>(obj: &K) -> Value {
    skiff_api::json::to_kube_value(obj)
}

/// Kubernetes' `fieldValidation`: what to do with fields the kind does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Refuse the request naming every unknown field (skiff's default).
    Strict,
    /// Drop them, and say so in `Warning` headers.
    Warn,
    /// Drop them silently.
    Ignore,
}

impl FieldValidation {
    pub fn parse(value: &str) -> Result<Self, RestError> {
        match value {
            "" | "Strict" => Ok(Self::Strict),
            "Warn" => Ok(Self::Warn),
            "Ignore" => Ok(Self::Ignore),
            other => Err(RestError::bad_request(format!(
                "fieldValidation: invalid value {other:?}: must be one of Ignore, Warn, Strict"
            ))),
        }
    }
}

/// Parses a request body (JSON, YAML, or the few kinds kubectl sends in protobuf) into a JSON
/// value.
pub fn parse_body(body: &[u8]) -> Result<Value, RestError> {
    if body.starts_with(super::protobuf::MAGIC) {
        return super::protobuf::to_json(body);
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| RestError::bad_request("the request body is neither JSON nor YAML text"))?;
    serde_yaml_ng::from_str::<Value>(text).map_err(|e| {
        RestError::bad_request(format!("the request body is not valid JSON or YAML: {e}"))
    })
}

/// Decodes `value` (a whole object, as sent) into a `K` for the request's `namespace` (empty
/// for cluster-scoped kinds or lists across namespaces), with `validation` for unknown fields.
/// Returns the object and the warnings to send.
pub fn from_value<K: Resource>(
    mut value: Value,
    namespace: &str,
    validation: FieldValidation,
) -> Result<(K, Vec<String>), RestError> {
    let gv = K::API_VERSION;
    let cannot = |why: String| {
        RestError::bad_request(format!(
            "{} in version {:?} cannot be handled as a {}: {why}",
            K::KIND,
            gv.rsplit('/').next().unwrap_or(gv),
            K::KIND
        ))
    };
    let Value::Object(map) = &mut value else {
        return Err(cannot("the body must be a JSON object".into()));
    };
    // Kubernetes takes the URL's kind when the body names none.
    match map.get("apiVersion") {
        None => {
            map.insert("apiVersion".into(), Value::String(gv.into()));
        }
        Some(Value::String(v)) if v == gv => {}
        Some(other) => {
            return Err(RestError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({gv})",
                other.as_str().unwrap_or("?")
            )));
        }
    }
    match map.get("kind") {
        None => {
            map.insert("kind".into(), Value::String(K::KIND.into()));
        }
        Some(Value::String(k)) if k == K::KIND => {}
        Some(other) => {
            return Err(RestError::bad_request(format!(
                "the kind in the data ({}) does not match the expected kind ({})",
                other.as_str().unwrap_or("?"),
                K::KIND
            )));
        }
    }
    if let Value::Object(map) = &mut value {
        map.remove("apiVersion");
        map.remove("kind");
    }
    skiff_api::json::normalize(K::KIND, &mut value);
    let mut unknown = Vec::new();
    let obj: K = loop {
        match skiff_api::json::decode::<K>(&value) {
            Ok(obj) => break obj,
            Err(e) if e.message.starts_with("unknown field") && unknown.len() < 64 => {
                if !remove_path(&mut value, &e.path) {
                    return Err(cannot(format!(
                        "strict decoding error: unknown field {:?}",
                        e.path
                    )));
                }
                unknown.push(e.path);
            }
            Err(e) if e.path.is_empty() => return Err(cannot(e.message)),
            Err(e) => return Err(cannot(format!("{}: {}", e.path, e.message))),
        }
    };
    let warnings = match validation {
        FieldValidation::Strict if !unknown.is_empty() => {
            let fields: Vec<String> = unknown
                .iter()
                .map(|p| format!("unknown field {p:?}"))
                .collect();
            return Err(cannot(format!(
                "strict decoding error: {}",
                fields.join(", ")
            )));
        }
        FieldValidation::Warn => unknown
            .iter()
            .map(|p| format!("unknown field {p:?}"))
            .collect(),
        _ => Vec::new(),
    };
    let mut obj = obj;
    if K::NAMESPACED && !namespace.is_empty() {
        if obj.namespace().is_empty() {
            obj.metadata_mut().namespace = namespace.to_string();
        } else if obj.namespace() != namespace {
            return Err(RestError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    Ok((obj, warnings))
}

/// Removes the field at `path` (`spec.containers[0].foo`) from `value`; false if not there.
fn remove_path(value: &mut Value, path: &str) -> bool {
    let mut segments = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        let name_end = rest.find('[').unwrap_or(rest.len());
        if name_end > 0 {
            segments.push(Segment::Key(&rest[..name_end]));
        }
        rest = &rest[name_end..];
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some((index, after)) = stripped.split_once(']') else {
                return false;
            };
            match index.parse() {
                Ok(i) => segments.push(Segment::Index(i)),
                Err(_) => return false,
            }
            rest = after;
        }
    }
    let Some((Segment::Key(last), parents)) = segments.split_last() else {
        return false;
    };
    let mut cur = value;
    for segment in parents {
        let next = match segment {
            Segment::Key(k) => cur.get_mut(*k),
            Segment::Index(i) => cur.get_mut(*i),
        };
        match next {
            Some(v) => cur = v,
            None => return false,
        }
    }
    cur.as_object_mut()
        .is_some_and(|m| m.remove(*last).is_some())
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_api::v1::Pod;

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "app", "image": "x", "imagePullPolicyy": "Always"}], "bogus": 1}
        })
    }

    #[test]
    fn strict_names_every_unknown_field() {
        let e = from_value::<Pod>(pod(), "default", FieldValidation::Strict).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(
            e.message.starts_with("Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field"),
            "{}",
            e.message
        );
        assert!(
            e.message
                .contains("\"spec.containers[0].imagePullPolicyy\""),
            "{}",
            e.message
        );
        assert!(e.message.contains("\"spec.bogus\""), "{}", e.message);
    }

    #[test]
    fn warn_and_ignore_drop_unknown_fields() {
        let (p, warnings) = from_value::<Pod>(pod(), "shop", FieldValidation::Warn).unwrap();
        assert_eq!(p.namespace(), "shop");
        assert_eq!(warnings.len(), 2);
        let (_, warnings) = from_value::<Pod>(pod(), "shop", FieldValidation::Ignore).unwrap();
        assert!(warnings.is_empty());
    }

    #[test]
    fn kind_and_namespace_must_match_the_url() {
        let mut p = pod();
        p["kind"] = json!("Service");
        assert_eq!(
            from_value::<Pod>(p, "default", FieldValidation::Ignore)
                .unwrap_err()
                .code,
            400
        );
        let mut p = pod();
        p["metadata"]["namespace"] = json!("other");
        let e = from_value::<Pod>(p, "default", FieldValidation::Ignore).unwrap_err();
        assert!(
            e.message.contains("does not match the namespace"),
            "{}",
            e.message
        );
        let mut p = pod();
        p.as_object_mut().unwrap().remove("kind");
        p.as_object_mut().unwrap().remove("apiVersion");
        assert!(from_value::<Pod>(p, "default", FieldValidation::Ignore).is_ok());
    }

    #[test]
    fn objects_carry_api_version_and_kind_first() {
        let v = to_value(&Pod::default());
        let keys: Vec<&String> = v.as_object().unwrap().keys().take(2).collect();
        assert_eq!(keys, ["apiVersion", "kind"]);
    }
}
