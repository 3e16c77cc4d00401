//! skiff-node-agent: the kubelet of skiff.
//!
//! Owns joining with a bootstrap token ([`join`]) for a node client certificate, renewed before it
//! expires ([`credentials`]), registering the Node and heartbeating ([`node`]),
//! the level-triggered pod sync over a watch of the pods bound to this node, one worker per pod
//! ([`pods`]), volumes, secrets and config maps as files and env, container restarts with
//! back-off, pod status, serving logs through the API server's node tunnel ([`tunnel`]), and the pod network
//! (a node bridge, one veth and address per OCI pod, routes to other nodes' pods: [`network`]).
//! Every Service and Endpoints of the cluster are kept in one [`catalog`] for what carries traffic;
//! each node serves cluster DNS to its pods ([`dns`]) and carries Services' cluster IPs and
//! NodePorts to their endpoints by kernel NAT ([`proxy`]).
//!
//! Containers run in `containerd-shim-skiff-v1` processes the agent launches and drives through
//! containerd's task API ([`containers`] over [`shim`]): the node's Wasm pods share one shim,
//! each pod with a Linux container has its own. Shims outlive the agent, so `kill -9` of the
//! agent leaves pods running and a restarted agent adopts them (DESIGN §5).
//!
//! Must not: write objects other than its Node, its pods' status and Events; schedule pods.

pub mod catalog;
pub mod containers;
pub mod credentials;
pub mod dns;
pub mod events;
pub mod host_usage;
pub mod images;
pub mod ingress;
pub mod join;
pub mod keyvalue;
pub mod metrics;
pub mod network;
pub mod node;
pub mod pods;
pub mod prometheus;
pub mod proxy;
pub mod shim;
pub mod teardown;
pub mod tunnel;
pub mod wake;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;

