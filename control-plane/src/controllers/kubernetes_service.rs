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
//! Listen on an address pods reach (`--listen 10.0.0.5:7443`) for in-cluster clients.
//!
//! Servers that are gone leave the Endpoints as with Kubernetes' lease endpoint reconciler: each
//! server that publishes an address renews a Lease `kube-system/apiserver-endpoint-<ip>` (holder
//! `ip:port`, [`LEASE_SECONDS`]) every [`RESYNC`], and every server writes the Endpoints as
//! exactly the addresses whose lease was renewed within its duration (by the reading server's
//! clock: servers' clocks are assumed close, as Kubernetes assumes). A lease long expired
//! ([`FORGET_AFTER`]) is deleted. A server back on another port replaces its own lease.
//!
//! Must not: touch any other Service or Endpoints (the endpoints controller leaves this one alone:
//! it has no selector).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use skiff_api::v1::{
    DeleteRequest, EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Lease, LeaseSpec,
    ListRequest, ObjectMeta, Service, ServicePort, ServiceSpec,
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

/// How long a server's endpoint lease stays good without renewal (three missed renewals).
pub const LEASE_SECONDS: i32 = 30;
/// An expired endpoint lease older than this is deleted.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// The namespace of the servers' endpoint leases.
const LEASE_NAMESPACE: &str = "kube-system";
/// Their name prefix (then the address, `.` and `:` as `-`).
const LEASE_PREFIX: &str = "apiserver-endpoint-";
/// Their label, for listing them.
const LEASE_LABEL: &str = "skiff.dev/apiserver-endpoint";

