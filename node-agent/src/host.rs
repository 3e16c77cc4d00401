//! The agent's side of the runtime host: start it if it is not running, connect over its Unix
//! socket, and turn its instances into what the pod manager needs.
//!
//! The host is started once, in its own process group, with its output in
//! `<data-dir>/runtime/host.log` and its pid in `<data-dir>/runtime/host.pid`; it outlives the
//! agent, so a restarted agent only reconnects. If the host dies, the next call starts a new one
//! (its instances are gone; the pod manager sees that in the relist and restarts per policy).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use skiff_runtime::host::proto;
use tokio::sync::{Mutex, broadcast};
use tokio_stream::StreamExt;

use crate::{AgentError, AgentOptions};

/// An instance as the pod manager sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: String,
    pub pod_uid: String,
    pub container: String,
    pub attempt: u32,
    pub running: bool,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub started_at: SystemTime,
    pub finished_at: SystemTime,
    pub digest: String,
}

/// Labels the agent puts on every instance, to find its pod again after a restart.
pub const LABEL_POD_UID: &str = "skiff.dev/pod-uid";
pub const LABEL_CONTAINER: &str = "skiff.dev/container";
pub const LABEL_ATTEMPT: &str = "skiff.dev/attempt";
pub const LABEL_POD: &str = "skiff.dev/pod";
/// The container's `imageID` (a pulled image's manifest digest), which the host's own digest
/// (of the module) would not give back after an agent restart.
pub const LABEL_IMAGE_ID: &str = "skiff.dev/image-id";

fn time(nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

impl Instance {
    fn from_proto(p: proto::Instance) -> Option<Self> {
        let label = |k: &str| p.labels.get(k).cloned();
        Some(Self {
            pod_uid: label(LABEL_POD_UID)?,
            container: label(LABEL_CONTAINER)?,
            attempt: label(LABEL_ATTEMPT)?.parse().ok()?,
            running: p.state() == proto::State::Running,
            exit_code: p.exit_code,
            reason: p.reason,
            message: p.message,
            started_at: time(p.started_at_unix_nanos),
            finished_at: time(p.finished_at_unix_nanos),
            digest: label(LABEL_IMAGE_ID)
                .filter(|d| !d.is_empty())
                .unwrap_or(p.digest),
            id: p.id,
        })
    }
}

/// What changed in the host.
#[derive(Debug, Clone)]
pub enum HostEvent {
    Changed(Instance),
    Removed(Instance),
    /// The connection was lost and re-made: relist.
    Reconnected,
}

/// A handle on the runtime host; cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    client: Arc<Mutex<Option<proto::wasm_host_client::WasmHostClient<tonic::transport::Channel>>>>,
    socket: PathBuf,
    cache_dir: PathBuf,
    runtime_dir: PathBuf,
    command: Vec<std::ffi::OsString>,
    events: broadcast::Sender<HostEvent>,
    /// Set by [`Runtime::shutdown_host`]: nothing may start a host again.
    closed: Arc<std::sync::atomic::AtomicBool>,
}

/// A start that did not happen: the message names the cause (bad module, missing file, ...).
#[derive(Debug, Clone)]
pub struct StartFailure {
    pub message: String,
    /// The host could not be reached (it is restarting): try again, it is not the workload's fault.
    pub retry: bool,
}

impl From<tonic::Status> for StartFailure {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        Self {
            retry: matches!(
                s.code(),
                Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
            ),
            message: s.message().to_string(),
        }
    }
}

impl Runtime {
    /// Connects to the node's runtime host, starting it first if it is not running.
    pub async fn connect_or_spawn(options: &AgentOptions) -> Result<Self, AgentError> {
        let runtime_dir = options.data_dir.join("runtime");
        std::fs::create_dir_all(&runtime_dir).map_err(|source| AgentError::Io {
            path: runtime_dir.clone(),
            source,
        })?;
        let (events, _) = broadcast::channel(4096);
        let runtime = Self {
            client: Arc::new(Mutex::new(None)),
            socket: runtime_dir.join("host.sock"),
            cache_dir: options.data_dir.join("cache").join("modules"),
            runtime_dir,
            command: options.host_command.clone(),
            events,
            closed: Arc::default(),
        };
        runtime.client().await?;
        tokio::spawn(runtime.clone().follow());
        Ok(runtime)
    }

