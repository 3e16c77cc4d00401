//! The Node object: what this machine offers (capacity, allocatable, runtimes, addresses, labels),
//! its registration, and its heartbeat.
//!
//! Heartbeats are Kubernetes' since node leases: every period the agent renews its Lease
//! (`kube-node-lease/<node>`, a small write), and reads its Node to write the status only when
//! what it reports changed (Ready or not, capacity, addresses, runtimes...) or the control plane
//! marked it otherwise (a node back from `Unknown`). The control plane judges staleness by when
//! it saw the Lease renewed, by its own clock.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use skiff_api::client::{Api, Transport};
use skiff_api::v1::*;
use skiff_api::validation::NODE_LEASE_NAMESPACE;

use crate::{AgentError, AgentOptions};

/// How often the Lease is renewed and the Node's status looked at (kubelet's
/// `nodeStatusUpdateFrequency` and lease renew interval).
pub const HEARTBEAT_PERIOD: Duration = Duration::from_secs(10);

/// The Lease's `leaseDurationSeconds` (kubelet's `nodeLeaseDurationSeconds`): informational, the
/// control plane's `--node-grace-period` decides.
pub const LEASE_DURATION_SECONDS: i32 = 40;

/// Whether this agent runs OCI containers: namespaces, cgroups and overlayfs need root.
pub fn runs_containers() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The runtimes this agent runs: `wasm` always, `oci` (the Linux executor) as root.
pub fn runtime_handlers() -> Vec<&'static str> {
    if runs_containers() {
        vec!["wasm", "oci"]
    } else {
        vec!["wasm"]
    }
}

/// What the agent knows about its machine.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub ip: IpAddr,
    pub labels: BTreeMap<String, String>,
    /// Taints the Node registers with (`--taints`, kubelet's `--register-with-taints`).
    pub taints: Vec<skiff_api::v1::Taint>,
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub max_pods: u32,
    pub kernel: String,
    pub machine_id: String,
    pub boot_id: String,
    /// The firmware's UUID, as the kubelet reports it (empty where it cannot be read).
    pub system_uuid: String,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `MemTotal` from /proc/meminfo, in bytes.
