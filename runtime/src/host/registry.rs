//! The instances of one runtime host, by id, and the stream of their changes.
//!
//! Owns [`Registry`]: start (idempotent on id, even for concurrent calls: one async lock per id
//! while it starts), kill, remove, list and watch. Exited instances stay until removed, so a
//! restarted agent still sees exit codes it missed. Every change is broadcast while the map is
//! locked, so a watcher that takes a snapshot and subscribes under that lock misses nothing.
//! Must not: speak gRPC (that is `service`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;

use super::container::{Container, ContainerError, ContainerHost, ContainerSpec};
use crate::wasm::{ExitStatus, Instance, ModuleKind, WasmEngine, WasmError, WasmSpec};

/// What the host knows of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub digest: String,
    /// `None` for a Linux container.
    pub kind: Option<ModuleKind>,
    pub started_at: SystemTime,
    /// None while running.
    pub exit: Option<ExitStatus>,
}

impl InstanceInfo {
    pub fn running(&self) -> bool {
        self.exit.is_none()
    }
}

/// One change, as the Watch stream reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceEvent {
    pub instance: InstanceInfo,
    /// The instance was removed; `instance` is its last state.
    pub removed: bool,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Wasm(#[from] WasmError),
    #[error("instance {0:?} not found")]
    NotFound(String),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error("this runtime host runs no Linux containers (started without a container dir)")]
    NoContainers,
    /// The instance exists but cannot do what was asked in its state or kind.
    #[error("instance {id:?}: {problem}")]
    Precondition { id: String, problem: &'static str },
}

/// What runs under an id.
#[derive(Clone)]
enum Workload {
    Wasm(Instance),
    Linux(Container),
}

impl Workload {
    async fn wait(&self) -> ExitStatus {
        match self {
            Workload::Wasm(i) => i.wait().await,
            Workload::Linux(c) => c.wait().await,
        }
    }

    fn is_same(&self, other: &Workload) -> bool {
        match (self, other) {
            (Workload::Wasm(a), Workload::Wasm(b)) => a.is_same(b),
            (Workload::Linux(a), Workload::Linux(b)) => a.is_same(b),
            _ => false,
        }
    }
}

struct Record {
    info: InstanceInfo,
    instance: Workload,
}

/// Every instance of this host.
pub struct Registry {
    engine: WasmEngine,
    containers: Option<ContainerHost>,
    records: Mutex<BTreeMap<String, Record>>,
    starting: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    events: broadcast::Sender<InstanceEvent>,
    /// Set when the host shuts down: watch streams end.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Registry {
    pub fn new(engine: WasmEngine) -> Arc<Self> {
        Self::with_containers(engine, None)
    }

    /// A registry that also runs Linux containers through `containers`.
    pub fn with_containers(engine: WasmEngine, containers: Option<ContainerHost>) -> Arc<Self> {
        let (events, _) = broadcast::channel(4096);
        Arc::new(Registry {
            engine,
            containers,
            records: Mutex::new(BTreeMap::new()),
            starting: Mutex::new(HashMap::new()),
            events,
            closing: tokio::sync::watch::Sender::new(false),
        })
    }

    pub fn engine(&self) -> &WasmEngine {
        &self.engine
    }