    /// Host events (instance changes); subscribe before listing to miss nothing.
    pub fn subscribe(&self) -> broadcast::Receiver<HostEvent> {
        self.events.subscribe()
    }

    async fn client(
        &self,
    ) -> Result<proto::wasm_host_client::WasmHostClient<tonic::transport::Channel>, AgentError>
    {
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let client = match self.try_connect().await {
            Ok(c) => c,
            Err(e) if self.closed.load(std::sync::atomic::Ordering::SeqCst) => {
                return Err(AgentError::Host(format!("stopped: {e}")));
            }
            Err(_) => {
                self.spawn_host()?;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
                loop {
                    match self.try_connect().await {
                        Ok(c) => break c,
                        Err(e) if tokio::time::Instant::now() > deadline => {
                            return Err(AgentError::Host(format!(
                                "started but not answering on {}: {e} (see {})",
                                self.socket.display(),
                                self.runtime_dir.join("host.log").display()
                            )));
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            }
        };
        *guard = Some(client.clone());
        Ok(client)
    }

    async fn try_connect(
        &self,
    ) -> Result<proto::wasm_host_client::WasmHostClient<tonic::transport::Channel>, String> {
        let mut client = skiff_runtime::host::connect(&self.socket)
            .await
            .map_err(|e| e.to_string())?;
        client
            .info(proto::InfoRequest {})
            .await
            .map_err(|e| e.message().to_string())?;
        Ok(client)
    }

    fn spawn_host(&self) -> Result<(), AgentError> {
        let Some((program, args)) = self.command.split_first() else {
            return Err(AgentError::Host(
                "no runtime host command configured".into(),
            ));
        };
        let log_path = self.runtime_dir.join("host.log");
        let io = |source| AgentError::Io {
            path: log_path.clone(),
            source,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io)?;
        let log2 = log.try_clone().map_err(io)?;
        // Its own process group: Ctrl-C on the agent's terminal and the agent's death leave it be.
        let mut command = std::process::Command::new(program);
        command
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--cache-dir")
            .arg(&self.cache_dir);
        if crate::node::runs_containers() {
            command
                .arg("--container-dir")
                .arg(self.runtime_dir.join("containers"));
        }
        let child = command
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                AgentError::Host(format!("starting {}: {e}", Path::new(program).display()))
            })?;
        let pid_path = self.runtime_dir.join("host.pid");
        std::fs::write(&pid_path, format!("{}\n", child.id())).map_err(|source| {
            AgentError::Io {
                path: pid_path,
                source,
            }
        })?;
        tracing::info!(pid = child.id(), "runtime host started");
        // Not tied to the agent's life (own process group, no kill-on-drop); while the agent
        // lives, a thread reaps it if it exits, so a dead host leaves no zombie.
        let mut child = child;
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(())
    }

    /// Follows the host's Watch stream, reconnecting (and restarting the host) when it breaks.
    async fn follow(self) {
        loop {
            if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let stream = match self.client().await {
                Ok(mut c) => c.watch(proto::WatchRequest {}).await,
                Err(e) => {
                    tracing::warn!(error = %e, "runtime host unavailable");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            match stream {
                Ok(stream) => {
                    let _ = self.events.send(HostEvent::Reconnected);
                    let mut stream = stream.into_inner();
                    while let Some(Ok(event)) = stream.next().await {
                        let removed = event.removed;
                        if let Some(instance) = event.instance.and_then(Instance::from_proto) {
                            let _ = self.events.send(if removed {
                                HostEvent::Removed(instance)
                            } else {
                                HostEvent::Changed(instance)
                            });
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "runtime host watch"),
            }
            // The stream ended: the host went away. Forget the connection; the next call respawns.
            *self.client.lock().await = None;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn call<T, F, Fut>(&self, f: F) -> Result<T, tonic::Status>
    where
        F: Fn(proto::wasm_host_client::WasmHostClient<tonic::transport::Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let client = self
            .client()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        f(client).await
    }

    /// Compiles (or finds cached) the module; returns its digest.
    pub async fn prepare(&self, path: &Path) -> Result<String, StartFailure> {
        let request = proto::PrepareRequest {
            module_path: path.display().to_string(),
        };
        self.call(|mut c| {
            let r = request.clone();
            async move { c.prepare(r).await }
        })
        .await
        .map(|r| r.into_inner().digest)
        .map_err(StartFailure::from)
    }

    /// Starts (idempotently, by id) an instance.
    pub async fn start(&self, spec: proto::WasmSpec) -> Result<Instance, StartFailure> {
        self.start_request(proto::StartRequest {
            spec: Some(spec),
            container: None,
        })
        .await
    }

    /// Starts (idempotently, by id) a Linux container.
    pub async fn start_container(
        &self,
        spec: proto::ContainerSpec,
    ) -> Result<Instance, StartFailure> {
        self.start_request(proto::StartRequest {
            spec: None,
            container: Some(spec),
        })
        .await
    }

    async fn start_request(&self, request: proto::StartRequest) -> Result<Instance, StartFailure> {
        let response = self
            .call(|mut c| {
                let r = request.clone();
                async move { c.start(r).await }
            })
            .await
            .map_err(StartFailure::from)?;
        response
            .into_inner()
            .instance
            .and_then(Instance::from_proto)
            .ok_or_else(|| StartFailure {
                message: "runtime host returned no instance".into(),
                retry: false,
            })
    }

    /// Stops an instance (a container: SIGTERM, SIGKILL after `grace_seconds`); NotFound is
    /// fine (already gone).
    pub async fn kill(&self, id: &str, grace_seconds: u32) -> Result<(), tonic::Status> {
        let request = proto::KillRequest {
            id: id.to_string(),
            grace_seconds,
        };
        match self
            .call(|mut c| {
                let r = request.clone();
                async move { c.kill(r).await }
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(s),
        }
    }

    /// Forgets an instance (killing it if it runs).
    pub async fn remove(&self, id: &str) -> Result<(), tonic::Status> {
        let request = proto::RemoveRequest { id: id.to_string() };
        match self
            .call(|mut c| {
                let r = request.clone();
                async move { c.remove(r).await }
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(s),
        }
    }

    /// Runs a command in a running container: `requests` starts with `ExecRequest.start`, then
    /// carries stdin; the answer streams output, then the exit code.
    pub async fn exec(
        &self,
        requests: impl tokio_stream::Stream<Item = proto::ExecRequest> + Send + 'static,
    ) -> Result<tonic::Streaming<proto::ExecResponse>, tonic::Status> {
        let mut client = self
            .client()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Ok(client.exec(requests).await?.into_inner())
    }

    /// Does the host answer (within 5 s)? Restarts it if it is gone.
    pub async fn check(&self) -> Result<(), String> {
        let info = self.call(|mut c| async move { c.info(proto::InfoRequest {}).await });
        match tokio::time::timeout(Duration::from_secs(5), info).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(s)) => Err(s.message().to_string()),
            Err(_) => Err("no answer within 5 s".into()),
        }
    }

    /// Every instance this agent started (others are ignored).
    pub async fn list(&self) -> Result<Vec<Instance>, tonic::Status> {
        let response = self
            .call(|mut c| async move { c.list(proto::ListRequest {}).await })
            .await?;
        Ok(response
            .into_inner()
            .instances
            .into_iter()
            .filter_map(Instance::from_proto)
            .collect())
    }

    /// Stops the runtime host (and with it every Wasm pod of this node): `skiff up`'s exit.
    pub async fn shutdown_host(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        let pid_path = self.runtime_dir.join("host.pid");
        let Some(pid) = std::fs::read_to_string(&pid_path)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            return;
        };
        let info = self
            .call(|mut c| async move { c.info(proto::InfoRequest {}).await })
            .await;
        // Only the host we talk to, identified by its own answer, never a recycled pid.
        if info.is_ok_and(|i| i.into_inner().pid == pid as u32) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = std::fs::remove_file(&pid_path);
        }
    }
}
