//! `skiff server` and `skiff up`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use skiff_api::cidr::Ipv4Cidr;
use skiff_control_plane::controllers::hpa::HpaOptions;
use skiff_control_plane::controllers::node_ipam::NodeIpamOptions;
use skiff_control_plane::controllers::node_lifecycle::LifecycleOptions;
use skiff_control_plane::leader::HaOptions;
use skiff_control_plane::registry::allocator::{HostNetworks, PortRange, ServiceRanges};
use skiff_control_plane::server::limits::{LimitOptions, SecurityOptions};
use skiff_control_plane::server::{ControlPlane, ServerOptions};
use skiff_control_plane::store::cache::CacheOptions;
use skiff_control_plane::store::etcd::{EtcdOptions, EtcdTls};

use crate::error::{CliError, Result};

#[derive(Args)]
pub struct ServerArgs {
    /// Where the store, the PKI, config.yaml and join-token live
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Address of the API (`:0` picks a free port)
    #[arg(long, default_value = "127.0.0.1:7443", value_name = "ADDR")]
    listen: String,
    /// etcd endpoints for a highly available control plane
    #[arg(long, value_name = "URL,...")]
    etcd: Option<String>,
    #[command(flatten)]
    etcd_args: EtcdArgs,
    #[command(flatten)]
    telemetry: super::telemetry::TelemetryArgs,
    /// Serve Prometheus metrics at http://ADDR/metrics, plain HTTP (IP:PORT; off by default)
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// Also serve the API and the web dashboard (/dashboard/) on this address, with the same TLS certificate
    #[arg(long, value_name = "ADDR")]
    dashboard_addr: Option<String>,
    /// A node whose heartbeat is older than this becomes NotReady
    #[arg(long, default_value = "40s", value_name = "DURATION", value_parser = crate::duration::parse)]
    node_grace_period: Duration,
    /// Pods of a NotReady node are evicted (and replaced elsewhere) after this
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = crate::duration::parse)]
    pod_eviction_timeout: Duration,
    /// Pod addresses of the whole cluster: each node gets one block of it (its podCIDR)
    #[arg(long, default_value = "10.244.0.0/16", value_name = "CIDR")]
    cluster_cidr: Ipv4Cidr,
    /// Prefix length of each node's block of --cluster-cidr
    #[arg(long, default_value_t = 24, value_name = "BITS")]
    node_cidr_mask_size: u8,
    /// Cluster IPs of Services: a block no pod, route or resolver of this host uses
    #[arg(long, default_value = "10.96.0.0/12", value_name = "CIDR")]
    service_cidr: String,
    /// Ports of NodePort (and LoadBalancer) Services on every node
    #[arg(long, default_value = "30000-32767", value_name = "FIRST-LAST")]
    service_node_port_range: String,
    /// The cluster's DNS domain: Services are NAME.NS.svc.DOMAIN (agents learn it from the server)
    #[arg(long, default_value = skiff_api::cluster_dns::DEFAULT_CLUSTER_DOMAIN, value_name = "DOMAIN")]
    cluster_domain: String,
    /// How often each HorizontalPodAutoscaler reads its pods' figures and rescales its target
    #[arg(long, default_value = "15s", value_name = "DURATION", value_parser = crate::duration::parse)]
    horizontal_pod_autoscaler_sync_period: Duration,
    #[command(flatten)]
    security: SecurityArgs,
    /// Users by bearer token, one a line: token,user,uid,"group1,group2" (Kubernetes' CSV format)
    #[arg(long, value_name = "FILE")]
    token_auth_file: Option<PathBuf>,
    /// How long the node client certificates this server signs are valid (agents renew at 70 %)
    #[arg(long, default_value = "24h", value_name = "DURATION", value_parser = parse_certificate_lifetime)]
    node_certificate_lifetime: Duration,
}

/// A certificate lifetime: at least 10 s (the agent renews at 70 %), at most a year.
fn parse_certificate_lifetime(text: &str) -> std::result::Result<Duration, String> {
    let d = crate::duration::parse(text)?;
    if d < Duration::from_secs(10) || d > Duration::from_secs(366 * 24 * 3600) {
        return Err(format!("{text}: must be from 10s to 8784h (a year)"));
    }
    Ok(d)
}

