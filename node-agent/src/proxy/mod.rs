//! The node proxy (kube-proxy's job): traffic to a Service's cluster IP and port, and to a
//! NodePort on the node's address, reaches one of the Service's ready endpoints, TCP and UDP,
//! whether it comes from a pod, from the node itself or from outside.
//!
//! Mechanism: kernel NAT with nftables, as kube-proxy's nftables mode, not a userspace proxy: a
//! connection costs the kernel one conntrack lookup per packet and the proxy nothing, and no
//! byte is copied through the agent (`bench/run service` measures a ClusterIP against the pod
//! address directly). The rules live in one table of skiff's own, `ip skiff_<hash of node and
//! service CIDR>`, in the agent's network namespace (several agents may share one on a test
//! host, each with its table). How the rules look: [`render`].
//!
//! Sync: rendered from the catalog ([`snapshot`] → [`render`], both pure) and applied as one
//! `nft -f -` transaction ([`nft`]) on every change of a Service or Endpoints (a change after a
//! quiet spell goes out at once; a burst is coalesced into one sync per [`MIN_SYNC`]) and every
//! [`RESYNC`] in full. The table outlives the agent: a restarted agent replaces it only once its
//! catalog has listed everything, so Services keep answering meanwhile. [`remove`] takes the
//! table and the proxy's routes away with the node's state (`skiff up`'s exit, `skiff agent
//! --reset`); what to remove is recorded in `DATA_DIR/proxy.state`.
//!
//! Unreachable by default: the service CIDR and the cluster CIDR stay on the node ([`routes`]).
//! The agent learns both from the server's ConfigMap `skiff-system/kubelet-config` (keys
//! `serviceCIDR`, `clusterCIDR`, written at every server start from its flags).
//!
//! Scale from zero: [`Proxy::hold`] sends a Service's connections to a local holder while the
//! Service has no ready endpoint (the holder starts a pod and serves or forwards the connection).
//!
//! Must not: accept or copy traffic itself; write to the API; touch tables or routes of others;
//! enable `route_localnet` (NodePorts answer on the node's own address, never on loopback: the
//! CVE-2020-8558 class).

pub mod nft;
pub mod render;
pub mod routes;
pub mod snapshot;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use skiff_api::cidr::Ipv4Cidr;
use skiff_api::client::{Api, Transport};
use skiff_api::v1::ConfigMap;
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::network::{PodNetwork, bridge};
use nft::Host;
use routes::Route;
use snapshot::{ServiceKey, Snapshot};

/// The least time between two syncs (kube-proxy's `minSyncPeriod`): a burst of changes is
/// applied as one, at most this late.
pub const MIN_SYNC: Duration = Duration::from_millis(100);
/// How often the table and routes are rewritten even without a change (repairing hand edits).
pub const RESYNC: Duration = Duration::from_secs(30);
/// How long the proxy waits for the server's ConfigMap before it runs without the ranges.
const CONFIG_WAIT: Duration = Duration::from_secs(10);
/// The ConfigMap keys of the ranges (control-plane's `server::node_config`).
const SERVICE_CIDR_KEY: &str = "serviceCIDR";
const CLUSTER_CIDR_KEY: &str = "clusterCIDR";
/// The file under the data dir naming what [`remove`] removes.
const STATE_FILE: &str = "proxy.state";

/// What went wrong keeping the rules.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    #[error("the {what} {cidr} would hide the host's {host}: not keeping it on the node")]
    Covers {
        what: String,
        cidr: Ipv4Cidr,
        host: String,
    },
    #[error(
        "{0}: a holder must listen on a non-loopback address of the node (pods reach no loopback address of the node)"
    )]
    LoopbackHolder(SocketAddrV4),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("proxy task: {0}")]
    Task(String),
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProxyError> + Send + 'static,
) -> Result<T, ProxyError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProxyError::Task(e.to_string()))?
}

/// The ranges the server was started with, as published for the agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ranges {
    pub service_cidr: Option<Ipv4Cidr>,
    pub cluster_cidr: Option<Ipv4Cidr>,
}

