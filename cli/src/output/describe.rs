//! `skiff describe` text: identity first, then the object's fields as an indented outline
//! (`Spec:`, `  Containers:` ...), then its events — the shape of kubectl's describe.

use std::fmt::Write;

use serde_json::Value;
use skiff_api::time::age;
use skiff_api::v1::Event;
use skiff_api::{Resource, ResourceExt};

/// `restartPolicy` → `Restart Policy`.
fn title(key: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = key.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if i == 0 {
            out.extend(c.to_uppercase());
        } else if c.is_uppercase() && chars.get(i - 1).is_some_and(|p| p.is_lowercase()) {
            out.push(' ');
            out.push(*c);
        } else {
            out.push(*c);
        }
    }
    out
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("<none>".into()),
        _ => None,
    }
}

/// Fields whose keys are user data (label names, resource names), printed as they are.
const DATA_MAPS: &[&str] = &[
    "labels",
    "annotations",
    "matchLabels",
    "nodeSelector",
    "selector",
    "data",
    "binaryData",
    "limits",
    "requests",
    "capacity",
    "allocatable",
];

fn outline(out: &mut String, value: &Value, indent: usize) {
    outline_keys(out, value, indent, false);
}

fn outline_keys(out: &mut String, value: &Value, indent: usize, raw_keys: bool) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if raw_keys { k.clone() } else { title(k) };
                match scalar(v) {
                    Some(s) => {
                        let _ = writeln!(out, "{pad}{key}:  {s}");
                    }
                    None => {
                        let _ = writeln!(out, "{pad}{key}:");
                        outline_keys(
                            out,
                            v,
                            indent + 2,
                            !raw_keys && DATA_MAPS.contains(&k.as_str()),
                        );
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match scalar(item) {
                    Some(s) => {
                        let _ = writeln!(out, "{pad}- {s}");
                    }
                    None => {
                        let mut inner = String::new();
                        outline(&mut inner, item, indent + 2);
                        let trimmed = inner.trim_start_matches(' ');
                        let _ = write!(out, "{pad}- {trimmed}");
                    }
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", scalar(other).unwrap_or_default());
        }
    }
}

fn map_lines(out: &mut String, label: &str, map: &std::collections::BTreeMap<String, String>) {
    if map.is_empty() {
        let _ = writeln!(out, "{:<14}<none>", format!("{label}:"));
        return;
    }
    for (i, (k, v)) in map.iter().enumerate() {
        let head = if i == 0 {
            format!("{label}:")
        } else {
            String::new()
        };
        let _ = writeln!(out, "{head:<14}{k}={v}");
    }
}

/// The describe text of `obj` and its `events`.
pub fn describe<K: Resource>(obj: &K, events: &[Event]) -> String {
    let meta = obj.meta();
    let mut out = String::new();
    let _ = writeln!(out, "Name:         {}", meta.name);
    if K::NAMESPACED {
        let _ = writeln!(out, "Namespace:    {}", meta.namespace);
    }
    let _ = writeln!(out, "Kind:         {} ({})", K::KIND, K::API_VERSION);
    map_lines(&mut out, "Labels", &meta.labels);
    map_lines(&mut out, "Annotations", &meta.annotations);
    if let Some(ts) = &meta.creation_timestamp {
        let _ = writeln!(
            out,
            "Created:      {} ({} ago)",
            skiff_api::json::timestamp_text(ts),
            age(Some(ts))
        );
    }
    if let Some(ts) = &meta.deletion_timestamp {
        let _ = writeln!(
            out,
            "Deleting:     since {} ago (grace {}s)",
            age(Some(ts)),
            meta.deletion_grace_period_seconds.unwrap_or(0)
        );
    }
    let _ = writeln!(out, "UID:          {}", meta.uid);
    let _ = writeln!(out, "Generation:   {}", meta.generation);
    if !meta.owner_references.is_empty() {
        let owners: Vec<String> = meta
            .owner_references
            .iter()
            .map(|o| format!("{}/{}", o.kind, o.name))
            .collect();
        let _ = writeln!(out, "Controlled By: {}", owners.join(", "));
    }
    if !meta.finalizers.is_empty() {
        let _ = writeln!(out, "Finalizers:   {}", meta.finalizers.join(", "));
    }
    if let Value::Object(mut fields) = skiff_api::json::to_kube_value(obj) {
        for shown_above in ["apiVersion", "kind", "metadata"] {
            fields.remove(shown_above);
        }
        if let Some(data) = fields.get_mut("data")
            && K::KIND == "Secret"
            && let Value::Object(d) = data
        {
            // Never print secret values: sizes only, as kubectl does.
            for (_, v) in d.iter_mut() {
                let len = v.as_str().map_or(0, |s| s.len() * 3 / 4);
                *v = Value::String(format!("{len} bytes"));
            }
        }
        outline(&mut out, &Value::Object(fields), 0);
    }
    let mut events: Vec<&Event> = events.iter().collect();
    // Oldest first, and in the order written within a second (`skiff get events`' order).
    events.sort_by_key(|e| crate::cmd::events::order(e));
    if events.is_empty() {
        let _ = writeln!(out, "Events:       <none>");
    } else {
        let _ = writeln!(out, "Events:");
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                let from = e
                    .source
                    .as_ref()
                    .map(|s| s.component.clone())
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| e.reporting_component.clone());
                vec![
                    e.r#type.clone(),
                    e.reason.clone(),
                    crate::cmd::events::interval(e),
                    from,
                    e.message.trim().to_string(),
                ]
            })
            .collect();
        // kubectl's underline row, then the events.
        let rows: Vec<Vec<String>> = std::iter::once(
            ["----", "------", "----", "----", "-------"]
                .map(String::from)
                .to_vec(),
        )
        .chain(rows)
        .collect();
        for line in
            super::table::render(&["Type", "Reason", "Age", "From", "Message"], &rows, true).lines()
        {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        assert_eq!(title("restartPolicy"), "Restart Policy");
        assert_eq!(title("podIP"), "Pod IP");
        assert_eq!(title("spec"), "Spec");
    }
}
