//! Output formats, like kubectl's: tables (`-o wide`), YAML and JSON (keys sorted, as kubectl
//! prints them), and `describe` text.

pub mod describe;
pub mod table;

use serde_json::{Map, Value};
use skiff_api::Resource;

/// An object as Kubernetes prints it: `apiVersion`, `kind`, then its fields, in Kubernetes' JSON
/// shape ([`skiff_api::json::to_kube_value`]).
pub fn to_value<K: Resource>(obj: &K) -> Value {
    skiff_api::json::to_kube_value(obj)
}

/// A `kind: List` of objects, as kubectl prints several.
pub fn list_value(items: Vec<Value>) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String("v1".into()));
    out.insert("items".into(), Value::Array(items));
    out.insert("kind".into(), Value::String("List".into()));
    out.insert(
        "metadata".into(),
        serde_json::json!({"resourceVersion": ""}),
    );
    Value::Object(out)
}

/// Prints `value` as JSON or YAML with every mapping's keys in alphabetical order, as kubectl
/// prints objects (it reads them as unstructured maps).
pub fn print_value(value: &Value, format: &str) {
    let value = sorted(value.clone());
    match format {
        "json" => println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        ),
        _ => print!("{}", serde_yaml_ng::to_string(&value).unwrap_or_default()),
    }
}

/// `value` with the keys of every mapping sorted.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_print_sorted_as_kubectl() {
        let v = serde_json::json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "a", "labels": {"b": "1", "a": "2"}}});
        let s = sorted(v);
        let keys: Vec<&String> = s.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["apiVersion", "kind", "metadata"]);
        let labels: Vec<&String> = s["metadata"]["labels"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(labels, ["a", "b"]);
        let meta: Vec<&String> = s["metadata"].as_object().unwrap().keys().collect();
        assert_eq!(meta, ["labels", "name"]);
    }
}
