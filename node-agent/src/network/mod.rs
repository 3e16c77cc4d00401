//! The pod network of this node, host-gw style (as kubenet or flannel's host-gw backend):
//!
//! - the control plane gives the node a block of the cluster CIDR (`spec.podCIDR`); the agent
//!   puts its first address on a node bridge ([`bridge`]) and turns on IPv4 forwarding;
//! - each OCI pod, and each Wasm pod granted sockets, gets a network namespace ([`netns`]) with loopback and `eth0`, one end of a
//!   veth pair whose other end is on the bridge ([`veth`]), with one address of the block
//!   ([`ipam`], files in the data dir) and a default route via the bridge; all the pod's
//!   containers share it (a Wasm pod's guests make their sockets in it: their shim runs
//!   them on a thread inside it);
//! - every other Ready node's block is routed via that node's InternalIP ([`routes`]), so pods
//!   reach pods on other nodes without encapsulation (the nodes must share a link).
//!
//! Everything here survives the agent: namespaces, links, routes and address files stay while
//! the agent is down, and a restarted agent adopts them (DESIGN §5). A Wasm pod granted no
//! socket needs no network and gets none.
//! No masquerading: traffic from pods to outside the cluster CIDR leaves with the pod's address.
//!
//! Must not: change anything outside the agent's own network namespace, other than the pods'
//! namespaces it made; run `ip` on an async thread (all of it goes through `spawn_blocking`).

pub mod bridge;
pub mod ipam;
mod iproute;
pub mod netlink;
pub mod netns;
pub mod routes;
pub mod veth;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_api::cidr::Ipv4Cidr;

/// What went wrong setting up the pod network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{step} ({path}): {source}")]
    Netlink {
        step: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no free pod address left in the node's podCIDR {0}")]
    Exhausted(Ipv4Cidr),
    #[error("pod network task: {0}")]
    Task(String),
}

/// A pod's network: its namespace and, when the node has a podCIDR, its address.
#[derive(Debug, Clone)]
pub struct Attached {
    pub netns: PathBuf,
    pub ip: Option<Ipv4Addr>,
}

/// The node's pod network; cheap to clone, shared by the pod sync loop and the route task.
#[derive(Clone)]
pub struct PodNetwork {
    inner: Arc<Inner>,
}

struct Inner {
    node: String,
    /// The file naming the node's bridge ([`BRIDGE_FILE`]).
    bridge_file: PathBuf,
    /// Whether this agent may change the network (root): off, pods get no address.
    enabled: bool,
    ipam: ipam::Ipam,
    /// The node's block, once the control plane has given it and the bridge is up.
    block: tokio::sync::watch::Sender<Option<Ipv4Cidr>>,
    /// One change at a time (attach, detach, a new block).
    changes: tokio::sync::Mutex<()>,
    /// Pod uid → address, as the address files say.
    addresses: Mutex<HashMap<String, Ipv4Addr>>,
}

/// Under the data dir: the name of the node's bridge, so that a teardown without the Node
/// (`skiff agent --reset`) finds it, and never another agent's.
pub const BRIDGE_FILE: &str = "bridge";

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NetworkError> + Send + 'static,
) -> Result<T, NetworkError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NetworkError::Task(e.to_string()))?
}

impl PodNetwork {
    /// The pod network of node `node`, its addresses kept under `data_dir/ipam`. `enabled`:
    /// the agent runs as root (else pods get a namespace but no address, as Wasm-only nodes).
    pub async fn open(data_dir: &Path, node: &str, enabled: bool) -> Result<Self, NetworkError> {
        let ipam = ipam::Ipam::new(data_dir.join("ipam"));
        let reader = ipam.clone();
        let known = blocking(move || reader.allocations()).await?;
        let addresses = known.into_iter().map(|(ip, uid)| (uid, ip)).collect();
        Ok(Self {
            inner: Arc::new(Inner {
                node: node.to_string(),
                bridge_file: data_dir.join(BRIDGE_FILE),
                enabled,
                ipam,
                block: tokio::sync::watch::Sender::new(None),
                changes: tokio::sync::Mutex::new(()),
                addresses: Mutex::new(addresses),
            }),
        })
    }

    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    /// The node's block, once its bridge is up.
    pub fn block(&self) -> Option<Ipv4Cidr> {
        *self.inner.block.borrow()
    }

    /// Waits at most `timeout` for the node's block.
    pub async fn wait_block(&self, timeout: Duration) -> Option<Ipv4Cidr> {
        let mut rx = self.inner.block.subscribe();
        let found = tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await;
        found.ok().and_then(|r| r.ok().and_then(|b| *b))
    }

    /// Whether pods of this node get addresses: a block is known.
    pub fn has_addresses(&self) -> bool {
        self.inner.enabled && self.block().is_some()
    }

    /// Pod `uid`'s address, if it has one.
    pub fn address_of(&self, uid: &str) -> Option<Ipv4Addr> {
        let map = self
            .inner
            .addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.get(uid).copied()
    }

