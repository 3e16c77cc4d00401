//! Control-plane controllers: level-triggered reconcilers over list + watch ([`informer`]).
//!
//! - [`deployment`]: a ReplicaSet per template revision, rolling updates, history.
//! - [`replicaset`]: `replicas` pods of a template.
//! - [`endpoints`]: a Service's ready pods.
//! - [`disruption`]: PodDisruptionBudgets' status (what evictions may spend).
//! - [`node_lifecycle`]: nodes that stop heartbeating become NotReady; their pods are evicted.
//! - [`event_ttl`]: Events go an hour after they were last recorded (`--event-ttl`).
//! - [`gc`]: dependents of deleted owners (ownerReferences), orphan and foreground deletion.
//! - [`namespace`]: a deleted namespace's contents.
//! - [`node_ipam`]: each node's block of the cluster CIDR (`spec.podCIDR`).
//! - [`hpa`]: HorizontalPodAutoscalers scale their Deployments (to zero and back for Wasm ones).
//! - [`ingress`]: skiff's Ingresses' status (the Ready nodes' addresses) and Events about
//!   backends that lead nowhere.
//! - [`service_lb`]: LoadBalancer Services' status (the Ready nodes' addresses, which every
//!   node's proxy answers their ports on).
//!
//! The [`crate::scheduler`] runs beside them.

pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod event_ttl;
pub mod gc;
pub mod hpa;
pub mod informer;
pub mod ingress;
pub mod kubernetes_service;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod podutil;
pub mod recorder;
pub mod replicaset;
pub mod service_accounts;
pub mod service_lb;

use std::sync::Arc;

use crate::store::Store;
use node_ipam::NodeIpamOptions;
use node_lifecycle::LifecycleOptions;

/// Runs every controller (and the scheduler) until the task is aborted. The scheduler places
/// pods on Ready nodes; the lifecycle controller alone judges whether a node still heartbeats.
///
/// Each runs as a task of its own, so that the runtime's workers run them side by side: the
/// scheduler does not wait while the lifecycle controller takes in a burst of Lease renewals.
/// Aborting this task aborts them all (the set is dropped with it).
pub async fn run(
    store: Arc<dyn Store>,
    lifecycle: LifecycleOptions,
    ipam: NodeIpamOptions,
    autoscaling: hpa::Autoscaling,
    hpa_options: hpa::HpaOptions,
) {
    // Each under its name in the audit log (kube-controller-manager's controller names).
    use crate::audit::store::{SCHEDULER, as_controller};
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(as_controller(
        "namespace-controller",
        namespace::run(store.clone()),
    ));
    tasks.spawn(as_controller(
        "deployment-controller",
        deployment::run(store.clone()),
    ));
    tasks.spawn(as_controller(
        "replicaset-controller",
        replicaset::run(store.clone()),
    ));
    tasks.spawn(as_controller(
        "endpoint-controller",
        endpoints::run(store.clone()),
    ));
    tasks.spawn(as_controller(
        "disruption-controller",
        disruption::run(store.clone()),
    ));
    tasks.spawn(as_controller(
        "generic-garbage-collector",
        gc::run(store.clone()),
    ));
    tasks.spawn(as_controller(
        "node-controller",
        node_lifecycle::run(store.clone(), lifecycle),
    ));
    tasks.spawn(as_controller(
        "node-ipam-controller",
        node_ipam::run(store.clone(), ipam),
    ));
    tasks.spawn(as_controller(
        "ingress-controller",
        ingress::run(store.clone()),
    ));
    tasks.spawn(as_controller(
        "service-lb-controller",
        service_lb::run(store.clone()),
    ));
    tasks.spawn(as_controller(
        "horizontal-pod-autoscaler",
        hpa::run(store.clone(), autoscaling, hpa_options),
    ));
    tasks.spawn(as_controller(SCHEDULER, crate::scheduler::run(store)));
    // Each runs until aborted; one ends here only by panicking.
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "a controller stopped");
        }
    }
}
