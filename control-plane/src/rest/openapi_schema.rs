//! The schemas of the OpenAPI documents ([`super::openapi`]), generated from the protos'
//! descriptors ([`skiff_api::FILE_DESCRIPTOR_SET`]): one definition per message reachable from
//! a served kind, named as Kubernetes names it (`io.k8s.api.core.v1.PodSpec`,
//! `io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta`), properties under their JSON names
//! (Kubernetes' spellings, the protos' `json_name`), descriptions from the proto comments, and
//! the strategic merge patch keys ([`patch_strategy`], from the patch's own table) that kubectl's
//! client-side apply reads.
//!
//! Owns: reading the descriptors (a few descriptor fields decoded with prost, no descriptor
//! crate), proto types to JSON schema types, definition names.
//!
//! Must not: describe paths or operations ([`super::openapi`] does), or claim more than the
//! JSON carries (proto3 has no `required`, so no field is marked required).

use std::collections::{BTreeMap, HashMap};

use prost::Message;
use serde_json::{Map, Value, json};

/// The descriptor fields read here (`google/protobuf/descriptor.proto`'s numbers).
mod descriptor {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FileDescriptorSet {
        #[prost(message, repeated, tag = "1")]
        pub file: Vec<FileDescriptorProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FileDescriptorProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub package: String,
        #[prost(message, repeated, tag = "4")]
        pub message_type: Vec<DescriptorProto>,
        #[prost(message, optional, tag = "9")]
        pub source_code_info: Option<SourceCodeInfo>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DescriptorProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, repeated, tag = "2")]
        pub field: Vec<FieldDescriptorProto>,
        #[prost(message, repeated, tag = "3")]
        pub nested_type: Vec<DescriptorProto>,
        #[prost(message, optional, tag = "7")]
        pub options: Option<MessageOptions>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MessageOptions {
        #[prost(bool, tag = "7")]
        pub map_entry: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FieldDescriptorProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(int32, tag = "3")]
        pub number: i32,
        /// 3: repeated.
        #[prost(int32, tag = "4")]
        pub label: i32,
        #[prost(int32, tag = "5")]
        pub r#type: i32,
        #[prost(string, tag = "6")]
        pub type_name: String,
        #[prost(string, tag = "10")]
        pub json_name: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SourceCodeInfo {
        #[prost(message, repeated, tag = "1")]
        pub location: Vec<Location>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(int32, repeated, packed = "true", tag = "1")]
        pub path: Vec<i32>,
        #[prost(string, tag = "3")]
        pub leading_comments: String,
        #[prost(string, tag = "4")]
        pub trailing_comments: String,
    }
}

use descriptor::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};

/// The descriptors could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("proto descriptors: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("proto descriptors: no message {0}")]
    Missing(String),
}

/// Where a document's schemas live: v2 `#/definitions/`, v3 `#/components/schemas/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    V2,
    V3,
}

impl Flavor {
    pub fn reference(self, name: &str) -> String {
        match self {
            Flavor::V2 => format!("#/definitions/{name}"),
            Flavor::V3 => format!("#/components/schemas/{name}"),
        }
    }
}

const TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Time";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";

/// Kubernetes' package of the messages of each proto file (by file stem); other files' messages
/// (skiff's own) live under `dev.skiff`.
fn package_of(file: &str) -> String {
    let stem = file
        .rsplit('/')
        .next()
        .and_then(|f| f.strip_suffix(".proto"))
        .unwrap_or(file);
    match stem {
        "meta" => "io.k8s.apimachinery.pkg.apis.meta.v1".into(),
        "core" => "io.k8s.api.core.v1".into(),
        "apps" => "io.k8s.api.apps.v1".into(),
        "autoscaling" => "io.k8s.api.autoscaling.v2".into(),
        "coordination" | "networking" | "rbac" | "policy" | "discovery" => {
            format!("io.k8s.api.{stem}.v1")
        }
        other => format!("dev.skiff.{other}.v1"),
    }
}

