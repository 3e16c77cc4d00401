//! The files of a `projected` volume: Secret and ConfigMap keys, the pod's own metadata (the
//! downward API) and a ServiceAccount token bound to the pod — Kubernetes' `kube-api-access-*`
//! volume is one. The volume lives on the agent's tmpfs with the Secret volumes (a token is a
//! credential), and is rewritten like them, so a token refreshed before it expires reaches the
//! containers atomically.
//!
//! Must not: ask for a token anywhere but through [`VolumeSources`] (the agent's cache decides
//! when a token is due for renewal).

use std::collections::BTreeMap;

use skiff_api::v1::{Pod, ProjectedVolumeSource, VolumeProjection};

use super::atomic_writer::{FileData, Payload};
use super::{VolumeSources, payload};

/// A token's lifetime when the volume does not say (Kubernetes' own).
const DEFAULT_TOKEN_SECONDS: i32 = 3600;

/// `key="value"` lines, sorted, as Kubernetes writes labels and annotations.
fn key_values(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v:?}\n"))
        .collect::<String>()
}

/// The value of a downward API field of `pod` (validation allows only these).
fn field(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = pod.metadata.clone().unwrap_or_default();
    Ok(match path {
        "metadata.namespace" => meta.namespace,
        "metadata.name" => meta.name,
        "metadata.uid" => meta.uid,
        "metadata.labels" => key_values(&meta.labels),
        "metadata.annotations" => key_values(&meta.annotations),
        other => return Err(format!("downward API field {other:?} is not supported")),
    })
}

/// The files the volume should hold now.
pub(super) async fn files(
    source: &ProjectedVolumeSource,
    sources: &impl VolumeSources,
    pod: &Pod,
) -> Result<Payload, String> {
    // Every source at once (a token and a ConfigMap not yet watched are each an API round
    // trip), merged in the volume's order: a later source's file wins, as in Kubernetes.
    let parts =
        futures::future::try_join_all(source.sources.iter().map(|s| one(source, s, sources, pod)))
            .await?;
    let mut out = Payload::new();
    for part in parts {
        out.extend(part);
    }
    Ok(out)
}

/// The files of one projection.
async fn one(
    source: &ProjectedVolumeSource,
    s: &VolumeProjection,
    sources: &impl VolumeSources,
    pod: &Pod,
) -> Result<Payload, String> {
    let meta = pod.metadata.clone().unwrap_or_default();
    let namespace = meta.namespace.as_str();
    let mode = |m: Option<i32>| {
        m.or(source.default_mode)
            .map_or(0o644, |m| m as u32 & 0o777)
    };
    let mut out = Payload::new();
    if let Some(secret) = &s.secret {
        let data = sources.secret(namespace, &secret.name).await?;
        let what = format!("secret {:?}", secret.name);
        let optional = secret.optional == Some(true);
        out.extend(payload(
            &what,
            data,
            &secret.items,
            optional,
            source.default_mode,
        )?);
    }
    if let Some(cm) = &s.config_map {
        let data = sources.config_map(namespace, &cm.name).await?;
        let what = format!("configmap {:?}", cm.name);
        let optional = cm.optional == Some(true);
        out.extend(payload(
            &what,
            data,
            &cm.items,
            optional,
            source.default_mode,
        )?);
    }
    if let Some(downward) = &s.downward_api {
        for item in &downward.items {
            let path = item
                .field_ref
                .as_ref()
                .map_or("", |f| f.field_path.as_str());
            out.insert(
                item.path.clone(),
                FileData {
                    bytes: field(pod, path)?.into_bytes(),
                    mode: mode(item.mode),
                },
            );
        }
    }
    if let Some(token) = &s.service_account_token {
        let spec = pod.spec.as_ref();
        let account = spec
            .map(|s| s.service_account_name.as_str())
            .filter(|a| !a.is_empty())
            .unwrap_or("default");
        let seconds = token.expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS);
        let bytes = sources
            .service_account_token(
                namespace,
                account,
                &meta.name,
                &meta.uid,
                &token.audience,
                seconds,
            )
            .await
            .map_err(|e| format!("service account token: {e}"))?;
        out.insert(
            token.path.clone(),
            FileData {
                bytes,
                mode: mode(None),
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downward_fields_are_the_pods_own() {
        let pod = Pod {
            metadata: Some(skiff_api::v1::ObjectMeta {
                name: "web".into(),
                namespace: "shop".into(),
                uid: "u1".into(),
                labels: [("app".into(), "web".into()), ("a".into(), "x\"y".into())].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(field(&pod, "metadata.namespace").unwrap(), "shop");
        assert_eq!(field(&pod, "metadata.uid").unwrap(), "u1");
        assert_eq!(
            field(&pod, "metadata.labels").unwrap(),
            "a=\"x\\\"y\"\napp=\"web\"\n"
        );
        assert!(field(&pod, "spec.nodeName").is_err());
    }
}
