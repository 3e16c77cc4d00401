//! What the agent remembers of each container between reconciles, rebuilt after a restart from
//! the shims' tasks and the pod's reported status.

use std::time::{Duration, SystemTime};

use skiff_api::v1::ContainerStateTerminated;

use super::restart;
use crate::containers::Instance;

/// A container run that ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Terminated {
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub started_at: SystemTime,
    pub finished_at: SystemTime,
    pub id: String,
}

/// Where the current attempt of a container stands.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Current {
    /// Not started yet.
    #[default]
    None,
    /// Cannot start yet (config or image error); retried at `retry_at`.
    Waiting {
        reason: String,
        message: String,
        retry_at: SystemTime,
    },
    Running {
        id: String,
        started_at: SystemTime,
    },
    /// The pod's status says it ran, but no shim knows it (its shim died):
    /// resolved during adoption.
    Unknown {
        started_at: SystemTime,
    },
    Terminated(Terminated),
}

/// One container of a pod.
/// A pod's containers' records by name. Boxed: a B-tree leaf has room for eleven entries, so
/// a one-container pod's map with records inline took a ~5 KiB node (heaptrack, 1,000 idle pods).
pub type Records = std::collections::BTreeMap<String, Box<Record>>;

#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The current attempt, which is also the container's restartCount.
    pub attempt: u32,
    pub state: Current,
    /// The previous attempt's end (`lastState`).
    pub last: Option<Terminated>,
    /// Consecutive short runs, for the back-off.
    pub streak: u32,
    /// When a terminated container may start again (set when the back-off begins).
    pub next_start: Option<SystemTime>,
    /// `sha256:...` of the module.
    pub image_id: String,
    /// What the probes say of the current attempt.
    pub health: super::probes::Health,
}

impl Record {
    /// Takes in what the runtime says of an attempt of this container.
    pub fn observe(&mut self, instance: &Instance) {
        if instance.attempt < self.attempt {
            return;
        }
        if instance.attempt > self.attempt {
            if let Current::Terminated(t) = &self.state {
                self.last = Some(t.clone());
            }
            self.attempt = instance.attempt;
            self.next_start = None;
        }
        self.image_id = instance.digest.clone();
        self.state = if instance.running {
            Current::Running {
                id: instance.id.clone(),
                started_at: instance.started_at,
            }
        } else {
            Current::Terminated(Terminated {
                exit_code: instance.exit_code,
                reason: instance.reason.clone(),
                message: instance.message.clone(),
                started_at: instance.started_at,
                finished_at: instance.finished_at,
                id: instance.id.clone(),
            })
        };
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, Current::Running { .. })
    }

    /// Whether this container should be started at `now` under restart `policy`.
    ///
    /// A container that ended and restarts first waits out its back-off (10 s doubling per
    /// consecutive short run, reset by a run of 10 min): the first call that finds it waiting arms
    /// the back-off and returns [`Due::BackOff`] (to announce once); the call at or after its end
    /// moves the record to the next attempt and returns [`Due::Start`]. Pure: the clock is `now`.
    pub fn due(&mut self, policy: &str, now: SystemTime) -> Due {
        match &self.state {
            Current::Running { .. } | Current::Unknown { .. } => Due::No,
            Current::Waiting { retry_at, .. } if *retry_at > now => Due::No,
            Current::None | Current::Waiting { .. } => Due::Start,
            Current::Terminated(t) => {
                if !restart::restarts(policy, t.exit_code) {
                    return Due::No;
                }
                let (next, armed) = match self.next_start {
                    Some(next) => (next, None),
                    None => {
                        let ran = t
                            .finished_at
                            .duration_since(t.started_at)
                            .unwrap_or_default();
                        if ran >= restart::BACKOFF_RESET {
                            self.streak = 0;
                        }
                        // A container its shim's crash ended is not at fault: it restarts
                        // at once.
                        let delay = if t.reason == crate::containers::SHIM_CRASHED {
                            Duration::ZERO
                        } else {
                            restart::backoff(self.streak)
                        };
                        let next = t.finished_at + delay;
                        self.next_start = Some(next);
                        (next, Some(delay))
                    }
                };
                if next > now {
                    return armed.map_or(Due::No, Due::BackOff);
                }
                if t.reason != crate::containers::SHIM_CRASHED {
                    self.streak += 1;
                }
                self.last = Some(t.clone());
                self.next_start = None;
                self.attempt += 1;
                self.state = Current::None;
                Due::Start
            }
        }
    }

    /// When this container next needs the agent without any event: the end of a wait or a
    /// back-off.
    pub fn wake_at(&self) -> Option<SystemTime> {
        match &self.state {
            Current::Waiting { retry_at, .. } => Some(*retry_at),
            Current::Terminated(_) => self.next_start,
            _ => None,
        }
    }
}

/// The answer of [`Record::due`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Leave it: it runs, ended for good, or waits.
    No,
    /// Its back-off of this length has just begun: announce it (a `BackOff` event).
    BackOff(Duration),
    /// Start it now (the record holds the attempt to start).
    Start,
}

pub fn to_time(ts: Option<&skiff_api::Timestamp>) -> SystemTime {
    ts.map_or(SystemTime::UNIX_EPOCH, |t| {
        SystemTime::UNIX_EPOCH
            + std::time::Duration::from_secs(u64::try_from(t.seconds).unwrap_or(0))
    })
}