fn memory_total() -> i64 {
    read_trimmed("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The address of the interface that routes outward, else loopback (no packet is sent).
fn default_ip() -> IpAddr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("10.255.255.255:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

impl NodeInfo {
    pub fn detect(options: &AgentOptions) -> Result<Self, AgentError> {
        let hostname = read_trimmed("/proc/sys/kernel/hostname");
        let name = options.name.clone().unwrap_or_else(|| hostname.clone());
        if !skiff_api::validation::names::is_dns1123_subdomain(&name) {
            return Err(AgentError::Usage(format!(
                "--name {name:?}: a node name must be a DNS-1123 subdomain (lower-case letters, digits, '-' and '.')"
            )));
        }
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), name.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            (
                "kubernetes.io/arch".to_string(),
                go_arch(std::env::consts::ARCH).to_string(),
            ),
        ]);
        labels.extend(options.labels.clone());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Self {
            name,
            ip: options.node_ip.unwrap_or_else(default_ip),
            labels,
            taints: options.taints.clone(),
            cpu_millis: i64::try_from(cpus).unwrap_or(1) * 1000,
            memory_bytes: memory_total(),
            max_pods: options.max_pods,
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            machine_id: read_trimmed("/etc/machine-id"),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid"),
        })
    }

    fn resources(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("cpu".to_string(), format!("{}m", self.cpu_millis)),
            ("memory".to_string(), format!("{}", self.memory_bytes)),
            ("pods".to_string(), self.max_pods.to_string()),
        ])
    }

    /// `Ready`, or `NotReady` with the reason when the runtime cannot run pods.
    fn ready(&self, previous: Option<&Condition>, problem: Option<&str>) -> Condition {
        let now = skiff_api::time::now();
        let status = if problem.is_none() { "True" } else { "False" };
        let since = previous
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time);
        Condition {
            r#type: "Ready".into(),
            status: status.into(),
            reason: if problem.is_none() {
                "AgentReady"
            } else {
                "RuntimeUnavailable"
            }
            .into(),
            message: problem
                .map(|p| format!("the container runtime cannot run pods: {p}"))
                .unwrap_or_else(|| "skiff agent is posting ready status".into()),
            last_heartbeat_time: Some(now),
            last_transition_time: Some(since.unwrap_or(now)),
            ..Default::default()
        }
    }

    /// The status this agent reports; `previous` keeps the Ready transition time.
    /// `problem`: why the node cannot run pods now (NotReady), if it cannot.
    pub fn status(&self, previous: Option<&NodeStatus>, problem: Option<&str>) -> NodeStatus {
        let previous_ready =
            previous.and_then(|s| s.conditions.iter().find(|c| c.r#type == "Ready"));
        NodeStatus {
            capacity: self.resources(),
            allocatable: self.resources(),
            conditions: vec![self.ready(previous_ready, problem)],
            addresses: vec![
                NodeAddress {
                    r#type: "InternalIP".into(),
                    address: self.ip.to_string(),
                },
                NodeAddress {
                    r#type: "Hostname".into(),
                    address: self.name.clone(),
                },
            ],
            node_info: Some(NodeSystemInfo {
                machine_id: self.machine_id.clone(),
                boot_id: self.boot_id.clone(),
                kernel_version: self.kernel.clone(),
                os_image: os_image(),
                container_runtime_version: format!("skiff-wasm://{}", env!("CARGO_PKG_VERSION")),
                kubelet_version: format!("skiff-{}", env!("CARGO_PKG_VERSION")),
                operating_system: "linux".into(),
                architecture: go_arch(std::env::consts::ARCH).into(),
                // The firmware's UUID, as the kubelet reports it (empty where it cannot be read).
                system_uuid: self.system_uuid.clone(),
                kube_proxy_version: String::new(),
            }),
            runtime_handlers: runtime_handlers()
                .iter()
                .map(|r| NodeRuntimeHandler {
                    name: r.to_string(),
                })
                .collect(),
            daemon_endpoints: None,
        }
    }
}

fn os_image() -> String {
    read_trimmed("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

/// Kubernetes' (Go's) architecture names.
fn go_arch(rust: &str) -> &str {
    match rust {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Creates the Node, or takes over an existing one of the same name (an agent restart), and
/// writes its status. The control plane writes a new Node too (its podCIDR): a write that lost
/// that race (a Conflict) is done again over a fresh read.
pub async fn register(transport: &Transport, info: &NodeInfo) -> Result<Node, AgentError> {
    let mut attempt = 0;
    loop {
        match register_once(transport, info).await {
            Err(AgentError::Api(s)) if s.code() == tonic::Code::Aborted && attempt < 10 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            result => return result,
        }
    }
}

async fn register_once(transport: &Transport, info: &NodeInfo) -> Result<Node, AgentError> {
    let api: Api<Node> = Api::new(transport.clone(), "");
    let mut node = match api.get_opt(&info.name).await? {
        Some(mut existing) => {
            let meta = existing.metadata.get_or_insert_with(Default::default);
            let labels = merged_labels(&meta.labels, info);
            let spec = existing.spec.get_or_insert_with(Default::default);
            let missing: Vec<_> = info
                .taints
                .iter()
                .filter(|t| {
                    !spec
                        .taints
                        .iter()
                        .any(|x| x.key == t.key && x.effect == t.effect)
                })
                .cloned()
                .collect();
            let meta = existing.metadata.get_or_insert_with(Default::default);
            if meta.labels != labels || !missing.is_empty() {
                meta.labels = labels;
                existing
                    .spec
                    .get_or_insert_with(Default::default)
                    .taints
                    .extend(missing);
                existing = api.update(existing).await?;
            }
            existing
        }
        None => {
            let node = Node {
                metadata: Some(ObjectMeta {
                    name: info.name.clone(),
                    labels: info.labels.clone(),
                    ..Default::default()
                }),
                spec: Some(NodeSpec {
                    taints: info.taints.clone(),
                    ..Default::default()
                }),
                status: None,
            };
            match api.create(node).await {
                Ok(created) => created,
                Err(s) if s.code() == tonic::Code::AlreadyExists => api.get(&info.name).await?,
                Err(s) => return Err(s.into()),
            }
        }
    };
    node.status = Some(info.status(node.status.as_ref(), None));
    Ok(api.update_status(node).await?)
}

/// The agent's labels win over same-named existing ones; others (set by admins) stay.
fn merged_labels(existing: &BTreeMap<String, String>, info: &NodeInfo) -> BTreeMap<String, String> {
    let mut labels = existing.clone();
    labels.extend(info.labels.clone());
    labels
}

/// Is `wanted` what `current` already says, heartbeat times aside?
pub fn status_unchanged(current: Option<&NodeStatus>, wanted: &NodeStatus) -> bool {
    let without_heartbeats = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_heartbeat_time = None;
        }
        s
    };
    current.is_some_and(|c| without_heartbeats(c) == without_heartbeats(wanted))
}

/// The node's Lease, as the agent renews it: held by the node, renewed now, owned by the Node
/// (so that deleting the Node deletes it).
pub fn renewed_lease(existing: Option<Lease>, node: &Node) -> Lease {
    let name = node
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let mut lease = existing.unwrap_or_else(|| Lease {
        metadata: Some(ObjectMeta {
            name: name.clone(),
            namespace: NODE_LEASE_NAMESPACE.into(),
            ..Default::default()
        }),
        spec: None,
    });
    let now = skiff_api::time::now();
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(name.as_str()) {
        spec.holder_identity = Some(name.clone());
        spec.acquire_time = Some(now);
    }
    spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
    spec.renew_time = Some(now);
    let meta = lease.metadata.get_or_insert_with(Default::default);
    let uid = node
        .metadata
        .as_ref()
        .map(|m| m.uid.clone())
        .unwrap_or_default();
    if !uid.is_empty() && !meta.owner_references.iter().any(|o| o.uid == uid) {
        meta.owner_references = vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name,
            uid,
            ..Default::default()
        }];
    }
    lease
}

/// Renews the node's Lease: an update of the one last written, else of a fresh read, else a
/// create. Returns what is stored now.
async fn renew_lease(
    api: &Api<Lease>,
    last: Option<Lease>,
    node: &Node,
) -> Result<Lease, tonic::Status> {
    if let Some(last) = last {
        match api.update(renewed_lease(Some(last), node)).await {
            Err(s) if matches!(s.code(), tonic::Code::Aborted | tonic::Code::NotFound) => {}
            result => return result,
        }
    }
    let name = node
        .metadata
        .as_ref()
        .map(|m| m.name.as_str())
        .unwrap_or("");
    match api.get_opt(name).await? {
        Some(existing) => api.update(renewed_lease(Some(existing), node)).await,
        None => api.create(renewed_lease(None, node)).await,
    }
}

/// Heartbeats forever: renews the Lease every `period`, and writes the Node's status when it
/// changed (NotReady while the container runtime cannot run pods); re-registers if the Node was
/// deleted.
pub async fn heartbeat(
    transport: Transport,
    info: NodeInfo,
    runtime: crate::containers::Containers,
    period: Duration,
) {
    let nodes: Api<Node> = Api::new(transport.clone(), "");
    let leases: Api<Lease> = Api::new(transport.clone(), NODE_LEASE_NAMESPACE);
    let mut lease: Option<Lease> = None;
    loop {
        let node = match nodes.get_opt(&info.name).await {
            Ok(Some(node)) => Some(node),
            Ok(None) => match register(&transport, &info).await {
                Ok(node) => Some(node),
                Err(e) => {
                    tracing::warn!(error = %e, "heartbeat: registering again failed");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat: reading the node failed");
                None
            }
        };
        if let Some(mut node) = node {
            match renew_lease(&leases, lease.take(), &node).await {
                Ok(renewed) => lease = Some(renewed),
                Err(e) => tracing::warn!(error = %e, "heartbeat: renewing the lease failed"),
            }
            let problem = runtime.check().await.err();
            let wanted = info.status(node.status.as_ref(), problem.as_deref());
            if !status_unchanged(node.status.as_ref(), &wanted) {
                node.status = Some(wanted);
                if let Err(e) = nodes.update_status(node).await {
                    tracing::warn!(error = %e, "heartbeat: writing the node status failed");
                }
            }
        }
        tokio::time::sleep(period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> NodeInfo {
        NodeInfo {
            name: "n1".into(),
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            labels: BTreeMap::new(),
            taints: vec![],
            cpu_millis: 2000,
            memory_bytes: 1 << 30,
            max_pods: 110,
            kernel: "6.1".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            system_uuid: String::new(),
        }
    }

    #[test]
    fn status_is_written_only_when_it_changes() {
        let info = info();
        let first = info.status(None, None);
        assert!(!status_unchanged(None, &first));
        // The same report a period later differs only in its heartbeat time.
        let mut later = info.status(Some(&first), None);
        later.conditions[0].last_heartbeat_time = Some(skiff_api::Timestamp {
            seconds: first.conditions[0].last_heartbeat_time.unwrap().seconds + 10,
            nanos: 0,
        });
        assert!(status_unchanged(Some(&first), &later));
        // NotReady, more memory, or a control plane that marked the node Unknown: written.
        assert!(!status_unchanged(
            Some(&first),
            &info.status(Some(&first), Some("no answer"))
        ));
        let bigger = NodeInfo {
            memory_bytes: 2 << 30,
            ..info.clone()
        };
        assert!(!status_unchanged(
            Some(&first),
            &bigger.status(Some(&first), None)
        ));
        let mut unknown = first.clone();
        unknown.conditions[0].status = "Unknown".into();
        assert!(!status_unchanged(
            Some(&unknown),
            &info.status(Some(&unknown), None)
        ));
    }

    #[test]
    fn the_lease_is_held_by_the_node_and_owned_by_it() {
        let node = Node {
            metadata: Some(ObjectMeta {
                name: "n1".into(),
                uid: "u1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let lease = renewed_lease(None, &node);
        let meta = lease.metadata.as_ref().unwrap();
        assert_eq!(
            (meta.namespace.as_str(), meta.name.as_str()),
            ("kube-node-lease", "n1")
        );
        assert_eq!(meta.owner_references[0].kind, "Node");
        assert_eq!(meta.owner_references[0].uid, "u1");
        let spec = lease.spec.clone().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
        assert_eq!(spec.lease_duration_seconds, Some(LEASE_DURATION_SECONDS));
        assert_eq!(spec.acquire_time, spec.renew_time);
        // A renewal moves renewTime only.
        let again = renewed_lease(Some(lease.clone()), &node);
        let again_spec = again.spec.clone().unwrap();
        assert_eq!(again_spec.acquire_time, spec.acquire_time);
        let at = |t: Option<skiff_api::Timestamp>| t.map(|t| (t.seconds, t.nanos));
        assert!(at(again_spec.renew_time) >= at(spec.renew_time));
        assert_eq!(again.metadata, lease.metadata);
    }
}
