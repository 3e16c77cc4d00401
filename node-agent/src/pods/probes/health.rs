//! What the probes have said of one attempt of a container, and what follows from each new
//! result (kubelet's prober workers and results manager, as one pure state machine): consecutive
//! results are counted per kind; a readiness probe flips the container's readiness after
//! successThreshold successes or failureThreshold failures; a startup probe marks it started at
//! its first success and fails it after failureThreshold failures; a liveness probe fails it
//! after failureThreshold failures. A failed container is killed by its worker; nothing more is
//! counted for that attempt.
//!
//! Must not: do I/O or read the clock (the caller passes `now`).

use std::time::{Duration, SystemTime};

use skiff_api::v1::Container;

use super::spec::Kind;

/// An `Unhealthy` event is repeated at most this often while the same failure goes on (the
/// API has no event aggregation: a probe failing every second would write an event a second).
pub const UNHEALTHY_REPEAT: Duration = Duration::from_secs(60);

/// Consecutive equal results of one probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Run {
    success: bool,
    length: u32,
}

/// The last `Unhealthy` event of one probe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Said {
    message: String,
    at: Option<SystemTime>,
}

/// The probes' view of one attempt (instance) of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// The instance these results are about; results of another are stale.
    pub instance: String,
    /// The startup probe has succeeded.
    pub started: bool,
    /// The readiness probe's current verdict.
    pub ready: bool,
    /// The probe that failed it for good: it is to be killed.
    pub failed: Option<Kind>,
    /// The kill was sent.
    pub killed: bool,
    runs: [Run; 3],
    said: [Said; 3],
}

/// What one result changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The readiness or the start of the container changed: the pod's status must be written.
    pub changed: bool,
    /// An `Unhealthy` event to record, with this message.
    pub unhealthy: Option<String>,
    /// The container failed this probe for good: kill it (and restart it per policy).
    pub kill: Option<Kind>,
}

fn slot(kind: Kind) -> usize {
    match kind {
        Kind::Liveness => 0,
        Kind::Readiness => 1,
        Kind::Startup => 2,
    }
}

impl Health {
    /// What an agent that restarted knows: the attempt's last reported `started` and `ready`.
    pub fn adopted(instance: &str, started: bool, ready: bool) -> Self {
        Self {
            instance: instance.to_string(),
            started,
            ready,
            ..Default::default()
        }
    }

    /// Makes this the health of `instance`, forgetting an earlier attempt's.
    pub fn track(&mut self, instance: &str) {
        if self.instance != instance {
            *self = Self {
                instance: instance.to_string(),
                ..Default::default()
            };
        }
    }

    /// Folds in one result of probe `kind` (`Err` is a failure with its message) under its
    /// thresholds.
    pub fn fold(
        &mut self,
        kind: Kind,
        result: Result<(), &str>,
        success_threshold: u32,
        failure_threshold: u32,
        now: SystemTime,
    ) -> Verdict {
        let mut verdict = Verdict::default();
        if self.failed.is_some() {
            return verdict;
        }
        let i = slot(kind);
        let success = result.is_ok();
        let run = &mut self.runs[i];
        if run.success == success && run.length > 0 {
            run.length = run.length.saturating_add(1);
        } else {
            *run = Run { success, length: 1 };
        }
        let length = run.length;
        match result {
            Ok(()) => self.said[i] = Said::default(),
            Err(message) => {
                let said = &mut self.said[i];
                let due = said.message != message
                    || said
                        .at
                        .and_then(|at| now.duration_since(at).ok())
                        .is_none_or(|d| d >= UNHEALTHY_REPEAT);
                if due {
                    *said = Said {
                        message: message.to_string(),
                        at: Some(now),
                    };
                    verdict.unhealthy = Some(message.to_string());
                }
            }
        }
        let crossed = if success {
            length >= success_threshold
        } else {
            length >= failure_threshold
        };
        if !crossed {
            return verdict;
        }
        match (kind, success) {
            (Kind::Readiness, ready) if self.ready != ready => {
                self.ready = ready;
                verdict.changed = true;
            }
            (Kind::Startup, true) if !self.started => {
                self.started = true;
                verdict.changed = true;
            }
            (Kind::Liveness | Kind::Startup, false) => {
                self.failed = Some(kind);
                self.ready = false;
                verdict.changed = true;
                verdict.kill = Some(kind);
            }
            _ => {}
        }
        verdict
    }
}

