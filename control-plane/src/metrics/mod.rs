//! The API server's Prometheus metrics: one process-wide registry of what the control plane does,
//! encoded in Prometheus' text format (or OpenMetrics) for `--metrics-addr` (the HTTP listener
//! itself is the binary's: `cli/src/metrics_endpoint.rs`).
//!
//! Names, labels and units are Kubernetes' where kube-apiserver, kube-scheduler or
//! kube-controller-manager export the same figure ([`api`]: `apiserver_request_total`,
//! `apiserver_request_duration_seconds`, `apiserver_registered_watchers`; [`scheduler`]:
//! `scheduler_schedule_attempts_total`, `scheduler_scheduling_attempt_duration_seconds`;
//! [`workqueue`]: `workqueue_depth`, `workqueue_adds_total`, `workqueue_work_duration_seconds`),
//! and skiff's own (`skiff_`) where the shape differs ([`store`]: one store interface over redb
//! or etcd; [`pods`]: the figures agents report). The registry is global, as Kubernetes'
//! `legacyregistry` is: the hooks in the request path, the store, the scheduler and the informer
//! are one call each, with nothing to thread through.
//!
//! Cardinality is bounded: every label value comes from a fixed set (verbs, kinds, codes,
//! controller names, store operations) or from objects that exist (pods and nodes, for the pod
//! figures); nothing per request, and never a secret or a token.
//!
//! Must not: decide anything from the figures, or block the path it measures (each hook is a few
//! atomic operations).

pub mod api;
pub mod pods;
pub mod scheduler;
pub mod store;
pub mod workqueue;

use std::sync::LazyLock;

use prometheus_client::registry::Registry;

/// Buckets of request latencies, in seconds (kube-apiserver's, trimmed to what a small control
/// plane sees: 5 ms to 60 s).
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 5.0, 10.0, 30.0, 60.0,
];

/// Buckets of fast operations (store calls, scheduling attempts, reconciles), in seconds: 100 µs
/// to 10 s.
pub const FAST_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

/// Every family of the server.
struct Metrics {
    registry: Registry,
    api: api::Api,
    store: store::StoreMetrics,
    scheduler: scheduler::Scheduler,
    workqueue: workqueue::WorkQueues,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::default();
    let api = api::Api::register(&mut registry);
    let store = store::StoreMetrics::register(&mut registry);
    let scheduler = scheduler::Scheduler::register(&mut registry);
    let workqueue = workqueue::WorkQueues::register(&mut registry);
    registry.register_collector(Box::new(pods::Collector));
    Metrics {
        registry,
        api,
        store,
        scheduler,
        workqueue,
    }
});

/// Appends every family of `registry` in OpenMetrics text (`openmetrics`, without its closing
/// `# EOF`: the caller adds it once, after every source of the process) or Prometheus' text
/// format 0.0.4.
pub fn encode_registry(
    registry: &Registry,
    openmetrics: bool,
    out: &mut String,
) -> Result<(), std::fmt::Error> {
    if openmetrics {
        prometheus_client::encoding::text::encode_registry(out, registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(out, registry)
    }
}

/// Appends the server's families (see [`encode_registry`]).
pub fn encode(openmetrics: bool, out: &mut String) -> Result<(), std::fmt::Error> {
    encode_registry(&METRICS.registry, openmetrics, out)
}

fn api() -> &'static api::Api {
    &METRICS.api
}

fn store_metrics() -> &'static store::StoreMetrics {
    &METRICS.store
}

fn scheduler_metrics() -> &'static scheduler::Scheduler {
    &METRICS.scheduler
}

fn workqueues() -> &'static workqueue::WorkQueues {
    &METRICS.workqueue
}
