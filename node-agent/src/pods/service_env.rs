//! The Service environment variables of a container, as kubelet makes them: for each Service of
//! the pod's namespace that exists when the container starts (with `enableServiceLinks`, the
//! default), and for the `kubernetes` Service of `default` if there is one (always):
//!
//! - `{SVC}_SERVICE_HOST` (the cluster IP), `{SVC}_SERVICE_PORT` (the first port),
//!   `{SVC}_SERVICE_PORT_{NAME}` for each named port;
//! - Docker links: `{SVC}_PORT=tcp://IP:PORT` (first port), and for each port
//!   `{SVC}_PORT_{PORT}_{PROTO}` with `_PROTO`, `_PORT` and `_ADDR`;
//!
//! where `{SVC}` and `{NAME}` are upper-cased with `-` as `_`. Headless and ExternalName
//! Services (no cluster IP) get none. Services are taken in name order; the container's own
//! variables (envFrom, env) are set after these and win.
//!
//! Must not: read anything but the catalog it is given.

use skiff_api::ResourceExt;
use skiff_api::v1::{Pod, Service};

use crate::catalog::Catalog;

/// How long a container start waits for the node's first list of Services.
const SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The variables a container of `pod` starts with. Waits for the catalog's first list, as
/// kubelet waits for its Service informer: a container never starts without them.
pub async fn for_pod(catalog: &Catalog, pod: &Pod) -> Result<Vec<(String, String)>, String> {
    if tokio::time::timeout(SYNC_WAIT, catalog.synced())
        .await
        .is_err()
    {
        return Err(
            "services have not yet been read at least once, cannot construct envvars".into(),
        );
    }
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    Ok(variables(catalog, pod.namespace(), links))
}

/// The Service of `default` whose variables every pod gets (kubelet's master services).
const MASTER_SERVICE: &str = "kubernetes";
const DEFAULT_NAMESPACE: &str = "default";

/// The variables of the Services a container of a pod in `namespace` sees.
pub fn variables(catalog: &Catalog, namespace: &str, enable_links: bool) -> Vec<(String, String)> {
    let mut chosen: std::collections::BTreeMap<String, std::sync::Arc<Service>> =
        Default::default();
    for service in catalog.services() {
        let Some(meta) = &service.metadata else {
            continue;
        };
        if cluster_ip(&service).is_none() {
            continue;
        }
        if meta.namespace == DEFAULT_NAMESPACE && meta.name == MASTER_SERVICE {
            chosen
                .entry(meta.name.clone())
                .or_insert_with(|| service.clone());
        } else if meta.namespace == namespace && enable_links {
            chosen.insert(meta.name.clone(), service.clone());
        }
    }
    let mut out = Vec::new();
    for (name, service) in &chosen {
        of_service(name, service, &mut out);
    }
    out
}

/// A Service's cluster IP, if it has one (not headless, not ExternalName).
fn cluster_ip(service: &Service) -> Option<&str> {
    let ip = service.spec.as_ref()?.cluster_ip.as_str();
    (!ip.is_empty() && ip != "None").then_some(ip)
}

/// `my-svc` → `MY_SVC`.
fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

fn of_service(name: &str, service: &Service, out: &mut Vec<(String, String)>) {
    let (Some(ip), Some(spec)) = (cluster_ip(service), service.spec.as_ref()) else {
        return;
    };
    let prefix = env_name(name);
    out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
    if let Some(first) = spec.ports.first() {
        out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
    }
    for port in spec.ports.iter().filter(|p| !p.name.is_empty()) {
        out.push((
            format!("{prefix}_SERVICE_PORT_{}", env_name(&port.name)),
            port.port.to_string(),
        ));
    }
    // Docker's link variables.
    let host_port = |port: i32| match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(_)) => format!("[{ip}]:{port}"),
        _ => format!("{ip}:{port}"),
    };
    for (i, port) in spec.ports.iter().enumerate() {
        let protocol = if port.protocol.is_empty() {
            "TCP"
        } else {
            port.protocol.as_str()
        };
        let lower = protocol.to_lowercase();
        let url = format!("{lower}://{}", host_port(port.port));
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
        out.push((port_prefix.clone(), url));
        out.push((format!("{port_prefix}_PROTO"), lower));
        out.push((format!("{port_prefix}_PORT"), port.port.to_string()));
        out.push((format!("{port_prefix}_ADDR"), ip.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::catalog::fixtures::service;

    fn catalog() -> std::sync::Arc<Catalog> {
        Catalog::from_objects(
            vec![
                service(
                    "shop",
                    "my-web",
                    "10.96.0.10",
                    &[("http", 80, ""), ("dns-udp", 53, "UDP")],
                ),
                service("shop", "db", "None", &[("pg", 5432, "TCP")]),
                service("shop", "ext", "", &[]),
                service("other", "cache", "10.96.0.11", &[("", 6379, "TCP")]),
                service(
                    "default",
                    "kubernetes",
                    "10.96.0.1",
                    &[("https", 443, "TCP")],
                ),
            ],
            Vec::new(),
        )
    }

    #[test]
    fn variables_are_kubelets() {
        let vars = variables(&catalog(), "shop", true);
        let want = [
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
            ("MY_WEB_SERVICE_HOST", "10.96.0.10"),
            ("MY_WEB_SERVICE_PORT", "80"),
            ("MY_WEB_SERVICE_PORT_HTTP", "80"),
            ("MY_WEB_SERVICE_PORT_DNS_UDP", "53"),
            ("MY_WEB_PORT", "tcp://10.96.0.10:80"),
            ("MY_WEB_PORT_80_TCP", "tcp://10.96.0.10:80"),
            ("MY_WEB_PORT_80_TCP_PROTO", "tcp"),
            ("MY_WEB_PORT_80_TCP_PORT", "80"),
            ("MY_WEB_PORT_80_TCP_ADDR", "10.96.0.10"),
            ("MY_WEB_PORT_53_UDP", "udp://10.96.0.10:53"),
            ("MY_WEB_PORT_53_UDP_PROTO", "udp"),
            ("MY_WEB_PORT_53_UDP_PORT", "53"),
            ("MY_WEB_PORT_53_UDP_ADDR", "10.96.0.10"),
        ];
        let got: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got, want,
            "headless, ExternalName and other namespaces' Services left out"
        );
    }

    #[test]
    fn without_service_links_only_the_master_service_is_seen() {
        let vars = variables(&catalog(), "shop", false);
        assert!(
            vars.iter().all(|(k, _)| k.starts_with("KUBERNETES_")),
            "{vars:?}"
        );
        assert!(!vars.is_empty());
        let other = variables(&catalog(), "other", true);
        assert!(other.contains(&("CACHE_SERVICE_PORT".into(), "6379".into())));
        assert!(
            !other
                .iter()
                .any(|(k, _)| k.starts_with("CACHE_SERVICE_PORT_"))
        );
    }

    #[test]
    fn ipv6_addresses_are_bracketed_in_urls() {
        let c = Catalog::from_objects(
            vec![service("ns", "v6", "fd00::10", &[("", 80, "TCP")])],
            Vec::new(),
        );
        let vars = variables(&c, "ns", true);
        assert!(vars.contains(&("V6_PORT".into(), "tcp://[fd00::10]:80".into())));
    }
}