/// The strategic merge patch strategy and key of `field` of `message`, as the server's strategic
/// merge patch applies them: the key is [`super::patch::merge_key`]'s (the one table), declared
/// for a list whose items have that field (or, for a key of `""`, a list of scalars, merged as a
/// set); `retainKeys` where Kubernetes declares it (a pod's volumes, a Deployment's strategy),
/// which the server's `$retainKeys` honours.
fn patch_strategy(
    message: &str,
    field: &FieldDescriptorProto,
    item: Option<&DescriptorProto>,
) -> Option<(&'static str, Option<&'static str>)> {
    let name = json_name(field);
    let retain = matches!(
        (message, name.as_str()),
        ("PodSpec", "volumes") | ("DeploymentSpec", "strategy")
    );
    if field.label != LABEL_REPEATED {
        return retain.then_some(("retainKeys", None));
    }
    // The table is keyed by kind where a field name means two things (a Service's ports).
    let kind = if message == "ServiceSpec" {
        "Service"
    } else {
        message
    };
    let key = super::patch::merge_key(kind, &name)?;
    let strategy = if retain { "merge,retainKeys" } else { "merge" };
    match (key, item) {
        ("", None) => Some((strategy, None)),
        ("", Some(_)) => None,
        (key, Some(item)) if item.field.iter().any(|f| json_name(f) == key) => {
            Some((strategy, Some(key)))
        }
        _ => None,
    }
}

/// What `kubectl explain` prints for the most used fields whose protos carry no comment.
fn common_description(message: &str, field: &str) -> Option<&'static str> {
    Some(match (message, field) {
        ("ObjectMeta", "name") => "The object's name, unique among its kind in its namespace.",
        ("ObjectMeta", "namespace") => {
            "The namespace the object lives in (empty for cluster-scoped kinds)."
        }
        ("ObjectMeta", "labels") => {
            "Key and value pairs that selectors match (Services, Deployments, scheduling)."
        }
        ("ObjectMeta", "annotations") => {
            "Key and value pairs for tools and people; not used for selection."
        }
        ("ObjectMeta", "uid") => "Set by the server: unique across the cluster's history.",
        ("ObjectMeta", "generateName") => {
            "A prefix the server completes into a unique name when name is empty."
        }
        ("ObjectMeta", "creationTimestamp") => "Set by the server when the object was created.",
        ("ObjectMeta", "deletionTimestamp") => "Set by the server when a graceful delete begins.",
        ("ObjectMeta", "ownerReferences") => {
            "The objects this one depends on; it is garbage-collected when they are gone."
        }
        ("ObjectMeta", "finalizers") => {
            "What must happen before the object is removed; each is cleared by its controller."
        }
        ("DeploymentSpec" | "ReplicaSetSpec", "replicas") => {
            "The number of pods wanted. Defaults to 1."
        }
        ("DeploymentSpec" | "ReplicaSetSpec", "selector") => {
            "The label selector of the pods this object manages; it must match the template's labels."
        }
        ("DeploymentSpec" | "ReplicaSetSpec", "template") => "The pods to create.",
        ("DeploymentSpec" | "ReplicaSetSpec", "minReadySeconds") => {
            "Seconds a new pod must be ready, no container crashing, to count as available. Defaults to 0."
        }
        ("DeploymentSpec", "revisionHistoryLimit") => {
            "How many old ReplicaSets to keep for rollback. Defaults to 10."
        }
        ("DeploymentSpec", "paused") => {
            "A paused Deployment does not roll out changes of its template."
        }
        ("DeploymentSpec", "progressDeadlineSeconds") => {
            "Seconds a rollout may make no progress before it is reported as failed. Defaults to 600."
        }
        ("DeploymentSpec", "strategy") => "How old pods are replaced by new ones.",
        ("PodSpec", "containers") => "The containers of the pod (at least one).",
        ("PodSpec", "initContainers") => {
            "Containers run to completion, in order, before the containers start."
        }
        ("PodSpec", "volumes") => "The volumes the containers may mount.",
        ("PodSpec", "nodeName") => "The node the pod is bound to (set by the scheduler).",
        ("PodSpec", "nodeSelector") => "Labels a node must have for the pod to be scheduled on it.",
        ("PodSpec", "serviceAccountName") => "The ServiceAccount the pod runs as.",
        ("PodSpec", "terminationGracePeriodSeconds") => {
            "Seconds the pod gets to stop after SIGTERM before it is killed. Defaults to 30."
        }
        ("Container", "name") => "The container's name, unique in the pod.",
        ("Container", "image") => {
            "The image to run (for a Wasm container, a Wasm artifact or file:PATH)."
        }
        ("Container", "command") => "The entrypoint, replacing the image's.",
        ("Container", "args") => "The arguments of the entrypoint, replacing the image's.",
        ("Container", "env") => "Environment variables of the container.",
        ("Container", "ports") => {
            "The ports the container listens on (informational, and named for Services)."
        }
        ("Container", "resources") => "CPU and memory requests and limits.",
        ("Container", "volumeMounts") => "The pod's volumes mounted into the container.",
        ("Container", "workingDir") => "The working directory of the entrypoint.",
        ("ServiceSpec", "selector") => "The labels of the pods that back the Service.",
        ("ServiceSpec", "ports") => "The ports the Service exposes.",
        _ => return None,
    })
}

