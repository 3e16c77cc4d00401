//! Kubernetes' protobuf encoding of the few request bodies kubectl's typed clients send that way
//! (kubectl sends `application/vnd.kubernetes.protobuf` for them and does not fall back to JSON
//! on a 415): SelfSubjectAccessReview and SubjectAccessReview (`kubectl auth can-i`) and Eviction
//! (`kubectl drain`). The envelope (`k8s\0` then a `runtime.Unknown`) is opened and the object
//! turned into the JSON the handlers read; any other kind in protobuf is a 415.
//!
//! Must not: answer in protobuf (responses are JSON; clients decode by the response's type).

use serde_json::{Value, json};

use super::RestError;

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, PartialEq, prost::Message)]
struct TypeMeta {
    #[prost(string, tag = "1")]
    api_version: String,
    #[prost(string, tag = "2")]
    kind: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", tag = "2")]
    raw: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ObjectMeta {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "3")]
    namespace: String,
    #[prost(string, tag = "5")]
    uid: String,
    #[prost(string, tag = "6")]
    resource_version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceAttributes {
    #[prost(string, tag = "1")]
    namespace: String,
    #[prost(string, tag = "2")]
    verb: String,
    #[prost(string, tag = "3")]
    group: String,
    #[prost(string, tag = "4")]
    version: String,
    #[prost(string, tag = "5")]
    resource: String,
    #[prost(string, tag = "6")]
    subresource: String,
    #[prost(string, tag = "7")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct NonResourceAttributes {
    #[prost(string, tag = "1")]
    path: String,
    #[prost(string, tag = "2")]
    verb: String,
}

