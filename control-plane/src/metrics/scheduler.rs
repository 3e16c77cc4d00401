//! Scheduler metrics, as kube-scheduler names them: `scheduler_schedule_attempts_total{result}`
//! and `scheduler_scheduling_attempt_duration_seconds{result}`, `result` one of `scheduled` (a
//! node was chosen and the bind sent), `unschedulable` (no node fits) or `error` (the bind failed
//! for a reason other than a lost race). skiff has one scheduler profile, so there is no
//! `profile` label. The duration is the attempt's filtering and scoring; a bind runs after it,
//! concurrently with the next attempts.
//!
//! Must not: schedule.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// How a scheduling attempt ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Outcome {
    Scheduled,
    Unschedulable,
    Error,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Scheduled => "scheduled",
            Outcome::Unschedulable => "unschedulable",
            Outcome::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

type Durations = Family<ResultLabels, Histogram, fn() -> Histogram>;

pub(super) struct Scheduler {
    attempts: Family<ResultLabels, Counter>,
    durations: Durations,
}

fn fast_histogram() -> Histogram {
    Histogram::new(super::FAST_BUCKETS)
}

impl Scheduler {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let attempts = Family::<ResultLabels, Counter>::default();
        let durations: Durations = Family::new_with_constructor(fast_histogram);
        registry.register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem",
            attempts.clone(),
        );
        registry.register_with_unit(
            "scheduler_scheduling_attempt_duration",
            "Scheduling attempt latency in seconds (scheduling algorithm)",
            Unit::Seconds,
            durations.clone(),
        );
        // Every result is shown from the start, at zero, so that rates of it exist.
        for outcome in [Outcome::Scheduled, Outcome::Unschedulable, Outcome::Error] {
            let labels = ResultLabels {
                result: outcome.label(),
            };
            let _ = attempts.get_or_create(&labels);
            let _ = durations.get_or_create(&labels);
        }
        Self {
            attempts,
            durations,
        }
    }
}

/// One attempt ended with `outcome` after `took` (none: its time was counted already, as for
/// a bind that failed after its attempt was timed).
pub fn attempt(outcome: Outcome, took: Option<Duration>) {
    let labels = ResultLabels {
        result: outcome.label(),
    };
    let m = super::scheduler_metrics();
    m.attempts.get_or_create(&labels).inc();
    if let Some(took) = took {
        m.durations
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }
}