/// One message, found by its full proto name (`.skiff.v1.PodSpec`).
struct MessageInfo<'a> {
    /// Its definition's name (`io.k8s.api.core.v1.PodSpec`).
    definition: String,
    /// Its own name (`PodSpec`), for the merge-key table.
    short: String,
    message: &'a DescriptorProto,
    description: String,
    /// Field number → comment.
    field_docs: HashMap<i32, String>,
}

/// Every message of the descriptors, with what the schemas need of it.
pub struct Messages {
    set: FileDescriptorSet,
}

impl Messages {
    /// Reads the descriptors of the api crate.
    pub fn load() -> Result<Self, SchemaError> {
        Self::decode(skiff_api::FILE_DESCRIPTOR_SET)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, SchemaError> {
        Ok(Self {
            set: FileDescriptorSet::decode(bytes)?,
        })
    }

    fn index(&self) -> HashMap<String, MessageInfo<'_>> {
        let mut out = HashMap::new();
        for file in &self.set.file {
            let comments: HashMap<&[i32], String> = file
                .source_code_info
                .iter()
                .flat_map(|s| &s.location)
                .filter_map(|l| {
                    let text = comment_text(&l.leading_comments, &l.trailing_comments);
                    (!text.is_empty()).then_some((l.path.as_slice(), text))
                })
                .collect();
            let package = package_of(&file.name);
            for (i, message) in file.message_type.iter().enumerate() {
                add_message(
                    &mut out,
                    &format!(".{}", file.package),
                    &package,
                    "",
                    message,
                    vec![4, i as i32],
                    &comments,
                );
            }
        }
        out
    }

    /// The definitions reachable from `roots` (full proto names), as `flavor` refers to them.
    /// Each root that is a kind gets `apiVersion`, `kind` and `x-kubernetes-group-version-kind`.
    pub fn definitions(
        &self,
        roots: &[Root],
        flavor: Flavor,
    ) -> Result<BTreeMap<String, Value>, SchemaError> {
        let index = self.index();
        let mut out = BTreeMap::new();
        let mut todo: Vec<String> = roots.iter().map(|r| r.proto.clone()).collect();
        while let Some(name) = todo.pop() {
            let info = index
                .get(&name)
                .ok_or_else(|| SchemaError::Missing(name.clone()))?;
            if out.contains_key(&info.definition) {
                continue;
            }
            let mut properties = Map::new();
            let gvk = roots
                .iter()
                .find(|r| r.proto == name)
                .and_then(|r| r.gvk.as_ref());
            if gvk.is_some() {
                properties.insert(
                    "apiVersion".into(),
                    json!({"description": "The versioned schema of this object: its API group and version.", "type": "string"}),
                );
                properties.insert(
                    "kind".into(),
                    json!({"description": "The kind of this object (a CamelCase name).", "type": "string"}),
                );
            }
            for field in &info.message.field {
                let (schema, refs) = field_schema(field, info, &index, flavor)?;
                todo.extend(refs);
                properties.insert(json_name(field), schema);
            }
            let mut definition = Map::new();
            if !info.description.is_empty() {
                definition.insert("description".into(), info.description.clone().into());
            }
            definition.insert("properties".into(), Value::Object(properties));
            definition.insert("type".into(), "object".into());
            if let Some(gvk) = gvk {
                definition.insert("x-kubernetes-group-version-kind".into(), gvk.extension());
            }
            out.insert(info.definition.clone(), Value::Object(definition));
        }
        if out.values().any(|d| mentions(d, TIME)) {
            out.insert(
                TIME.into(),
                json!({"description": "A time in RFC 3339 form, in UTC, to the second.", "format": "date-time", "type": "string"}),
            );
        }
        if out.values().any(|d| mentions(d, INT_OR_STRING)) {
            out.insert(
                INT_OR_STRING.into(),
                json!({"description": "An integer or a string (a port number or name; a count or a percentage).", "format": "int-or-string", "type": "string", "x-kubernetes-int-or-string": true}),
            );
        }
        Ok(out)
    }

