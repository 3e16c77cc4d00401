//! Functions in the shim: a Wasm task whose component exports `wasi:http/incoming-handler` is
//! served by the runtime (an instance per request, `skiff_runtime::wasm::http`) rather than run.
//!
//! Owns reading the bundle's function annotations ([`FUNCTION_PORTS`] and the others, tabled in
//! `skiff_runtime::bundle`) into [`HttpOptions`] ([`options`]), and where a function may listen
//! ([`check_network`]): in the network namespace the bundle joins by path, or the shim's own when
//! the bundle asks for none (host networking); a bundle asking for a new, empty namespace has
//! nowhere a client could reach and is refused. Under a plain containerd with no annotation a
//! function serves on 8080. Must not: serve anything itself.

use std::time::Duration;

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use skiff_runtime::bundle::{
    FUNCTION_ALLOWED_OUTBOUND_HOSTS, FUNCTION_CONCURRENCY, FUNCTION_MAX_BODY_BYTES, FUNCTION_PORTS,
    FUNCTION_REQUIRED, FUNCTION_TIMEOUT_MS,
};
use skiff_runtime::wasm::HttpOptions;
use skiff_runtime::wasm::http::AllowedHosts;

use crate::shim::annotation;

/// The function options the bundle's annotations give (defaults where absent).
pub fn options(spec: &Spec) -> Result<HttpOptions, String> {
    let mut options = HttpOptions::default();
    if let Some(list) = annotation(spec, FUNCTION_PORTS) {
        options.ports = list
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    format!("annotation {FUNCTION_PORTS} {list:?}: {p:?} is not a port")
                })
            })
            .collect::<Result<_, _>>()?;
        if options.ports.is_empty() {
            // Empty means none: a skiff container that declared no TCP port.
            options.ports = vec![0];
        }
    }
    let number = |key: &str| -> Result<Option<u64>, String> {
        annotation(spec, key)
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("annotation {key} {v:?}: not a whole number"))
            })
            .transpose()
    };
    if let Some(ms) = number(FUNCTION_TIMEOUT_MS)? {
        options.timeout = Duration::from_millis(ms);
    }
    if let Some(bytes) = number(FUNCTION_MAX_BODY_BYTES)? {
        options.max_body_bytes = bytes;
    }
    if let Some(n) = number(FUNCTION_CONCURRENCY)? {
        options.concurrency = u32::try_from(n)
            .map_err(|_| format!("annotation {FUNCTION_CONCURRENCY} {n}: too large"))?;
    }
    if let Some(list) = annotation(spec, FUNCTION_ALLOWED_OUTBOUND_HOSTS) {
        options.allowed_outbound_hosts = list
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        AllowedHosts::parse(&options.allowed_outbound_hosts)
            .map_err(|e| format!("annotation {FUNCTION_ALLOWED_OUTBOUND_HOSTS}: {e}"))?;
    }
    options.required = match annotation(spec, FUNCTION_REQUIRED) {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err(format!(
                "annotation {FUNCTION_REQUIRED} {v:?}: must be \"true\" or \"false\""
            ));
        }
    };
    Ok(options)
}

/// Whether a function of this bundle has somewhere to listen (see the module doc), and a port.
pub fn check_network(spec: &Spec, options: &HttpOptions) -> Result<(), String> {
    if options.ports.contains(&0) {
        return Err(
            "the component is a function (it exports wasi:http/incoming-handler) but its container declares no TCP port to serve on: add a containerPort"
                .to_string(),
        );
    }
    let network = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|ns| ns.iter().find(|n| n.typ() == LinuxNamespaceType::Network));
    match network {
        Some(ns) if ns.path().is_none() => Err(
            "the component is a function, and a new network namespace would leave it unreachable: join one by path (ctr run --with-ns network:PATH) or use the host's network"
                .to_string(),
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(annotations: serde_json::Value, namespaces: serde_json::Value) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["/f.wasm"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "annotations": annotations,
            "linux": {"namespaces": namespaces},
        }))
        .unwrap()
    }

    #[test]
    fn annotations_become_options_and_defaults_fill_the_rest() {
        let none = options(&spec(serde_json::json!({}), serde_json::json!([]))).unwrap();
        assert_eq!(none, HttpOptions::default());
        assert_eq!(none.effective_ports(), [8080]);
        let s = spec(
            serde_json::json!({
                FUNCTION_PORTS: "8080, 9090",
                FUNCTION_TIMEOUT_MS: "1500",
                FUNCTION_MAX_BODY_BYTES: "1024",
                FUNCTION_CONCURRENCY: "4",
                FUNCTION_ALLOWED_OUTBOUND_HOSTS: "http://127.0.0.1:8080, https://*.example.com",
                FUNCTION_REQUIRED: "true",
            }),
            serde_json::json!([]),
        );
        let o = options(&s).unwrap();
        assert_eq!(o.ports, [8080, 9090]);
        assert_eq!(o.timeout, Duration::from_millis(1500));
        assert_eq!((o.max_body_bytes, o.concurrency), (1024, 4));
        assert_eq!(o.allowed_outbound_hosts.len(), 2);
        assert!(o.required);
        for (key, value, says) in [
            (FUNCTION_PORTS, "80,http", "\"http\" is not a port"),
            (FUNCTION_TIMEOUT_MS, "30s", "not a whole number"),
            (
                FUNCTION_ALLOWED_OUTBOUND_HOSTS,
                "example.com",
                "SCHEME://HOST",
            ),
            (FUNCTION_REQUIRED, "yes", "must be"),
        ] {
            let e = options(&spec(
                serde_json::json!({ key: value }),
                serde_json::json!([]),
            ));
            let e = e.unwrap_err();
            assert!(e.contains(key) && e.contains(says), "{e}");
        }
    }

    #[test]
    fn a_function_needs_a_port_and_a_reachable_namespace() {
        let joined = serde_json::json!([{"type": "network", "path": "/run/netns/p"}]);
        let s = spec(serde_json::json!({FUNCTION_PORTS: ""}), joined.clone());
        let o = options(&s).unwrap();
        assert!(check_network(&s, &o).unwrap_err().contains("containerPort"));
        let s = spec(serde_json::json!({}), joined);
        assert!(check_network(&s, &options(&s).unwrap()).is_ok());
        let host = spec(serde_json::json!({}), serde_json::json!([]));
        assert!(check_network(&host, &options(&host).unwrap()).is_ok());
        let fresh = spec(
            serde_json::json!({}),
            serde_json::json!([{"type": "network"}]),
        );
        let e = check_network(&fresh, &options(&fresh).unwrap()).unwrap_err();
        assert!(e.contains("--with-ns network:PATH"), "{e}");
    }
}
