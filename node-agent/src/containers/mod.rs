//! The node's containers, every one run by `containerd-shim-skiff-v1` through containerd's task
//! API (one executor path for a skiff node and a plain containerd: DESIGN §5).
//!
//! - Which shim: the node's Wasm shim (group `wasm`, one wasmtime engine) serves every all-Wasm
//!   pod; a pod with a Linux container has a shim of its own (group `pod-<uid>`), its Wasm
//!   containers included, as a CRI sandbox does ([`spec::ShimGroup`]).
//! - A start writes the attempt's bundle ([`bundle`]) under `DATA_DIR/run/bundles/<task id>` (a
//!   tmpfs: [`tmpfs`]), asks the group's shim to create and start the task, and is idempotent on
//!   the task id ([`instance::task_id`]).
//! - What runs is told by the shims' events (exit, OOM) as [`RuntimeEvent`]s, and by
//!   [`Containers::list`], which after an agent restart reconnects to every recorded shim and
//!   adopts its tasks (never starting one twice).
//! - A shim's death is seen at once ([`liveness`]): its tasks end as `ShimCrashed` (their
//!   workers restart them by policy), what they left is cleaned up (`shim delete`), and a group
//!   whose shim keeps dying waits longer before its next launch. Other shims, and so other
//!   pods, are untouched.
//!
//! Must not: decide what should run (the pod loop does); hold pod state beyond the tasks' own.

pub mod bundle;
pub mod exec;
pub mod instance;
mod liveness;
pub mod spec;
mod tmpfs;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use tokio::sync::{Mutex, broadcast, watch};

pub use instance::{Instance, Labels, RuntimeEvent, StartFailure};
pub use spec::{ContainerSpec, LinuxProcess, Mount, ShimGroup, WasmProcess, Workload};

use crate::shim::{
    CreateTask, ExitStatus, ShimClient, ShimError, ShimEvent, Shims, ShimsConfig, TaskStatus,
};
use crate::{AgentError, AgentOptions};

/// How long a stopped task may take to report its exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// Crashes of one shim counted for its back-off.
const CRASH_WINDOW: Duration = Duration::from_secs(300);
/// The longest a crashing shim waits before its next launch.
const MAX_SHIM_BACKOFF: Duration = Duration::from_secs(60);
/// The reason a container reports when its shim died under it.
pub const SHIM_CRASHED: &str = "ShimCrashed";

/// The node's container runtime; cheap to clone.
#[derive(Clone)]
pub struct Containers {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Containers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containers")
            .field("bundles", &self.inner.bundles)
            .finish_non_exhaustive()
    }
}

struct Inner {
    shims: Shims,
    binary: PathBuf,
    data_dir: PathBuf,
    bundles: PathBuf,
    roots: PathBuf,
    groups: DashMap<String, Arc<Mutex<Group>>>,
    /// Task id → what the agent knows of it.
    tasks: DashMap<String, Task>,
    events: broadcast::Sender<RuntimeEvent>,
    /// Module path → (modified, size, digest).
    digests: DashMap<PathBuf, (SystemTime, u64, String)>,
    /// How many tasks this agent has started: a task's listeners are up once its Start is
    /// answered, so whoever waits to connect to a starting pod looks again at each change.
    starts: watch::Sender<u64>,
}

/// One shim group: its connection and its crash history.
#[derive(Default)]
struct Group {
    client: Option<ShimClient>,
    /// The shim process being watched (0: none).
    pid: u32,
    crashes: VecDeque<Instant>,
    not_before: Option<Instant>,
}

struct Task {
    group: String,
    /// `namespace/name` of its pod.
    pod: String,
    bundle: PathBuf,
    /// A Linux task's writable layer.
    scratch: Option<PathBuf>,
    instance: Instance,
    oom: bool,
    stopping: bool,
}

fn shim_failure(e: &ShimError) -> StartFailure {
    StartFailure {
        message: e.to_string(),
        retry: e.is_shim_gone() || matches!(e, ShimError::Timeout { .. }),
    }
}

/// The task id of a pod loop's instance id (`<uid>/<container>/<attempt>`).
fn task_of(instance_id: &str) -> Option<String> {
    let mut parts = instance_id.split('/');
    let (uid, container, attempt) = (parts.next()?, parts.next()?, parts.next()?);
    Some(instance::task_id(&Labels {
        pod_uid: uid.to_string(),
        container: container.to_string(),
        attempt: attempt.parse().ok()?,
        ..Default::default()
    }))
}

