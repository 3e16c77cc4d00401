//! A Wasm task's host interfaces beyond WASI (`wit/`: wasi:config, wasi:keyvalue,
//! wasi:logging), from its bundle: the annotations [`WASI_INTERFACES`] (what it may import),
//! [`WASI_CONFIG_FILE`] (the values `wasi:config/store` answers, a JSON object in a file of the
//! bundle directory) and [`WASI_KEYVALUE_SOCKET`] (the node agent serving `wasi:keyvalue`).
//!
//! The socket must be one a skiff agent serves for the task's own pod, as far as the bundle
//! tells: `<pod uid>.sock` (the uid of [`CRI_SANDBOX_UID`], else of [`POD_UID`]) in a directory
//! named `keyvalue` that is root's alone (mode 0700, as the agent makes `DATA_DIR/keyvalue`), by
//! a plain absolute path (no `..`, no symlinked directory). Else the task does not start: under
//! CRI's annotation passthrough a pod could otherwise name another pod's socket.
//!
//! Must not: print config values (Secrets' among them) in an error or a log.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Spec;
use skiff_runtime::bundle::{WASI_CONFIG_FILE, WASI_INTERFACES, WASI_KEYVALUE_SOCKET};
use skiff_runtime::wasm::{ConfigValues, HostGrants};

use crate::shim::annotation;

/// The pod's uid, as a skiff agent labels its containers (`skiff.dev/pod-uid`).
pub const POD_UID: &str = "skiff.dev/pod-uid";
/// The pod sandbox's uid, as containerd's CRI plugin annotates a container (it wins over
/// [`POD_UID`], which a pod's own annotations could set under CRI).
pub const CRI_SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";

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
        grants.keyvalue_socket = Some(keyvalue_socket(spec, socket)?);
    }
    Ok(grants)
}

/// The keyvalue socket `socket` names, if it is the agent's for the task's own pod.
fn keyvalue_socket(spec: &Spec, socket: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(socket);
    let refuse = |why: String| format!("annotation {WASI_KEYVALUE_SOCKET} {socket:?}: {why}");
    let mut parts = path.components();
    if parts.next() != Some(Component::RootDir) || !parts.all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(refuse(
            "must be an absolute path without '.' or '..'".into(),
        ));
    }
    let (uid, from) = [CRI_SANDBOX_UID, POD_UID]
        .iter()
        .find_map(|k| annotation(spec, k).filter(|v| !v.is_empty()).map(|v| (v, k)))
        .ok_or_else(|| {
            refuse(format!(
                "the bundle names no pod (annotation {CRI_SANDBOX_UID} or {POD_UID}) whose socket it would be"
            ))
        })?;
    if path.file_name() != Some(std::ffi::OsStr::new(&format!("{uid}.sock"))) {
        return Err(refuse(format!(
            "must be named {uid}.sock, the socket of the task's pod (annotation {from})"
        )));
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    if dir.file_name() != Some(std::ffi::OsStr::new("keyvalue")) {
        return Err(refuse(
            "must be in a skiff agent's keyvalue directory (DATA_DIR/keyvalue)".into(),
        ));
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| refuse(format!("directory {}: {e}", dir.display())))?;
    if !meta.is_dir() || meta.uid() != 0 || meta.permissions().mode() & 0o077 != 0 {
        return Err(refuse(format!(
            "directory {} must be a directory root alone may enter (mode 0700), as an agent makes it",
            dir.display()
        )));
    }
    Ok(path)
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
        let socket = kv_dir(bundle.path()).join("u1.sock");
        let g = grants(
            &spec(serde_json::json!({
                WASI_INTERFACES: "config, logging,keyvalue",
                WASI_CONFIG_FILE: "wasi-config.json",
                WASI_KEYVALUE_SOCKET: socket.to_str().unwrap(),
                POD_UID: "u1",
            })),
            bundle.path(),
        )
        .unwrap();
        assert!(g.config && g.keyvalue && g.logging);
        assert_eq!(g.config_values.0.len(), 2);
        assert!(!format!("{g:?}").contains("s3cret"), "{g:?}");
        assert_eq!(g.keyvalue_socket, Some(socket));
    }

    /// A keyvalue directory as an agent makes it, in `under`.
    fn kv_dir(under: &Path) -> PathBuf {
        let dir = under.join("keyvalue");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    #[test]
    fn a_keyvalue_socket_must_be_the_agents_for_the_tasks_own_pod() {
        let root = tempfile::tempdir().unwrap();
        let dir = kv_dir(root.path());
        let sock = |name: &str| dir.join(name).to_str().unwrap().to_string();
        let try_ = |socket: String, extra: serde_json::Value| {
            let mut a = serde_json::json!({ WASI_KEYVALUE_SOCKET: socket });
            for (k, v) in extra.as_object().unwrap() {
                a[k] = v.clone();
            }
            grants(&spec(a), root.path())
        };
        // Its own pod's socket: by skiff's label, or by CRI's sandbox uid, which wins.
        assert!(try_(sock("u1.sock"), serde_json::json!({POD_UID: "u1"})).is_ok());
        let cri = serde_json::json!({CRI_SANDBOX_UID: "u1", POD_UID: "u2"});
        assert!(try_(sock("u1.sock"), cri.clone()).is_ok());
        // Another pod's socket, named by its own pod annotation under CRI: refused.
        let e = try_(sock("u2.sock"), cri).unwrap_err();
        assert!(e.contains(WASI_KEYVALUE_SOCKET), "{e}");
        assert!(e.contains("must be named u1.sock"), "{e}");
        assert!(
            e.contains(&format!("(annotation {CRI_SANDBOX_UID})")),
            "{e}"
        );
        // No pod to tie it to.
        let e = try_(sock("u1.sock"), serde_json::json!({})).unwrap_err();
        assert!(e.contains("names no pod"), "{e}");
        // Not under a keyvalue directory, or escaping it, or a directory others may enter.
        let uid = serde_json::json!({POD_UID: "u1"});
        let outside = root.path().join("u1.sock").to_str().unwrap().to_string();
        let e = try_(outside, uid.clone()).unwrap_err();
        assert!(e.contains("keyvalue directory"), "{e}");
        let e = try_(sock("../keyvalue/u1.sock"), uid.clone()).unwrap_err();
        assert!(e.contains("without '.' or '..'"), "{e}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = try_(sock("u1.sock"), uid.clone()).unwrap_err();
        assert!(e.contains("root alone may enter"), "{e}");
        let e = try_("kv.sock".into(), uid).unwrap_err();
        assert!(e.contains("absolute"), "{e}");
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
    }
}
