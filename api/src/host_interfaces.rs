//! The host interfaces a Wasm pod is granted beyond WASI (the WIT packages of the top-level
//! `wit/` directory), and where its `wasi:config` values come from: two pod annotations.
//!
//! - [`INTERFACES`] `skiff.dev/wasi-interfaces: "config,keyvalue,logging"`: the interfaces its
//!   Wasm containers may import (`wasi:config/store`, `wasi:keyvalue/{store,atomics,batch}`,
//!   `wasi:logging/logging`). Nothing is granted without it: a component importing one of them
//!   fails to start, with a reason naming the import.
//! - [`CONFIG_FROM`] `skiff.dev/wasi-config-from: "configmap:NAME,secret:NAME"`: the ConfigMaps
//!   and Secrets (of the pod's namespace) whose keys `wasi:config/store` answers with, later
//!   ones winning, as `envFrom` merges. Only these: nothing else of the namespace is readable.
//!
//! Owns the names, the parsing and the validation (errors name the annotation). Must not: read
//! objects (the node agent resolves the sources).

use crate::v1::ObjectMeta;
use crate::validation::FieldErrors;
use crate::validation::names::is_dns1123_subdomain;
use crate::workload::listed;

/// The interfaces granted to the pod's Wasm containers, comma-separated.
pub const INTERFACES: &str = "skiff.dev/wasi-interfaces";
/// The ConfigMaps and Secrets behind `wasi:config/store`, comma-separated `configmap:NAME` and
/// `secret:NAME`.
pub const CONFIG_FROM: &str = "skiff.dev/wasi-config-from";

/// One grantable interface group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interface {
    /// `wasi:config/store`.
    Config,
    /// `wasi:keyvalue/store`, `atomics` and `batch`.
    KeyValue,
    /// `wasi:logging/logging`.
    Logging,
}

impl Interface {
    pub const ALL: [Interface; 3] = [Interface::Config, Interface::KeyValue, Interface::Logging];

    /// Its name in [`INTERFACES`].
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Config => "config",
            Interface::KeyValue => "keyvalue",
            Interface::Logging => "logging",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.as_str() == name)
    }
}

/// A source of `wasi:config` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    ConfigMap(String),
    Secret(String),
}

/// The interfaces `meta` grants (unknown names skipped: validation refuses them).
pub fn granted(meta: Option<&ObjectMeta>) -> Vec<Interface> {
    let mut out = Vec::new();
    if let Some(value) = meta.and_then(|m| m.annotations.get(INTERFACES)) {
        for i in listed(value).filter_map(Interface::parse) {
            if !out.contains(&i) {
                out.push(i);
            }
        }
    }
    out
}

/// Whether `meta` grants `interface`.
pub fn grants(meta: Option<&ObjectMeta>, interface: Interface) -> bool {
    granted(meta).contains(&interface)
}

/// The `wasi:config` sources `meta` names, in order (malformed entries skipped: validation
/// refuses them).
pub fn config_sources(meta: Option<&ObjectMeta>) -> Vec<ConfigSource> {
    meta.and_then(|m| m.annotations.get(CONFIG_FROM))
        .map(|v| listed(v).filter_map(|e| parse_source(e).ok()).collect())
        .unwrap_or_default()
}

fn parse_source(entry: &str) -> Result<ConfigSource, String> {
    let (kind, name) = entry
        .split_once(':')
        .ok_or_else(|| format!("{entry:?}: expected configmap:NAME or secret:NAME"))?;
    if !is_dns1123_subdomain(name) {
        return Err(format!("{entry:?}: {name:?} is not a valid object name"));
    }
    match kind {
        "configmap" => Ok(ConfigSource::ConfigMap(name.to_string())),
        "secret" => Ok(ConfigSource::Secret(name.to_string())),
        _ => Err(format!(
            "{entry:?}: unknown kind {kind:?} (expected configmap or secret)"
        )),
    }
}

/// Checks both annotations of a pod (or pod template) at `path` (`metadata.annotations`).
pub fn validate(meta: &ObjectMeta, path: &str, errors: &mut FieldErrors) {
    if let Some(value) = meta.annotations.get(INTERFACES) {
        let field = format!("{path}[{INTERFACES}]");
        let mut seen = Vec::new();
        for name in listed(value) {
            match Interface::parse(name) {
                Some(_) if seen.contains(&name) => {
                    errors.add(&field, format!("{name:?} is listed twice"));
                }
                Some(_) => seen.push(name),
                None => errors.add(
                    &field,
                    format!("unknown interface {name:?} (known: config, keyvalue, logging)"),
                ),
            }
        }
    }
    if let Some(value) = meta.annotations.get(CONFIG_FROM) {
        let field = format!("{path}[{CONFIG_FROM}]");
        for entry in listed(value) {
            if let Err(e) = parse_source(entry) {
                errors.add(&field, e);
            }
        }
        if !grants(Some(meta), Interface::Config) {
            errors.add(
                &field,
                format!("names wasi:config sources, but {INTERFACES} does not grant \"config\""),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            annotations: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn errors_of(m: &ObjectMeta) -> String {
        let mut errors = FieldErrors::default();
        validate(m, "metadata.annotations", &mut errors);
        errors.to_string()
    }

    #[test]
    fn grants_and_sources_parse() {
        let m = meta(&[
            (INTERFACES, "config, logging,keyvalue"),
            (CONFIG_FROM, "configmap:app, secret:db"),
        ]);
        assert_eq!(
            granted(Some(&m)),
            [Interface::Config, Interface::Logging, Interface::KeyValue]
        );
        assert_eq!(
            config_sources(Some(&m)),
            [
                ConfigSource::ConfigMap("app".into()),
                ConfigSource::Secret("db".into())
            ]
        );
        assert!(errors_of(&m).is_empty(), "{}", errors_of(&m));
        assert!(granted(None).is_empty());
    }

    #[test]
    fn bad_values_name_the_annotation() {
        let e = errors_of(&meta(&[(INTERFACES, "config,http")]));
        assert!(
            e.contains("metadata.annotations[skiff.dev/wasi-interfaces]"),
            "{e}"
        );
        assert!(e.contains("unknown interface \"http\""), "{e}");
        let e = errors_of(&meta(&[(INTERFACES, "logging,logging")]));
        assert!(e.contains("listed twice"), "{e}");
        let e = errors_of(&meta(&[
            (INTERFACES, "config"),
            (CONFIG_FROM, "configmap:app,volume:x,secret:Bad_Name,plain"),
        ]));
        assert!(
            e.contains("metadata.annotations[skiff.dev/wasi-config-from]"),
            "{e}"
        );
        assert!(e.contains("unknown kind \"volume\""), "{e}");
        assert!(e.contains("\"Bad_Name\" is not a valid object name"), "{e}");
        assert!(e.contains("expected configmap:NAME or secret:NAME"), "{e}");
        let e = errors_of(&meta(&[(CONFIG_FROM, "configmap:app")]));
        assert!(e.contains("does not grant \"config\""), "{e}");
    }
}
