//! Controller work queue metrics, as client-go's workqueue names them, by controller
//! (`name`: `deployment`, `replicaset`, `endpoints`, ...): `workqueue_depth` (keys waiting for
//! their reconcile now), `workqueue_adds_total` (keys queued), `workqueue_retries_total` (keys
//! queued again after a failed reconcile) and `workqueue_work_duration_seconds` (how long each
//! reconcile took). Keys waiting for a requested later time are not in the depth, as client-go's
//! delaying queue holds them outside the queue.
//!
//! Must not: reconcile.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabels {
    name: &'static str,
}

type Durations = Family<NameLabels, Histogram, fn() -> Histogram>;

pub(super) struct WorkQueues {
    depth: Family<NameLabels, Gauge>,
    adds: Family<NameLabels, Counter>,
    retries: Family<NameLabels, Counter>,
    durations: Durations,
}

fn fast_histogram() -> Histogram {
    Histogram::new(super::FAST_BUCKETS)
}

impl WorkQueues {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let depth = Family::<NameLabels, Gauge>::default();
        let adds = Family::<NameLabels, Counter>::default();
        let retries = Family::<NameLabels, Counter>::default();
        let durations: Durations = Family::new_with_constructor(fast_histogram);
        registry.register(
            "workqueue_depth",
            "Current depth of workqueue",
            depth.clone(),
        );
        registry.register(
            "workqueue_adds",
            "Total number of adds handled by workqueue",
            adds.clone(),
        );
        registry.register(
            "workqueue_retries",
            "Total number of retries handled by workqueue",
            retries.clone(),
        );
        registry.register_with_unit(
            "workqueue_work_duration",
            "How long in seconds processing an item from workqueue takes",
            Unit::Seconds,
            durations.clone(),
        );
        Self {
            depth,
            adds,
            retries,
            durations,
        }
    }
}

/// One controller's queue, by the controller's name.
#[derive(Debug, Clone, Copy)]
pub struct Queue(&'static str);

impl Queue {
    pub fn named(name: &'static str) -> Self {
        Self(name)
    }

    fn labels(self) -> NameLabels {
        NameLabels { name: self.0 }
    }

    /// `keys` are waiting now.
    pub fn depth(self, keys: usize) {
        let keys = i64::try_from(keys).unwrap_or(i64::MAX);
        super::workqueues()
            .depth
            .get_or_create(&self.labels())
            .set(keys);
    }

    /// `n` keys were queued.
    pub fn added(self, n: usize) {
        if n > 0 {
            super::workqueues()
                .adds
                .get_or_create(&self.labels())
                .inc_by(n as u64);
        }
    }

    /// A key's reconcile took `took`; it failed and is queued again (`retry`).
    pub fn done(self, took: Duration, retry: bool) {
        let m = super::workqueues();
        let labels = self.labels();
        m.durations
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if retry {
            m.retries.get_or_create(&labels).inc();
        }
    }
}
