//! Cluster DNS on every node (CoreDNS' kubernetes plugin and NodeLocal DNSCache in one): a DNS
//! server in the agent, built on hickory's server and resolver crates.
//!
//! - It answers the cluster zone (`--cluster-domain`, learnt from the server:
//!   [`skiff_api::cluster_dns`]) from the node's [`Catalog`] of Services and Endpoints
//!   ([`records`]): `NAME.NS.svc.D`, SRV for named ports, headless Services' endpoints.
//! - It forwards every other name to the node's upstream resolvers, the nameservers of the
//!   agent's `--resolv-conf` (default `/etc/resolv.conf`, as kubelet's flag), caching answers
//!   ([`upstream`]).
//! - Where it listens: the node bridge's address (the pods' gateway, the first address of the
//!   node's podCIDR), port 53, UDP and TCP. Every pod namespace of the node reaches it over its
//!   default route without any NAT rule, and it is reachable from nowhere else; it is the
//!   `nameserver` of pods' `/etc/resolv.conf` under `dnsPolicy: ClusterFirst`
//!   ([`resolv_conf`]). Kubernetes puts a Service address there (kube-dns) or a link-local one
//!   (NodeLocal DNSCache); skiff needs neither, since every node serves its own pods. The
//!   catch is the same as NodeLocal DNSCache's: while the agent is down (a restart), pods of
//!   that node cannot resolve names.
//!
//! Must not: write anything to the API; answer on any address but the bridge's; read any
//! resolver file but `--resolv-conf`.

pub mod records;
pub mod resolv_conf;
pub mod server;
pub mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::network::{PodNetwork, bridge};

/// The port pods ask (resolv.conf has no other).
pub const PORT: u16 = 53;
/// How often the server checks that it listens on the current bridge address (a node gets its
/// podCIDR after it registers, and a new one if its Node is made again).
const RECHECK: Duration = Duration::from_secs(1);
/// How long the server waits for the catalog's first list before it serves.
const SYNC_WAIT: Duration = Duration::from_secs(10);

/// What went wrong serving DNS.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("--resolv-conf {path}: {source}")]
    ResolvConf {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cluster domain {0:?} is not a DNS name")]
    Domain(String),
    #[error("reading the cluster's DNS settings: {0}")]
    Config(String),
}

/// The address pods of this node ask: the bridge's, once the node has a podCIDR.
pub fn node_server(network: &PodNetwork) -> Option<IpAddr> {
    if !network.has_addresses() {
        return None;
    }
    network.block().and_then(bridge::gateway).map(IpAddr::V4)
}

/// Serves the node's DNS on its bridge address, from when the node has a podCIDR; moves with the
/// bridge. Runs until aborted (dropping the server closes its sockets).
pub async fn run(
    network: PodNetwork,
    zone: records::Zone,
    catalog: Arc<Catalog>,
    upstream: upstream::Upstream,
) {
    // Serving before the first list would answer NXDOMAIN for Services that exist (and clients
    // cache that): wait for it, but not forever (other names must resolve all the same).
    if tokio::time::timeout(SYNC_WAIT, catalog.synced())
        .await
        .is_err()
    {
        tracing::warn!("cluster DNS: no list of Services after {SYNC_WAIT:?}: serving anyway");
    }
    let mut serving: Option<(IpAddr, hickory_server::ServerFuture<server::Handler>)> = None;
    let mut warned = false;
    loop {
        let want = node_server(&network);
        if want != serving.as_ref().map(|(ip, _)| *ip) {
            serving = None;
            if let Some(ip) = want {
                let handler = server::Handler {
                    zone: zone.clone(),
                    catalog: catalog.clone(),
                    upstream: upstream.clone(),
                };
                match server::bind(SocketAddr::new(ip, PORT), handler).await {
                    Ok((server, addr)) => {
                        tracing::info!(%addr, domain = %zone.origin(), "cluster DNS serving");
                        serving = Some((ip, server));
                        warned = false;
                    }
                    // The bridge may not hold its address yet: tried again.
                    Err(e) if !warned => {
                        tracing::warn!(error = %e, "cluster DNS: retrying");
                        warned = true;
                    }
                    Err(_) => {}
                }
            }
        }
        tokio::time::sleep(RECHECK).await;
    }
}

/// The upstream servers of the node's resolver file `path` (its nameservers, port 53), and
/// the file's settings (for pods with `dnsPolicy: Default`). A missing file is no upstream, as
/// kubelet treats it.
pub fn read_resolv_conf(
    path: &std::path::Path,
) -> Result<(Vec<SocketAddr>, resolv_conf::ResolvConf), DnsError> {
    let conf = match resolv_conf::ResolvConf::read(path) {
        Ok(conf) => conf,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), "--resolv-conf: no such file: no upstream DNS");
            resolv_conf::ResolvConf::default()
        }
        Err(source) => {
            return Err(DnsError::ResolvConf {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let servers = conf
        .nameservers
        .iter()
        .map(|ip| SocketAddr::new(*ip, PORT))
        .collect();
    Ok((servers, conf))
}

/// The cluster domain the server publishes ([`skiff_api::cluster_dns`]); the default when the
/// server publishes none (an older server).
pub async fn cluster_domain(transport: &skiff_api::client::Transport) -> Result<String, DnsError> {
    use skiff_api::cluster_dns::{
        CLUSTER_DOMAIN_KEY, CONFIG_NAME, CONFIG_NAMESPACE, DEFAULT_CLUSTER_DOMAIN,
        check_cluster_domain,
    };
    let api: skiff_api::client::Api<skiff_api::v1::ConfigMap> =
        skiff_api::client::Api::new(transport.clone(), CONFIG_NAMESPACE);
    let found = api
        .get_opt(CONFIG_NAME)
        .await
        .map_err(|status| DnsError::Config(status.message().to_string()))?;
    let Some(domain) = found.and_then(|c| c.data.get(CLUSTER_DOMAIN_KEY).cloned()) else {
        tracing::warn!(
            "the server publishes no cluster domain ({CONFIG_NAMESPACE}/{CONFIG_NAME}): using {DEFAULT_CLUSTER_DOMAIN}"
        );
        return Ok(DEFAULT_CLUSTER_DOMAIN.to_string());
    };
    check_cluster_domain(&domain).map_err(|e| {
        DnsError::Config(format!(
            "{CONFIG_NAMESPACE}/{CONFIG_NAME} {CLUSTER_DOMAIN_KEY}: {e}"
        ))
    })?;
    Ok(domain)
}

#[cfg(test)]
mod tests;
