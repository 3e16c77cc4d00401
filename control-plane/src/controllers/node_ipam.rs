//! The node IPAM controller (kube-controller-manager's nodeipam range allocator): every node gets
//! one block of the cluster CIDR as its `spec.podCIDR` (and `spec.podCIDRs`), from which its
//! agent gives each pod an address.
//!
//! The store is the only state: the blocks in use are read from the Node objects themselves,
//! listed afresh for every allocation, and the chosen block is written to the node with a
//! compare-and-swap on its resourceVersion (a lost race is retried over a newer list). So a
//! restarted control plane never hands out a block twice, and a deleted node's block is free
//! again as soon as the node is gone. Blocks set by someone else (inside the cluster CIDR or
//! overlapping it) count as used. When no block is left the node stays without one, with a
//! `CIDRNotAvailable` warning event and log line, until a node goes away. Once a fresh list has
//! found the cluster CIDR used up, nodes still waiting (and new ones) are told so without a list
//! each, until a node holding a block goes (the only way a block is freed: a podCIDR cannot
//! change): a list per waiting node per resync costs (nodes)² decodes, which at 5,000 nodes kept
//! the controller (and the control plane's CPU) busy all the time.
//!
//! Assumes one controller instance per cluster (as every controller here: there is no leader
//! election yet).
//!
//! Must not: change a podCIDR once set (the API server refuses that too), or touch pods.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use skiff_api::ResourceExt;
use skiff_api::cidr::Ipv4Cidr;
use skiff_api::v1::Node;

use super::informer::{self, Cache, Reconciler};
use super::recorder::Recorder;
use crate::auth::Identity;
use crate::error::ApiError;
use crate::registry::{Registry, prefix};
use crate::store::{EventKind, KeyValue, Store};

/// Kubernetes' bound: a node block at most 16 bits longer than the cluster CIDR's prefix.
const MAX_EXTRA_BITS: u8 = 16;

/// A node block must leave room for the gateway and at least one pod.
const MAX_NODE_MASK: u8 = 30;

/// The cluster CIDR and the size of each node's block (`--cluster-cidr`,
/// `--node-cidr-mask-size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeIpamOptions {
    cluster_cidr: Ipv4Cidr,
    node_mask: u8,
}

/// Why a cluster CIDR and node mask do not go together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIpamError {
    #[error("/{mask} is shorter than the cluster CIDR {cluster}'s prefix")]
    MaskTooShort { mask: u8, cluster: Ipv4Cidr },
    #[error("/{0} leaves no room for pods (at most /{MAX_NODE_MASK})")]
    MaskTooLong(u8),
    #[error(
        "/{mask} blocks of {cluster} are more than 65536 nodes: the mask may be at most {MAX_EXTRA_BITS} bits longer than the cluster CIDR's prefix"
    )]
    TooManyBlocks { mask: u8, cluster: Ipv4Cidr },
}

impl NodeIpamOptions {
    pub fn new(cluster_cidr: Ipv4Cidr, node_mask: u8) -> Result<Self, NodeIpamError> {
        if node_mask < cluster_cidr.prefix() {
            return Err(NodeIpamError::MaskTooShort {
                mask: node_mask,
                cluster: cluster_cidr,
            });
        }
        if node_mask > MAX_NODE_MASK {
            return Err(NodeIpamError::MaskTooLong(node_mask));
        }
        if node_mask - cluster_cidr.prefix() > MAX_EXTRA_BITS {
            return Err(NodeIpamError::TooManyBlocks {
                mask: node_mask,
                cluster: cluster_cidr,
            });
        }
        Ok(Self {
            cluster_cidr,
            node_mask,
        })
    }

    pub fn cluster_cidr(&self) -> Ipv4Cidr {
        self.cluster_cidr
    }

    pub fn node_mask(&self) -> u8 {
        self.node_mask
    }

    /// The lowest block of the cluster CIDR that overlaps none of `used`.
    pub fn free_block<'a>(&self, used: impl IntoIterator<Item = &'a Ipv4Cidr>) -> Option<Ipv4Cidr> {
        let cluster = self.cluster_cidr;
        let shift = 32 - u32::from(self.node_mask);
        let count = cluster.subnet_count(self.node_mask);
        let mut taken: HashSet<u64> = HashSet::new();
        for c in used.into_iter().filter(|c| c.overlaps(&cluster)) {
            if c.prefix() <= cluster.prefix() {
                return None; // it spans the whole cluster CIDR
            }
            let first = cluster.index_of(c.network()).unwrap_or(0) >> shift;
            let blocks = if c.prefix() >= self.node_mask {
                1
            } else {
                1u64 << (self.node_mask - c.prefix())
            };
            taken.extend(first..(first + blocks).min(count));
        }
        (0..count)
            .find(|i| !taken.contains(i))
            .and_then(|i| cluster.subnet(self.node_mask, i))
    }
}

impl Default for NodeIpamOptions {
    /// `10.244.0.0/16` in `/24` blocks (flannel's and kubeadm's habit).
    fn default() -> Self {
        Self {
            cluster_cidr: Ipv4Cidr::containing(std::net::Ipv4Addr::new(10, 244, 0, 0), 16)
                .unwrap_or_else(|| unreachable!("16 <= 32")),
            node_mask: 24,
        }
    }
}

