//! `metav1.Table` responses, for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` (what
//! `kubectl get` asks for, so that it prints the server's columns). The columns are the kind's
//! printer's; kinds without one get Kubernetes' default (NAME, AGE). Each row carries the object
//! as `includeObject` says: `Metadata` (the default: a PartialObjectMetadata), `Object`, `None`.
//!
//! Must not: decide columns of built-in kinds itself (the printers do).

use serde_json::{Value, json};
use skiff_api::{Resource, ResourceExt};

use super::{Request, codec};

/// Whether the request asks for a Table (its Accept header names `as=Table`).
pub fn wants_table(req: &Request) -> bool {
    req.header("accept")
        .split(',')
        .any(|t| t.split(';').any(|p| p.trim() == "as=Table"))
}

/// The Table of `items` for this request.
pub fn table<K: Resource>(req: &Request, items: &[K], resource_version: &str) -> Value {
    table_with(req.query.get("includeObject"), items, resource_version)
}

/// The Table of `items` with `include_object` (`None`, `Metadata`, `Object`).
pub fn table_with<K: Resource>(include_object: &str, items: &[K], resource_version: &str) -> Value {
    let now = skiff_api::time::now().seconds;
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut row = json!({ "cells": [obj.name(), age(obj, now)] });
            match include_object {
                "None" => {}
                "Object" => row["object"] = codec::to_value(obj),
                _ => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": serde_json::to_value(obj.meta()).unwrap_or(Value::Null),
                    })
                }
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": { "resourceVersion": resource_version },
        "columnDefinitions": [
            { "name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0 },
            { "name": "Age", "type": "string", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0 },
        ],
        "rows": rows,
    })
}

fn age<K: Resource>(obj: &K, now: i64) -> String {
    match &obj.meta().creation_timestamp {
        Some(t) => human_duration(now.saturating_sub(t.seconds)),
        None => "<unknown>".into(),
    }
}

/// Kubernetes' `duration.HumanDuration`: `45s`, `5m10s`, `3h`, `2d5h`, `400d`.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    let with = |big: i64, unit: &str, small: i64, small_unit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{small_unit}")
        }
    };
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        with(m, "m", s % 60, "s")
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        with(h, "h", m % 60, "m")
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        with(d, "d", h % 24, "h")
    } else if h < 24 * 365 * 2 {
        format!("{d}d")
    } else if h < 24 * 365 * 8 {
        with(d / 365, "y", d % 365, "d")
    } else {
        format!("{}y", d / 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_kubectl_prints_them() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(310), "5m10s");
        assert_eq!(human_duration(900), "15m");
        assert_eq!(human_duration(150 * 60), "150m");
        assert_eq!(human_duration(3 * 3600), "3h");
        assert_eq!(human_duration(3 * 3600 + 120), "3h2m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(2 * 86400 + 5 * 3600), "2d5h");
        assert_eq!(human_duration(400 * 86400), "400d");
        assert_eq!(human_duration(800 * 86400), "2y70d");
    }
}
