//! The agent's side of `containerd-shim-skiff-v1`: it drives containers through the shim's task
//! API (containerd's `containerd.task.v2.Task` over ttrpc), launching the shim itself as
//! containerd does, so that one executor path serves a skiff node and a plain containerd node
//! (DESIGN §5).
//!
//! - [`Shims`] owns the agent's shim state in `DATA_DIR/shims/` ([`records`]): it serves the
//!   events endpoint the shims publish to ([`events`]), launches a shim for a group of tasks
//!   (`shim start`, [`launch`]) or reconnects to the one recorded, and cleans up after a dead
//!   one (`shim delete`).
//! - [`ShimClient`] is one shim's task API: create, start, state, wait, kill, delete, exec,
//!   connect, shutdown ([`client`]), with the agent's own types ([`task`]).
//! - [`ShimEvent`]s (exit, OOM) come on a broadcast from
//!   [`Shims::subscribe`].
//!
//! A restarted agent calls [`Shims::open`] on the same data dir and [`Shims::recorded`]: each
//! recorded shim that still answers is adopted with [`Shims::reconnect`], and its tasks are
//! asked for their [`TaskState`]; a running task is never started again. A recorded shim that
//! does not answer is gone with its tasks: [`Shims::cleanup`] runs `shim delete` for each.
//!
//! The bundles they run are written by [`crate::containers::bundle`] (the form is there).
//!
//! Must not: decide what runs (the pod loop does), or hold anything but records of shims and
//! tasks in the data dir.

pub mod client;
pub mod error;
pub mod events;
pub mod launch;
pub mod records;
pub mod task;

use std::path::{Path, PathBuf};

use tokio::sync::broadcast;

pub use client::{ShimClient, Timeouts};
pub use error::{Code, ShimError};
pub use events::ShimEvent;
pub use records::{RecordedShim, RecordedTask};
pub use task::{
    CreateTask, ExitStatus, RootfsMount, ShimInfo, TaskIo, TaskState, TaskStatus, TaskUsage,
};

use events::EventsServer;
use launch::Launcher;
use records::Records;

/// The containerd namespace of the agent's tasks: apart from a real containerd's (`default`,
/// `k8s.io`) on the same host.
pub const DEFAULT_NAMESPACE: &str = "skiff";

/// The longest Unix socket path (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// How the agent runs its shims.
#[derive(Debug, Clone)]
pub struct ShimsConfig {
    /// The agent's data dir: its shim state lives in `DATA_DIR/shims/`.
    pub data_dir: PathBuf,
    /// `containerd-shim-skiff-v1`.
    pub binary: PathBuf,
    pub namespace: String,
    /// A cgroup every shim process is put in (a node-level one, never a pod's).
    pub shim_cgroup: Option<String>,
    pub timeouts: Timeouts,
    /// Events kept for a lagging subscriber.
    pub event_capacity: usize,
}

impl ShimsConfig {
    pub fn new(data_dir: &Path, binary: &Path) -> Self {
        ShimsConfig {
            data_dir: data_dir.to_path_buf(),
            binary: binary.to_path_buf(),
            namespace: DEFAULT_NAMESPACE.to_string(),
            shim_cgroup: None,
            timeouts: Timeouts::default(),
            event_capacity: 1024,
        }
    }
}

/// The agent's shims: their events endpoint, launching and reconnecting.
pub struct Shims {
    records: Records,
    launcher: Launcher,
    timeouts: Timeouts,
    events: EventsServer,
}

impl std::fmt::Debug for Shims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shims")
            .field("root", &self.records.root())
            .field("namespace", &self.launcher.namespace)
            .finish_non_exhaustive()
    }
}

