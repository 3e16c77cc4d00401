//! A Wasm task's host interfaces beyond WASI (`wit/`: wasi:config, wasi:keyvalue,
//! wasi:logging), from its bundle: the annotations [`WASI_INTERFACES`] (what it may import),
//! [`WASI_CONFIG_FILE`] (the values `wasi:config/store` answers, a JSON object in a file of the
//! bundle directory) and [`WASI_KEYVALUE_SOCKET`] (the node agent serving `wasi:keyvalue`).
//!
//! Must not: print config values (Secrets' among them) in an error or a log.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Spec;
use skiff_runtime::bundle::{WASI_CONFIG_FILE, WASI_INTERFACES, WASI_KEYVALUE_SOCKET};
use skiff_runtime::wasm::{ConfigValues, HostGrants};

use crate::shim::annotation;

/// Largest config file read: the values of a few ConfigMaps and Secrets (1 MiB each at most).
const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// The grants of the bundle in `bundle` whose spec is `spec`.
pub fn grants(spec: &Spec, bundle: &Path) -> Result<HostGrants, String> {
    let mut grants = HostGrants::default();
    if let Some(list) = annotation(spec, WASI_INTERFACES) {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "config" => grants.config = true,
                "keyvalue" => grants.keyvalue = true,
                "logging" => grants.logging = true,
                other => {
                    return Err(format!(
                        "annotation {WASI_INTERFACES}: unknown interface {other:?} (known: config, keyvalue, logging)"
                    ));
                }
            }
        }
    }
    if let Some(name) = annotation(spec, WASI_CONFIG_FILE) {
        grants.config_values = read_config(bundle, name)?;
    }
    if let Some(socket) = annotation(spec, WASI_KEYVALUE_SOCKET).filter(|s| !s.is_empty()) {
        let socket = PathBuf::from(socket);
        if !socket.is_absolute() {
            return Err(format!(
                "annotation {WASI_KEYVALUE_SOCKET} {}: must be an absolute path",
                socket.display()
            ));
        }
        grants.keyvalue_socket = Some(socket);
    }
    Ok(grants)
}

/// The values in `name`, a plain file name inside `bundle`.
fn read_config(bundle: &Path, name: &str) -> Result<ConfigValues, String> {
    let plain = Path::new(name);
    let mut parts = plain.components();
    if !matches!(
        (parts.next(), parts.next()),
        (Some(Component::Normal(_)), None)
    ) {
        return Err(format!(
            "annotation {WASI_CONFIG_FILE} {name:?}: must name a file in the bundle directory"
        ));
    }
    let path = bundle.join(plain);
    let fail = |e: String| format!("annotation {WASI_CONFIG_FILE}: {}: {e}", path.display());
    let meta = std::fs::symlink_metadata(&path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(fail(format!("over {MAX_CONFIG_BYTES} bytes")));
    }
    let text = std::fs::read(&path).map_err(|e| fail(e.to_string()))?;
    // The parser's message could quote a value: only its position is reported.
    let values: std::collections::BTreeMap<String, String> = serde_json::from_slice(&text)
        .map_err(|e| {
            fail(format!(
                "not a JSON object of strings (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
    Ok(ConfigValues(values.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(annotations: serde_json::Value) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["/m.wasm"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "annotations": annotations,
        }))
        .unwrap()
    }

    #[test]
    fn the_bundle_grants_what_its_annotations_say() {
        let bundle = tempfile::tempdir().unwrap();
        let g = grants(&spec(serde_json::json!({})), bundle.path()).unwrap();
        assert_eq!(g, HostGrants::default());
        std::fs::write(
            bundle.path().join("wasi-config.json"),
            r#"{"greeting": "hello", "password": "s3cret"}"#,
        )
        .unwrap();
        let g = grants(
            &spec(serde_json::json!({
                WASI_INTERFACES: "config, logging,keyvalue",
                WASI_CONFIG_FILE: "wasi-config.json",
                WASI_KEYVALUE_SOCKET: "/run/skiff/kv/p.sock",
            })),
            bundle.path(),
        )
        .unwrap();
        assert!(g.config && g.keyvalue && g.logging);
        assert_eq!(g.config_values.0.len(), 2);
        assert!(!format!("{g:?}").contains("s3cret"), "{g:?}");
        assert_eq!(
            g.keyvalue_socket.as_deref(),
            Some(Path::new("/run/skiff/kv/p.sock"))
        );
    }

    #[test]
    fn bad_annotations_are_named_and_values_never_quoted() {
        let bundle = tempfile::tempdir().unwrap();
        let e = grants(
            &spec(serde_json::json!({WASI_INTERFACES: "http"})),
            bundle.path(),
        );
        assert!(e.unwrap_err().contains("unknown interface \"http\""));
        for name in ["../x.json", "/etc/passwd", "a/b.json"] {
            let e = grants(
                &spec(serde_json::json!({WASI_CONFIG_FILE: name})),
                bundle.path(),
            );
            assert!(
                e.unwrap_err().contains("must name a file in the bundle"),
                "{name}"
            );
        }
        std::fs::write(bundle.path().join("c.json"), r#"{"k": 1, "pw": "s3cret"}"#).unwrap();
        let e = grants(
            &spec(serde_json::json!({WASI_CONFIG_FILE: "c.json"})),
            bundle.path(),
        )
        .unwrap_err();
        assert!(e.contains("not a JSON object of strings"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        let e = grants(
            &spec(serde_json::json!({WASI_KEYVALUE_SOCKET: "kv.sock"})),
            bundle.path(),
        );
        assert!(e.unwrap_err().contains("absolute"));
    }
}
