//! Printed columns: the table `skiff get` prints and the REST API's `metav1.Table` answers (what
//! `kubectl get` asks for with `Accept: application/json;as=Table;g=meta.k8s.io;v=v1`), from one
//! definition per kind, so both show what kubectl shows against Kubernetes.
//!
//! Each kind lists every column with its priority, as Kubernetes' server-side printers do:
//! priority 0 columns are always printed, priority 1 only with `-o wide`. Column names are
//! Kubernetes' (`Cluster-IP`, `Nominated Node`); a client prints them upper-cased.
//!
//! Must not: fetch anything, or know how a client lays the table out (alignment is the CLI's).

mod apps;
mod autoscaling;
mod core;
mod networking;
mod pod;
mod policy;
mod rbac;

use serde_json::{Map, Value, json};

use crate::resource::{Resource, ResourceExt};
use crate::time::age;

pub use core::node_status;
pub use pod::pod_status;

/// One column of a kind's table (Kubernetes' `metav1.TableColumnDefinition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// `Name`, `Cluster-IP`: Kubernetes' column name.
    pub name: &'static str,
    /// `string`, `integer`, `number`, `boolean` or `date` (an OpenAPI type).
    pub r#type: &'static str,
    /// `name` for the object's name column, else empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0: always shown; 1: only with `-o wide`.
    pub priority: i32,
}

impl Column {
    pub const fn new(name: &'static str, description: &'static str) -> Self {
        Column {
            name,
            r#type: "string",
            format: "",
            description,
            priority: 0,
        }
    }
    /// The object's name column (format `name`).
    pub const fn name() -> Self {
        Column {
            format: "name",
            ..Column::new("Name", NAME_DESCRIPTION)
        }
    }
    /// Kubernetes' `Age` column.
    pub const fn age() -> Self {
        Column::new("Age", AGE_DESCRIPTION)
    }
    pub const fn integer(self) -> Self {
        Column {
            r#type: "integer",
            ..self
        }
    }
    pub const fn date(self) -> Self {
        Column {
            r#type: "date",
            ..self
        }
    }
    /// Shown only with `-o wide`.
    pub const fn wide(self) -> Self {
        Column {
            priority: 1,
            ..self
        }
    }
}

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// A kind's printed columns and the cells of one object, in column order.
pub trait Printer: Resource {
    /// Every column, wide ones included (priority 1).
    fn columns() -> Vec<Column>;
    /// One cell per column of [`Printer::columns`]: a JSON string or number.
    fn cells(&self) -> Vec<Value>;
}

/// The column headers as kubectl prints them (upper-cased), wide ones only if `wide`.
pub fn headers<K: Printer>(wide: bool) -> Vec<String> {
    K::columns()
        .iter()
        .filter(|c| wide || c.priority == 0)
        .map(|c| c.name.to_uppercase())
        .collect()
}

/// One object's cells as text, wide ones only if `wide`.
pub fn row<K: Printer>(obj: &K, wide: bool) -> Vec<String> {
    K::columns()
        .iter()
        .zip(obj.cells())
        .filter(|(c, _)| wide || c.priority == 0)
        .map(|(_, v)| cell_text(&v))
        .collect()
}

/// A cell as kubectl prints it: strings as they are, numbers in decimal, nothing as `<none>`.
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        other => other.to_string(),
    }
}

/// What a Table row carries besides its cells (`?includeObject=`, Kubernetes' default `Metadata`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    /// A `PartialObjectMetadata` (apiVersion `meta.k8s.io/v1`) with the object's metadata.
    #[default]
    Metadata,
    /// The whole object, as [`crate::json::to_kube_value`] writes it.
    Object,
}

impl IncludeObject {
    /// `?includeObject=None|Metadata|Object` (empty: Metadata); anything else is `Err` with the value.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "None" => Ok(IncludeObject::None),
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "Object" => Ok(IncludeObject::Object),
            other => Err(format!(
                "includeObject {other:?}: must be None, Metadata or Object"
            )),
        }
    }
}

/// How [`table`] writes its answer.
#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    pub include_object: IncludeObject,
    /// Leaves `columnDefinitions` out (a watch sends them with its first event only).
    pub no_columns: bool,
    /// The list's `metadata.resourceVersion` (empty: left out).
    pub resource_version: String,
    /// The list's `metadata.continue` (empty: left out).
    pub continue_token: String,
}

/// Kubernetes' `metav1.Table` (`meta.k8s.io/v1`) of `items`: column definitions and one row each.
pub fn table<K: Printer>(items: &[K], opts: &TableOptions) -> Value {
    let mut meta = Map::new();
    if !opts.resource_version.is_empty() {
        meta.insert(
            "resourceVersion".into(),
            opts.resource_version.clone().into(),
        );
    }
    if !opts.continue_token.is_empty() {
        meta.insert("continue".into(), opts.continue_token.clone().into());
    }
    let mut out = Map::new();
    out.insert("kind".into(), "Table".into());
    out.insert("apiVersion".into(), "meta.k8s.io/v1".into());
    out.insert("metadata".into(), Value::Object(meta));
    if !opts.no_columns {
        let columns: Vec<Value> = K::columns()
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.r#type,
                    "format": c.format,
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect();
        out.insert("columnDefinitions".into(), Value::Array(columns));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(obj.cells()));
            match opts.include_object {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row.insert("object".into(), partial_metadata(obj));
                }
                IncludeObject::Object => {
                    row.insert("object".into(), crate::json::to_kube_value(obj));
                }
            }
            Value::Object(row)
        })
        .collect();
    out.insert("rows".into(), Value::Array(rows));
    Value::Object(out)
}

/// Kubernetes' `PartialObjectMetadata` of `obj`: its metadata only.
pub fn partial_metadata<K: Resource>(obj: &K) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": crate::json::meta_value(obj.meta()),
    })
}

// ---------------------------------------------------------------- helpers for the kinds' files

/// `s`, or `<none>` when empty.
fn or_none(s: &str) -> Value {
    if s.is_empty() {
        Value::String("<none>".into())
    } else {
        Value::String(s.into())
    }
}

/// The Age cell of an object.
fn created<K: Resource>(obj: &K) -> Value {
    Value::String(age(obj.meta().creation_timestamp.as_ref()))
}

fn text(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

/// A label selector as Kubernetes prints it: `app=web,tier in (a,b),!gone`; empty → `<none>`.
fn selector_text(sel: Option<&crate::v1::LabelSelector>) -> Value {
    let Some(sel) = sel else {
        return or_none("");
    };
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in &sel.match_expressions {
        let values = {
            let mut v = e.values.clone();
            v.sort();
            v.join(",")
        };
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            op => format!("{} {op} ({values})", e.key),
        });
    }
    or_none(&parts.join(","))
}

/// A map selector (a Service's) as `k=v,k2=v2`; empty → `<none>`.
fn map_selector_text(m: &std::collections::BTreeMap<String, String>) -> Value {
    or_none(
        &m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// `a,b,c` of the containers' names and images (the Containers and Images columns).
fn containers_and_images(spec: Option<&crate::v1::PodSpec>) -> [Value; 2] {
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<&str> = containers.iter().map(|c| c.image.as_str()).collect();
    [text(names.join(",")), text(images.join(","))]
}

/// Kubernetes' `CreationTimestamp` as RFC 3339 (the `Created At` columns).
fn created_at<K: Resource>(obj: &K) -> Value {
    obj.meta()
        .creation_timestamp
        .as_ref()
        .map(|t| crate::json::timestamp_text(t).into())
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests;
