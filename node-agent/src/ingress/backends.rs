//! From a route's backend (a Service and one of its ports) to the addresses a request may go to:
//! the Service port's ready endpoints, read from the shared [`Catalog`](crate::catalog::Catalog)
//! per request, and a round-robin pick among them (the turn is kept in the route's backend).
//!
//! The Service port is found by number or name; its endpoints are the ports of the Endpoints'
//! subsets with the same name (the endpoints controller names them after the Service port, and
//! resolves `targetPort` per pod), TCP only. Only ready addresses count.
//!
//! Must not: keep endpoints of its own (the catalog is the one copy), or open connections.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;

use skiff_api::v1::{Endpoints, Service};

use super::routes::{Backend, PortRef};
use crate::catalog::Catalog;

/// Why a backend has nowhere to send a request (both answer 503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("service \"{0}\" not found")]
    NoService(String),
    #[error("service \"{0}\" has no port {1}")]
    NoPort(String, String),
    #[error("service \"{0}\" has no ready endpoints")]
    NoEndpoints(String),
}

/// The ready addresses of `port` of `service` in `endpoints`.
pub fn upstreams(
    service: &Service,
    endpoints: Option<&Endpoints>,
    port: &PortRef,
) -> Result<Vec<SocketAddr>, Unavailable> {
    let name = || {
        let meta = service.metadata.as_ref();
        format!(
            "{}/{}",
            meta.map_or("", |m| m.namespace.as_str()),
            meta.map_or("", |m| m.name.as_str())
        )
    };
    let ports = service
        .spec
        .as_ref()
        .map(|s| s.ports.as_slice())
        .unwrap_or_default();
    let found = ports.iter().find(|p| match port {
        PortRef::Number(n) => p.port == *n,
        PortRef::Name(wanted) => p.name == *wanted,
    });
    let Some(service_port) = found else {
        let shown = match port {
            PortRef::Number(n) => n.to_string(),
            PortRef::Name(n) => format!("{n:?}"),
        };
        return Err(Unavailable::NoPort(name(), shown));
    };
    let mut out = Vec::new();
    for subset in endpoints.iter().flat_map(|e| &e.subsets) {
        let Some(target) = subset.ports.iter().find(|p| {
            p.name == service_port.name && (p.protocol.is_empty() || p.protocol == "TCP")
        }) else {
            continue;
        };
        let Ok(port) = u16::try_from(target.port) else {
            continue;
        };
        for address in &subset.addresses {
            if let Ok(ip) = address.ip.parse::<IpAddr>() {
                out.push(SocketAddr::new(ip, port));
            }
        }
    }
    if out.is_empty() {
        return Err(Unavailable::NoEndpoints(name()));
    }
    Ok(out)
}

/// The address the next request to `backend` goes to: its ready endpoints in turn.
pub fn pick(catalog: &Catalog, backend: &Backend) -> Result<SocketAddr, Unavailable> {
    let service = catalog
        .service(&backend.namespace, &backend.service)
        .ok_or_else(|| {
            Unavailable::NoService(format!("{}/{}", backend.namespace, backend.service))
        })?;
    let endpoints = catalog.endpoints(&backend.namespace, &backend.service);
    let addresses = upstreams(&service, endpoints.as_deref(), &backend.port)?;
    let turn = backend.next.fetch_add(1, Ordering::Relaxed);
    Ok(addresses[turn % addresses.len()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{
        EndpointAddress, EndpointPort, EndpointSubset, ObjectMeta, ServicePort, ServiceSpec,
    };
    use std::sync::atomic::AtomicUsize;

    fn meta(name: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        })
    }

    fn web() -> (Service, Endpoints) {
        let service = Service {
            metadata: meta("web"),
            spec: Some(ServiceSpec {
                ports: vec![
                    ServicePort {
                        name: "http".into(),
                        port: 80,
                        ..Default::default()
                    },
                    ServicePort {
                        name: "admin".into(),
                        port: 9000,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            status: None,
        };
        let address = |ip: &str| EndpointAddress {
            ip: ip.into(),
            ..Default::default()
        };
        let port = |name: &str, port: i32| EndpointPort {
            name: name.into(),
            port,
            protocol: "TCP".into(),
            ..Default::default()
        };
        let endpoints = Endpoints {
            metadata: meta("web"),
            subsets: vec![
                EndpointSubset {
                    addresses: vec![address("10.1.0.2"), address("10.1.0.3")],
                    not_ready_addresses: vec![address("10.1.0.9")],
                    ports: vec![port("http", 8080), port("admin", 9090)],
                },
                // Another pod whose named targetPort resolved to another number.
                EndpointSubset {
                    addresses: vec![address("10.1.0.4")],
                    not_ready_addresses: vec![],
                    ports: vec![port("http", 8081)],
                },
            ],
        };
        (service, endpoints)
    }

    #[test]
    fn a_service_port_by_number_or_name_reaches_its_ready_target_ports() {
        let (service, endpoints) = web();
        let addrs = |port: PortRef| {
            upstreams(&service, Some(&endpoints), &port)
                .map(|v| v.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        assert_eq!(
            addrs(PortRef::Number(80)).unwrap(),
            ["10.1.0.2:8080", "10.1.0.3:8080", "10.1.0.4:8081"]
        );
        assert_eq!(
            addrs(PortRef::Name("admin".into())).unwrap(),
            ["10.1.0.2:9090", "10.1.0.3:9090"]
        );
        assert_eq!(
            addrs(PortRef::Number(81)).unwrap_err(),
            Unavailable::NoPort("default/web".into(), "81".into())
        );
        assert_eq!(
            upstreams(&service, None, &PortRef::Number(80)).unwrap_err(),
            Unavailable::NoEndpoints("default/web".into())
        );
    }

    #[test]
    fn picks_go_round_robin_and_a_missing_service_is_unavailable() {
        let (service, endpoints) = web();
        let catalog = Catalog::from_objects(vec![service], vec![endpoints]);
        let backend = Backend {
            namespace: "default".into(),
            service: "web".into(),
            port: PortRef::Name("admin".into()),
            ingress: "default/i".into(),
            next: AtomicUsize::new(0),
        };
        let picks: Vec<String> = (0..4)
            .map(|_| pick(&catalog, &backend).unwrap().to_string())
            .collect();
        assert_eq!(
            picks,
            [
                "10.1.0.2:9090",
                "10.1.0.3:9090",
                "10.1.0.2:9090",
                "10.1.0.3:9090"
            ]
        );
        let missing = Backend {
            service: "gone".into(),
            ..backend
        };
        assert_eq!(
            pick(&catalog, &missing).unwrap_err(),
            Unavailable::NoService("default/gone".into())
        );
    }
}