fn nanos_since_epoch(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

impl Containers {
    /// Opens the agent's shim state in `DATA_DIR` and follows the shims' events. Shims an earlier
    /// agent launched are adopted by [`Containers::list`].
    pub async fn open(options: &AgentOptions) -> Result<Self, AgentError> {
        let run = options.data_dir.join("run");
        let on_tmpfs = tmpfs::ensure(&run).map_err(|source| AgentError::Io {
            path: run.clone(),
            source,
        })?;
        if !on_tmpfs {
            // As kubelet, whose Secret volumes are always tmpfs: Secret values (volumes, tokens,
            // the environments in bundles) never reach this machine's disk.
            return Err(AgentError::Host(format!(
                "{}: cannot mount a tmpfs there (not allowed: run the agent as root); the agent keeps Secret values (volumes, ServiceAccount tokens, container environments) only in memory and will not write them to disk",
                run.display()
            )));
        }
        let mut config = ShimsConfig::new(&options.data_dir, &options.shim_binary);
        config.event_capacity = 4096;
        let shims = Shims::open(config)
            .await
            .map_err(|e| AgentError::Host(e.to_string()))?;
        let (events, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            binary: options.shim_binary.clone(),
            data_dir: options.data_dir.clone(),
            bundles: run.join("bundles"),
            roots: options.data_dir.join("roots"),
            groups: DashMap::new(),
            tasks: DashMap::new(),
            events,
            digests: DashMap::new(),
            starts: watch::Sender::new(0),
            shims,
        });
        let containers = Containers { inner };
        tokio::spawn(
            containers
                .clone()
                .follow(containers.inner.shims.subscribe()),
        );
        Ok(containers)
    }

    /// Runtime events; subscribe before listing to miss nothing.
    pub fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.inner.events.subscribe()
    }

    /// Changes after every task this agent starts (see [`Inner::starts`]).
    pub fn starts(&self) -> watch::Receiver<u64> {
        self.inner.starts.subscribe()
    }

    fn send(&self, event: RuntimeEvent) {
        let _ = self.inner.events.send(event);
    }

    /// Folds the shims' task events into the tasks and passes changes on.
    async fn follow(self, mut events: broadcast::Receiver<ShimEvent>) {
        loop {
            match events.recv().await {
                Ok(ShimEvent::Oom { id }) => {
                    if let Some(mut t) = self.inner.tasks.get_mut(&id) {
                        t.oom = true;
                    }
                }
                Ok(ShimEvent::Exited {
                    id,
                    exec_id: None,
                    exit,
                    ..
                }) => {
                    let code = i32::try_from(exit.code).unwrap_or(i32::MAX);
                    let at = exit.at.unwrap_or_else(SystemTime::now);
                    self.end(&id, code, at, |t| {
                        instance::exit_reason(code, t.oom, t.stopping)
                    });
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "shim events: fell behind; relisting");
                    self.send(RuntimeEvent::Relist);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Ends task `id`'s instance with `code` at `at`, if it still runs (`why` gives the reason and
    /// message), and passes the change on.
    fn end(
        &self,
        id: &str,
        code: i32,
        at: SystemTime,
        why: impl FnOnce(&Task) -> (String, String),
    ) {
        let changed = self.inner.tasks.get_mut(id).and_then(|mut t| {
            if !t.instance.running {
                return None;
            }
            let why = why(&t);
            t.instance.end(code, at, why);
            Some(t.instance.clone())
        });
        if let Some(instance) = changed {
            self.send(RuntimeEvent::Changed(instance));
        }
    }

    fn group(&self, name: &str) -> Arc<Mutex<Group>> {
        self.inner
            .groups
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// The group's shim: connected already, or the recorded one (reconnected), or — given a
    /// task's bundle — one launched now.
    async fn shim(
        &self,
        name: &str,
        launch: Option<(&str, &Path)>,
    ) -> Result<ShimClient, ShimError> {
        let group = self.group(name);
        let mut g = group.lock().await;
        if let Some(client) = &g.client {
            return Ok(client.clone());
        }
        let client = match launch {
            Some((task, bundle)) => {
                if let Some(at) = g.not_before
                    && at > Instant::now()
                {
                    return Err(ShimError::invalid(
                        format!("shim group {name}"),
                        format!(
                            "back-off restarting a crashing shim ({} s left)",
                            (at - Instant::now()).as_secs() + 1
                        ),
                    ));
                }
                self.inner.shims.shim_for(name, task, bundle).await?
            }
            None => self.inner.shims.reconnect(name).await?,
        };
        let info = client.connect_info("").await?;
        if let Err(e) = self.inner.shims.record_pid(name, info.shim_pid) {
            tracing::warn!(group = name, error = %e, "recording the shim's pid");
        }
        self.watch(name, info.shim_pid);
        g.pid = info.shim_pid;
        g.client = Some(client.clone());
        Ok(client)
    }

    /// Drops a connection that failed, so that the next call reconnects or relaunches.
    async fn forget_shim(&self, name: &str) {
        let group = self.group(name);
        group.lock().await.client = None;
    }

    fn watch(&self, name: &str, pid: u32) {
        let watched = match liveness::Watched::new(pid) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(group = name, pid, error = %e, "cannot watch the shim");
                return;
            }
        };
        let this = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            watched.exited().await;
            this.shim_died(&name, pid).await;
        });
    }

    /// Shim `pid` of group `name` is gone. With no task left it simply ended; otherwise it
    /// crashed: its tasks end as [`SHIM_CRASHED`], and what they left is cleaned up.
    async fn shim_died(&self, name: &str, pid: u32) {
        let group = self.group(name);
        let mut g = group.lock().await;
        if g.pid != pid {
            return;
        }
        g.client = None;
        g.pid = 0;
        // It crashed if a task the agent counts on was running in it; else it just ended.
        let lost: Vec<String> = self
            .inner
            .tasks
            .iter()
            .filter(|t| t.group == name && t.instance.running)
            .map(|t| t.key().clone())
            .collect();
        let crashed = !lost.is_empty();
        if crashed {
            let now = Instant::now();
            g.crashes.push_back(now);
            while g.crashes.front().is_some_and(|t| now - *t > CRASH_WINDOW) {
                g.crashes.pop_front();
            }
            // The first two crashes relaunch at once; then 1 s, 2 s, 4 s ... up to a minute.
            let n = g.crashes.len() as u32;
            g.not_before = (n > 2)
                .then(|| now + Duration::from_secs(1 << (n - 3).min(6)).min(MAX_SHIM_BACKOFF));
            tracing::warn!(
                group = name,
                pid,
                tasks = lost.len(),
                "a shim died: its containers ended"
            );
        }
        if let Err(e) = self.inner.shims.cleanup(name).await {
            tracing::warn!(group = name, error = %e, "cleaning up after a shim");
        }
        drop(g);
        let message = format!(
            "the shim running it ({}, group {name}, pid {pid}) died",
            self.inner.binary.display()
        );
        for id in lost {
            self.end(&id, 137, SystemTime::now(), |_| {
                (SHIM_CRASHED.to_string(), message.clone())
            });
        }
    }

    /// The digest (`sha256:<hex>`) of a module file, cached while the file is unchanged.
    pub async fn digest(&self, module: &Path) -> Result<String, StartFailure> {
        let fail = |e: std::io::Error| StartFailure {
            message: format!("reading the module {}: {e}", module.display()),
            retry: false,
        };
        let meta = std::fs::metadata(module).map_err(fail)?;
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        if let Some(d) = self.inner.digests.get(module)
            && d.0 == modified
            && d.1 == meta.len()
        {
            return Ok(d.2.clone());
        }
        let path = module.to_path_buf();
        let digest = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            use sha2::Digest;
            let mut hasher = sha2::Sha256::new();
            std::io::copy(&mut std::fs::File::open(&path)?, &mut hasher)?;
            let hex: String = hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            Ok(format!("sha256:{hex}"))
        })
        .await
        .map_err(|e| fail(std::io::Error::other(e)))?
        .map_err(fail)?;
        self.inner
            .digests
            .insert(module.to_path_buf(), (modified, meta.len(), digest.clone()));
        Ok(digest)
    }

    /// Starts (idempotently, by task id) one attempt of a container.
    pub async fn start(&self, spec: ContainerSpec) -> Result<Instance, StartFailure> {
        let id = instance::task_id(&spec.labels);
        if let Some(t) = self.inner.tasks.get(&id) {
            return Ok(t.instance.clone());
        }
        let group = spec.group.name();
        let dir = self.inner.bundles.join(&id);
        if dir.exists() {
            bundle::remove(&dir);
        }
        let (digest, scratch) = match &spec.workload {
            Workload::Wasm(w) => (self.digest(&w.module).await?, None),
            Workload::Linux(l) => (String::new(), Some(l.scratch.clone())),
        };
        let rootfs = bundle::write(&spec, &id, &dir, &self.inner.roots, &digest).map_err(|e| {
            bundle::remove(&dir);
            StartFailure {
                message: e.to_string(),
                retry: false,
            }
        })?;
        let create = CreateTask {
            id: id.clone(),
            bundle: dir.clone(),
            rootfs,
        };
        let undo = |e: &ShimError| {
            bundle::remove(&dir);
            if let Some(s) = &scratch {
                let _ = std::fs::remove_dir_all(s);
            }
            shim_failure(e)
        };
        // A group's shim may exit just as its last task goes: one relaunch covers that.
        let mut tries = 0;
        let client = loop {
            tries += 1;
            let client = match self.shim(&group, Some((&id, &dir))).await {
                Ok(c) => c,
                // No shim to run it (launch failed, or a crashing shim's back-off): not the
                // container's fault; it waits and is tried again.
                Err(e) => {
                    let mut failure = undo(&e);
                    failure.retry = true;
                    return Err(failure);
                }
            };
            match client.create(&create).await {
                Ok(_) => break client,
                Err(e) if e.is_shim_gone() && tries < 2 => self.forget_shim(&group).await,
                Err(e) => return Err(undo(&e)),
            }
        };
        let started_at = SystemTime::now();
        let _ = std::fs::write(
            dir.join("started"),
            nanos_since_epoch(started_at).to_string(),
        );
        let image_id = &spec.labels.image_id;
        let digest = if image_id.is_empty() {
            digest
        } else {
            image_id.clone()
        };
        let instance = Instance::running(&spec.labels, started_at, digest);
        // In the table before Start: its exit may come before Start's answer.
        self.inner.tasks.insert(
            id.clone(),
            Task {
                group: group.clone(),
                pod: spec.labels.pod.clone(),
                bundle: dir.clone(),
                scratch: scratch.clone(),
                instance: instance.clone(),
                oom: false,
                stopping: false,
            },
        );
        if let Err(e) = client.start(&id).await {
            self.inner.tasks.remove(&id);
            let _ = client.delete(&id).await;
            return Err(undo(&e));
        }
        self.inner.starts.send_modify(|n| *n = n.wrapping_add(1));
        Ok(self
            .inner
            .tasks
            .get(&id)
            .map_or(instance, |t| t.instance.clone()))
    }

    /// Stops an attempt: SIGTERM, then SIGKILL to all its processes after `grace_seconds` (at
    /// once with 0). Unknown or ended attempts are fine.
    pub async fn kill(&self, instance_id: &str, grace_seconds: u32) -> Result<(), String> {
        let Some(id) = task_of(instance_id) else {
            return Ok(());
        };
        let group = match self.inner.tasks.get_mut(&id) {
            Some(mut t) if t.instance.running => {
                t.stopping = true;
                t.group.clone()
            }
            _ => return Ok(()),
        };
        let Ok(client) = self.shim(&group, None).await else {
            // Its shim is gone, and the task with it.
            return Ok(());
        };
        let ignore_gone = |r: Result<(), ShimError>| match r {
            Err(e) if !e.is_not_found() && !e.is_shim_gone() => Err(e.to_string()),
            _ => Ok(()),
        };
        if grace_seconds > 0 {
            ignore_gone(client.kill(&id, 15, false).await)?;
            let deadline =
                tokio::time::Instant::now() + Duration::from_secs(u64::from(grace_seconds));
            // The whole grace period, even if a Wait fails on the way (it is asked again).
            loop {
                match tokio::time::timeout_at(deadline, client.wait(&id)).await {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(e)) if e.is_not_found() || e.is_shim_gone() => return Ok(()),
                    Ok(Err(e)) => {
                        tracing::warn!(task = %id, error = %e, "waiting for a stopping task");
                        let retry = tokio::time::Instant::now() + Duration::from_millis(200);
                        tokio::time::sleep_until(retry.min(deadline)).await;
                    }
                    Err(_) => break,
                }
            }
        }
        ignore_gone(client.kill(&id, 9, true).await)?;
        let _ = tokio::time::timeout(KILL_WAIT, client.wait(&id)).await;
        Ok(())
    }

    /// Forgets an attempt: kills it if it runs, deletes its task, removes its bundle and
    /// writable layer. An unknown id is fine.
    pub async fn remove(&self, instance_id: &str) -> Result<(), String> {
        let Some(id) = task_of(instance_id) else {
            return Ok(());
        };
        let Some((_, task)) = self.inner.tasks.remove(&id) else {
            let dir = self.inner.bundles.join(&id);
            if dir.exists() {
                bundle::remove(&dir);
            }
            return Ok(());
        };
        if let Ok(client) = self.shim(&task.group, None).await {
            if task.instance.running {
                let _ = client.kill(&id, 9, true).await;
                let _ = tokio::time::timeout(KILL_WAIT, client.wait(&id)).await;
            }
            match client.delete(&id).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() || e.is_shim_gone() => {}
                Err(e) => tracing::warn!(task = %id, error = %e, "deleting a task"),
            }
        }
        bundle::remove(&task.bundle);
        if let Some(s) = &task.scratch {
            let _ = std::fs::remove_dir_all(s);
        }
        // A pod's own shim goes with its last task; the node's Wasm shim stays for the next
        // Wasm pod (a start then costs no shim launch).
        if task.group != ShimGroup::NodeWasm.name()
            && !self.inner.tasks.iter().any(|t| t.group == task.group)
        {
            self.shut_down_if_idle(&task.group).await;
        }
        self.send(RuntimeEvent::Removed(task.instance));
        Ok(())
    }

    /// Shuts a pod's shim down once it serves no task (as containerd does after the last
    /// Delete), so that a deleted pod leaves no shim behind.
    async fn shut_down_if_idle(&self, name: &str) {
        let group = self.group(name);
        let mut g = group.lock().await;
        if self.inner.tasks.iter().any(|t| t.group == name) {
            return;
        }
        let Some(client) = g.client.take() else {
            return;
        };
        match client.shutdown(false).await {
            // Gone: its death is not a crash (the watcher finds no pid of its group).
            Ok(true) => g.pid = 0,
            // It still has a task (one just created): keep it.
            Ok(false) => g.client = Some(client),
            Err(e) => tracing::warn!(group = name, error = %e, "shutting an idle shim down"),
        }
    }

    /// Every attempt the shims run or ran: after an agent restart, each recorded shim that still
    /// answers is reconnected and its tasks adopted; a dead one is cleaned up (its tasks are
    /// gone, and the pod loop finds them missing).
    pub async fn list(&self) -> Result<Vec<Instance>, String> {
        let recorded = self.inner.shims.recorded().map_err(|e| e.to_string())?;
        for shim in recorded {
            let adopted = shim
                .tasks
                .iter()
                .all(|t| self.inner.tasks.contains_key(&t.id));
            if adopted && !shim.tasks.is_empty() {
                continue;
            }
            let client = match self.shim(&shim.group, None).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(group = %shim.group, error = %e, "a recorded shim is gone: cleaning up");
                    if let Err(e) = self.inner.shims.cleanup(&shim.group).await {
                        tracing::warn!(group = %shim.group, error = %e, "cleaning up");
                    }
                    for t in &shim.tasks {
                        bundle::remove(&t.bundle);
                    }
                    continue;
                }
            };
            for t in &shim.tasks {
                if self.inner.tasks.contains_key(&t.id) {
                    continue;
                }
                if let Some(task) = self.adopt(&client, &shim.group, &t.id, &t.bundle).await {
                    self.inner.tasks.insert(t.id.clone(), task);
                }
            }
        }
        Ok(self
            .inner
            .tasks
            .iter()
            .map(|t| t.instance.clone())
            .collect())
    }

    /// A recorded task as the shim reports it, with the labels of its bundle.
    async fn adopt(&self, client: &ShimClient, group: &str, id: &str, dir: &Path) -> Option<Task> {
        let state = match client.state(id).await {
            Ok(s) => s,
            Err(e) => {
                if e.is_not_found() {
                    let _ = client.delete(id).await;
                    bundle::remove(dir);
                } else {
                    tracing::warn!(task = id, error = %e, "reading a task's state");
                }
                return None;
            }
        };
        let config: serde_json::Value = std::fs::read(dir.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())?;
        let annotations = &config["annotations"];
        let labels = Labels::from_annotations(|k| annotations[k].as_str())?;
        let started_at = std::fs::read_to_string(dir.join("started"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(UNIX_EPOCH, |n| UNIX_EPOCH + Duration::from_nanos(n));
        let scratch = (config["process"]["args"][0]
            .as_str()
            .is_some_and(|a| !a.ends_with(".wasm")))
        .then(|| bundle::scratch_dir(&self.inner.data_dir, &labels.pod_uid, id));
        let mut instance = Instance::running(&labels, started_at, labels.image_id.clone());
        let running = matches!(
            state.status,
            TaskStatus::Running | TaskStatus::Created | TaskStatus::Paused
        );
        if !running {
            let exit = state.exit.unwrap_or(ExitStatus { code: 0, at: None });
            let code = i32::try_from(exit.code).unwrap_or(i32::MAX);
            let at = exit.at.unwrap_or(UNIX_EPOCH);
            instance.end(code, at, instance::exit_reason(code, false, false));
        }
        Some(Task {
            group: group.to_string(),
            pod: labels.pod.clone(),
            bundle: dir.to_path_buf(),
            scratch,
            instance,
            oom: false,
            stopping: false,
        })
    }

    /// The figures of every running container, with its pod (`namespace/name`): one Stats call
    /// per task, all at once; a task whose shim does not answer is left out.
    pub async fn usage(&self) -> Vec<(String, Instance, crate::shim::TaskUsage)> {
        let running: Vec<(String, String, String, Instance)> = self
            .inner
            .tasks
            .iter()
            .filter(|t| t.instance.running && !t.stopping)
            .map(|t| {
                (
                    t.key().clone(),
                    t.group.clone(),
                    t.pod.clone(),
                    t.instance.clone(),
                )
            })
            .collect();
        let reads = running
            .into_iter()
            .map(|(id, group, pod, instance)| async move {
                let client = self.shim(&group, None).await.ok()?;
                match client.stats(&id).await {
                    Ok(usage) => Some((pod, instance, usage)),
                    Err(e) => {
                        tracing::debug!(task = %id, error = %e, "reading a task's figures");
                        None
                    }
                }
            });
        futures::future::join_all(reads)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The shim of a running attempt, and its task id (for exec).
    pub(crate) async fn task_shim(&self, instance_id: &str) -> Option<(ShimClient, String)> {
        let id = task_of(instance_id)?;
        let group = self.inner.tasks.get(&id)?.group.clone();
        let client = self.shim(&group, None).await.ok()?;
        Some((client, id))
    }

    /// The bundle of a task (for exec's process spec and FIFOs).
    pub(crate) fn bundle_of(&self, task_id: &str) -> Option<PathBuf> {
        self.inner.tasks.get(task_id).map(|t| t.bundle.clone())
    }

    /// Whether the node can run containers: the shim binary is there to launch.
    pub async fn check(&self) -> Result<(), String> {
        match std::fs::metadata(&self.inner.binary) {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(format!("{}: not a file", self.inner.binary.display())),
            Err(e) => Err(format!("{}: {e}", self.inner.binary.display())),
        }
    }

    /// Ends every container and shim of this agent and unmounts its tmpfs (`skiff up`'s exit).
    pub async fn shutdown_all(&self) {
        let ids: Vec<String> = self
            .inner
            .tasks
            .iter()
            .map(|t| t.instance.id.clone())
            .collect();
        futures::future::join_all(ids.iter().map(|id| self.remove(id))).await;
        let groups: Vec<String> = self.inner.groups.iter().map(|g| g.key().clone()).collect();
        for name in groups {
            if let Ok(client) = self.shim(&name, None).await {
                let _ = client.shutdown(true).await;
            }
        }
        // Nothing is left on the agent's tmpfs: take it down with the node.
        if let Some(run) = self.inner.bundles.parent()
            && let Err(e) = nix::mount::umount2(run, nix::mount::MntFlags::MNT_DETACH)
            && e != nix::errno::Errno::EINVAL
        {
            tracing::warn!(path = %run.display(), error = %e, "unmounting the agent's tmpfs");
        }
    }
}

/// Where the shim binary is: beside this executable, else on `PATH`.
pub fn find_shim_binary() -> Option<PathBuf> {
    const NAME: &str = "containerd-shim-skiff-v1";
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(NAME)))
        .filter(|p| p.is_file());
    beside.or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(NAME))
                .find(|p| p.is_file())
        })
    })
}