/// `(started, ready)` of a container whose current attempt is `running` as `instance` (if it
/// runs), by its probes: started once its startup probe passed (at once without one), ready once
/// started and its readiness probe passes (at once without one), never while it is being killed.
pub fn readiness(container: &Container, instance: Option<&str>, health: &Health) -> (bool, bool) {
    let Some(instance) = instance else {
        return (false, false);
    };
    let current = health.instance == instance;
    let started = container.startup_probe.is_none() || (current && health.started);
    let failed = current && health.failed.is_some();
    let ready =
        started && !failed && (container.readiness_probe.is_none() || (current && health.ready));
    (started, ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::Probe;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    #[test]
    fn readiness_flips_after_its_thresholds() {
        let mut h = Health::default();
        h.track("u/c/0");
        // successThreshold 2, failureThreshold 3.
        let v = h.fold(Kind::Readiness, Ok(()), 2, 3, at(0));
        assert!(!v.changed && !h.ready);
        let v = h.fold(Kind::Readiness, Ok(()), 2, 3, at(1));
        assert!(v.changed && h.ready);
        for s in 2..4 {
            let v = h.fold(Kind::Readiness, Err("boom"), 2, 3, at(s));
            assert!(!v.changed && h.ready, "{s}");
        }
        let v = h.fold(Kind::Readiness, Err("boom"), 2, 3, at(4));
        assert!(v.changed && !h.ready);
        assert_eq!(v.kill, None, "readiness never kills");
    }

    #[test]
    fn liveness_fails_after_failure_threshold_consecutive_failures() {
        let mut h = Health::default();
        h.track("u/c/0");
        assert_eq!(h.fold(Kind::Liveness, Err("x"), 1, 3, at(0)).kill, None);
        // A success in between starts the count again.
        assert_eq!(h.fold(Kind::Liveness, Ok(()), 1, 3, at(1)).kill, None);
        assert_eq!(h.fold(Kind::Liveness, Err("x"), 1, 3, at(2)).kill, None);
        assert_eq!(h.fold(Kind::Liveness, Err("x"), 1, 3, at(3)).kill, None);
        let v = h.fold(Kind::Liveness, Err("x"), 1, 3, at(4));
        assert_eq!(v.kill, Some(Kind::Liveness));
        assert_eq!(h.failed, Some(Kind::Liveness));
        // Failed for good: nothing more counts for this attempt.
        assert_eq!(
            h.fold(Kind::Liveness, Err("x"), 1, 3, at(5)),
            Verdict::default()
        );
        // The next attempt starts afresh.
        h.track("u/c/1");
        assert_eq!(h.failed, None);
    }

    #[test]
    fn startup_passes_once_or_fails_for_good() {
        let mut h = Health::default();
        h.track("u/c/0");
        let v = h.fold(Kind::Startup, Err("no"), 1, 2, at(0));
        assert!(!v.changed && !h.started);
        let v = h.fold(Kind::Startup, Ok(()), 1, 2, at(1));
        assert!(v.changed && h.started);
        let mut h = Health::default();
        h.track("u/c/0");
        h.fold(Kind::Startup, Err("no"), 1, 2, at(0));
        assert_eq!(
            h.fold(Kind::Startup, Err("no"), 1, 2, at(1)).kill,
            Some(Kind::Startup)
        );
    }

    #[test]
    fn unhealthy_is_said_when_new_then_once_a_minute() {
        let mut h = Health::default();
        h.track("u/c/0");
        let said = |h: &mut Health, m: &str, t: u64| {
            h.fold(Kind::Readiness, Err(m), 1, 100, at(t)).unhealthy
        };
        assert_eq!(said(&mut h, "a", 0).as_deref(), Some("a"));
        assert_eq!(said(&mut h, "a", 1), None);
        assert_eq!(said(&mut h, "b", 2).as_deref(), Some("b"));
        assert_eq!(said(&mut h, "b", 61), None);
        assert_eq!(said(&mut h, "b", 62).as_deref(), Some("b"));
    }

    #[test]
    fn a_container_is_ready_when_running_started_and_its_readiness_passes() {
        let probe = Some(Probe::default());
        let plain = Container::default();
        let h = Health::default();
        assert_eq!(readiness(&plain, Some("u/c/0"), &h), (true, true));
        assert_eq!(readiness(&plain, None, &h), (false, false));
        let gated = Container {
            readiness_probe: probe.clone(),
            startup_probe: probe,
            ..Default::default()
        };
        let mut h = Health::adopted("u/c/0", true, false);
        assert_eq!(readiness(&gated, Some("u/c/0"), &h), (true, false));
        h.ready = true;
        assert_eq!(readiness(&gated, Some("u/c/0"), &h), (true, true));
        // Another attempt's results do not count.
        assert_eq!(readiness(&gated, Some("u/c/1"), &h), (false, false));
        h.failed = Some(Kind::Liveness);
        assert_eq!(readiness(&gated, Some("u/c/0"), &h), (true, false));
    }
}