#[derive(Args)]
pub struct UpArgs {
    /// Where the cluster keeps its state (default ~/.skiff)
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the API (`:0` picks a free port)
    #[arg(long, default_value = "127.0.0.1:7443", value_name = "ADDR")]
    listen: String,
    /// Apply the examples once the cluster is up: examples/hello, and the Wasm HTTP function of
    /// examples/hello-http behind a Service and the Ingress (a curl command is printed)
    #[arg(long)]
    demo: bool,
    #[command(flatten)]
    telemetry: super::telemetry::TelemetryArgs,
    /// Serve Prometheus metrics at http://ADDR/metrics, plain HTTP (IP:PORT; off by default)
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// Also serve the API and the web dashboard (/dashboard/) on this address, with the same TLS certificate
    #[arg(long, value_name = "ADDR")]
    dashboard_addr: Option<String>,
    /// Pod addresses of the whole cluster: each node gets one block of it (its podCIDR)
    #[arg(long, default_value = "10.244.0.0/16", value_name = "CIDR")]
    cluster_cidr: Ipv4Cidr,
    /// Prefix length of each node's block of --cluster-cidr
    #[arg(long, default_value_t = 24, value_name = "BITS")]
    node_cidr_mask_size: u8,
    /// Cluster IPs of Services: a block no pod, route or resolver of this host uses
    #[arg(long, default_value = "10.96.0.0/12", value_name = "CIDR")]
    service_cidr: String,
    /// Ports of NodePort (and LoadBalancer) Services on every node
    #[arg(long, default_value = "30000-32767", value_name = "FIRST-LAST")]
    service_node_port_range: String,
    /// The cluster's DNS domain: Services are NAME.NS.svc.DOMAIN (agents learn it from the server)
    #[arg(long, default_value = skiff_api::cluster_dns::DEFAULT_CLUSTER_DOMAIN, value_name = "DOMAIN")]
    cluster_domain: String,
    /// The node's resolver file: the upstream servers of the node's cluster DNS, and pods' settings under dnsPolicy Default
    #[arg(long, default_value = skiff_node_agent::DEFAULT_RESOLV_CONF, value_name = "FILE")]
    resolv_conf: PathBuf,
    /// Where the node's ingress router listens: IP (ports 80 and 443; 8080 and 8443 when not root), IP:PORT (HTTP only), IP:PORT,IP:PORT (HTTP, HTTPS), or off. Default: the node address
    #[arg(long, value_name = "ADDR")]
    ingress_addr: Option<String>,
    /// How often each HorizontalPodAutoscaler reads its pods' figures and rescales its target
    #[arg(long, default_value = "15s", value_name = "DURATION", value_parser = crate::duration::parse)]
    horizontal_pod_autoscaler_sync_period: Duration,
}

/// `--cluster-domain` (bad: exit 2, naming the flag).
fn cluster_domain(domain: &str) -> Result<String> {
    skiff_api::cluster_dns::check_cluster_domain(domain)
        .map_err(|e| CliError::usage(format!("error: --cluster-domain {domain:?}: {e}")))?;
    Ok(domain.to_string())
}

/// The node IPAM options of `--cluster-cidr` and `--node-cidr-mask-size` (bad together: exit 2).
fn ipam_options(cluster_cidr: Ipv4Cidr, mask: u8) -> Result<NodeIpamOptions> {
    NodeIpamOptions::new(cluster_cidr, mask).map_err(|e| {
        CliError::usage(format!(
            "error: --node-cidr-mask-size {mask} (with --cluster-cidr {cluster_cidr}): {e}"
        ))
    })
}