/// Both reviews' spec (a self review has no user or groups).
#[derive(Clone, PartialEq, prost::Message)]
struct ReviewSpec {
    #[prost(message, optional, tag = "1")]
    resource_attributes: Option<ResourceAttributes>,
    #[prost(message, optional, tag = "2")]
    non_resource_attributes: Option<NonResourceAttributes>,
    #[prost(string, tag = "3")]
    user: String,
    #[prost(string, repeated, tag = "4")]
    groups: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Review {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    spec: Option<ReviewSpec>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Preconditions {
    #[prost(string, optional, tag = "1")]
    uid: Option<String>,
    #[prost(string, optional, tag = "2")]
    resource_version: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DeleteOptions {
    #[prost(int64, optional, tag = "1")]
    grace_period_seconds: Option<i64>,
    #[prost(message, optional, tag = "2")]
    preconditions: Option<Preconditions>,
    #[prost(bool, optional, tag = "3")]
    orphan_dependents: Option<bool>,
    #[prost(string, optional, tag = "4")]
    propagation_policy: Option<String>,
    #[prost(string, repeated, tag = "5")]
    dry_run: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Eviction {
    #[prost(message, optional, tag = "1")]
    metadata: Option<ObjectMeta>,
    #[prost(message, optional, tag = "2")]
    delete_options: Option<DeleteOptions>,
}

fn unsupported(what: &str) -> RestError {
    RestError::unsupported_media_type(format!(
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml ({what} is not accepted in protobuf)"
    ))
}

fn meta_json(m: Option<ObjectMeta>) -> Value {
    let m = m.unwrap_or_default();
    let mut v = json!({});
    for (k, s) in [
        ("name", m.name),
        ("namespace", m.namespace),
        ("uid", m.uid),
        ("resourceVersion", m.resource_version),
    ] {
        if !s.is_empty() {
            v[k] = json!(s);
        }
    }
    v
}

/// The JSON of a protobuf body (one starting with [`MAGIC`]).
pub fn to_json(body: &[u8]) -> Result<Value, RestError> {
    use prost::Message;
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| unsupported("a body without the k8s protobuf prefix"))?;
    let unknown = Unknown::decode(envelope)
        .map_err(|e| RestError::bad_request(format!("the protobuf body cannot be read: {e}")))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let bad = |e: prost::DecodeError| {
        RestError::bad_request(format!(
            "{} in protobuf cannot be read: {e}",
            type_meta.kind
        ))
    };
    match type_meta.kind.as_str() {
        "SelfSubjectAccessReview" | "SubjectAccessReview" => {
            let review = Review::decode(unknown.raw.as_slice()).map_err(bad)?;
            let spec = review.spec.unwrap_or_default();
            let mut spec_json = json!({});
            if let Some(a) = spec.resource_attributes {
                spec_json["resourceAttributes"] = json!({
                    "namespace": a.namespace, "verb": a.verb, "group": a.group,
                    "version": a.version, "resource": a.resource,
                    "subresource": a.subresource, "name": a.name,
                });
            }
            if let Some(a) = spec.non_resource_attributes {
                spec_json["nonResourceAttributes"] = json!({ "path": a.path, "verb": a.verb });
            }
            if !spec.user.is_empty() {
                spec_json["user"] = json!(spec.user);
            }
            if !spec.groups.is_empty() {
                spec_json["groups"] = json!(spec.groups);
            }
            Ok(json!({
                "apiVersion": type_meta.api_version,
                "kind": type_meta.kind,
                "metadata": meta_json(review.metadata),
                "spec": spec_json,
            }))
        }
        "Eviction" => {
            let eviction = Eviction::decode(unknown.raw.as_slice()).map_err(bad)?;
            let mut out = json!({
                "apiVersion": type_meta.api_version,
                "kind": "Eviction",
                "metadata": meta_json(eviction.metadata),
            });
            if let Some(o) = eviction.delete_options {
                let mut d = json!({});
                if let Some(g) = o.grace_period_seconds {
                    d["gracePeriodSeconds"] = json!(g);
                }
                if let Some(p) = o.preconditions {
                    let mut pc = json!({});
                    if let Some(u) = p.uid {
                        pc["uid"] = json!(u);
                    }
                    if let Some(r) = p.resource_version {
                        pc["resourceVersion"] = json!(r);
                    }
                    d["preconditions"] = pc;
                }
                if let Some(o) = o.orphan_dependents {
                    d["orphanDependents"] = json!(o);
                }
                if let Some(p) = o.propagation_policy {
                    d["propagationPolicy"] = json!(p);
                }
                if !o.dry_run.is_empty() {
                    d["dryRun"] = json!(o.dry_run);
                }
                out["deleteOptions"] = d;
            }
            Ok(out)
        }
        other => Err(unsupported(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let mut body = MAGIC.to_vec();
        Unknown {
            type_meta: Some(TypeMeta {
                api_version: api_version.into(),
                kind: kind.into(),
            }),
            raw,
        }
        .encode(&mut body)
        .unwrap();
        body
    }

    #[test]
    fn a_self_review_in_protobuf_reads_as_json() {
        let review = Review {
            metadata: None,
            spec: Some(ReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: "default".into(),
                    verb: "create".into(),
                    group: "apps".into(),
                    resource: "deployments".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        let body = envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            review.encode_to_vec(),
        );
        let v = to_json(&body).unwrap();
        assert_eq!(v["kind"], "SelfSubjectAccessReview");
        assert_eq!(v["spec"]["resourceAttributes"]["resource"], "deployments");
        assert_eq!(v["spec"]["resourceAttributes"]["verb"], "create");
    }

    #[test]
    fn an_eviction_in_protobuf_keeps_its_delete_options() {
        let eviction = Eviction {
            metadata: Some(ObjectMeta {
                name: "web-1".into(),
                namespace: "shop".into(),
                ..Default::default()
            }),
            delete_options: Some(DeleteOptions {
                grace_period_seconds: Some(5),
                ..Default::default()
            }),
        };
        let v = to_json(&envelope("policy/v1", "Eviction", eviction.encode_to_vec())).unwrap();
        assert_eq!(v["metadata"]["name"], "web-1");
        assert_eq!(v["deleteOptions"]["gracePeriodSeconds"], 5);
        let other = to_json(&envelope("v1", "Pod", vec![])).unwrap_err();
        assert_eq!(other.code, 415);
    }
}