pub fn to_timestamp(t: SystemTime) -> skiff_api::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    skiff_api::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

impl From<&ContainerStateTerminated> for Terminated {
    fn from(t: &ContainerStateTerminated) -> Self {
        Self {
            exit_code: t.exit_code,
            reason: t.reason.clone(),
            message: t.message.clone(),
            started_at: to_time(t.started_at.as_ref()),
            finished_at: to_time(t.finished_at.as_ref()),
            id: instance_of(&t.container_id).to_string(),
        }
    }
}

impl From<&Terminated> for ContainerStateTerminated {
    fn from(t: &Terminated) -> Self {
        Self {
            exit_code: t.exit_code,
            signal: 0,
            reason: t.reason.clone(),
            message: t.message.clone(),
            started_at: Some(to_timestamp(t.started_at)),
            finished_at: Some(to_timestamp(t.finished_at)),
            container_id: if t.id.is_empty() {
                String::new()
            } else {
                container_id(&t.id)
            },
        }
    }
}

/// How a status names a container: `skiff://<instance id>` (Kubernetes' `<runtime>://<id>`);
/// the same for Wasm guests and Linux containers.
pub fn container_id(instance: &str) -> String {
    format!("skiff://{instance}")
}

/// The instance id of a status's `containerID` (also as agents before 0.1 wrote it, `wasm://`).
pub fn instance_of(container_id: &str) -> &str {
    container_id
        .strip_prefix("skiff://")
        .or_else(|| container_id.strip_prefix("wasm://"))
        .unwrap_or(container_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn ended(exit_code: i32, started: u64, finished: u64) -> Current {
        Current::Terminated(Terminated {
            exit_code,
            reason: "Error".into(),
            message: String::new(),
            started_at: at(started),
            finished_at: at(finished),
            id: "u/c/0".into(),
        })
    }

    #[test]
    fn a_new_container_starts_and_a_running_one_is_left() {
        let mut rec = Record::default();
        assert_eq!(rec.due("Always", at(0)), Due::Start);
        rec.state = Current::Running {
            id: "u/c/0".into(),
            started_at: at(0),
        };
        assert_eq!(rec.due("Always", at(100)), Due::No);
        rec.state = Current::Unknown { started_at: at(0) };
        assert_eq!(rec.due("Always", at(100)), Due::No);
    }

    #[test]
    fn a_waiting_container_is_retried_at_its_time() {
        let mut rec = Record {
            state: Current::Waiting {
                reason: "CreateContainerConfigError".into(),
                message: "configmap \"x\" not found".into(),
                retry_at: at(2),
            },
            ..Default::default()
        };
        assert_eq!(rec.wake_at(), Some(at(2)));
        assert_eq!(rec.due("Always", at(1)), Due::No);
        assert_eq!(rec.due("Always", at(2)), Due::Start);
        // A retry is the same attempt, not a restart.
        assert_eq!(rec.attempt, 0);
    }

    #[test]
    fn restart_policies_decide_whether_an_ended_container_comes_back() {
        for (policy, exit_code, restarts) in [
            ("Always", 0, true),
            ("Always", 1, true),
            ("OnFailure", 0, false),
            ("OnFailure", 2, true),
            ("Never", 1, false),
        ] {
            let mut rec = Record {
                state: ended(exit_code, 0, 1),
                ..Default::default()
            };
            let due = rec.due(policy, at(1000));
            assert_eq!(due == Due::Start, restarts, "{policy} exit {exit_code}");
        }
    }

    #[test]
    fn crash_loop_back_off_doubles_and_is_announced_once() {
        let mut rec = Record {
            state: ended(1, 0, 1),
            ..Default::default()
        };
        let mut finished = 1;
        for expected in [10, 20, 40, 80, 160, 300, 300] {
            assert_eq!(
                rec.due("Always", at(finished)),
                Due::BackOff(Duration::from_secs(expected))
            );
            assert_eq!(rec.wake_at(), Some(at(finished + expected)));
            // Asked again during the back-off: nothing new to say.
            assert_eq!(rec.due("Always", at(finished + expected - 1)), Due::No);
            let attempt = rec.attempt;
            assert_eq!(rec.due("Always", at(finished + expected)), Due::Start);
            assert_eq!(rec.attempt, attempt + 1);
            assert!(matches!(&rec.last, Some(t) if t.exit_code == 1));
            // The new attempt crashes at once.
            let started = finished + expected;
            finished = started + 1;
            rec.state = ended(1, started, finished);
        }
    }

    #[test]
    fn a_long_run_resets_the_back_off() {
        let mut rec = Record {
            state: ended(1, 0, 1),
            streak: 5,
            ..Default::default()
        };
        assert_eq!(
            rec.due("Always", at(1)),
            Due::BackOff(Duration::from_secs(300))
        );
        let mut rec = Record {
            state: ended(1, 0, 601),
            streak: 5,
            ..Default::default()
        };
        assert_eq!(
            rec.due("Always", at(601)),
            Due::BackOff(Duration::from_secs(10))
        );
    }

    #[test]
    fn a_back_off_already_over_starts_at_once() {
        // An agent that was down longer than the back-off restarts without announcing it.
        let mut rec = Record {
            state: ended(1, 0, 1),
            next_start: Some(at(11)),
            ..Default::default()
        };
        assert_eq!(rec.due("Always", at(500)), Due::Start);
        assert_eq!(rec.attempt, 1);
    }
}