/// The ranges of `--service-cidr` and `--service-node-port-range` (bad, or overlapping the
/// cluster CIDR, this host's routes or its resolvers: exit 2, naming the flag).
fn service_ranges(cidr: &str, ports: &str, cluster_cidr: Ipv4Cidr) -> Result<ServiceRanges> {
    let refuse = |flag: &str, value: &str, e: &dyn std::fmt::Display| {
        CliError::usage(format!("error: {flag} {value}: {e}"))
    };
    let parsed: Ipv4Cidr = cidr
        .parse()
        .map_err(|e| refuse("--service-cidr", cidr, &e))?;
    let range: PortRange = ports
        .parse()
        .map_err(|e| refuse("--service-node-port-range", ports, &e))?;
    let ranges =
        ServiceRanges::new(parsed, range).map_err(|e| refuse("--service-cidr", cidr, &e))?;
    ranges
        .check_placement(cluster_cidr, &HostNetworks::of_this_host())
        .map_err(|e| refuse("--service-cidr", cidr, &e))?;
    Ok(ranges)
}

pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

/// `--dashboard-addr` (`:PORT` is on loopback); not an address: exit 2, naming the flag.
fn dashboard_addr(addr: Option<&str>) -> Result<Option<String>> {
    let Some(addr) = addr else { return Ok(None) };
    let full = if addr.starts_with(':') {
        format!("127.0.0.1{addr}")
    } else {
        addr.to_string()
    };
    full.parse::<std::net::SocketAddr>().map_err(|e| {
        CliError::usage(format!(
            "error: --dashboard-addr {addr:?}: {e} (want IP:PORT or :PORT)"
        ))
    })?;
    Ok(Some(full))
}

/// Opens the dashboard's own address on `cp` when asked; prints where the page is.
async fn open_dashboard(cp: &mut ControlPlane, addr: Option<String>) -> Result<()> {
    let page = match addr {
        Some(addr) => {
            let bound = cp
                .listen_dashboard(&addr)
                .await
                .map_err(|e| CliError::failed(format!("error: --dashboard-addr {addr}: {e}")))?;
            format!("https://{bound}/dashboard/")
        }
        None => format!("{}/dashboard/", cp.client_config.server),
    };
    tracing::info!(%page, "web dashboard");
    eprintln!("skiff: web dashboard at {page} (log in with a bearer token)");
    Ok(())
}

/// Starts the control plane of `options`, once its flags pass the checks no parser makes.
async fn start(options: ServerOptions) -> Result<ControlPlane> {
    if options.hpa.sync_period.is_zero() {
        return Err(CliError::usage(
            "error: --horizontal-pod-autoscaler-sync-period: must be more than 0",
        ));
    }
    ControlPlane::start(&options)
        .await
        .map_err(|e| CliError::failed(format!("error: {e}")))
}