/// Keeps the Service, this server's endpoint lease, and the Endpoints of the servers with live
/// leases until aborted.
pub async fn run(store: Arc<dyn Store>, listen: SocketAddr) {
    let services = Registry::<Service>::new(store.clone());
    let endpoints = Registry::<Endpoints>::new(store.clone());
    let leases = Registry::<Lease>::new(store.clone());
    loop {
        if let Err(e) = reconcile(store.as_ref(), &services, &endpoints, &leases, listen).await {
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

/// The Endpoints subsets of the live servers: one subset per port, addresses sorted.
pub fn subsets_of(live: &[SocketAddr]) -> Vec<EndpointSubset> {
    let mut ports: Vec<u16> = live.iter().map(SocketAddr::port).collect();
    ports.sort_unstable();
    ports.dedup();
    ports
        .into_iter()
        .map(|port| {
            let mut ips: Vec<String> = live
                .iter()
                .filter(|a| a.port() == port)
                .map(|a| a.ip().to_string())
                .collect();
            ips.sort();
            ips.dedup();
            EndpointSubset {
                addresses: ips
                    .into_iter()
                    .map(|ip| EndpointAddress {
                        ip,
                        ..Default::default()
                    })
                    .collect(),
                ports: vec![EndpointPort {
                    name: PORT_NAME.into(),
                    port: i32::from(port),
                    protocol: "TCP".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect()
}

/// The name of the endpoint lease of a server at `addr` (by its IP only: a server back on
/// another port replaces its lease).
pub fn lease_name(addr: SocketAddr) -> String {
    let ip: String = addr
        .ip()
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{LEASE_PREFIX}{ip}")
}

/// This server's endpoint lease, renewed now.
fn lease(addr: SocketAddr, now: i64) -> Lease {
    Lease {
        metadata: Some(ObjectMeta {
            namespace: LEASE_NAMESPACE.into(),
            name: lease_name(addr),
            labels: [(LEASE_LABEL.to_string(), "true".to_string())].into(),
            ..Default::default()
        }),
        spec: Some(LeaseSpec {
            holder_identity: Some(addr.to_string()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            renew_time: Some(skiff_api::Timestamp {
                seconds: now,
                nanos: 0,
            }),
            ..Default::default()
        }),
    }
}

/// Whether a lease is live at `now`, and its holder's address; `None` for a lease that is not
/// an endpoint lease.
pub fn holder(lease: &Lease, now: i64) -> Option<(SocketAddr, bool)> {
    let spec = lease.spec.as_ref()?;
    let addr: SocketAddr = spec.holder_identity.as_deref()?.parse().ok()?;
    let renewed = spec.renew_time.map_or(0, |t| t.seconds);
    let ttl = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
    Some((addr, renewed + ttl >= now))
}

fn unix_now() -> i64 {
    skiff_api::time::now().seconds
}

/// Renews this server's lease (if it publishes an address) and returns the live servers,
/// deleting leases long expired.
async fn live_servers(
    leases: &Registry<Lease>,
    published: Option<SocketAddr>,
) -> Result<Vec<SocketAddr>, ApiError> {
    let now = unix_now();
    if let Some(addr) = published {
        let mine = lease(addr, now);
        match leases.get(LEASE_NAMESPACE, &lease_name(addr)).await {
            Ok(mut current) => {
                current.spec = mine.spec;
                leases.update(&Identity::Admin, current).await?;
            }
            Err(ApiError::NotFound { .. }) => match leases.create(&Identity::Admin, mine).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
    let (all, _) = leases
        .list(&ListRequest {
            namespace: LEASE_NAMESPACE.into(),
            label_selector: LEASE_LABEL.into(),
            ..Default::default()
        })
        .await?;
    let mut live = Vec::new();
    for l in &all {
        match holder(l, now) {
            Some((addr, true)) => live.push(addr),
            Some((_, false)) => {
                let renewed = l
                    .spec
                    .as_ref()
                    .and_then(|s| s.renew_time)
                    .map_or(0, |t| t.seconds);
                if now - renewed > FORGET_AFTER.as_secs() as i64 {
                    let forget = DeleteRequest {
                        namespace: LEASE_NAMESPACE.into(),
                        name: l.name().to_string(),
                        ..Default::default()
                    };
                    let _ = leases.delete(&Identity::Admin, &forget).await;
                }
            }
            None => {}
        }
    }
    // This server is live whatever the store answered about its lease.
    if let Some(addr) = published
        && !live.contains(&addr)
    {
        live.push(addr);
    }
    Ok(live)
}

async fn reconcile(
    store: &dyn Store,
    services: &Registry<Service>,
    endpoints: &Registry<Endpoints>,
    leases: &Registry<Lease>,
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
    let mine = published(listen);
    if mine.is_none() && current.is_none() {
        tracing::info!(
            %listen,
            "the API listens on no address pods reach: this server is not among default/kubernetes' endpoints (listen on a node address for clients in pods)"
        );
    }
    let live = live_servers(leases, mine).await?;
    let subsets = subsets_of(&live);
    match current {
        Some(mut e) => {
            if e.subsets != subsets {
                e.subsets = subsets;
                endpoints.update(&Identity::Admin, e).await?;
                tracing::info!(servers = ?live, "default/kubernetes endpoints: the servers with live leases");
            }
        }
        None => {
            let e = Endpoints {
                metadata: Some(ObjectMeta {
                    namespace: namespace.into(),
                    name: name.into(),
                    ..Default::default()
                }),
                subsets,
            };
            match endpoints.create(&Identity::Admin, e).await {
                Ok(created) => {
                    tracing::info!(servers = ?live, endpoints = %created.name(), "default/kubernetes endpoints created");
                }
                // Another server made it first: the next round writes it.
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
    fn the_endpoints_are_the_servers_with_live_leases() {
        let a: SocketAddr = "10.0.0.5:7443".parse().unwrap();
        let b: SocketAddr = "10.0.0.6:7443".parse().unwrap();
        let c: SocketAddr = "10.0.0.7:6443".parse().unwrap();
        let subsets = subsets_of(&[b, a, c, a]);
        assert_eq!(subsets.len(), 2, "{subsets:?}");
        assert_eq!(subsets[0].ports[0].port, 6443);
        assert_eq!(subsets[0].addresses[0].ip, "10.0.0.7");
        assert_eq!(subsets[1].ports[0].port, 7443);
        let ips: Vec<_> = subsets[1].addresses.iter().map(|a| a.ip.as_str()).collect();
        assert_eq!(ips, ["10.0.0.5", "10.0.0.6"]);
        assert!(subsets_of(&[]).is_empty());

        // A lease renewed within its duration is live; past it, not.
        let now = 1_000_000;
        let l = lease(a, now);
        assert_eq!(holder(&l, now), Some((a, true)));
        assert_eq!(holder(&l, now + i64::from(LEASE_SECONDS)), Some((a, true)));
        assert_eq!(
            holder(&l, now + i64::from(LEASE_SECONDS) + 1),
            Some((a, false))
        );
        assert_eq!(holder(&Lease::default(), now), None);
        // Named by IP: the same server on another port has the same lease.
        assert_eq!(lease_name(a), "apiserver-endpoint-10-0-0-5");
        assert_eq!(lease_name("10.0.0.5:8443".parse().unwrap()), lease_name(a));
        assert_eq!(
            lease_name("[fd00::1]:7443".parse().unwrap()),
            "apiserver-endpoint-fd00--1"
        );
    }

    #[test]
    fn loopback_and_unspecified_addresses_are_never_published() {
        let a: SocketAddr = "10.0.0.5:7443".parse().unwrap();
        assert!(published("127.0.0.1:7443".parse().unwrap()).is_none());
        assert!(published("0.0.0.0:7443".parse().unwrap()).is_none());
        assert_eq!(published(a), Some(a));
    }
}