    fn records(&self) -> MutexGuard<'_, BTreeMap<String, Record>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, id: &str) -> Option<(InstanceInfo, Workload)> {
        self.records()
            .get(id)
            .map(|r| (r.info.clone(), r.instance.clone()))
    }

    /// Starts `spec` unless an instance with its id exists; returns the instance and whether
    /// this call created it. A failed start leaves nothing behind.
    pub async fn start(
        self: &Arc<Self>,
        spec: WasmSpec,
    ) -> Result<(InstanceInfo, bool), WasmError> {
        let id = spec.id.clone();
        let labels = spec.labels.clone();
        let engine = self.engine.clone();
        let this = self.clone();
        // A task of its own: a caller that goes away (a cancelled RPC) cannot leave an
        // instance running that the registry does not know.
        tokio::spawn(async move {
            this.start_workload(id, labels, async move {
                let instance = engine.start(spec).await?;
                let digest = instance.digest().to_string();
                let kind = Some(instance.kind());
                let started_at = instance.started_at();
                Ok((Workload::Wasm(instance), digest, kind, started_at))
            })
            .await
        })
        .await
        .map_err(|e| WasmError::Engine(format!("the start task: {e}")))?
    }

    /// Starts a Linux container unless an instance with its id exists (as [`Registry::start`]).
    /// `digest` is what the instance reports as its image.
    pub async fn start_container(
        self: &Arc<Self>,
        spec: ContainerSpec,
        labels: BTreeMap<String, String>,
        digest: String,
    ) -> Result<(InstanceInfo, bool), RegistryError> {
        let host = self.containers.clone().ok_or(RegistryError::NoContainers)?;
        let id = spec.id.clone();
        let this = self.clone();
        let task_error = |e: tokio::task::JoinError| ContainerError::Io {
            what: "the start task".into(),
            source: std::io::Error::other(e.to_string()),
        };
        // A task of its own, as for Wasm: a container is never started and then forgotten.
        tokio::spawn(async move {
            this.start_workload(id, labels, async move {
                let container = tokio::task::spawn_blocking(move || host.start(&spec))
                    .await
                    .map_err(task_error)??;
                let started_at = container.started_at();
                Ok::<_, RegistryError>((Workload::Linux(container), digest, None, started_at))
            })
            .await
        })
        .await
        .map_err(|e| RegistryError::Container(task_error(e)))?
    }

    async fn start_workload<E>(
        self: &Arc<Self>,
        id: String,
        labels: BTreeMap<String, String>,
        start: impl std::future::Future<
            Output = Result<(Workload, String, Option<ModuleKind>, SystemTime), E>,
        >,
    ) -> Result<(InstanceInfo, bool), E> {
        let lock = {
            let mut starting = self.starting.lock().unwrap_or_else(PoisonError::into_inner);
            starting.entry(id.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        if let Some((info, _)) = self.get(&id) {
            return Ok((info, false));
        }
        let (instance, digest, kind, started_at) = match start.await {
            Ok(started) => started,
            Err(e) => {
                self.forget_lock(&id);
                return Err(e);
            }
        };
        let info = InstanceInfo {
            id: id.clone(),
            labels,
            digest,
            kind,
            started_at,
            exit: None,
        };
        {
            let mut records = self.records();
            records.insert(
                id.clone(),
                Record {
                    info: info.clone(),
                    instance: instance.clone(),
                },
            );
            let _ = self.events.send(InstanceEvent {
                instance: info.clone(),
                removed: false,
            });
        }
        self.forget_lock(&id);
        let registry = Arc::downgrade(self);
        tokio::spawn(async move {
            let status = instance.wait().await;
            if let Some(registry) = registry.upgrade() {
                registry.exited(&id, &instance, status);
            }
        });
        Ok((info, true))
    }

    fn forget_lock(&self, id: &str) {
        let mut starting = self.starting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(lock) = starting.get(id) {
            // Only this holder and the map: nobody else waits on it.
            if Arc::strong_count(lock) <= 2 {
                starting.remove(id);
            }
        }
    }

    /// Records the exit of `instance` (once; the first report wins) and broadcasts it.
    fn exited(&self, id: &str, instance: &Workload, status: ExitStatus) -> Option<InstanceInfo> {
        let mut records = self.records();
        let record = records.get_mut(id)?;
        if !record.instance.is_same(instance) {
            return Some(record.info.clone());
        }
        if record.info.exit.is_none() {
            record.info.exit = Some(status);
            let _ = self.events.send(InstanceEvent {
                instance: record.info.clone(),
                removed: false,
            });
        }
        Some(record.info.clone())
    }

    /// Kills a running instance and waits for it to end; returns its final state. A container
    /// gets SIGTERM and, after `grace`, SIGKILL; a Wasm instance stops at once.
    pub async fn kill(&self, id: &str, grace: Duration) -> Result<InstanceInfo, RegistryError> {
        let (info, instance) = self
            .get(id)
            .ok_or_else(|| RegistryError::NotFound(id.to_string()))?;
        if !info.running() {
            return Ok(info);
        }
        let status = match &instance {
            Workload::Wasm(i) => {
                i.kill();
                i.wait().await
            }
            Workload::Linux(c) => match &self.containers {
                Some(host) => host.stop(c, grace).await,
                None => c.wait().await,
            },
        };
        self.exited(id, &instance, status)
            .ok_or_else(|| RegistryError::NotFound(id.to_string()))
    }

    /// Kills (if running) and forgets an instance; returns its last state.
    pub async fn remove(&self, id: &str) -> Result<InstanceInfo, RegistryError> {
        let info = self.kill(id, Duration::ZERO).await?;
        if let Some((_, Workload::Linux(c))) = self.get(id)
            && let Some(host) = &self.containers
        {
            host.remove(&c).await;
        }
        let mut records = self.records();
        let removed = records
            .remove(id)
            .map(|r| r.info)
            .ok_or_else(|| RegistryError::NotFound(id.to_string()))?;
        let _ = self.events.send(InstanceEvent {
            instance: removed.clone(),
            removed: true,
        });
        debug_assert_eq!(removed.id, info.id);
        Ok(removed)
    }

    /// Starts `args` in the running container `id`, with the container's privileges (see
    /// [`ContainerHost::exec`]); returns the helper that waits for it and exits with its status.
    pub fn exec(
        &self,
        id: &str,
        args: Vec<String>,
        env: Vec<String>,
        stdio: crate::linux::StdioSet,
    ) -> Result<std::process::Child, RegistryError> {
        let (info, instance) = self
            .get(id)
            .ok_or_else(|| RegistryError::NotFound(id.to_string()))?;
        let precondition = |problem| RegistryError::Precondition {
            id: id.to_string(),
            problem,
        };
        let Workload::Linux(c) = instance else {
            return Err(precondition(
                "a Wasm instance runs no processes that a command could join: exec needs a Linux container",
            ));
        };
        if !info.running() {
            return Err(precondition("the container is not running"));
        }
        let host = self
            .containers
            .as_ref()
            .ok_or(RegistryError::NoContainers)?;
        Ok(host.exec(&c, args, env, stdio)?)
    }

    /// Every instance, by id.
    pub fn list(&self) -> Vec<InstanceInfo> {
        self.records().values().map(|r| r.info.clone()).collect()
    }

    /// The current state of every instance, and the changes from that point on.
    pub fn watch(&self) -> (Vec<InstanceInfo>, broadcast::Receiver<InstanceEvent>) {
        let records = self.records();
        let rx = self.events.subscribe();
        (records.values().map(|r| r.info.clone()).collect(), rx)
    }

    /// Ends every watch stream (host shutdown: open streams would keep the server's graceful
    /// shutdown waiting forever).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Registry::close`] has been called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    /// Kills every running instance (host shutdown).
    pub async fn kill_all(&self) {
        let running: Vec<String> = self
            .list()
            .into_iter()
            .filter(InstanceInfo::running)
            .map(|i| i.id)
            .collect();
        for id in running {
            let _ = self.kill(&id, Duration::ZERO).await;
        }
        // Containers hold mounts and cgroups: gone with the host.
        let containers: Vec<String> = self
            .records()
            .iter()
            .filter(|(_, r)| matches!(r.instance, Workload::Linux(_)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in containers {
            let _ = self.remove(&id).await;
        }
    }
}