pub async fn server(args: ServerArgs) -> Result<()> {
    // A bad token file is bad input (exit 2), found before anything starts.
    let token_auth_file = args.token_auth_file.clone();
    if let Some(path) = &token_auth_file {
        skiff_control_plane::auth::token_file::TokenFile::read(path)
            .map_err(|e| CliError::usage(format!("error: --token-auth-file: {e}")))?;
    }
    let ha = args.etcd_args.options(args.etcd.as_deref())?;
    if args.etcd_args.import_embedded_store
        && let Some(ha) = &ha
    {
        return import_embedded_store(&args.data_dir, ha).await;
    }
    let metrics = match &args.metrics_addr {
        Some(addr) => Some(crate::metrics_endpoint::bind(addr).await?),
        None => None,
    };
    let dashboard = dashboard_addr(args.dashboard_addr.as_deref())?;
    let domain = cluster_domain(&args.cluster_domain)?;
    let ipam = ipam_options(args.cluster_cidr, args.node_cidr_mask_size)?;
    let services = service_ranges(
        &args.service_cidr,
        &args.service_node_port_range,
        args.cluster_cidr,
    )?;
    let telemetry = args.telemetry.init("skiff-server")?;
    let lifecycle = LifecycleOptions {
        node_grace_period: args.node_grace_period,
        pod_eviction_timeout: args.pod_eviction_timeout,
    };
    let mut cp = start(ServerOptions {
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        lifecycle,
        ipam,
        services,
        cluster_domain: domain,
        hpa: HpaOptions {
            sync_period: args.horizontal_pod_autoscaler_sync_period,
        },
        security: args.security.options()?,
        ha,
        token_auth_file,
    })
    .await?;
    cp.set_node_certificate_lifetime(args.node_certificate_lifetime);
    open_dashboard(&mut cp, dashboard).await?;
    tracing::info!(addr = %cp.addr, data_dir = %args.data_dir.display(), "skiff API server listening (TLS)");
    eprintln!(
        "skiff server: API at {}\n  admin config: {}\n  kubeconfig:   {}\n  join token:   {}",
        cp.client_config.server,
        args.data_dir.join("config.yaml").display(),
        args.data_dir.join("kubeconfig").display(),
        args.data_dir.join("join-token").display()
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(listener) = metrics {
        crate::metrics_endpoint::serve(
            listener,
            &[skiff_control_plane::metrics::encode],
            "skiff server",
        );
    }
    let server = tokio::spawn(cp.serve(stopped(stop_rx)));
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    let result = finish(server).await;
    super::telemetry::finish(telemetry).await;
    result
}

/// Resolves once `rx` says stop.
async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// How long open streams (`logs -f`, watches) may hold up a stop before they are cut.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits for the server to drain after a stop, at most [`DRAIN`].
async fn finish(
    server: tokio::task::JoinHandle<
        std::result::Result<(), skiff_control_plane::server::ServerError>,
    >,
) -> Result<()> {
    match tokio::time::timeout(DRAIN, server).await {
        Ok(Ok(r)) => r.map_err(|e| CliError::failed(format!("error: {e}"))),
        Ok(Err(e)) => Err(CliError::failed(format!("error: {e}"))),
        Err(_) => {
            tracing::info!("open streams did not finish in {DRAIN:?}: closing them");
            Ok(())
        }
    }
}

pub async fn up(args: UpArgs) -> Result<()> {
    let metrics = match &args.metrics_addr {
        Some(addr) => Some(crate::metrics_endpoint::bind(addr).await?),
        None => None,
    };
    let dashboard = dashboard_addr(args.dashboard_addr.as_deref())?;
    let domain = cluster_domain(&args.cluster_domain)?;
    let ipam = ipam_options(args.cluster_cidr, args.node_cidr_mask_size)?;
    let services = service_ranges(
        &args.service_cidr,
        &args.service_node_port_range,
        args.cluster_cidr,
    )?;
    let ingress_addr = super::agent::ingress_addr(args.ingress_addr.as_deref())?;
    let demo_hint = args
        .demo
        .then(|| super::demo::try_it(&ingress_addr, std::net::IpAddr::from([127, 0, 0, 1])));
    let telemetry = args.telemetry.init("skiff")?;
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| super::home_dir().join(".skiff"));
    let mut cp = start(ServerOptions {
        data_dir: data_dir.clone(),
        listen: args.listen,
        lifecycle: LifecycleOptions::default(),
        ipam,
        services,
        cluster_domain: domain,
        hpa: HpaOptions {
            sync_period: args.horizontal_pod_autoscaler_sync_period,
        },
        security: SecurityOptions::default(),
        ha: None,
        token_auth_file: None,
    })
    .await?;
    open_dashboard(&mut cp, dashboard).await?;
    let config_path = data_dir.join("config.yaml");
    let transport = cp.client_config.connect()?;
    let agent_options = skiff_node_agent::AgentOptions {
        servers: cp.addr.to_string(),
        token: cp.join_token.clone(),
        name: None,
        data_dir: data_dir.join("agent"),
        node_ip: Some(std::net::IpAddr::from([127, 0, 0, 1])),
        labels: Default::default(),
        taints: Vec::new(),
        max_pods: super::agent::DEFAULT_MAX_PODS,
        shim_binary: super::agent::shim_binary()?,
        // All-in-one, in the foreground: Ctrl-C stops everything, pods included.
        stop_pods_on_exit: true,
        heartbeat: skiff_node_agent::node::HEARTBEAT_PERIOD,
        pod_pids_limit: skiff_node_agent::DEFAULT_POD_PIDS_LIMIT,
        wasm_default_memory_limit: skiff_node_agent::DEFAULT_WASM_MEMORY_LIMIT,
        resolv_conf: args.resolv_conf,
        ingress_addr,
        registry_config: None,
    };
    // The node stops first, while the API server still takes its last writes; then the server.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (stop_agent_tx, stop_agent_rx) = tokio::sync::watch::channel(false);
    if let Some(listener) = metrics {
        crate::metrics_endpoint::serve(
            listener,
            &[
                skiff_control_plane::metrics::encode,
                skiff_node_agent::prometheus::encode,
            ],
            "skiff up",
        );
    }
    let server = tokio::spawn(cp.serve(stopped(stop_rx)));
    let agent = tokio::spawn(skiff_node_agent::run(agent_options, stopped(stop_agent_rx)));
    if args.demo {
        super::demo::deploy(&transport, &data_dir).await?;
    }
    println!(
        "\nskiff is up.\n  API:    {server}\n  config: {config}\n  kubeconfig: {kubeconfig}\n\nTry, in another terminal:\n  export SKIFF_CONFIG={config}\n  skiff get nodes\n  skiff get pods -n demo -o wide\n  skiff logs -n demo <pod>\n  skiff run --rm file:examples/hello/hello.wat\n  KUBECONFIG={kubeconfig} kubectl get pods -A\n{demo}\nPress Ctrl-C to stop (the pods stop with it).",
        server = format_args!("https://{}", config_server(&config_path)),
        config = config_path.display(),
        kubeconfig = data_dir.join("kubeconfig").display(),
        demo = demo_hint.map(|h| format!("\n{h}\n")).unwrap_or_default(),
    );
    shutdown_signal().await;
    let _ = stop_agent_tx.send(true);
    match agent.await {
        Ok(Err(e)) => eprintln!("{}", super::agent::agent_error(e)),
        Err(e) => eprintln!("error: node agent: {e}"),
        Ok(Ok(())) => {}
    }
    let _ = stop_tx.send(true);
    let result = finish(server).await;
    super::telemetry::finish(telemetry).await;
    result
}