    /// The definition name of a message (`.skiff.v1.Pod` → `io.k8s.api.core.v1.Pod`).
    pub fn definition_of(&self, proto: &str) -> Option<String> {
        self.index().get(proto).map(|i| i.definition.clone())
    }
}

/// A message whose definition a document needs, with its kind's group, version and kind when it
/// is a kind's (which adds `apiVersion`, `kind` and `x-kubernetes-group-version-kind`).
#[derive(Debug, Clone)]
pub struct Root {
    /// `.skiff.v1.Deployment`.
    pub proto: String,
    pub gvk: Option<Gvk>,
}

/// A group, version and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
        }
    }

    /// As `x-kubernetes-group-version-kind` lists it on a definition.
    pub fn extension(&self) -> Value {
        json!([self.object()])
    }

    /// As an operation's `x-kubernetes-group-version-kind` names it.
    pub fn object(&self) -> Value {
        json!({"group": self.group, "kind": self.kind, "version": self.version})
    }
}

fn mentions(value: &Value, definition: &str) -> bool {
    value.to_string().contains(&format!("/{definition}\""))
}

fn json_name(field: &FieldDescriptorProto) -> String {
    if field.json_name.is_empty() {
        field.name.clone()
    } else {
        field.json_name.clone()
    }
}

fn add_message<'a>(
    out: &mut HashMap<String, MessageInfo<'a>>,
    scope: &str,
    package: &str,
    outer: &str,
    message: &'a DescriptorProto,
    path: Vec<i32>,
    comments: &HashMap<&[i32], String>,
) {
    let full = format!("{scope}.{}", message.name);
    // Nested messages are named after their parent (`PodSpec.Entry` → `PodSpecEntry`).
    let short = format!("{outer}{}", message.name);
    let field_docs = message
        .field
        .iter()
        .enumerate()
        .filter_map(|(j, f)| {
            let mut p = path.clone();
            p.extend([2, j as i32]);
            comments.get(p.as_slice()).map(|c| (f.number, c.clone()))
        })
        .collect();
    for (k, nested) in message.nested_type.iter().enumerate() {
        let mut p = path.clone();
        p.extend([3, k as i32]);
        add_message(out, &full, package, &short, nested, p, comments);
    }
    out.insert(
        full,
        MessageInfo {
            definition: format!("{package}.{short}"),
            short,
            message,
            description: comments.get(path.as_slice()).cloned().unwrap_or_default(),
            field_docs,
        },
    );
}