/// Why the agent stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Bad flags or token: exit code 2.
    #[error("{0}")]
    Usage(String),
    #[error("joining the cluster: {0}")]
    Join(String),
    #[error("API: {0}")]
    Api(#[from] tonic::Status),
    #[error("client: {0}")]
    Client(#[from] skiff_api::client::ClientError),
    #[error("container runtime: {0}")]
    Host(String),
    #[error("pod network: {0}")]
    Network(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Everything `skiff agent` (and `skiff up`) configures.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `--server`: one or more API server addresses, comma-separated.
    pub servers: String,
    /// The bootstrap (join) token, read from `--token-file` or `$SKIFF_TOKEN`; needed only
    /// while the node has no good certificate in `DATA_DIR/pki`.
    pub token: String,
    /// `--name`: the Node's name (default: the host name).
    pub name: Option<String>,
    /// `--data-dir`: pods' volumes and logs, image layers, the shims' records.
    pub data_dir: PathBuf,
    /// `--node-ip`: the address reported for the node (and bound by anything it serves).
    pub node_ip: Option<IpAddr>,
    /// `--labels`: extra node labels.
    pub labels: BTreeMap<String, String>,
    /// `--taints`: taints the Node registers with.
    pub taints: Vec<skiff_api::v1::Taint>,
    /// The most pods this node runs (its `pods` capacity).
    pub max_pods: u32,
    /// `containerd-shim-skiff-v1`, which runs every container ([`containers::find_shim_binary`]).
    pub shim_binary: PathBuf,
    /// Stop every pod (and their shims) when the agent exits: `skiff up`'s behaviour.
    /// `skiff agent` leaves pods running, as kubelet does.
    pub stop_pods_on_exit: bool,
    /// How often the Ready heartbeat is renewed ([`node::HEARTBEAT_PERIOD`] by default).
    pub heartbeat: std::time::Duration,
    /// `--pod-pids-limit`: the most processes an OCI container may hold (its cgroup's
    /// `pids.max`), as kubelet's `podPidsLimit`.
    pub pod_pids_limit: i64,
    /// `--wasm-default-memory-limit`: the linear-memory cap of a Wasm container whose pod sets
    /// no memory limit (a LimitRange's default, applied at admission, comes first).
    pub wasm_default_memory_limit: u64,
    /// `--resolv-conf`: the node's resolver file (kubelet's flag): the upstream servers of the
    /// node's DNS server, and pods' settings under `dnsPolicy: Default`.
    pub resolv_conf: PathBuf,
    /// `--ingress-addr`: where the ingress router listens ([`ingress::IngressAddr`]).
    pub ingress_addr: ingress::IngressAddr,
    /// `--registry-config`: a Docker config file with the node's own registry credentials,
    /// used for pulls after the pod's image pull secrets.
    pub registry_config: Option<PathBuf>,
}

/// [`AgentOptions::resolv_conf`] unless set.
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";

/// [`AgentOptions::pod_pids_limit`] unless set.
pub const DEFAULT_POD_PIDS_LIMIT: i64 = 4096;

/// [`AgentOptions::wasm_default_memory_limit`] unless set: 128 MiB. Without it every such
/// guest could take the engine's 1 GiB ceiling, all of them in one shared process.
pub const DEFAULT_WASM_MEMORY_LIMIT: u64 = 128 << 20;

/// How long a starting agent waits for its node's podCIDR before running pods.
const POD_CIDR_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Joins, registers, and runs the node until `shutdown` completes.
pub async fn run(
    options: AgentOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AgentError> {
    let info = node::NodeInfo::detect(&options)?;
    let credentials::Established {
        transport,
        config,
        renewal,
    } = credentials::establish(
        &options.servers,
        &options.token,
        &options.data_dir,
        &info.name,
    )
    .await?;
    let renewal = tokio::spawn(renewal.run(transport.clone()));
    let node_name = info.name.clone();
    node::register(&transport, &info).await?;
    tracing::info!(node = %node_name, "registered");

    let runtime = containers::Containers::open(&options).await?;
    let heartbeat = tokio::spawn(node::heartbeat(
        transport.clone(),
        info.clone(),
        runtime.clone(),
        options.heartbeat,
    ));
    let network = network::PodNetwork::open(&options.data_dir, &node_name, node::runs_containers())
        .await
        .map_err(|e| AgentError::Network(e.to_string()))?;
    let routes = tokio::spawn(network::routes::run(
        transport.clone(),
        network.clone(),
        node_name.clone(),
    ));
    // The control plane gives the node its podCIDR right after registration: pods started
    // before it is known would get no address.
    if network.enabled() && network.wait_block(POD_CIDR_WAIT).await.is_none() {
        tracing::warn!(
            "the node has no podCIDR after {POD_CIDR_WAIT:?}: OCI pods get loopback only until it does"
        );
    }
    // Services and Endpoints, for the proxy, DNS, ingress and containers' service env vars.
    let catalog = catalog::Catalog::start(transport.clone());
    // The node proxy: Services' cluster IPs and NodePorts, kernel NAT kept in step with the catalog.
    let proxy = proxy::Proxy::new(&node_name, info.ip, &options.data_dir);
    // The ingress router: Ingresses of skiff's class, to the catalog's endpoints.
    let ingress = ingress::start(
        &options.ingress_addr,
        info.ip,
        transport.clone(),
        catalog.clone(),
        Some(proxy.clone()),
    )
    .await
    .map_err(|e| AgentError::Network(e.to_string()))?;
    let proxy_task = tokio::spawn(proxy.clone().run(
        transport.clone(),
        catalog.clone(),
        network.clone(),
    ));
    // Scale from zero: the holder behind the proxy's holds.
    let holder = tokio::spawn(wake::run(
        transport.clone(),
        node_name.clone(),
        proxy.clone(),
        catalog.clone(),
        network.clone(),
        runtime.starts(),
    ));
    let (cluster_dns, pod_dns) = start_dns(&options, &transport, &network, &catalog).await?;
    let manager = pods::Manager::new(
        transport.clone(),
        runtime.clone(),
        network.clone(),
        &options,
        &info,
        catalog.clone(),
        pod_dns,
    );
    let served = tunnel::Served {
        logs: manager.logs(),
        runtime: runtime.clone(),
    };
    let certificates = credentials::Files::new(&options.data_dir);
    let tunnel = tokio::spawn(tunnel::run_to_each(
        config.clone(),
        transport.clone(),
        node_name,
        served,
        move || certificates.load().map(|(_, held)| held.identity),
    ));
    let sync = tokio::spawn(manager.run());
    let metrics = tokio::spawn(metrics::run(
        transport.clone(),
        info.name.clone(),
        runtime.clone(),
    ));

    shutdown.await;
    heartbeat.abort();
    renewal.abort();
    routes.abort();
    proxy_task.abort();
    holder.abort();
    tunnel.abort();
    sync.abort();
    metrics.abort();
    cluster_dns.abort();
    drop(ingress);
    drop(catalog);
    if options.stop_pods_on_exit {
        teardown::tear_down(&runtime, &network, &options.data_dir).await;
    }
    Ok(())
}

/// The node's DNS server ([`dns`]), serving once the node has its bridge, and what pods'
/// resolver files are made from.
async fn start_dns(
    options: &AgentOptions,
    transport: &skiff_api::client::Transport,
    network: &network::PodNetwork,
    catalog: &std::sync::Arc<catalog::Catalog>,
) -> Result<(tokio::task::JoinHandle<()>, dns::resolv_conf::NodeDns), AgentError> {
    let (upstream, host) = dns::read_resolv_conf(&options.resolv_conf)
        .map_err(|e| AgentError::Usage(e.to_string()))?;
    let domain = dns::cluster_domain(transport)
        .await
        .map_err(|e| AgentError::Join(e.to_string()))?;
    let zone = dns::records::Zone::new(&domain)
        .ok_or_else(|| AgentError::Join(dns::DnsError::Domain(domain.clone()).to_string()))?;
    let task = tokio::spawn(dns::run(
        network.clone(),
        zone,
        catalog.clone(),
        dns::upstream::Upstream::new(&upstream),
    ));
    let pod_dns = dns::resolv_conf::NodeDns {
        domain,
        server: None,
        host,
    };
    Ok((task, pod_dns))
}