fn config_server(path: &std::path::Path) -> String {
    skiff_api::client::ClientConfig::load(path)
        .map(|c| c.server.trim_start_matches("https://").to_string())
        .unwrap_or_default()
}

/// `skiff server`'s API limits, audit log and Event TTL (Kubernetes' flag names where it has them).
#[derive(Args)]
struct SecurityArgs {
    /// The audit log: one JSON line per request, Kubernetes' audit.k8s.io/v1 Events at Metadata level (`-`: standard output). Default DIR/audit.log
    #[arg(long, value_name = "FILE")]
    audit_log_path: Option<PathBuf>,
    /// Rotate the audit log when it reaches this many megabytes (0: never)
    #[arg(long, default_value_t = 100, value_name = "MB")]
    audit_log_maxsize: u64,
    /// Rotated audit logs kept (0: all)
    #[arg(long, default_value_t = 10, value_name = "N")]
    audit_log_maxbackup: usize,
    /// Deadline of a call that sends no grpc-timeout (a stream's deadline covers its start)
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = crate::duration::parse)]
    request_timeout: Duration,
    /// Requests a second each identity may send (system:masters are exempt; 0: no limit)
    #[arg(long, default_value_t = 100.0, value_name = "QPS")]
    max_requests_per_identity_qps: f64,
    /// Requests each identity may send at once above its rate
    #[arg(long, default_value_t = 200, value_name = "N")]
    max_requests_per_identity_burst: u32,
    /// Requests a second a node with no pods may send (each pod bound to it adds 210; 0: no limit)
    #[arg(long, default_value_t = 50.0, value_name = "QPS")]
    max_requests_per_node_qps: f64,
    /// Requests a node with no pods may send at once above its rate (each pod adds 420)
    #[arg(long, default_value_t = 200, value_name = "N")]
    max_requests_per_node_burst: u32,
    /// Failed authentications a source address may make at once before its requests are refused (0: no limit)
    #[arg(long, default_value_t = 20, value_name = "N")]
    max_failed_authentications_burst: u32,
    /// Failed authentications a second a held source address earns back
    #[arg(long, default_value_t = 1.0, value_name = "QPS")]
    failed_authentications_qps: f64,
    /// Watches each identity may hold open at once (system:masters are exempt; 0: no limit)
    #[arg(long, default_value_t = 100, value_name = "N")]
    max_watches_per_identity: usize,
    /// How long an Event is kept after it was last recorded
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = crate::duration::parse)]
    event_ttl: Duration,
}

