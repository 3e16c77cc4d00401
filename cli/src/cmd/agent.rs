//! `skiff agent`: a node agent joining a cluster. Its containers run in
//! `containerd-shim-skiff-v1` processes it launches (found beside this binary, else on `PATH`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;
use skiff_node_agent::{AgentError, AgentOptions};

use crate::error::{CliError, Result};

#[derive(Args)]
pub struct AgentArgs {
    /// API server address(es), comma-separated: 127.0.0.1:7443
    #[arg(
        long,
        value_name = "ADDR[,ADDR...]",
        required_unless_present = "reset",
        default_value = ""
    )]
    server: String,
    /// A file holding the bootstrap (join) token: the server's DIR/join-token, or what `skiff
    /// token create` printed (else $SKIFF_TOKEN; never on the command line). Needed only until
    /// the node has its certificate in DATA_DIR/pki
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Remove this node's state and exit: stop every container and shim it left running, take
    /// its pod network and proxy rules down, delete its records (claim data and images stay)
    #[arg(long)]
    reset: bool,
    /// Node name (default: the host name)
    #[arg(long)]
    name: Option<String>,
    /// Where pods' volumes and logs, images and the shims' records live
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The node's address (default: the host's)
    #[arg(long, value_name = "IP")]
    node_ip: Option<IpAddr>,
    /// Extra node labels: k=v,k2=v2
    #[arg(long, value_name = "k=v,...")]
    labels: Option<String>,
    /// Taints to register the node with: key=value:Effect,key:Effect (Effect: NoSchedule, PreferNoSchedule or NoExecute)
    #[arg(long, value_name = "k=v:Effect,...")]
    taints: Option<String>,
    /// Pods this node may run
    #[arg(long, default_value_t = DEFAULT_MAX_PODS)]
    max_pods: u32,
    /// Serve Prometheus metrics at http://ADDR/metrics, plain HTTP (IP:PORT; off by default)
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// The most processes each OCI container may hold (its pids cgroup limit)
    #[arg(long, default_value_t = skiff_node_agent::DEFAULT_POD_PIDS_LIMIT, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    pod_pids_limit: i64,
    /// The memory limit of a Wasm container whose pod sets none (a quantity: 128Mi, 1Gi)
    #[arg(long, default_value = "128Mi", value_name = "QUANTITY", value_parser = parse_memory)]
    wasm_default_memory_limit: u64,
    /// How often the node's Ready heartbeat is renewed (keep well under the server's --node-grace-period)
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = crate::duration::parse)]
    heartbeat_interval: std::time::Duration,
    /// The node's resolver file: the upstream servers of the node's cluster DNS, and pods' settings under dnsPolicy Default
    #[arg(long, default_value = skiff_node_agent::DEFAULT_RESOLV_CONF, value_name = "FILE")]
    resolv_conf: PathBuf,
    /// Where the ingress router listens: IP (ports 80 and 443; 8080 and 8443 when not root), IP:PORT (HTTP only), IP:PORT,IP:PORT (HTTP, HTTPS), or off. Default: the node address
    #[arg(long, value_name = "ADDR")]
    ingress_addr: Option<String>,
    /// A Docker config file (what `docker login` writes) with this node's own registry
    /// credentials, used for pulls after a pod's imagePullSecrets; read at each pull
    #[arg(long, value_name = "FILE")]
    registry_config: Option<PathBuf>,
    #[command(flatten)]
    telemetry: super::telemetry::TelemetryArgs,
}

/// Wasm pods are cheap: a node takes far more than Kubernetes' 110.
pub const DEFAULT_MAX_PODS: u32 = 1100;

/// A memory quantity (`128Mi`, `1Gi`, `134217728`) in bytes, at least 1 MiB.
fn parse_memory(text: &str) -> std::result::Result<u64, String> {
    let q = skiff_api::quantity::Quantity::parse(text).map_err(|e| e.to_string())?;
    match u64::try_from(q.value()) {
        Ok(bytes) if bytes >= 1 << 20 => Ok(bytes),
        _ => Err(format!("{text:?} is less than 1Mi")),
    }
}

/// `key=value:Effect` or `key:Effect`, comma-separated.
fn parse_taints(text: &str) -> Result<Vec<skiff_api::v1::Taint>> {
    let mut taints = Vec::new();
    for item in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = |why: &str| CliError::usage(format!("error: --taints {item:?}: {why}"));
        let (kv, effect) = item
            .rsplit_once(':')
            .ok_or_else(|| bad("expected key=value:Effect or key:Effect"))?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(bad(
                "the effect must be NoSchedule, PreferNoSchedule or NoExecute",
            ));
        }
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        if skiff_api::validation::validate_label_key(key).is_err() {
            return Err(bad("the key must be a valid label key"));
        }
        taints.push(skiff_api::v1::Taint {
            key: key.to_string(),
            value: value.to_string(),
            effect: effect.to_string(),
            time_added: None,
        });
    }
    Ok(taints)
}

