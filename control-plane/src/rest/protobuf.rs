//! Kubernetes' protobuf encoding of request bodies (`application/vnd.kubernetes.protobuf`),
//! which kubectl's typed clients send and never retry as JSON after a 415: the review kinds
//! (`kubectl auth can-i`), Eviction (`kubectl drain`), TokenRequest (`kubectl create token`), and the objects kubectl's generators
//! build (`kubectl create deployment|configmap|secret|namespace|service|serviceaccount|role|
//! clusterrole|rolebinding|clusterrolebinding|ingress|poddisruptionbudget`). The envelope (`k8s\0`
//! then a `runtime.Unknown`) is opened and the object turned into the JSON the handlers read
//! (by the tables in `schema`, read by `wire`); a kind without a table is a 415.
//!
//! Must not: answer in protobuf (responses are JSON; clients decode by the response's type).

mod schema;
mod wire;

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
        kind => {
            let Some(message) = schema::kind(&type_meta.api_version, kind) else {
                return Err(unsupported(kind));
            };
            let mut object = serde_json::Map::new();
            object.insert("apiVersion".into(), json!(type_meta.api_version));
            object.insert("kind".into(), json!(kind));
            match wire::decode(message, &unknown.raw) {
                Ok(fields) => object.extend(fields),
                Err(e @ wire::WireError::UnknownField { .. }) => {
                    return Err(RestError::unsupported_media_type(format!(
                        "{e}: {kind} in protobuf"
                    )));
                }
                Err(e) => {
                    return Err(RestError::bad_request(format!(
                        "{kind} in protobuf cannot be read: {e}"
                    )));
                }
            }
            Ok(Value::Object(object))
        }
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
        let other = to_json(&envelope("v1", "Node", vec![])).unwrap_err();
        assert_eq!(other.code, 415);
    }

    /// A body kubectl 1.32 sent (captured with `kubectl -v=9 create ...`, in kubectl-1.32/).
    fn sent(name: &str) -> Value {
        let path = format!(
            "{}/src/rest/protobuf/kubectl-1.32/{name}.pb",
            env!("CARGO_MANIFEST_DIR")
        );
        to_json(&std::fs::read(&path).unwrap()).unwrap()
    }

    /// The JSON read as skiff's own object of that kind, strictly (no unknown field).
    fn reads_as<K: skiff_api::Resource>(v: &Value, namespace: &str) -> K {
        let (obj, warnings) = super::super::codec::from_value::<K>(
            v.clone(),
            namespace,
            super::super::codec::FieldValidation::Strict,
        )
        .unwrap_or_else(|e| panic!("{v}: {e:?}"));
        assert!(warnings.is_empty(), "{warnings:?}");
        obj
    }

    #[test]
    fn kubectl_create_deployment_reads_as_a_deployment() {
        let v = sent("create-deployment");
        assert_eq!(
            v,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{
                            "name": "nginx", "image": "nginx:1",
                            "ports": [{"containerPort": 80}],
                        }]},
                    },
                },
            })
        );
        let d: skiff_api::v1::Deployment = reads_as(&v, "default");
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(2));
        let v = sent("create-deployment-command-port");
        let c = &v["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["command"], json!(["sleep", "10"]));
        assert_eq!(c["ports"], json!([{"containerPort": 8080}]));
        reads_as::<skiff_api::v1::Deployment>(&v, "default");
    }

    #[test]
    fn kubectl_create_service_reads_ports_and_target_ports() {
        let v = sent("create-service-clusterip");
        assert_eq!(
            v["spec"],
            json!({
                "ports": [{"name": "5678-8080", "protocol": "TCP", "port": 5678, "targetPort": 8080}],
                "selector": {"app": "web"},
                "type": "ClusterIP",
            })
        );
        reads_as::<skiff_api::v1::Service>(&v, "default");
        let headless = sent("create-service-headless");
        assert_eq!(headless["spec"]["clusterIP"], "None");
        reads_as::<skiff_api::v1::Service>(&headless, "default");
        let node_port = sent("create-service-nodeport");
        assert_eq!(node_port["spec"]["ports"][0]["nodePort"], 30080);
        assert_eq!(node_port["spec"]["type"], "NodePort");
        reads_as::<skiff_api::v1::Service>(&node_port, "default");
    }

    #[test]
    fn kubectl_create_configmap_secret_namespace_and_serviceaccount_read() {
        let cm = sent("create-configmap");
        assert_eq!(cm["data"], json!({"a": "b", "c": "d"}));
        reads_as::<skiff_api::v1::ConfigMap>(&cm, "default");
        let binary = sent("create-configmap-binary");
        // Go's []byte is base64 in JSON.
        assert_eq!(binary["binaryData"], json!({"bad.dat": "//4A"}));
        reads_as::<skiff_api::v1::ConfigMap>(&binary, "default");
        let secret = sent("create-secret-generic");
        assert_eq!(secret["data"], json!({"user": "YWRtaW4="}));
        assert_eq!(secret["type"], "Opaque");
        reads_as::<skiff_api::v1::Secret>(&secret, "default");
        let ns = sent("create-namespace");
        assert_eq!(
            ns,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        );
        reads_as::<skiff_api::v1::Namespace>(&ns, "");
        let sa = sent("create-serviceaccount");
        assert_eq!(sa["metadata"]["name"], "bot");
        reads_as::<skiff_api::v1::ServiceAccount>(&sa, "default");
    }

    #[test]
    fn kubectl_create_rbac_ingress_and_pdb_read() {
        let role = sent("create-role");
        // The core group is the empty string: kept, as a list item.
        assert_eq!(
            role["rules"],
            json!([{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}])
        );
        reads_as::<skiff_api::v1::Role>(&role, "default");
        let crb = sent("create-clusterrolebinding");
        assert_eq!(
            crb["subjects"],
            json!([{"kind": "ServiceAccount", "name": "sa1", "namespace": "ns1"}])
        );
        assert_eq!(crb["roleRef"]["name"], "cr");
        reads_as::<skiff_api::v1::ClusterRoleBinding>(&crb, "");
        let aggregated = sent("create-clusterrole-aggregation");
        assert_eq!(
            aggregated["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"],
            json!({"rbac.example.com/aggregate-to-monitoring": "true"})
        );
        let ingress = sent("create-ingress");
        assert_eq!(
            ingress["spec"],
            json!({
                "defaultBackend": {"service": {"name": "defsvc", "port": {"name": "http"}}},
                "tls": [{"hosts": ["foo.com"], "secretName": "my-cert"}],
                "rules": [{"host": "foo.com", "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "svc1", "port": {"name": "http"}}},
                }]}}],
                "ingressClassName": "nginx",
            })
        );
        assert_eq!(ingress["metadata"]["annotations"], json!({"a": "b"}));
        reads_as::<skiff_api::v1::Ingress>(&ingress, "default");
        let pdb = sent("create-pdb");
        assert_eq!(pdb["spec"]["maxUnavailable"], "50%");
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"],
            json!({"app": "web"})
        );
        reads_as::<skiff_api::v1::PodDisruptionBudget>(&pdb, "default");
    }

    #[test]
    fn a_field_skiff_cannot_read_in_protobuf_is_refused_not_dropped() {
        // ConfigMap field 9 (no such field) holding a string.
        let mut raw = Vec::new();
        prost::encoding::string::encode(9, &"x".to_string(), &mut raw);
        let err = to_json(&envelope("v1", "ConfigMap", raw)).unwrap_err();
        assert_eq!(err.code, 415);
        assert!(err.message.contains("ConfigMap field 9"), "{}", err.message);
        // The same field holding nothing (as Go writes an empty non-pointer field) is absent.
        let mut raw = Vec::new();
        prost::encoding::string::encode(9, &String::new(), &mut raw);
        let v = to_json(&envelope("v1", "ConfigMap", raw)).unwrap();
        assert_eq!(v, json!({"apiVersion": "v1", "kind": "ConfigMap"}));
        // A pointer field's zero is a value: replicas 0.
        let mut spec = Vec::new();
        prost::encoding::int32::encode(1, &0, &mut spec);
        let mut raw = Vec::new();
        prost::encoding::bytes::encode(2, &spec, &mut raw);
        let v = to_json(&envelope("apps/v1", "Deployment", raw)).unwrap();
        assert_eq!(v["spec"], json!({"replicas": 0}));
        // A truncated body is a 400.
        let err = to_json(&envelope("v1", "ConfigMap", vec![0x0a, 0x05, 0x0a])).unwrap_err();
        assert_eq!(err.code, 400);
    }
}
