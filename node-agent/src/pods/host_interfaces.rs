//! What a Wasm container of a pod is granted beyond WASI (`wit/`), from the pod's annotations
//! ([`skiff_api::host_interfaces`]): the interfaces, the `wasi:config` values of the ConfigMaps
//! and Secrets `skiff.dev/wasi-config-from` names (from the node's watches, kept watched for the
//! pod; later sources win, as with `envFrom`), and, with `keyvalue`, the pod's socket
//! ([`crate::keyvalue`]).
//!
//! A missing source fails the start as a missing `envFrom` source does (the container waits in
//! `CreateContainerConfigError`, its message naming the object). Must not: log values.

use skiff_api::ResourceExt;
use skiff_api::host_interfaces::{ConfigSource, Interface, config_sources, granted};
use skiff_api::v1::Pod;
use skiff_runtime::wasm::{ConfigValues, HostGrants};

use super::worker::NodeContext;

/// The grants of `pod`'s Wasm containers.
pub(super) async fn grants(ctx: &NodeContext, pod: &Pod) -> Result<HostGrants, String> {
    let meta = pod.meta();
    let interfaces = granted(pod.metadata.as_ref());
    let mut grants = HostGrants {
        config: interfaces.contains(&Interface::Config),
        keyvalue: interfaces.contains(&Interface::KeyValue),
        logging: interfaces.contains(&Interface::Logging),
        ..HostGrants::default()
    };
    if grants.config {
        let mut values: Vec<(String, String)> = Vec::new();
        for source in config_sources(pod.metadata.as_ref()) {
            let data = match &source {
                ConfigSource::ConfigMap(name) => ctx
                    .sources
                    .config_maps
                    .get(&meta.namespace, name, &meta.uid)
                    .await?
                    .map(super::volumes::config_map_bytes)
                    .ok_or_else(|| {
                        format!(
                            "configmap {name:?} not found (named by {})",
                            skiff_api::host_interfaces::CONFIG_FROM
                        )
                    })?,
                ConfigSource::Secret(name) => ctx
                    .sources
                    .secrets
                    .get(&meta.namespace, name, &meta.uid)
                    .await?
                    .map(|s| s.data)
                    .ok_or_else(|| {
                        format!(
                            "secret {name:?} not found (named by {})",
                            skiff_api::host_interfaces::CONFIG_FROM
                        )
                    })?,
            };
            for (key, value) in data {
                values.retain(|(k, _)| *k != key);
                values.push((key, String::from_utf8_lossy(&value).into_owned()));
            }
        }
        grants.config_values = ConfigValues(values);
    }
    if grants.keyvalue {
        grants.keyvalue_socket =
            Some(ctx.keyvalue.serve(&meta.namespace, &meta.name, &meta.uid)?);
    }
    Ok(grants)
}

/// Keeps the keyvalue socket of `pod` served if it is granted `keyvalue`: called at every
/// reconcile, so a restarted agent serves again the sockets its adopted pods' tasks use.
pub(super) fn keep_serving(ctx: &NodeContext, pod: &Pod) {
    if !skiff_api::host_interfaces::grants(pod.metadata.as_ref(), Interface::KeyValue) {
        return;
    }
    let meta = pod.meta();
    if let Err(e) = ctx.keyvalue.serve(&meta.namespace, &meta.name, &meta.uid) {
        tracing::warn!(pod = %meta.name, error = %e, "serving the pod's keyvalue socket");
    }
}

/// A start failure's message, with the annotation to change when the runtime refused an
/// ungranted host interface (its message names the import and the grant, not the pod's field).
pub(super) fn explain(message: String) -> String {
    if message.contains(", which is not granted (grant ") {
        format!(
            "{message}: list it in the pod annotation {}",
            skiff_api::host_interfaces::INTERFACES
        )
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_ungranted_import_is_explained_with_the_annotation() {
        let m = "/m.wasm imports wasi:keyvalue/store@0.2.0-draft, which is not granted (grant \"keyvalue\" to use it)";
        assert_eq!(
            super::explain(m.to_string()),
            format!("{m}: list it in the pod annotation skiff.dev/wasi-interfaces")
        );
        assert_eq!(super::explain("trap".into()), "trap");
    }
}
