//! Control-plane controllers: level-triggered reconcilers over list + watch ([`informer`]).
//!
//! - [`deployment`]: a ReplicaSet per template revision, rolling updates, history.
//! - [`replicaset`]: `replicas` pods of a template.
//! - [`endpoints`]: a Service's ready pods.
//! - [`node_lifecycle`]: nodes that stop heartbeating become NotReady; their pods are evicted.
//! - [`gc`]: dependents of deleted owners (ownerReferences), orphan and foreground deletion.
//! - [`namespace`]: a deleted namespace's contents.
//! - [`node_ipam`]: each node's block of the cluster CIDR (`spec.podCIDR`).
//!
//! The [`crate::scheduler`] runs beside them.

pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod informer;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod podutil;
pub mod recorder;
pub mod replicaset;

use std::sync::Arc;

use crate::store::Store;
use node_ipam::NodeIpamOptions;
use node_lifecycle::LifecycleOptions;

/// Runs every controller (and the scheduler) until the task is aborted. The scheduler places
/// pods on Ready nodes; the lifecycle controller alone judges whether a node still heartbeats.
pub async fn run(store: Arc<dyn Store>, lifecycle: LifecycleOptions, ipam: NodeIpamOptions) {
    tokio::join!(
        namespace::run(store.clone()),
        deployment::run(store.clone()),
        replicaset::run(store.clone()),
        endpoints::run(store.clone()),
        gc::run(store.clone()),
        node_lifecycle::run(store.clone(), lifecycle),
        node_ipam::run(store.clone(), ipam),
        crate::scheduler::run(store)
    );
}
