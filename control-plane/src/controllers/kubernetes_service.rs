//! The `default/kubernetes` Service in front of the API servers (Kubernetes' master endpoint
//! reconciler), so that a client in a pod finds the API as on Kubernetes: the Service
//! (ClusterIP, the first address of the service CIDR, port `https` 443 to the API port), and its
//! Endpoints, to which each API server adds its own address at start and every
//! [`RESYNC`] after (HA: every server of an etcd cluster adds itself). Pods get
//! `KUBERNETES_SERVICE_HOST`/`_PORT` from the Service (the agent's service environment) and
//! reach it through their node's proxy.
//!
//! The address published is the one the server listens on. A server listening on loopback (the
//! default `127.0.0.1:7443`) or on every address (`0.0.0.0`) publishes none: a pod cannot reach a
//! node's loopback (the proxy never routes to it), and an unspecified address names no host.
//! Listen on an address pods reach (`--listen 10.0.0.5:7443`) for in-cluster clients. Addresses of
//! servers that are gone are not removed (Kubernetes expires them with a lease per server): a
//! departed server is taken out by editing the Endpoints.
//!
//! Must not: touch any other Service or Endpoints (the endpoints controller leaves this one alone:
//! it has no selector).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use skiff_api::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectMeta, Service, ServicePort,
    ServiceSpec,
};
use skiff_api::{IntOrString, ResourceExt};

use crate::auth::Identity;
use crate::error::ApiError;
use crate::registry::Registry;
use crate::registry::allocator::{KUBERNETES_SERVICE, ServiceRanges};
use crate::store::Store;

/// How often the Service and this server's address are checked (and put back if changed).
pub const RESYNC: Duration = Duration::from_secs(10);
/// The Service's port name and number, as Kubernetes'.
const PORT_NAME: &str = "https";
const PORT: i32 = 443;

/// Keeps the Service and this server's place in its Endpoints until aborted.
pub async fn run(store: Arc<dyn Store>, listen: SocketAddr) {
    let services = Registry::<Service>::new(store.clone());
    let endpoints = Registry::<Endpoints>::new(store.clone());
    loop {
        if let Err(e) = reconcile(store.as_ref(), &services, &endpoints, listen).await {
            tracing::warn!(error = %e, "default/kubernetes Service: will retry");
        }
        tokio::time::sleep(RESYNC).await;
    }
}

/// The address this server publishes, if pods can reach it.
pub fn published(listen: SocketAddr) -> Option<SocketAddr> {
    let ip = listen.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(listen)
}

/// The Service as it should be (its cluster IP the first of `ranges`).
pub fn service(ranges: &ServiceRanges, api_port: u16) -> Service {
    let ip = ranges
        .cidr()
        .nth(1)
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    Service {
        metadata: Some(ObjectMeta {
            namespace: KUBERNETES_SERVICE.0.into(),
            name: KUBERNETES_SERVICE.1.into(),
            labels: [
                ("component".to_string(), "apiserver".to_string()),
                ("provider".to_string(), "kubernetes".to_string()),
            ]
            .into(),
            ..Default::default()
        }),
        spec: Some(ServiceSpec {
            r#type: "ClusterIP".into(),
            cluster_ip: ip.clone(),
            cluster_ips: vec![ip],
            ports: vec![ServicePort {
                name: PORT_NAME.into(),
                protocol: "TCP".into(),
                port: PORT,
                target_port: Some(IntOrString::int(i32::from(api_port))),
                ..Default::default()
            }],
            session_affinity: "None".into(),
            ..Default::default()
        }),
        status: None,
    }
}

