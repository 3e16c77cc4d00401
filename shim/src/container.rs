//! One container of the shim: its bundle, its init process, its execs, and what runs it.
//!
//! Owns the lifecycle per kind: [`Container::create`] mounts the rootfs, tells Wasm from Linux,
//! opens stdio (containerd's FIFOs, or a Linux init's pipes into its log file) and compiles the
//! module or sets the container up; `start`, `kill`, `delete`, and the exit watchers that record
//! an exit and queue its event (in order, through the process's gate; a Linux init's log
//! drained first). Must not: answer ttrpc requests (the service does) or keep the container map.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::sys::signal::Signal;
use oci_spec::runtime::Spec;
use skiff_runtime::wasm::{Streams, WasmEngine};

use crate::Locked;
use crate::cgroup::Joined;
use crate::events::Events;
use crate::linux::{self, LinuxTask};
use crate::logfile::{self, LinuxLog};
use crate::process::{Exit, Process};
use crate::rootfs;
use crate::stats::Figures;
use crate::stdio::{self, Io, Opened};
use crate::wasm::{self, WasmTask};

pub enum Kind {
    Wasm(Box<WasmTask>),
    Linux(LinuxTask),
}

pub struct Exec {
    pub process: Arc<Process>,
    spec: oci_spec::runtime::Process,
    opened: Mutex<Option<Opened>>,
}

pub struct Container {
    pub id: String,
    /// Its spec puts it in a node group's shim ([`crate::shim::in_node_group`]).
    pub node_group: bool,
    pub bundle: PathBuf,
    pub init: Arc<Process>,
    pub kind: Kind,
    pub execs: Mutex<HashMap<String, Arc<Exec>>>,
}

/// What Create is given.
pub struct CreateArgs<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub rootfs: &'a [containerd_shim::protos::types::mount::Mount],
    pub io: Io,
    /// Whether the shim may move itself into the task's cgroup (it serves no other task that
    /// holds one, and no task of a node group).
    pub own_cgroup: bool,
}

fn signal_of(n: u32) -> Result<Signal, String> {
    Signal::try_from(n as i32).map_err(|_| format!("signal {n}: not a signal"))
}