    /// Takes the node's block (from its Node object): makes the bridge, or checks it is still
    /// there. A different block than before (the Node was deleted and made again) replaces
    /// the bridge; pods attached to the old one keep their old addresses.
    pub async fn set_block(&self, block: Ipv4Cidr) -> Result<(), NetworkError> {
        if !self.inner.enabled {
            return Ok(());
        }
        let _change = self.inner.changes.lock().await;
        let previous = self.block();
        let node = self.inner.node.clone();
        let name = bridge::name(&node, block);
        let old = previous
            .filter(|p| *p != block)
            .map(|p| bridge::name(&node, p));
        let bridge_file = self.inner.bridge_file.clone();
        blocking(move || {
            if let Some(old) = &old {
                tracing::warn!(bridge = %old, "the node's podCIDR changed: replacing its bridge");
                bridge::remove(old);
            }
            std::fs::write(&bridge_file, &name).map_err(|source| NetworkError::Io {
                path: bridge_file.clone(),
                source,
            })?;
            bridge::ensure(&name, block).map(|_| ())
        })
        .await?;
        if previous != Some(block) {
            tracing::info!(pod_cidr = %block, bridge = %bridge::name(&node, block), "pod network ready");
            self.inner.block.send_replace(Some(block));
        }
        Ok(())
    }

    /// Pod `uid`'s namespace, made if missing, with its `eth0` and address when the node has a
    /// block. Idempotent: every container of the pod calls it.
    pub async fn attach(&self, uid: &str) -> Result<Attached, NetworkError> {
        let _change = self.inner.changes.lock().await;
        let block = self.block().filter(|_| self.inner.enabled);
        let node = self.inner.node.clone();
        let ipam = self.inner.ipam.clone();
        let owner = uid.to_string();
        let attached = blocking(move || {
            let Some(block) = block else {
                let netns = netns::ensure(&owner)?;
                return Ok(Attached { netns, ip: None });
            };
            let ip = ipam.allocate(&owner, block)?;
            let gateway = bridge::gateway(block).ok_or(NetworkError::Exhausted(block))?;
            let netns = veth::attach(&owner, &bridge::name(&node, block), ip, block, gateway)?;
            Ok(Attached {
                netns,
                ip: Some(ip),
            })
        })
        .await?;
        if let Some(ip) = attached.ip {
            let mut map = self
                .inner
                .addresses
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            map.insert(uid.to_string(), ip);
        }
        Ok(attached)
    }

    /// Removes pod `uid`'s veth, namespace and address (a pod torn down).
    pub async fn detach(&self, uid: &str) {
        let _change = self.inner.changes.lock().await;
        let ipam = self.inner.ipam.clone();
        let owner = uid.to_string();
        let result = blocking(move || {
            // Without its namespace a pod has no veth either (Wasm pods without sockets): no
            // `ip` to run.
            if netns::path(&owner).exists() {
                veth::detach(&owner);
                netns::remove(&owner);
            }
            ipam.release(&owner)
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(pod_uid = %uid, error = %e, "releasing a pod's address");
        }
        let mut map = self
            .inner
            .addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.remove(uid);
    }

    /// After a full list of the node's pods: frees the addresses (and namespaces) of every pod
    /// not in `live` (deleted while the agent was down).
    pub async fn retain(&self, live: HashSet<String>) {
        let _change = self.inner.changes.lock().await;
        let ipam = self.inner.ipam.clone();
        let keep = live.clone();
        let result = blocking(move || {
            let freed = ipam.retain(&keep)?;
            for uid in &freed {
                tracing::info!(pod_uid = %uid, "freeing the address of a pod that is gone");
                veth::detach(uid);
                netns::remove(uid);
            }
            Ok(freed)
        })
        .await;
        match result {
            Ok(freed) => {
                let mut map = self
                    .inner
                    .addresses
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                for uid in freed {
                    map.remove(&uid);
                }
                map.retain(|uid, _| live.contains(uid));
            }
            Err(e) => tracing::warn!(error = %e, "freeing the addresses of pods that are gone"),
        }
    }
}

impl PodNetwork {
    /// Takes the node's pod network down: every pod's veth, namespace and address, the node
    /// bridge and the routes to other nodes' blocks (`skiff up`'s exit, `skiff agent --reset`).
    pub async fn remove_all(&self) {
        self.retain(HashSet::new()).await;
        let _change = self.inner.changes.lock().await;
        let bridge_file = self.inner.bridge_file.clone();
        let result = blocking(move || {
            if let Ok(name) = std::fs::read_to_string(&bridge_file) {
                bridge::remove(name.trim());
                tracing::info!(bridge = %name.trim(), "removed the node bridge");
            }
            if let Err(e) = std::fs::remove_file(&bridge_file)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(NetworkError::Io {
                    path: bridge_file,
                    source: e,
                });
            }
            routes::remove_all()
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "taking the pod network down");
        }
        self.inner.block.send_replace(None);
    }
}