/// A proto comment as one paragraph per blank-line-separated block.
fn comment_text(leading: &str, trailing: &str) -> String {
    let text = if leading.trim().is_empty() {
        trailing
    } else {
        leading
    };
    text.split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

const TYPE_DOUBLE: i32 = 1;
const TYPE_FLOAT: i32 = 2;
const TYPE_INT64: i32 = 3;
const TYPE_UINT64: i32 = 4;
const TYPE_INT32: i32 = 5;
const TYPE_FIXED64: i32 = 6;
const TYPE_FIXED32: i32 = 7;
const TYPE_BOOL: i32 = 8;
const TYPE_STRING: i32 = 9;
const TYPE_MESSAGE: i32 = 11;
const TYPE_BYTES: i32 = 12;
const TYPE_UINT32: i32 = 13;
const TYPE_ENUM: i32 = 14;
const TYPE_SFIXED32: i32 = 15;
const TYPE_SFIXED64: i32 = 16;
const TYPE_SINT32: i32 = 17;
const TYPE_SINT64: i32 = 18;
const LABEL_REPEATED: i32 = 3;

/// The schema of a value of `field`'s type (ignoring repetition), and the messages it refers to.
fn value_schema(
    field: &FieldDescriptorProto,
    index: &HashMap<String, MessageInfo<'_>>,
    flavor: Flavor,
) -> Result<(Value, Option<String>), SchemaError> {
    let scalar = |t: &str, f: Option<&str>| {
        let mut s = json!({"type": t});
        if let Some(f) = f {
            s["format"] = f.into();
        }
        (s, None)
    };
    Ok(match field.r#type {
        TYPE_DOUBLE => scalar("number", Some("double")),
        TYPE_FLOAT => scalar("number", Some("float")),
        TYPE_INT64 | TYPE_UINT64 | TYPE_FIXED64 | TYPE_SFIXED64 | TYPE_SINT64 => {
            scalar("integer", Some("int64"))
        }
        TYPE_INT32 | TYPE_UINT32 | TYPE_FIXED32 | TYPE_SFIXED32 | TYPE_SINT32 => {
            scalar("integer", Some("int32"))
        }
        TYPE_BOOL => scalar("boolean", None),
        TYPE_BYTES => scalar("string", Some("byte")),
        TYPE_STRING | TYPE_ENUM => scalar("string", None),
        TYPE_MESSAGE => match field.type_name.as_str() {
            ".google.protobuf.Timestamp" => (json!({"$ref": flavor.reference(TIME)}), None),
            ".skiff.v1.IntOrString" => (json!({"$ref": flavor.reference(INT_OR_STRING)}), None),
            ".google.protobuf.Struct" => (
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
                None,
            ),
            ".google.protobuf.Value" => {
                (json!({"x-kubernetes-preserve-unknown-fields": true}), None)
            }
            ".google.protobuf.Duration" => scalar("string", None),
            ".google.protobuf.BoolValue" => scalar("boolean", None),
            ".google.protobuf.StringValue" => scalar("string", None),
            ".google.protobuf.Int32Value" | ".google.protobuf.UInt32Value" => {
                scalar("integer", Some("int32"))
            }
            ".google.protobuf.Int64Value" | ".google.protobuf.UInt64Value" => {
                scalar("integer", Some("int64"))
            }
            ".google.protobuf.DoubleValue" | ".google.protobuf.FloatValue" => {
                scalar("number", Some("double"))
            }
            other => {
                let info = index
                    .get(other)
                    .ok_or_else(|| SchemaError::Missing(other.to_string()))?;
                (
                    json!({"$ref": flavor.reference(&info.definition)}),
                    Some(other.to_string()),
                )
            }
        },
        _ => (json!({}), None),
    })
}