/// The blocks a node holds (`podCIDR` and `podCIDRs`), those that parse.
pub fn node_blocks(node: &Node) -> Vec<Ipv4Cidr> {
    let Some(spec) = &node.spec else {
        return Vec::new();
    };
    std::iter::once(&spec.pod_cidr)
        .chain(&spec.pod_cidrs)
        .filter_map(|c| c.parse().ok())
        .collect()
}

fn has_block(node: &Node) -> bool {
    node.spec.as_ref().is_some_and(|s| !s.pod_cidr.is_empty())
}

/// Runs until aborted.
pub async fn run(store: Arc<dyn Store>, options: NodeIpamOptions) {
    let s = store.clone();
    informer::run_forever("node-ipam", store, Duration::from_secs(30), move || {
        Controller::new(s.clone(), options)
    })
    .await;
}

pub(crate) struct Controller {
    options: NodeIpamOptions,
    nodes: Cache<Node>,
    api: Registry<Node>,
    events: Recorder,
    /// Nodes already told that no block is free (one event each, not one per resync).
    exhausted: BTreeSet<String>,
    /// The last fresh list found no free block, and no node holding one has gone since.
    full: bool,
}

impl Controller {
    pub(crate) fn new(store: Arc<dyn Store>, options: NodeIpamOptions) -> Self {
        Self {
            options,
            nodes: Cache::default(),
            api: Registry::new(store.clone()),
            events: Recorder::new(store, "node-ipam-controller"),
            exhausted: BTreeSet::new(),
            full: false,
        }
    }

    fn waiting(&self) -> impl Iterator<Item = String> + '_ {
        self.nodes
            .values()
            .filter(|n| !has_block(n))
            .map(|n| n.name().to_string())
    }

    /// Every node as stored now (not as cached): the used set of an allocation.
    async fn stored_nodes(&self) -> Result<Vec<Node>, ApiError> {
        self.api.list_all("").await
    }

    /// Tells (once per node) that the cluster CIDR has no block left for `node`.
    async fn report_exhausted(&mut self, node: &Node) {
        let name = node.name();
        if !self.exhausted.insert(name.to_string()) {
            return;
        }
        tracing::warn!(
            node = %name,
            cluster_cidr = %self.options.cluster_cidr,
            "no free pod CIDR for the node: the cluster CIDR is used up (its OCI pods get no pod network)"
        );
        self.events
            .warning(
                node,
                "CIDRNotAvailable",
                format!(
                    "Node {name} status is now: CIDRNotAvailable (no free /{} in {})",
                    self.options.node_mask, self.options.cluster_cidr
                ),
            )
            .await;
    }
}

#[async_trait::async_trait]
impl Reconciler for Controller {
    fn prefixes(&self) -> Vec<String> {
        vec![prefix::<Node>("")]
    }

    fn observe(&mut self, kind: EventKind, kv: &KeyValue, dirty: &mut BTreeSet<String>) {
        let (old, new) = self.nodes.apply(kind, kv);
        if old.as_deref().is_some_and(has_block) && !new.as_deref().is_some_and(has_block) {
            self.full = false; // a block may be free again
        }
        match (&old, &new) {
            (_, Some(n)) if !has_block(n) => {
                dirty.insert(n.name().to_string());
            }
            // A node that held a block is gone: the nodes still waiting may have it.
            (Some(o), None) if has_block(o) => {
                self.exhausted.remove(o.name());
                dirty.extend(self.waiting());
            }
            _ => {}
        }
    }

    fn all_keys(&self) -> Vec<String> {
        self.waiting().collect()
    }

    async fn reconcile(&mut self, name: &str) -> Result<Option<Duration>, ApiError> {
        if self.nodes.get("", name).is_none_or(has_block) {
            self.exhausted.remove(name);
            return Ok(None);
        }
        if self.full {
            if !self.exhausted.contains(name)
                && let Some(node) = self.nodes.get("", name).cloned()
            {
                self.report_exhausted(&node).await;
            }
            return Ok(None);
        }
        let stored = self.stored_nodes().await?;
        let Some(node) = stored.iter().find(|n| n.name() == name).cloned() else {
            return Ok(None);
        };
        if has_block(&node) {
            self.nodes.remember(node);
            return Ok(None);
        }
        let used: Vec<Ipv4Cidr> = stored.iter().flat_map(node_blocks).collect();
        let Some(block) = self.options.free_block(&used) else {
            self.full = true;
            self.report_exhausted(&node).await;
            return Ok(None);
        };
        let mut updated = node;
        let spec = updated.spec.get_or_insert_with(Default::default);
        spec.pod_cidr = block.to_string();
        spec.pod_cidrs = vec![block.to_string()];
        // A compare-and-swap on the node's resourceVersion: a concurrent change is a Conflict,
        // retried over a fresh list.
        let written = self.api.update(&Identity::Admin, updated).await?;
        tracing::info!(node = %name, pod_cidr = %block, "assigned the node's pod CIDR");
        self.exhausted.remove(name);
        self.nodes.remember(written);
        Ok(None)
    }
}

#[cfg(test)]
#[path = "node_ipam_tests.rs"]
mod tests;
