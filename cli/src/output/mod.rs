//! Output formats, like kubectl's: tables (`-o wide`), YAML and JSON with apiVersion and kind
//! first, and `describe` text.

pub mod describe;
pub mod table;

use serde_json::{Map, Value};
use skiff_api::Resource;

/// An object as Kubernetes prints it: `apiVersion`, `kind`, then its fields, in Kubernetes' JSON
/// shape ([`skiff_api::json::to_kube_value`]).
pub fn to_value<K: Resource>(obj: &K) -> Value {
    skiff_api::json::to_kube_value(obj)
}

/// A `kind: List` of objects.
pub fn list_value(items: Vec<Value>) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String("v1".into()));
    out.insert("kind".into(), Value::String("List".into()));
    out.insert("items".into(), Value::Array(items));
    Value::Object(out)
}

pub fn print_value(value: &Value, format: &str) {
    match format {
        "json" => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        _ => print!("{}", serde_yaml_ng::to_string(value).unwrap_or_default()),
    }
}