impl Shims {
    /// Opens `DATA_DIR/shims/` and serves the events endpoint there. Shims launched by an
    /// earlier agent on this data dir publish to it again (they retry).
    pub async fn open(config: ShimsConfig) -> Result<Self, ShimError> {
        records::check_id("namespace", &config.namespace)?;
        let records = Records::open(&config.data_dir.join("shims"))?;
        let root = records.root().to_path_buf();
        let address = root.join("agent.sock");
        let ttrpc_address = root.join("agent.sock.ttrpc");
        let len = ttrpc_address.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(ShimError::invalid(
                format!("data dir {}", config.data_dir.display()),
                format!(
                    "the events socket's path would be {len} bytes, past the {MAX_SOCKET_PATH} a Unix socket allows"
                ),
            ));
        }
        let cache_dir = root.join("cache");
        std::fs::create_dir_all(&cache_dir).map_err(|e| ShimError::io(&cache_dir, e))?;
        let events =
            EventsServer::serve(&ttrpc_address, &config.namespace, config.event_capacity).await?;
        Ok(Shims {
            records,
            launcher: Launcher {
                binary: config.binary,
                namespace: config.namespace,
                address,
                ttrpc_address,
                cache_dir,
                shim_cgroup: config.shim_cgroup,
                timeout: config.timeouts.action,
            },
            timeouts: config.timeouts,
            events,
        })
    }

    /// Every task event of this agent's shims, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ShimEvent> {
        self.events.subscribe()
    }

    /// What a previous agent (or this one) launched and did not shut down.
    pub fn recorded(&self) -> Result<Vec<RecordedShim>, ShimError> {
        self.records.shims()
    }

    /// The shim of `group` for task `id` (its bundle at `bundle`, `config.json` written, naming
    /// that group): the group's recorded shim if it answers, else one launched now (`shim
    /// start` in the bundle).
    pub async fn shim_for(
        &self,
        group: &str,
        id: &str,
        bundle: &Path,
    ) -> Result<ShimClient, ShimError> {
        records::check_id("task", id)?;
        records::check_id("group", group)?;
        if self.records.address(group)?.is_some() {
            match self.reconnect(group).await {
                Ok(client) => return Ok(client),
                Err(e) if e.is_shim_gone() => {
                    tracing::warn!(group, error = %e, "the recorded shim is gone: launching another");
                    self.cleanup(group).await?;
                }
                Err(e) => return Err(e),
            }
        }
        self.launch(group, id, bundle).await
    }

    async fn launch(&self, group: &str, id: &str, bundle: &Path) -> Result<ShimClient, ShimError> {
        let dir = self.records.shim_dir(group);
        std::fs::create_dir_all(&dir).map_err(|e| ShimError::io(&dir, e))?;
        self.link_log(group, bundle)?;
        let address = self.launcher.start(group, id, bundle).await?;
        self.records.record_address(group, &address)?;
        tracing::info!(group, %address, "shim launched");
        ShimClient::connect(group, &address, self.timeouts, self.records.clone()).await
    }

    /// The shim gets its log from the bundle's `log` (opened at start, never created): a link
    /// to `shims/<group>/shim.log`, begun afresh.
    fn link_log(&self, group: &str, bundle: &Path) -> Result<(), ShimError> {
        let log = self.records.log_path(group);
        let link = bundle.join("log");
        if link.symlink_metadata().is_ok() {
            return Ok(());
        }
        std::fs::File::create(&log).map_err(|e| ShimError::io(&log, e))?;
        std::os::unix::fs::symlink(&log, &link).map_err(|e| ShimError::io(&link, e))
    }

    /// Notes the pid of `group`'s shim in its records (`shims/<group>/pid`).
    pub fn record_pid(&self, group: &str, pid: u32) -> Result<(), ShimError> {
        self.records.record_pid(group, pid)
    }

    /// Connects to `group`'s recorded shim.
    pub async fn reconnect(&self, group: &str) -> Result<ShimClient, ShimError> {
        records::check_id("group", group)?;
        let address = self
            .records
            .address(group)?
            .ok_or_else(|| ShimError::NotRecorded {
                group: group.to_string(),
            })?;
        ShimClient::connect(group, &address, self.timeouts, self.records.clone()).await
    }

    /// After `group`'s shim died: `shim delete` for each of its recorded tasks (kills what a
    /// Linux task left, removes cgroups, mounts and the dead socket), then forgets the shim.
    /// Returns each task's id and the exit the shim reports for it (137: killed).
    pub async fn cleanup(&self, group: &str) -> Result<Vec<(String, ExitStatus)>, ShimError> {
        records::check_id("group", group)?;
        let mut done = Vec::new();
        for task in self.records.tasks(group)? {
            let exit = if task.bundle.is_dir() {
                self.launcher.delete(group, &task.id, &task.bundle).await?
            } else {
                // Its bundle went with the pod: nothing of it left to remove.
                ExitStatus {
                    code: 137,
                    at: None,
                }
            };
            self.records.forget_task(group, &task.id)?;
            done.push((task.id, exit));
        }
        self.records.forget_shim(group)?;
        Ok(done)
    }

    /// Stops the events endpoint. The shims keep running (and retry their events until the
    /// next agent serves it again).
    pub async fn close(self) {
        self.events.shutdown().await;
    }
}