impl SecurityArgs {
    /// The options (bad values: exit 2, naming the flag).
    fn options(&self) -> Result<SecurityOptions> {
        for (flag, value) in [
            (
                "--max-requests-per-identity-qps",
                self.max_requests_per_identity_qps,
            ),
            (
                "--max-requests-per-node-qps",
                self.max_requests_per_node_qps,
            ),
            (
                "--failed-authentications-qps",
                self.failed_authentications_qps,
            ),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(CliError::usage(format!(
                    "error: {flag} {value}: must be 0 or more"
                )));
            }
        }
        for (flag, value) in [
            ("--request-timeout", self.request_timeout),
            ("--event-ttl", self.event_ttl),
        ] {
            if value.is_zero() {
                return Err(CliError::usage(format!(
                    "error: {flag}: must be more than 0"
                )));
            }
        }
        Ok(SecurityOptions {
            limits: LimitOptions {
                qps: self.max_requests_per_identity_qps,
                burst: self.max_requests_per_identity_burst,
                max_watches: self.max_watches_per_identity,
                request_timeout: self.request_timeout,
                node_qps: self.max_requests_per_node_qps,
                node_burst: self.max_requests_per_node_burst,
                failed_auth_burst: self.max_failed_authentications_burst,
                failed_auth_qps: self.failed_authentications_qps,
            },
            audit_log_path: self.audit_log_path.clone(),
            audit_log_max_size_mb: self.audit_log_maxsize,
            audit_log_max_backups: self.audit_log_maxbackup,
            event_ttl: self.event_ttl,
        })
    }
}

/// `skiff server`'s etcd connection and leader election (kube-apiserver's and
/// kube-controller-manager's flag names).
#[derive(Args)]
struct EtcdArgs {
    /// The CA of etcd's serving certificates (for https endpoints)
    #[arg(long, value_name = "FILE", requires = "etcd")]
    etcd_cafile: Option<PathBuf>,
    /// A client certificate for etcd (with --etcd-keyfile)
    #[arg(long, value_name = "FILE", requires_all = ["etcd", "etcd_keyfile"])]
    etcd_certfile: Option<PathBuf>,
    /// The key of --etcd-certfile
    #[arg(long, value_name = "FILE", requires_all = ["etcd", "etcd_certfile"])]
    etcd_keyfile: Option<PathBuf>,
    /// The etcd key prefix of the cluster's objects
    #[arg(long, default_value = skiff_control_plane::store::etcd::DEFAULT_PREFIX, value_name = "PREFIX")]
    etcd_prefix: String,
    /// Copy DIR/store.redb (an embedded-store cluster, its server stopped) into the empty --etcd, then exit
    #[arg(long, requires = "etcd")]
    import_embedded_store: bool,
    /// How long a leader's lease lasts unrenewed: another server's controllers take over at most this long after the leader dies
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = crate::duration::parse)]
    leader_elect_lease_duration: Duration,
    /// Serve reads and watches from this server's watch cache, fed by one etcd watch (=false: every read goes to etcd)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    watch_cache: bool,
    /// Events the watch cache keeps for watches to resume from (older ones are read from etcd's history)
    #[arg(long, default_value_t = 10_000, value_name = "EVENTS")]
    watch_cache_size: usize,
}

