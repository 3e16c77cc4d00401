//! The shim v2 task service (`containerd.task.v2.Task` over ttrpc) for every container this shim
//! serves.
//!
//! Owns the container map and the request → container mapping: each method finds the container
//! (and exec), checks the request, calls into [`Container`] and builds the reply. One shim can
//! serve several containers (a pod's, grouped by `io.kubernetes.cri.sandbox-id`, or a node's
//! Wasm pods, grouped by `io.containerd.skiff.v1.group`); Delete of one leaves the others
//! running, and it exits on Shutdown once it serves none (or at once with `now`). Pause, Resume, Checkpoint and Update answer Unimplemented; a
//! terminal (`ctr run -t`) is refused at Create. Must not: block the runtime (executor calls that
//! wait go to `spawn_blocking`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use containerd_shim::api::{self, Empty};
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::{Task, TtrpcContext, TtrpcResult};
use skiff_runtime::wasm::WasmEngine;
use tokio::sync::OnceCell;
use tracing::Instrument;

use crate::Locked;
use crate::container::{Container, CreateArgs, Exec};
use crate::errors::{exists, internal, invalid, not_found, precondition, unimplemented};
use crate::events::Events;
use crate::process::{Exit, Process};
use crate::stdio::Io;

#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    containers: Mutex<HashMap<String, Arc<Container>>>,
    events: Events,
    exit: Arc<ExitSignal>,
    /// Built at the first Wasm task: a shim that only runs Linux tasks never pays for it.
    engine: OnceCell<WasmEngine>,
    /// An engine already being built on a thread of its own (see [`build_engine_early`]):
    /// the first Wasm task takes it rather than building another.
    building: Mutex<Option<EngineThread>>,
}

/// A thread building the Wasm engine.
pub type EngineThread = std::thread::JoinHandle<Result<WasmEngine, String>>;

/// Starts building the Wasm engine on a thread: the serving shim whose first container is Wasm
/// has it (a millisecond or two of work) ready by the time Create asks.
pub fn build_engine_early() -> Result<EngineThread, String> {
    std::thread::Builder::new()
        .name("engine-build".into())
        .spawn(|| WasmEngine::new(crate::wasm::engine_options()).map_err(|e| e.to_string()))
        .map_err(|e| format!("starting the engine's build: {e}"))
}

impl Service {
    /// `building`: the engine's build, if already started ([`build_engine_early`]).
    pub fn new(events: Events, exit: Arc<ExitSignal>, building: Option<EngineThread>) -> Self {
        Service {
            inner: Arc::new(Inner {
                containers: Mutex::new(HashMap::new()),
                events,
                exit,
                engine: OnceCell::new(),
                building: Mutex::new(building),
            }),
        }
    }

    fn containers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Container>>> {
        self.inner.containers.locked()
    }

    fn container(&self, id: &str) -> TtrpcResult<Arc<Container>> {
        self.containers()
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(format!("task {id}: not found in this shim")))
    }

    /// The container and the process a request names (its init when `exec_id` is empty).
    fn process(&self, id: &str, exec_id: &str) -> TtrpcResult<(Arc<Container>, Arc<Process>)> {
        let c = self.container(id)?;
        if exec_id.is_empty() {
            let init = c.init.clone();
            return Ok((c, init));
        }
        let exec = exec_of(&c, exec_id)?;
        Ok((c, exec.process.clone()))
    }

    /// The process's engine: the one built early if there is one, else built now. A failed
    /// build is reported to the task that asked, and the next task tries again.
    async fn engine(&self) -> Result<WasmEngine, String> {
        self.inner
            .engine
            .get_or_try_init(|| async {
                let building = self.inner.building.locked().take();
                tokio::task::spawn_blocking(move || match building {
                    Some(thread) => thread
                        .join()
                        .unwrap_or_else(|_| Err("the engine's build panicked".to_string())),
                    None => {
                        WasmEngine::new(crate::wasm::engine_options()).map_err(|e| e.to_string())
                    }
                })
                .await
                .map_err(|e| e.to_string())?
            })
            .await
            .cloned()
    }
}

