//! Kubernetes-shaped YAML and JSON manifests: several documents per file, `kind: List`, unknown
//! fields rejected with their path, and the object's name in every error.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::kinds::{KINDS, KindInfo};
use crate::resource::{Resource, ResourceExt};
use crate::validation;

/// One object read from a manifest, its kind resolved, not yet decoded into its type.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub info: &'static KindInfo,
    /// Where it came from: `deploy.yaml (document 2)`.
    pub origin: String,
    /// The object without `apiVersion` and `kind`.
    pub body: Value,
}

/// A manifest that cannot be read, decoded or validated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    pub origin: String,
    /// `Pod "web"` when known.
    pub object: Option<String>,
    /// `spec.containers[0].image`; empty for whole-document problems.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(o) = &self.object {
            write!(f, ": {o}")?;
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.path, self.message)
        }
    }
}

/// Splits `text` (from `source`, a file name or `-`) into objects, checking `apiVersion` and `kind`.
pub fn parse(source: &str, text: &str) -> Result<Vec<Manifest>, ManifestError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let origin = format!("{source} (document {})", i + 1);
        let value = Value::deserialize(doc).map_err(|e| ManifestError {
            origin: origin.clone(),
            object: None,
            path: String::new(),
            message: format!("not valid YAML: {e}"),
        })?;
        match value {
            Value::Null => continue,
            Value::Object(_) => collect(value, &origin, &mut out)?,
            _ => {
                return Err(ManifestError {
                    origin,
                    object: None,
                    path: String::new(),
                    message: "a manifest must be a mapping with apiVersion, kind, metadata".into(),
                });
            }
        }
    }
    if out.is_empty() {
        return Err(ManifestError {
            origin: source.to_string(),
            object: None,
            path: String::new(),
            message: "no objects found".into(),
        });
    }
    Ok(out)
}

fn collect(value: Value, origin: &str, out: &mut Vec<Manifest>) -> Result<(), ManifestError> {
    let err = |path: &str, message: String| ManifestError {
        origin: origin.to_string(),
        object: None,
        path: path.to_string(),
        message,
    };
    let Value::Object(mut map) = value else {
        return Err(err("", "a manifest must be a mapping".into()));
    };
    let kind = match map.remove("kind") {
        Some(Value::String(k)) => k,
        Some(_) => return Err(err("kind", "must be a string".into())),
        None => return Err(err("kind", "required".into())),
    };
    let api_version = match map.remove("apiVersion") {
        Some(Value::String(v)) => v,
        Some(_) => return Err(err("apiVersion", "must be a string".into())),
        None => return Err(err("apiVersion", "required".into())),
    };
    if kind == "List" {
        let Some(Value::Array(items)) = map.remove("items") else {
            return Err(err("items", "a List needs items".into()));
        };
        for (i, item) in items.into_iter().enumerate() {
            collect(item, &format!("{origin} items[{i}]"), out)?;
        }
        return Ok(());
    }
    let info = KindInfo::by_kind(&kind).ok_or_else(|| {
        let known: Vec<&str> = KINDS.iter().map(|k| k.kind).collect();
        err(
            "kind",
            format!(
                "unknown kind {kind:?}; supported kinds: {}",
                known.join(", ")
            ),
        )
    })?;
    if api_version != info.api_version {
        return Err(err(
            "apiVersion",
            format!(
                "{api_version:?} does not serve kind {kind}; use {:?}",
                info.api_version
            ),
        ));
    }
    let mut body = Value::Object(map);
    crate::json::normalize(info.kind, &mut body);
    out.push(Manifest {
        info,
        origin: origin.to_string(),
        body,
    });
    Ok(())
}

impl Manifest {
    /// `Pod "web"` (or `Pod` when the name is missing).
    pub fn describe(&self) -> String {
        match self.body.pointer("/metadata/name").and_then(Value::as_str) {
            Some(name) => format!("{} {name:?}", self.info.kind),
            None => self.info.kind.to_string(),
        }
    }

    /// Decodes into the kind's type, rejecting unknown fields and wrong types with their path.
    pub fn decode<K: Resource>(&self) -> Result<K, ManifestError> {
        debug_assert_eq!(K::KIND, self.info.kind);
        crate::json::decode::<K>(&self.body).map_err(|e| ManifestError {
            origin: self.origin.clone(),
            object: Some(self.describe()),
            path: e.path,
            message: e.message,
        })
    }

    /// Decodes and validates, with `namespace` filled in when the manifest has none.
    pub fn decode_valid<K: Resource>(&self, namespace: &str) -> Result<K, ManifestError> {
        let mut obj: K = self.decode()?;
        if K::NAMESPACED && obj.meta().namespace.is_empty() {
            obj.metadata_mut().namespace = namespace.to_string();
        }
        validation::validate(&obj).map_err(|errors| ManifestError {
            origin: self.origin.clone(),
            object: Some(self.describe()),
            path: String::new(),
            message: errors.to_string(),
        })?;
        Ok(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Deployment, Pod};

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  runtimeClassName: wasm\n  containers:\n  - name: app\n    image: file:/tmp/x.wasm\n    ports:\n    - containerPort: 8080\n    resources:\n      limits: {memory: 64Mi, cpu: 250m}\n";

    #[test]
    fn decodes_kubernetes_yaml() {
        let m = parse("pod.yaml", POD).unwrap();
        assert_eq!(m.len(), 1);
        let pod: Pod = m[0].decode_valid("default").unwrap();
        assert_eq!(pod.meta().namespace, "default");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.runtime_class_name, "wasm");
        assert_eq!(spec.containers[0].ports[0].container_port, 8080);
        assert_eq!(
            spec.containers[0].resources.as_ref().unwrap().limits["memory"],
            "64Mi"
        );
    }