impl EtcdArgs {
    /// The HA options of `--etcd URL,...` (None without it; bad values: exit 2, naming the flag).
    fn options(&self, etcd: Option<&str>) -> Result<Option<HaOptions>> {
        let Some(list) = etcd else {
            return Ok(None);
        };
        let endpoints: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if endpoints.is_empty() {
            return Err(CliError::usage("error: --etcd: no endpoint given"));
        }
        for e in &endpoints {
            let rest = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"))
                .ok_or_else(|| {
                    CliError::usage(format!(
                        "error: --etcd {e}: an endpoint is http://HOST:PORT or https://HOST:PORT"
                    ))
                })?;
            if rest.is_empty() || rest.contains('/') {
                return Err(CliError::usage(format!(
                    "error: --etcd {e}: an endpoint is http://HOST:PORT or https://HOST:PORT"
                )));
            }
        }
        let https = endpoints.iter().any(|e| e.starts_with("https://"));
        if https && self.etcd_cafile.is_none() {
            return Err(CliError::usage(
                "error: --etcd: https endpoints need --etcd-cafile (etcd's own CA)",
            ));
        }
        if !https && (self.etcd_cafile.is_some() || self.etcd_certfile.is_some()) {
            return Err(CliError::usage(
                "error: --etcd-cafile/--etcd-certfile: the --etcd endpoints are not https://",
            ));
        }
        if !self.etcd_prefix.starts_with('/') || self.etcd_prefix.len() < 2 {
            return Err(CliError::usage(format!(
                "error: --etcd-prefix {:?}: must start with / and name something",
                self.etcd_prefix
            )));
        }
        let lease = self.leader_elect_lease_duration;
        if lease < Duration::from_secs(2) {
            return Err(CliError::usage(
                "error: --leader-elect-lease-duration: must be at least 2s",
            ));
        }
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path)
                .map_err(|e| CliError::usage(format!("error: {flag} {}: {e}", path.display())))
        };
        let tls = match &self.etcd_cafile {
            None => None,
            Some(ca) => Some(EtcdTls {
                ca: Some(read("--etcd-cafile", ca)?),
                identity: match (&self.etcd_certfile, &self.etcd_keyfile) {
                    (Some(cert), Some(key)) => {
                        Some((read("--etcd-certfile", cert)?, read("--etcd-keyfile", key)?))
                    }
                    _ => None,
                },
            }),
        };
        let mut options = EtcdOptions::new(endpoints);
        options.prefix = self.etcd_prefix.clone();
        options.tls = tls;
        if self.watch_cache_size == 0 {
            return Err(CliError::usage(
                "error: --watch-cache-size: must be at least 1 (--watch-cache=false turns the cache off)",
            ));
        }
        let watch_cache = self.watch_cache.then(|| CacheOptions {
            events: self.watch_cache_size,
            ..CacheOptions::default()
        });
        Ok(Some(HaOptions {
            etcd: options,
            lease,
            watch_cache,
        }))
    }
}

/// `skiff server --etcd URL,... --import-embedded-store`: every key of `DIR/store.redb` into etcd.
async fn import_embedded_store(data_dir: &std::path::Path, ha: &HaOptions) -> Result<()> {
    use skiff_control_plane::store::embedded::{EmbeddedOptions, EmbeddedStore};
    let path = data_dir.join("store.redb");
    if !path.exists() {
        return Err(CliError::usage(format!(
            "error: --import-embedded-store: {} does not exist",
            path.display()
        )));
    }
    let opened = path.clone();
    let from = tokio::task::spawn_blocking(move || {
        EmbeddedStore::open(&opened, EmbeddedOptions::default())
    })
    .await
    .map_err(|e| CliError::failed(format!("error: {e}")))?
    .map_err(|e| {
        CliError::failed(format!(
            "error: {} (is its server still running?): {e}",
            path.display()
        ))
    })?;
    let to = skiff_control_plane::store::etcd::EtcdStore::connect(ha.etcd.clone())
        .await
        .map_err(|e| CliError::failed(format!("error: --etcd: {e}")))?;
    let copied = skiff_control_plane::store::migrate::copy_all(&from, &to)
        .await
        .map_err(|e| CliError::failed(format!("error: importing {}: {e}", path.display())))?;
    eprintln!(
        "skiff server: copied {copied} keys from {} into etcd under {}",
        path.display(),
        ha.etcd.prefix
    );
    Ok(())
}