/// `subsets` with `addr` among the addresses (added to the subset of its port, or a new one),
/// and its address gone from the subsets of other ports (this server on its former port); None
/// when nothing changes.
pub fn with_address(subsets: &[EndpointSubset], addr: SocketAddr) -> Option<Vec<EndpointSubset>> {
    let port = i32::from(addr.port());
    let ip = addr.ip().to_string();
    let ours = |s: &EndpointSubset| {
        s.ports.len() == 1 && s.ports[0].port == port && s.ports[0].name == PORT_NAME
    };
    let mut out: Vec<EndpointSubset> = subsets.to_vec();
    for s in out.iter_mut().filter(|s| !ours(s)) {
        s.addresses.retain(|a| a.ip != ip);
    }
    out.retain(|s| ours(s) || !s.addresses.is_empty() || !s.not_ready_addresses.is_empty());
    match out.iter_mut().find(|s| ours(s)) {
        Some(s) if s.addresses.iter().any(|a| a.ip == ip) => {}
        Some(s) => {
            s.addresses.push(EndpointAddress {
                ip,
                ..Default::default()
            });
            s.addresses.sort_by(|a, b| a.ip.cmp(&b.ip));
        }
        None => out.push(EndpointSubset {
            addresses: vec![EndpointAddress {
                ip,
                ..Default::default()
            }],
            ports: vec![EndpointPort {
                name: PORT_NAME.into(),
                port,
                protocol: "TCP".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
    (out != subsets).then_some(out)
}

async fn reconcile(
    store: &dyn Store,
    services: &Registry<Service>,
    endpoints: &Registry<Endpoints>,
    listen: SocketAddr,
) -> Result<(), ApiError> {
    let (namespace, name) = KUBERNETES_SERVICE;
    let ranges = ServiceRanges::load(store).await?;
    let wanted = service(&ranges, listen.port());
    match services.get(namespace, name).await {
        Ok(mut current) => {
            // The ports are the server's; the cluster IP is immutable once given.
            let want = wanted.spec.as_ref().map(|s| s.ports.clone());
            let spec = current.spec.get_or_insert_with(Default::default);
            if Some(&spec.ports) != want.as_ref() {
                spec.ports = want.unwrap_or_default();
                services.update(&Identity::Admin, current).await?;
            }
        }
        Err(ApiError::NotFound { .. }) => match services.create(&Identity::Admin, wanted).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        },
        Err(e) => return Err(e),
    }
    let current = match endpoints.get(namespace, name).await {
        Ok(e) => Some(e),
        Err(ApiError::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let Some(addr) = published(listen) else {
        if current.is_none() {
            tracing::info!(
                %listen,
                "the API listens on no address pods reach: default/kubernetes has no endpoints (listen on a node address for clients in pods)"
            );
            let empty = Endpoints {
                metadata: Some(ObjectMeta {
                    namespace: namespace.into(),
                    name: name.into(),
                    ..Default::default()
                }),
                subsets: vec![],
            };
            match endpoints.create(&Identity::Admin, empty).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        return Ok(());
    };
    match current {
        Some(mut e) => {
            if let Some(subsets) = with_address(&e.subsets, addr) {
                e.subsets = subsets;
                endpoints.update(&Identity::Admin, e).await?;
                tracing::info!(%addr, "added to the endpoints of default/kubernetes");
            }
        }
        None => {
            let e = Endpoints {
                metadata: Some(ObjectMeta {
                    namespace: namespace.into(),
                    name: name.into(),
                    ..Default::default()
                }),
                subsets: with_address(&[], addr).unwrap_or_default(),
            };
            match endpoints.create(&Identity::Admin, e).await {
                Ok(created) => {
                    tracing::info!(%addr, endpoints = %created.name(), "default/kubernetes endpoints created");
                }
                // Another server made it first: the next round adds this one.
                Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_service_is_kubernetes_own() {
        let s = service(&ServiceRanges::default(), 7443);
        let spec = s.spec.unwrap();
        assert_eq!(spec.cluster_ip, "10.96.0.1");
        assert_eq!(spec.ports[0].port, 443);
        assert_eq!(spec.ports[0].name, "https");
        assert_eq!(spec.ports[0].target_port, Some(IntOrString::int(7443)));
        assert_eq!(s.metadata.unwrap().labels["component"], "apiserver");
    }

    #[test]
    fn each_server_adds_itself_once_and_loopback_is_never_published() {
        let a: SocketAddr = "10.0.0.5:7443".parse().unwrap();
        let b: SocketAddr = "10.0.0.6:7443".parse().unwrap();
        let one = with_address(&[], a).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].addresses[0].ip, "10.0.0.5");
        assert_eq!(one[0].ports[0].port, 7443);
        assert!(with_address(&one, a).is_none());
        let two = with_address(&one, b).unwrap();
        assert_eq!(two.len(), 1);
        assert_eq!(two[0].addresses.len(), 2);
        let other_port = with_address(&two, "10.0.0.7:6443".parse().unwrap()).unwrap();
        assert_eq!(other_port.len(), 2);
        // A server back on another port leaves its old one.
        let moved = with_address(&one, "10.0.0.5:8443".parse().unwrap()).unwrap();
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert_eq!(moved[0].ports[0].port, 8443);
        assert!(published("127.0.0.1:7443".parse().unwrap()).is_none());
        assert!(published("0.0.0.0:7443".parse().unwrap()).is_none());
        assert_eq!(published(a), Some(a));
    }
}