    #[test]
    fn acronyms_are_spelled_as_kubernetes_spells_them() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec:\n  clusterIP: None\n  selector: {app: db}\n  ports:\n  - port: 5432\n";
        let m = parse("s.yaml", text).unwrap();
        let svc: crate::v1::Service = m[0].decode().unwrap();
        assert_eq!(svc.spec.unwrap().cluster_ip, "None");
        let status = crate::v1::PodStatus {
            pod_ip: "10.244.0.2".into(),
            host_ip: "10.0.0.1".into(),
            ..Default::default()
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["podIP"], "10.244.0.2");
        assert_eq!(json["hostIP"], "10.0.0.1");
        let spec = crate::v1::NodeSpec {
            pod_cidr: "10.244.0.0/24".into(),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&spec).unwrap()["podCIDR"],
            "10.244.0.0/24"
        );
    }

    #[test]
    fn unknown_field_names_its_path() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: app\n        image: x\n        imagePullPolicyy: Always\n";
        let m = parse("d.yaml", text).unwrap();
        let err = m[0].decode::<Deployment>().unwrap_err();
        assert_eq!(
            err.path,
            "spec.template.spec.containers[0].imagePullPolicyy"
        );
        assert!(err.message.starts_with("unknown field"), "{}", err.message);
        assert!(
            err.message.contains("imagePullPolicy"),
            "hint: {}",
            err.message
        );
        let shown = err.to_string();
        assert!(shown.contains("d.yaml (document 1): Deployment \"web\": spec.template.spec.containers[0].imagePullPolicyy: unknown field"), "{shown}");
    }

    #[test]
    fn unknown_top_level_field() {
        let m = parse(
            "p.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspecc: {}\n",
        )
        .unwrap();
        let err = m[0].decode::<Pod>().unwrap_err();
        assert_eq!(err.path, "specc");
    }

    #[test]
    fn bad_name_and_quantity_are_named() {
        let text = POD
            .replace("name: web", "name: Web_1")
            .replace("64Mi", "64Mb");
        let m = parse("pod.yaml", &text).unwrap();
        let err = m[0].decode_valid::<Pod>("default").unwrap_err().to_string();
        assert!(err.contains("metadata.name"), "{err}");
        assert!(
            err.contains("spec.containers[0].resources.limits.memory"),
            "{err}"
        );
    }

    #[test]
    fn quantities_may_be_yaml_numbers() {
        let text = POD.replace("{memory: 64Mi, cpu: 250m}", "{memory: 67108864, cpu: 1}")
            + "      requests: {cpu: 0.5}\n";
        let m = parse("pod.yaml", &text).unwrap();
        let pod: Pod = m[0].decode_valid("default").unwrap();
        let resources = pod.spec.unwrap().containers[0].resources.clone().unwrap();
        assert_eq!(resources.limits["cpu"], "1");
        assert_eq!(resources.limits["memory"], "67108864");
        assert_eq!(resources.requests["cpu"], "0.5");
        // Numbers elsewhere stay numbers: a port is not a quantity.
        assert_eq!(
            m[0].body["spec"]["containers"][0]["ports"][0]["containerPort"],
            8080
        );
    }

    #[test]
    fn wrong_type_names_its_path() {
        let text = POD.replace("containerPort: 8080", "containerPort: [1]");
        let m = parse("pod.yaml", &text).unwrap();
        let err = m[0].decode::<Pod>().unwrap_err();
        assert_eq!(err.path, "spec.containers[0].ports[0].containerPort");
    }

    #[test]
    fn kind_and_api_version_checked() {
        assert!(
            parse("x", "apiVersion: v1\nkind: Widget\nmetadata: {name: a}\n")
                .unwrap_err()
                .message
                .contains("unknown kind")
        );
        assert!(
            parse(
                "x",
                "apiVersion: v1\nkind: Deployment\nmetadata: {name: a}\n"
            )
            .unwrap_err()
            .message
            .contains("apps/v1")
        );
        assert_eq!(
            parse("x", "metadata: {name: a}\n").unwrap_err().path,
            "kind"
        );
        assert!(parse("x", "").is_err());
        assert!(
            parse("x", "a: [unclosed\n")
                .unwrap_err()
                .message
                .contains("YAML")
        );
    }

    #[test]
    fn several_documents_and_lists() {
        let text = format!(
            "{POD}---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {{name: c}}\n  data: {{a: b}}\n---\n"
        );
        let m = parse("all.yaml", &text).unwrap();
        assert_eq!(
            m.iter().map(|m| m.info.kind).collect::<Vec<_>>(),
            ["Pod", "ConfigMap"]
        );
    }

    #[test]
    fn secret_data_is_base64() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {password: aHVudGVyMg==}\nstringData: {user: admin}\n";
        let m = parse("s.yaml", text).unwrap();
        let s: crate::v1::Secret = m[0].decode_valid("default").unwrap();
        assert_eq!(s.data["password"], b"hunter2".to_vec());
        assert_eq!(s.string_data["user"], "admin");
    }
}