/// The children of `pid` (its first thread's), from procfs.
fn children_of(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A cgroup join under way (see [`crate::cgroup::join`]).
type Joining = tokio::task::JoinHandle<Result<Joined, String>>;

/// Joins the task's cgroup on a blocking thread, if the shim may (`own_cgroup`, and not a node
/// group's task: [`crate::shim::in_node_group`]) and the spec names one.
fn start_join(args: &CreateArgs<'_>, spec: &Spec) -> Option<Joining> {
    let linux = spec.linux().as_ref()?;
    let path = linux.cgroups_path().clone()?.display().to_string();
    if !args.own_cgroup || crate::shim::in_node_group(spec) {
        return None;
    }
    let resources = linux.resources().clone();
    Some(tokio::task::spawn_blocking(move || {
        crate::cgroup::join(&path, resources.as_ref())
    }))
}

/// [`start_join`] before the rootfs is mounted, when the entrypoint's name says Wasm.
fn early_join(args: &CreateArgs<'_>, spec: &Spec) -> Option<Joining> {
    let arg0 = spec.process().as_ref()?.args().as_ref()?.first()?;
    if arg0.ends_with(".wasm") {
        start_join(args, spec)
    } else {
        None
    }
}

impl Container {
    pub async fn create(
        args: CreateArgs<'_>,
        engine: impl AsyncFnOnce() -> Result<WasmEngine, String>,
    ) -> Result<Container, String> {
        let config = args.bundle.join("config.json");
        let spec = Spec::load(&config).map_err(|e| format!("{}: {e}", config.display()))?;
        // Moving a process into a cgroup waits for an RCU grace period (milliseconds): for an
        // entrypoint named `.wasm`, start it now, beside the mount and the module's load.
        let mut joining = early_join(&args, &spec);
        rootfs::mount(args.bundle, args.rootfs).await?;
        let made = Self::create_mounted(&args, &spec, engine, &mut joining).await;
        if let Some(join) = joining
            && let Ok(Ok(joined)) = join.await
        {
            // Not used: the task turned out not to be Wasm, or failed.
            joined.leave();
        }
        if made.is_err() {
            rootfs::unmount(args.bundle);
        }
        made
    }

    async fn create_mounted(
        args: &CreateArgs<'_>,
        spec: &Spec,
        engine: impl AsyncFnOnce() -> Result<WasmEngine, String>,
        joining: &mut Option<Joining>,
    ) -> Result<Container, String> {
        let root = spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_else(|| PathBuf::from("rootfs"));
        let rootfs = args.bundle.join(root);
        let (opened, closer) = stdio::open(&args.io).map_err(|e| e.to_string())?;
        let (kind, pid) = match wasm::module_of(spec, &rootfs) {
            Some(module) => {
                let module = module?;
                let streams = Streams {
                    stdin: opened.stdin,
                    stdout: opened.stdout,
                    stderr: opened.stderr,
                };
                let mut wspec = wasm::wasm_spec(args.id, spec, &rootfs, module.clone(), streams)?;
                wspec.host = crate::host_interfaces::grants(spec, args.bundle)?;
                let began = std::time::Instant::now();
                let engine = engine().await?;
                let engine_ready = began.elapsed();
                let outcome = engine.prepare(&module).await.map_err(|e| e.to_string())?;
                log::info!(
                    "task {}: engine ready in {engine_ready:?}, module {:?} in {:?}",
                    args.id,
                    outcome.origin,
                    outcome.elapsed
                );
                let prepared = outcome.prepared;
                match prepared.role() {
                    skiff_runtime::wasm::Role::Function => {
                        crate::function::check_network(spec, &wspec.http)?;
                    }
                    skiff_runtime::wasm::Role::Command if wspec.http.required => {
                        return Err(skiff_runtime::wasm::WasmError::NotFunction {
                            path: module.clone(),
                        }
                        .to_string());
                    }
                    skiff_runtime::wasm::Role::Command => {}
                }
                let memory_limit = wspec.memory_limit;
                let cgroup = match joining.take().or_else(|| start_join(args, spec)) {
                    Some(join) => Some(join.await.map_err(|e| e.to_string())??),
                    None => None,
                };
                let task = WasmTask {
                    engine,
                    prepared,
                    memory_limit,
                    spec: Mutex::new(Some(wspec)),
                    instance: Mutex::new(None),
                    cgroup: Mutex::new(cgroup),
                    killed_with: Mutex::new(None),
                };
                (Kind::Wasm(Box::new(task)), std::process::id())
            }
            None => {
                let mut opened = opened;
                let log = match logfile::log_file(spec, logfile::has_output(&args.io))? {
                    Some(file) => {
                        let (log, stdout, stderr) = LinuxLog::open(&file)?;
                        opened.stdout = Some(stdout);
                        opened.stderr = Some(stderr);
                        Some(log)
                    }
                    None => None,
                };
                let (id, bundle) = (args.id.to_string(), args.bundle.to_path_buf());
                let (task, pid) = tokio::task::spawn_blocking(move || {
                    LinuxTask::create(&id, &bundle, opened, log)
                })
                .await
                .map_err(|e| e.to_string())??;
                (Kind::Linux(task), pid)
            }
        };
        Ok(Container {
            id: args.id.to_string(),
            node_group: crate::shim::in_node_group(spec),
            bundle: args.bundle.to_path_buf(),
            init: Arc::new(Process::new("", args.io.clone(), pid, closer)),
            kind,
            execs: Mutex::new(HashMap::new()),
        })
    }

    pub fn is_wasm(&self) -> bool {
        matches!(self.kind, Kind::Wasm(_))
    }

    /// Whether this is a Wasm task whose cgroup the shim process joined.
    pub fn holds_cgroup(&self) -> bool {
        match &self.kind {
            Kind::Wasm(task) => task.cgroup.locked().is_some(),
            Kind::Linux(_) => false,
        }
    }

    /// Watches a Linux init from creation on (it can be killed before it is started).
    pub fn watch_linux_init(self: &Arc<Self>, events: &Events) {
        if let Kind::Linux(_) = self.kind {
            self.watch(self.init.clone(), events.clone(), self.init.pid());
        }
    }

    /// Waits for `process` (a Linux init or exec, `pid`), then records its exit and queues its
    /// event (OOM first, for an init).
    fn watch(self: &Arc<Self>, process: Arc<Process>, events: Events, pid: u32) {
        let me = self.clone();
        tokio::spawn(async move {
            let waiter = tokio::task::spawn_blocking(move || linux::wait(pid));
            let code = waiter.await.unwrap_or(255);
            // What the init wrote before it exited is in its log before the exit is told.
            if let Kind::Linux(LinuxTask { log: Some(log), .. }) = &me.kind
                && process.exec_id.is_empty()
            {
                log.drain().await;
            }
            me.exited(&process, &events, code, false).await;
        });
    }

    /// Records an exit and queues its events, under the process's gate: TaskOOM (a Linux init's
    /// cgroup saw an OOM kill, or a Wasm guest hit its memory limit), then TaskExit, queued
    /// before Wait and Delete can see the exit.
    async fn exited(&self, process: &Process, events: &Events, code: u32, wasm_oom: bool) {
        let _gate = process.gate.lock().await;
        if process.is_stopped() {
            return;
        }
        let is_init = process.exec_id.is_empty();
        let oom = is_init
            && match &self.kind {
                Kind::Linux(task) => task.oom_killed(),
                Kind::Wasm(_) => wasm_oom,
            };
        if oom {
            events.oom(&self.id).await;
        }
        let exit = Exit::now(code);
        log::info!(
            "task {} {} exited with {code}",
            self.id,
            if is_init { "init" } else { &process.exec_id }
        );
        let exec_id = if is_init { &self.id } else { &process.exec_id };
        events.exited(&self.id, exec_id, process.pid(), exit).await;
        process.set_exited(exit);
    }

    /// Starts the init; its pid.
    pub async fn start(self: &Arc<Self>, events: &Events) -> Result<u32, String> {
        let _gate = self.init.gate.lock().await;
        if !self.init.is_created() {
            return Err(format!("task {}: already started", self.id));
        }
        match &self.kind {
            Kind::Wasm(task) => {
                let spec = task
                    .spec
                    .locked()
                    .take()
                    .ok_or_else(|| format!("task {}: already started", self.id))?;
                // The guest's instantiation, a span of its own inside the task's start.
                let guest =
                    tracing::info_span!("guest", "otel.name" = "start guest", task = %self.id);
                let instance = tracing::Instrument::instrument(
                    task.engine.start_prepared(&task.prepared, spec),
                    guest,
                )
                .await
                .map_err(|e| format!("task {}: starting the guest: {e}", self.id))?;
                *task.instance.locked() = Some(instance.clone());
                self.init.set_running(std::process::id());
                let me = self.clone();
                let events = events.clone();
                tokio::spawn(async move {
                    let status = instance.wait().await;
                    // A guest that ended because of a kill reports 128 + that signal.
                    let killed = status
                        == skiff_runtime::wasm::ExitStatus {
                            finished_at: status.finished_at,
                            ..skiff_runtime::wasm::ExitStatus::killed()
                        };
                    let code = match me.kill_code() {
                        Some(code) if killed => code,
                        _ => status.code as u32,
                    };
                    me.exited(&me.init, &events, code, status.oom_killed).await;
                });
            }
            Kind::Linux(task) => {
                let runtime = task.runtime.clone();
                let id = task.id.clone();
                tokio::task::spawn_blocking(move || runtime.start(&id))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                self.init.set_running(self.init.pid());
            }
        }
        let pid = self.init.pid();
        events.started(&self.id, pid).await;
        Ok(pid)
    }

    /// The code a Wasm guest ended with because of a kill: 128 + the signal.
    fn kill_code(&self) -> Option<u32> {
        match &self.kind {
            Kind::Wasm(task) => *task.killed_with.locked(),
            Kind::Linux(_) => None,
        }
    }

    /// Signals the init (or, `all`, every process of a Linux task).
    pub async fn kill(&self, signal: u32, all: bool, events: &Events) -> Result<(), String> {
        if self.init.is_stopped() {
            return Err(format!("task {}: process already finished", self.id));
        }
        match &self.kind {
            Kind::Linux(task) => task.kill(signal_of(signal)?, all),
            Kind::Wasm(task) => {
                if signal == 0 {
                    return Ok(());
                }
                let sig = signal_of(signal)?;
                match sig {
                    // Ignored by default by a process: nothing to end.
                    Signal::SIGCHLD | Signal::SIGWINCH | Signal::SIGURG | Signal::SIGCONT => {
                        return Ok(());
                    }
                    Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU => {
                        return Err(format!(
                            "signal {sig}: a Wasm guest cannot be stopped, only ended"
                        ));
                    }
                    _ => {}
                }
                task.killed_with.locked().get_or_insert(128 + signal);
                // Under the gate: a Start in progress has stored its instance by then.
                let _gate = self.init.gate.lock().await;
                match task.instance() {
                    // A function drains its requests in flight on SIGTERM (or SIGINT), then
                    // exits 0; anything else ends it at once.
                    Some(instance) if matches!(sig, Signal::SIGTERM | Signal::SIGINT) => {
                        instance.stop();
                    }
                    Some(instance) => instance.kill(),
                    // Created, never started: it ends here.
                    None if !self.init.is_stopped() => {
                        let exit = Exit::now(128 + signal);
                        events
                            .exited(&self.id, &self.id, self.init.pid(), exit)
                            .await;
                        self.init.set_exited(exit);
                    }
                    None => {}
                }
                Ok(())
            }
        }
    }

    /// Removes what runs the task (its processes, cgroup, rootfs mount). The init must have
    /// exited or never started. `last`: the shim serves no other task and exits next.
    pub async fn remove(&self, last: bool) {
        match &self.kind {
            Kind::Linux(task) => {
                let (runtime, id) = (task.runtime.clone(), task.id.clone());
                let done = tokio::task::spawn_blocking(move || runtime.delete(&id, true)).await;
                if let Ok(Err(e)) = done {
                    log::warn!("deleting container {}: {e}", self.id);
                }
            }
            Kind::Wasm(task) => {
                if let Some(instance) = task.instance() {
                    instance.kill();
                    instance.wait().await;
                }
                let joined = task.cgroup.locked().take();
                match joined {
                    // The shim leaves it as it exits, with one thread left (or the exit
                    // empties it for `shim delete`). Leaving now, with its threads, would take
                    // the kernel's cgroup lock for an RCU grace period, which that rmdir would
                    // wait on.
                    Some(joined) if last => joined.exit_in(),
                    Some(joined) => {
                        // For `shim delete`: this shim removes the cgroup itself.
                        let _ =
                            std::fs::write(self.bundle.join(crate::cgroup::LEAVING_MARKER), b"");
                        joined.leave_in_background();
                    }
                    None => {}
                }
            }
        }
        rootfs::unmount(&self.bundle);
    }

    pub fn exec(&self, exec_id: &str) -> Option<Arc<Exec>> {
        self.execs.locked().get(exec_id).cloned()
    }

    /// Registers an exec process (not started).
    pub fn add_exec(
        &self,
        exec_id: &str,
        spec: oci_spec::runtime::Process,
        io: Io,
    ) -> Result<(), String> {
        if !matches!(self.kind, Kind::Linux(_)) {
            return Err("exec: a Wasm task runs one guest; exec is not supported".into());
        }
        if !self.init.is_running() {
            return Err(format!("task {}: not running", self.id));
        }
        let mut execs = self.execs.locked();
        if execs.contains_key(exec_id) {
            return Err(format!("exec {exec_id}: already exists"));
        }
        let (opened, closer) = stdio::open(&io).map_err(|e| e.to_string())?;
        execs.insert(
            exec_id.to_string(),
            Arc::new(Exec {
                process: Arc::new(Process::new(exec_id, io, 0, closer)),
                spec,
                opened: Mutex::new(Some(opened)),
            }),
        );
        Ok(())
    }

    /// Starts exec `exec_id`; its pid.
    pub async fn start_exec(
        self: &Arc<Self>,
        exec: &Arc<Exec>,
        events: &Events,
    ) -> Result<u32, String> {
        let Kind::Linux(task) = &self.kind else {
            return Err("exec: not supported for a Wasm task".into());
        };
        let process = &exec.process;
        let _gate = process.gate.lock().await;
        let opened = exec
            .opened
            .locked()
            .take()
            .ok_or_else(|| format!("exec {}: already started", process.exec_id))?;
        // Its child is waited for by pid, as an init is.
        let pid = task
            .exec(&exec.spec, opened)
            .map_err(|e| format!("exec {}: {e}", process.exec_id))?
            .id();
        process.set_running(pid);
        self.watch(process.clone(), events.clone(), pid);
        events.exec_started(&self.id, &process.exec_id, pid).await;
        Ok(pid)
    }

    /// Signals an exec's process. The pid containerd knows is the executor's exec helper,
    /// which waits for the process it started in the container and exits with its status: the
    /// signal goes to that process (the helper's child), and to the helper only once it has none.
    pub fn kill_exec(&self, exec: &Exec, signal: u32) -> Result<(), String> {
        let p = &exec.process;
        if !p.is_running() {
            return Err(format!(
                "exec {} of task {}: not running",
                p.exec_id, self.id
            ));
        }
        let sig = signal_of(signal).map_err(|e| format!("exec {}: {e}", p.exec_id))?;
        let children = children_of(p.pid());
        let targets = if children.is_empty() {
            vec![p.pid() as i32]
        } else {
            children
        };
        for pid in targets {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
                .map_err(|e| format!("exec {} of task {}: {e}", p.exec_id, self.id))?;
        }
        Ok(())
    }

    pub fn remove_exec(&self, exec_id: &str) {
        self.execs.locked().remove(exec_id);
    }

    /// Pids of the task's processes.
    pub fn pids(&self) -> Vec<u32> {
        match &self.kind {
            Kind::Linux(task) => task.pids(),
            Kind::Wasm(_) if self.init.is_running() => vec![std::process::id()],
            Kind::Wasm(_) => Vec::new(),
        }
    }

    /// Figures for Stats: a Linux task's cgroup's, a Wasm task's instance's (see
    /// [`crate::stats`]).
    pub fn figures(&self) -> Result<Figures, String> {
        match &self.kind {
            Kind::Linux(task) => task.usage().map(Figures::Cgroup),
            Kind::Wasm(task) => {
                let instance = task.instance();
                Ok(Figures::Wasm {
                    usage: instance.as_ref().map(|i| i.usage()).unwrap_or_default(),
                    memory_limit: task.memory_limit.unwrap_or(0),
                    function: instance.as_ref().and_then(|i| i.function_stats()),
                    running: instance.is_some_and(|i| i.status().is_none()),
                })
            }
        }
    }
}
