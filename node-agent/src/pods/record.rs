//! What the agent remembers of each container between reconciles, rebuilt after a restart from
//! the runtime host's instances and the pod's reported status.

use std::time::SystemTime;

use skiff_api::v1::ContainerStateTerminated;

use crate::host::Instance;

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
    /// The pod's status says it ran, but the runtime host does not know it (the host restarted):
    /// resolved during adoption.
    Unknown {
        started_at: SystemTime,
    },
    Terminated(Terminated),
}

/// One container of a pod.
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
}

impl Record {
    /// Takes in what the runtime host says of an attempt of this container.
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
/// one runtime host runs both Wasm instances and Linux containers.
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