/// A property's schema, in the layout Kubernetes' documents use: in v3 a reference beside a
/// description is wrapped in `allOf`; list items and map values carry a `default`.
fn field_schema(
    field: &FieldDescriptorProto,
    owner: &MessageInfo<'_>,
    index: &HashMap<String, MessageInfo<'_>>,
    flavor: Flavor,
) -> Result<(Value, Vec<String>), SchemaError> {
    let description = owner
        .field_docs
        .get(&field.number)
        .cloned()
        .or_else(|| common_description(&owner.short, &json_name(field)).map(str::to_string));
    let mut refs = Vec::new();
    let map_entry = (field.r#type == TYPE_MESSAGE)
        .then(|| index.get(&field.type_name))
        .flatten()
        .filter(|m| m.message.options.as_ref().is_some_and(|o| o.map_entry));
    let mut schema = if let Some(entry) = map_entry {
        let value = entry
            .message
            .field
            .iter()
            .find(|f| f.number == 2)
            .ok_or_else(|| SchemaError::Missing(format!("{}.value", field.type_name)))?;
        let (mut value_schema, r) = value_schema(value, index, flavor)?;
        refs.extend(r);
        with_default(&mut value_schema, value);
        json!({"additionalProperties": value_schema, "type": "object"})
    } else if field.label == LABEL_REPEATED {
        let (mut item, r) = value_schema(field, index, flavor)?;
        refs.extend(r);
        with_default(&mut item, field);
        let mut s = json!({"items": wrap(item, flavor), "type": "array"});
        let item_message = index.get(&field.type_name).map(|m| m.message);
        if let Some((strategy, key)) = patch_strategy(&owner.short, field, item_message) {
            s["x-kubernetes-patch-strategy"] = strategy.into();
            if let Some(key) = key {
                s["x-kubernetes-patch-merge-key"] = key.into();
                s["x-kubernetes-list-type"] = "map".into();
                s["x-kubernetes-list-map-keys"] = json!([key]);
            }
        }
        s
    } else {
        let (s, r) = value_schema(field, index, flavor)?;
        refs.extend(r);
        let mut s = s;
        if let Some((strategy, None)) = patch_strategy(&owner.short, field, None) {
            s = wrap(s, flavor);
            s["x-kubernetes-patch-strategy"] = strategy.into();
        }
        s
    };
    if let Some(d) = description {
        if schema.get("$ref").is_some() {
            schema = wrap(schema, flavor);
        }
        if let Value::Object(m) = &mut schema {
            m.insert("description".into(), d.into());
        }
    }
    Ok((schema, refs))
}

/// A reference as v3 writes one that has siblings (`allOf: [{$ref}]`); v2 keeps the `$ref`.
fn wrap(schema: Value, flavor: Flavor) -> Value {
    match (&schema, flavor) {
        (Value::Object(m), Flavor::V3) if m.len() == 1 && m.contains_key("$ref") => {
            json!({"allOf": [schema]})
        }
        _ => schema,
    }
}

/// List items and map values of messages default to `{}` (as in Kubernetes' documents).
fn with_default(schema: &mut Value, field: &FieldDescriptorProto) {
    if field.r#type == TYPE_MESSAGE
        && let Value::Object(m) = schema
        && m.contains_key("$ref")
    {
        let reference = m.remove("$ref").unwrap_or_default();
        m.insert("allOf".into(), json!([{"$ref": reference}]));
        m.insert("default".into(), json!({}));
    } else if field.r#type == TYPE_STRING
        && let Value::Object(m) = schema
    {
        m.insert("default".into(), "".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(proto: &str, group: &str, version: &str, kind: &str) -> Root {
        Root {
            proto: proto.into(),
            gvk: Some(Gvk::new(group, version, kind)),
        }
    }

    #[test]
    fn a_deployment_is_described_as_kubernetes_names_it() {
        let messages = Messages::load().unwrap();
        let defs = messages
            .definitions(
                &[root(".skiff.v1.Deployment", "apps", "v1", "Deployment")],
                Flavor::V3,
            )
            .unwrap();
        let deployment = &defs["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert_eq!(deployment["properties"]["kind"]["type"], "string");
        assert_eq!(
            deployment["properties"]["spec"]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
        );
        let spec = &defs["io.k8s.api.apps.v1.DeploymentSpec"]["properties"];
        assert_eq!(spec["replicas"]["type"], "integer");
        assert!(spec["replicas"]["description"].is_string(), "{spec}");
        assert_eq!(spec["replicas"]["format"], "int32");
        assert_eq!(
            spec["template"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodTemplateSpec"
        );
        // Reachable messages of other files, under their Kubernetes packages.
        assert!(defs.contains_key("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
        assert!(defs.contains_key("io.k8s.api.core.v1.Container"));
        assert!(defs.contains_key(TIME));
        assert!(defs.contains_key(INT_OR_STRING));
        // Nothing unreachable: no Service.
        assert!(!defs.contains_key("io.k8s.api.core.v1.Service"));
        // A comment becomes a description; a described reference is wrapped in allOf.
        let strategy = &defs["io.k8s.api.apps.v1.DeploymentStrategy"]["properties"]["type"];
        assert!(
            strategy["description"]
                .as_str()
                .unwrap()
                .contains("RollingUpdate"),
            "{strategy}"
        );
        let meta = &defs["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"];
        assert_eq!(
            meta["resourceVersion"]["type"], "string",
            "json names: {meta}"
        );
        assert!(meta["resourceVersion"]["description"].is_string());
        assert_eq!(meta["labels"]["additionalProperties"]["type"], "string");
        assert_eq!(
            meta["creationTimestamp"]["allOf"][0]["$ref"],
            format!("#/components/schemas/{TIME}")
        );
    }

    #[test]
    fn list_fields_carry_their_merge_keys_and_maps_their_values() {
        let messages = Messages::load().unwrap();
        let defs = messages
            .definitions(&[root(".skiff.v1.Pod", "", "v1", "Pod")], Flavor::V2)
            .unwrap();
        let spec = &defs["io.k8s.api.core.v1.PodSpec"]["properties"];
        let containers = &spec["containers"];
        assert_eq!(containers["type"], "array");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(
            containers["items"]["allOf"][0]["$ref"],
            "#/definitions/io.k8s.api.core.v1.Container"
        );
        assert_eq!(
            spec["volumes"]["x-kubernetes-patch-strategy"],
            "merge,retainKeys"
        );
        let container = &defs["io.k8s.api.core.v1.Container"]["properties"];
        assert_eq!(
            container["ports"]["x-kubernetes-patch-merge-key"],
            "containerPort"
        );
        assert_eq!(container["env"]["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(
            container["volumeMounts"]["x-kubernetes-patch-merge-key"],
            "mountPath"
        );
        assert!(
            container["command"]
                .get("x-kubernetes-patch-merge-key")
                .is_none()
        );
        // Kubernetes' spellings from the protos' json_name.
        let status = &defs["io.k8s.api.core.v1.PodStatus"]["properties"];
        assert_eq!(status["podIP"]["type"], "string");
        assert_eq!(status["conditions"]["x-kubernetes-patch-merge-key"], "type");
        let meta = &defs["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"];
        assert_eq!(meta["finalizers"]["x-kubernetes-patch-strategy"], "merge");
        assert!(
            meta["finalizers"]
                .get("x-kubernetes-patch-merge-key")
                .is_none()
        );
        assert_eq!(
            meta["ownerReferences"]["x-kubernetes-patch-merge-key"],
            "uid"
        );
        // The patch's table, held to items that have the key: an Endpoints subset's addresses
        // have no `type`, so they are replaced whole.
        let endpoints = messages
            .definitions(
                &[root(".skiff.v1.Endpoints", "", "v1", "Endpoints")],
                Flavor::V3,
            )
            .unwrap();
        let subset = &endpoints["io.k8s.api.core.v1.EndpointSubset"]["properties"];
        assert!(
            subset["addresses"]
                .get("x-kubernetes-patch-merge-key")
                .is_none(),
            "{subset}"
        );
        let services = messages
            .definitions(
                &[root(".skiff.v1.Service", "", "v1", "Service")],
                Flavor::V3,
            )
            .unwrap();
        let ports = &services["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "port");
    }

    #[test]
    fn secrets_carry_bytes_and_unknown_roots_are_errors() {
        let messages = Messages::load().unwrap();
        let defs = messages
            .definitions(&[root(".skiff.v1.Secret", "", "v1", "Secret")], Flavor::V3)
            .unwrap();
        let data = &defs["io.k8s.api.core.v1.Secret"]["properties"]["data"];
        assert_eq!(data["additionalProperties"]["format"], "byte");
        assert!(matches!(
            messages.definitions(&[root(".skiff.v1.Widget", "", "v1", "Widget")], Flavor::V3),
            Err(SchemaError::Missing(_))
        ));
        assert_eq!(
            comment_text(" One\n two\n\n three\n", ""),
            "One two\n\nthree"
        );
    }
}