fn parse_labels(text: &str) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            CliError::usage(format!("error: --labels: {pair:?} is not key=value"))
        })?;
        if let Err(e) = skiff_api::validation::names::validate_label_key(k) {
            return Err(CliError::usage(format!("error: --labels: {k:?}: {e}")));
        }
        if !skiff_api::validation::names::is_label_value(v) {
            return Err(CliError::usage(format!(
                "error: --labels: {v:?} is not a valid label value"
            )));
        }
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(labels)
}

/// `containerd-shim-skiff-v1`, which runs the node's containers.
pub fn shim_binary() -> Result<PathBuf> {
    skiff_node_agent::containers::find_shim_binary().ok_or_else(|| {
        CliError::failed(
            "error: containerd-shim-skiff-v1 is neither beside the skiff binary nor on PATH: \
             install both (README: Install)",
        )
    })
}

/// `--ingress-addr` (bad: exit 2, naming the flag); absent: the default.
pub fn ingress_addr(text: Option<&str>) -> Result<skiff_node_agent::ingress::IngressAddr> {
    match text {
        None => Ok(skiff_node_agent::ingress::IngressAddr::Default),
        Some(t) => t
            .parse()
            .map_err(|e| CliError::usage(format!("error: {e}"))),
    }
}

/// `--registry-config`, checked now so that a missing or malformed file is a usage error (exit 2,
/// naming the file) rather than a failed pull later.
fn registry_config(path: Option<PathBuf>) -> Result<Option<PathBuf>> {
    if let Some(path) = &path {
        skiff_runtime::image::Keyring::from_file(path)
            .map_err(|e| CliError::usage(format!("error: --registry-config: {e}")))?;
    }
    Ok(path)
}

pub fn agent_error(e: AgentError) -> CliError {
    match e {
        AgentError::Usage(m) => CliError::usage(format!("error: {m}")),
        other => CliError::failed(format!("error: {other}")),
    }
}

/// The bootstrap token from `--token-file`, else `$SKIFF_TOKEN`, else none (the node's
/// certificate will do, if it has one).
fn bootstrap_token(file: Option<&std::path::Path>) -> Result<String> {
    match file {
        Some(path) => std::fs::read_to_string(path)
            .map(|t| t.trim().to_string())
            .map_err(|e| CliError::usage(format!("error: --token-file {}: {e}", path.display()))),
        None => Ok(std::env::var("SKIFF_TOKEN").unwrap_or_default()),
    }
}

pub async fn agent(args: AgentArgs) -> Result<()> {
    let metrics = match &args.metrics_addr {
        Some(addr) => Some(crate::metrics_endpoint::bind(addr).await?),
        None => None,
    };
    let telemetry = args.telemetry.init("skiff-agent")?;
    let options = AgentOptions {
        servers: args.server,
        token: bootstrap_token(args.token_file.as_deref())?,
        name: args.name,
        data_dir: args
            .data_dir
            .unwrap_or_else(|| super::home_dir().join(".skiff").join("agent")),
        node_ip: args.node_ip,
        labels: parse_labels(args.labels.as_deref().unwrap_or(""))?,
        taints: parse_taints(args.taints.as_deref().unwrap_or(""))?,
        max_pods: args.max_pods,
        shim_binary: shim_binary()?,
        stop_pods_on_exit: false,
        heartbeat: args.heartbeat_interval,
        pod_pids_limit: args.pod_pids_limit,
        wasm_default_memory_limit: args.wasm_default_memory_limit,
        resolv_conf: args.resolv_conf,
        ingress_addr: ingress_addr(args.ingress_addr.as_deref())?,
        registry_config: registry_config(args.registry_config)?,
    };
    if args.reset {
        return reset(&options).await;
    }
    if let Some(listener) = metrics {
        crate::metrics_endpoint::serve(
            listener,
            &[skiff_node_agent::prometheus::encode],
            "skiff agent",
        );
    }
    let result = skiff_node_agent::run(options, super::server::shutdown_signal())
        .await
        .map_err(agent_error);
    super::telemetry::finish(telemetry).await;
    result
}

/// `skiff agent --reset`: prints what went and what stayed.
async fn reset(options: &AgentOptions) -> Result<()> {
    let report = skiff_node_agent::teardown::reset(options)
        .await
        .map_err(agent_error)?;
    println!(
        "node state under {} reset: containers, shims, pod network and proxy rules removed",
        options.data_dir.display()
    );
    for path in &report.removed {
        println!("removed {}", path.display());
    }
    for path in &report.kept {
        println!("kept {}", path.display());
    }
    Ok(())
}