/// Exec `exec_id` of container `c`.
fn exec_of(c: &Container, exec_id: &str) -> TtrpcResult<Arc<Exec>> {
    (c.exec(exec_id))
        .ok_or_else(|| not_found(format!("exec {exec_id} of task {}: not found", c.id)))
}

/// The task calls that have a span: their bodies, run inside it.
impl Service {
    async fn create_task(
        &self,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        if req.id.is_empty() {
            return Err(invalid("id: required"));
        }
        if req.terminal {
            return Err(invalid(format!(
                "task {}: terminal: not supported by io.containerd.skiff.v1 (run without -t)",
                req.id
            )));
        }
        if !req.checkpoint.is_empty() {
            return Err(unimplemented(format!(
                "task {}: checkpoint: restoring is not supported",
                req.id
            )));
        }
        if self.containers().contains_key(&req.id) {
            return Err(exists(format!("task {}: already exists", req.id)));
        }
        let bundle = PathBuf::from(&req.bundle);
        let io = Io {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        // The shim process can sit in one cgroup: the first Wasm task that asks gets it (a CRI
        // pod's pause container is a Linux task with a cgroup of its own, so it does not count),
        // unless the shim serves a node group, whose tasks belong to many pods.
        let own_cgroup = !self
            .containers()
            .values()
            .any(|c| c.holds_cgroup() || c.node_group);
        let args = CreateArgs {
            id: &req.id,
            bundle: &bundle,
            rootfs: &req.rootfs,
            io: io.clone(),
            own_cgroup,
        };
        let container = Container::create(args, async || self.engine().await)
            .await
            .map_err(|e| invalid(format!("task {}: {e}", req.id)))?;
        let container = Arc::new(container);
        let pid = container.init.pid();
        let inserted = {
            let mut map = self.containers();
            !map.contains_key(&req.id) && map.insert(req.id.clone(), container.clone()).is_none()
        };
        if !inserted {
            container.remove(false).await;
            return Err(exists(format!("task {}: already exists", req.id)));
        }
        {
            let _gate = container.init.gate.lock().await;
            self.inner
                .events
                .created(&req.id, &req.bundle, &io, pid)
                .await;
        }
        container.watch_linux_init(&self.inner.events);
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start_task(
        &self,
        c: Arc<Container>,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let pid = if req.exec_id.is_empty() {
            c.start(&self.inner.events).await
        } else {
            let exec = exec_of(&c, &req.exec_id)?;
            c.start_exec(&exec, &self.inner.events).await
        }
        .map_err(precondition)?;
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }
}

#[async_trait]
impl Task for Service {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let span = crate::trace::task_span("create task", &req.id, Path::new(&req.bundle));
        let result = self.create_task(req).instrument(span.clone()).await;
        crate::trace::record(&span, &result);
        result
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let c = self.container(&req.id)?;
        let span = match req.exec_id.is_empty() {
            true => crate::trace::task_span("start task", &req.id, &c.bundle),
            false => tracing::Span::none(),
        };
        let result = self.start_task(c, req).instrument(span.clone()).await;
        crate::trace::record(&span, &result);
        result
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        let exit = p.exit();
        Ok(api::StateResponse {
            id: if req.exec_id.is_empty() {
                c.id.clone()
            } else {
                req.exec_id.clone()
            },
            bundle: c.bundle.display().to_string(),
            pid: p.pid(),
            status: p.status().into(),
            stdin: p.io.stdin.clone(),
            stdout: p.io.stdout.clone(),
            stderr: p.io.stderr.clone(),
            terminal: p.io.terminal,
            exit_status: exit.map_or(0, |e| e.code),
            exited_at: exit.map_or_else(MessageField::none, |e| e.timestamp()),
            exec_id: req.exec_id,
            ..Default::default()
        })
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        let (_, p) = self.process(&req.id, &req.exec_id)?;
        let exit = p.wait().await;
        Ok(api::WaitResponse {
            exit_status: exit.code,
            exited_at: exit.timestamp(),
            ..Default::default()
        })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<Empty> {
        let c = self.container(&req.id)?;
        if req.exec_id.is_empty() {
            c.kill(req.signal, req.all, &self.inner.events)
                .await
                .map_err(|e| {
                    if c.init.is_stopped() {
                        not_found(e)
                    } else {
                        precondition(e)
                    }
                })?;
        } else {
            let exec = exec_of(&c, &req.exec_id)?;
            c.kill_exec(&exec, req.signal).map_err(not_found)?;
        }
        Ok(Empty::new())
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        if p.is_running() {
            let (what, name) = match req.exec_id.as_str() {
                "" => ("task", &req.id),
                _ => ("exec", &req.exec_id),
            };
            return Err(precondition(format!(
                "{what} {name}: is running, kill it first"
            )));
        }
        if !req.exec_id.is_empty() {
            c.remove_exec(&req.exec_id);
        } else {
            // Under the gate, so that no Start runs meanwhile. Never started: it ends with its
            // deletion, killed.
            let _gate = p.gate.lock().await;
            if p.is_running() {
                return Err(precondition(format!(
                    "task {}: is running, kill it first",
                    req.id
                )));
            }
            p.set_exited(Exit::now(137));
            // Its last task gone, containerd shuts the shim down next.
            let last = self.containers().keys().all(|id| *id == req.id);
            c.remove(last).await;
            self.containers().remove(&req.id);
        }
        let exit = p.exit().unwrap_or_else(|| Exit::now(137));
        if req.exec_id.is_empty() {
            self.inner.events.deleted(&req.id, p.pid(), exit).await;
        }
        Ok(api::DeleteResponse {
            pid: p.pid(),
            exit_status: exit.code,
            exited_at: exit.timestamp(),
            ..Default::default()
        })
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<Empty> {
        let c = self.container(&req.id)?;
        if c.is_wasm() {
            return Err(unimplemented(format!(
                "task {}: exec: a Wasm task runs one guest; exec is not supported",
                req.id
            )));
        }
        if req.exec_id.is_empty() {
            return Err(invalid("exec_id: required"));
        }
        if req.terminal {
            return Err(invalid(format!(
                "exec {}: terminal: not supported by io.containerd.skiff.v1 (exec without -t)",
                req.exec_id
            )));
        }
        let value = req.spec.as_ref().map(|a| a.value.as_slice()).unwrap_or(b"");
        let spec: oci_spec::runtime::Process = serde_json::from_slice(value)
            .map_err(|e| invalid(format!("exec {}: spec: {e}", req.exec_id)))?;
        let io = Io {
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            terminal: false,
        };
        c.add_exec(&req.exec_id, spec, io).map_err(|e| {
            if e.contains("already exists") {
                exists(e)
            } else {
                precondition(e)
            }
        })?;
        self.inner.events.exec_added(&req.id, &req.exec_id).await;
        Ok(Empty::new())
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        let c = self.container(&req.id)?;
        let processes = c
            .pids()
            .into_iter()
            .map(|pid| ProcessInfo {
                pid,
                ..Default::default()
            })
            .collect();
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let c = self.container(&req.id)?;
        let figures = c.figures().map_err(precondition)?;
        let stats = crate::stats::metrics(&figures).map_err(internal)?;
        Ok(api::StatsResponse {
            stats: MessageField::some(stats),
            ..Default::default()
        })
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<Empty> {
        let (_, p) = self.process(&req.id, &req.exec_id)?;
        if req.stdin {
            p.close_stdin();
        }
        Ok(Empty::new())
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<Empty> {
        self.process(&req.id, &req.exec_id)?;
        Err(precondition(format!(
            "task {}: has no terminal (io.containerd.skiff.v1 runs tasks without one)",
            req.id
        )))
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self.container(&req.id).map(|c| c.init.pid()).unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, req: api::ShutdownRequest) -> TtrpcResult<Empty> {
        if req.now || self.containers().is_empty() {
            self.inner.exit.signal();
        }
        Ok(Empty::new())
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<Empty> {
        Err(unimplemented(format!(
            "task {}: pause: not supported",
            req.id
        )))
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<Empty> {
        Err(unimplemented(format!(
            "task {}: resume: not supported",
            req.id
        )))
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<Empty> {
        Err(unimplemented(format!(
            "task {}: checkpoint: not supported",
            req.id
        )))
    }

    async fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<Empty> {
        Err(unimplemented(format!(
            "task {}: update: changing resources of a running task is not supported",
            req.id
        )))
    }
}