impl Ranges {
    /// Reads them from the ConfigMap's data (a missing or bad key is `None`, logged).
    pub fn from_config(data: &BTreeMap<String, String>) -> Self {
        let read = |key: &str| {
            let text = data.get(key)?;
            text.parse()
                .map_err(|e| tracing::warn!(%key, error = %e, "the server's ConfigMap"))
                .ok()
        };
        Self {
            service_cidr: read(SERVICE_CIDR_KEY),
            cluster_cidr: read(CLUSTER_CIDR_KEY),
        }
    }

    /// Waits (at most [`CONFIG_WAIT`]) for the server's ConfigMap.
    pub async fn fetch(transport: &Transport) -> Self {
        use skiff_api::cluster_dns::{CONFIG_NAME, CONFIG_NAMESPACE};
        let api: Api<ConfigMap> = Api::new(transport.clone(), CONFIG_NAMESPACE);
        let deadline = tokio::time::Instant::now() + CONFIG_WAIT;
        loop {
            match api.get_opt(CONFIG_NAME).await {
                Ok(Some(config)) => return Self::from_config(&config.data),
                Ok(None) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(
                        "no ConfigMap {CONFIG_NAMESPACE}/{CONFIG_NAME}: the proxy keeps no route for the service and cluster CIDRs"
                    );
                    return Self::default();
                }
                Ok(None) => {}
                Err(status) => {
                    tracing::warn!(%status, "reading {CONFIG_NAMESPACE}/{CONFIG_NAME}")
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The name of the proxy's table on node `node` of a cluster with `service_cidr`.
pub fn table_name(node: &str, service_cidr: Option<Ipv4Cidr>) -> String {
    let key = format!(
        "{node}/{}",
        service_cidr.map(|c| c.to_string()).unwrap_or_default()
    );
    format!("skiff_{:08x}", render::fnv(&key) & 0xffff_ffff)
}

/// What the proxy made, as recorded in the state file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct State {
    table: Option<String>,
    routes: Vec<Route>,
}

impl State {
    fn parse(text: &str) -> Self {
        let mut state = Self::default();
        for line in text.lines() {
            if let Some(table) = line.strip_prefix("table ") {
                state.table = Some(table.trim().to_string());
            } else if let Some(route) = line.strip_prefix("route ").and_then(Route::parse) {
                state.routes.push(route);
            }
        }
        state
    }

    fn render(&self) -> String {
        let mut text = String::new();
        if let Some(table) = &self.table {
            text.push_str(&format!("table {table}\n"));
        }
        for route in &self.routes {
            text.push_str(&format!("route {route}\n"));
        }
        text
    }

    fn read(path: &Path) -> Result<Self, ProxyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ProxyError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Written whole then renamed: a crash leaves the old or the new record.
    fn write(&self, path: &Path) -> Result<(), ProxyError> {
        let io = |source| ProxyError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.render()).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// Removes what the proxy of the node whose data dir is `data_dir` made: its table and its
/// routes (in the calling process's network namespace). Nothing recorded: nothing to do.
pub async fn remove(data_dir: &Path) -> Result<(), ProxyError> {
    let path = data_dir.join(STATE_FILE);
    blocking(move || remove_in(&Host::here(), &path)).await
}

fn remove_in(host: &Host, path: &Path) -> Result<(), ProxyError> {
    let state = State::read(path)?;
    if let Some(table) = &state.table {
        host.delete_table(table)?;
        tracing::info!(%table, "removed the proxy's table");
    }
    for route in &state.routes {
        routes::delete(host, route);
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ProxyError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// What the last sync applied.
struct Applied {
    ruleset: render::Ruleset,
    routes: Vec<Route>,
    /// The Service ports it was rendered from (for the UDP flows of endpoints that go).
    ports: Vec<snapshot::ServicePort>,
}

/// The node proxy; shared (an `Arc`) by the agent and whoever holds Services.
pub struct Proxy {
    node: String,
    /// NodePorts answer here (none when the node's address is loopback).
    node_ip: Option<Ipv4Addr>,
    state_path: PathBuf,
    holds: DashMap<ServiceKey, SocketAddrV4>,
    /// Bumped when a hold changes: the next sync picks it up.
    kick: watch::Sender<u64>,
}

impl Proxy {
    /// The proxy of node `node` with address `node_ip`, recording its state under `data_dir`.
    pub fn new(node: &str, node_ip: IpAddr, data_dir: &Path) -> Arc<Self> {
        let node_ip = match node_ip {
            IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
            _ => None,
        };
        Arc::new(Self {
            node: node.to_string(),
            node_ip,
            state_path: data_dir.join(STATE_FILE),
            holds: DashMap::new(),
            kick: watch::channel(0).0,
        })
    }

    /// While Service `namespace/name` has no ready endpoint, its connections (every port) go to
    /// `holder`, an address of this node other than loopback (the node bridge's gateway
    /// address is reachable from every pod and the node). Replaces an earlier holder.
    pub fn hold(
        &self,
        namespace: &str,
        name: &str,
        holder: SocketAddrV4,
    ) -> Result<(), ProxyError> {
        if holder.ip().is_loopback() || holder.ip().is_unspecified() {
            return Err(ProxyError::LoopbackHolder(holder));
        }
        self.holds
            .insert((namespace.to_string(), name.to_string()), holder);
        self.kick.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// Whether Service `namespace/name` is held (its connections wait for a pod while it has no
    /// ready endpoint): the ingress router sends such a Service's requests to its cluster IP.
    pub fn is_held(&self, namespace: &str, name: &str) -> bool {
        self.holds
            .contains_key(&(namespace.to_string(), name.to_string()))
    }

    /// Ends [`Self::hold`] of `namespace/name`: without endpoints it is refused again.
    pub fn release(&self, namespace: &str, name: &str) {
        if self
            .holds
            .remove(&(namespace.to_string(), name.to_string()))
            .is_some()
        {
            self.kick.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// What one sync renders, from the catalog and what the node knows.
    fn snapshot(&self, catalog: &Catalog, network: &PodNetwork, ranges: Ranges) -> Snapshot {
        let holds: BTreeMap<ServiceKey, SocketAddrV4> = self
            .holds
            .iter()
            .map(|e| (e.key().clone(), *e.value()))
            .collect();
        Snapshot {
            ports: snapshot::service_ports(
                &catalog.services(),
                |ns, name| catalog.endpoints(ns, name),
                &holds,
            ),
            node_ips: self.node_ip.into_iter().collect(),
            local_block: network.block(),
            cluster_cidr: ranges.cluster_cidr,
            service_cidr: ranges.service_cidr,
        }
    }

    /// The routes the ranges ask for (before the check against the host's own).
    fn wanted_routes(&self, ranges: Ranges, network: &PodNetwork) -> Vec<Route> {
        let mut wanted = Vec::new();
        if let Some(cidr) = ranges.cluster_cidr {
            wanted.push(Route::Unreachable(cidr));
        }
        if let (Some(cidr), Some(block)) = (ranges.service_cidr, network.block()) {
            wanted.push(Route::Dev(cidr, bridge::name(&self.node, block)));
        }
        wanted
    }

    /// Runs until aborted: learns the ranges, waits for the catalog, then keeps the table and
    /// routes in step with it. Does nothing when the agent may not change the network.
    pub async fn run(
        self: Arc<Self>,
        transport: Transport,
        catalog: Arc<Catalog>,
        network: PodNetwork,
    ) {
        if !network.enabled() {
            return;
        }
        let ranges = Ranges::fetch(&transport).await;
        let table = table_name(&self.node, ranges.service_cidr);
        let comment = format!(
            "skiff node proxy of {}: Services of {}",
            self.node,
            ranges
                .service_cidr
                .map(|c| c.to_string())
                .unwrap_or_else(|| "an unknown service CIDR".into())
        );
        catalog.synced().await;
        let mut changes = catalog.subscribe();
        let mut kicks = self.kick.subscribe();
        let mut last: Option<Applied> = None;
        let mut last_full = tokio::time::Instant::now();
        loop {
            let full = last.is_none() || last_full.elapsed() >= RESYNC;
            let started = tokio::time::Instant::now();
            match self
                .sync(
                    &catalog,
                    &network,
                    ranges,
                    &table,
                    &comment,
                    last.as_ref(),
                    full,
                )
                .await
            {
                Ok(done) => {
                    if full {
                        last_full = started;
                    }
                    last = Some(done);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "node proxy sync; retrying");
                    last = None;
                }
            }
            let retry = if last.is_none() {
                Duration::from_secs(1)
            } else {
                RESYNC
            };
            tokio::select! {
                _ = changes.changed() => {}
                _ = kicks.changed() => {}
                _ = tokio::time::sleep(retry) => {}
            }
            // Coalesce a burst: at most one sync per MIN_SYNC.
            tokio::time::sleep_until(started + MIN_SYNC).await;
            changes.mark_unchanged();
            kicks.mark_unchanged();
        }
    }

    /// One sync: writes the table (and the routes) when they differ from `last` or on a `full`
    /// pass; what was applied.
    #[allow(clippy::too_many_arguments)]
    async fn sync(
        &self,
        catalog: &Catalog,
        network: &PodNetwork,
        ranges: Ranges,
        table: &str,
        comment: &str,
        last: Option<&Applied>,
        full: bool,
    ) -> Result<Applied, ProxyError> {
        let snapshot = self.snapshot(catalog, network, ranges);
        let wanted = render::render(&snapshot, comment);
        let routes = self.wanted_routes(ranges, network);
        if !full && last.is_some_and(|l| l.ruleset == wanted && l.routes == routes) {
            return Ok(Applied {
                ruleset: wanted,
                routes,
                ports: snapshot.ports,
            });
        }
        let stale = last
            .map(|l| snapshot::stale_udp_flows(&l.ports, &snapshot.ports))
            .unwrap_or_default();
        let (state_path, table, ruleset, wanted_routes) = (
            self.state_path.clone(),
            table.to_string(),
            wanted.clone(),
            routes.clone(),
        );
        blocking(move || {
            let host = Host::here();
            // Never over one of the host's own routes or resolvers: refused, said each sync.
            let networks = routes::host_networks(&host)?;
            let wanted_routes: Vec<Route> = wanted_routes
                .into_iter()
                .filter(|r| {
                    let what = match r {
                        Route::Unreachable(_) => "cluster CIDR",
                        Route::Dev(..) => "service CIDR",
                    };
                    routes::check(r.cidr(), what, &networks)
                        .map_err(
                            |e| tracing::error!(error = %e, "not keeping the {what} on the node"),
                        )
                        .is_ok()
                })
                .collect();
            let before = State::read(&state_path)?;
            // Recorded first: a crash between here and the end leaves nothing unrecorded.
            let mut record = State {
                table: Some(table.clone()),
                routes: wanted_routes.clone(),
            };
            for r in &before.routes {
                if !record.routes.contains(r) {
                    record.routes.push(r.clone());
                }
            }
            record.write(&state_path)?;
            if let Some(old) = before.table.as_ref().filter(|t| **t != table) {
                host.delete_table(old)?;
            }
            host.apply(&table, &ruleset)?;
            // After the rules: a flow deleted now comes back through them, to a live endpoint.
            for flow in &stale {
                host.delete_udp_flow(flow);
            }
            routes::sync(&host, &wanted_routes, &before.routes)?;
            State {
                table: Some(table),
                routes: wanted_routes,
            }
            .write(&state_path)
        })
        .await?;
        tracing::debug!(ports = snapshot.ports.len(), "node proxy rules applied");
        Ok(Applied {
            ruleset: wanted,
            routes,
            ports: snapshot.ports,
        })
    }
}

#[cfg(test)]
mod tests;
