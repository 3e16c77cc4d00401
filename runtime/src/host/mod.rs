//! The runtime host: one long-lived process per node running every Wasm instance of the node
//! and, given a container dir, every Linux container ([`container`]).
//!
//! The node agent can be killed and restarted without stopping pods (DESIGN §5), so instances
//! live here, in a process of their own sharing one engine, and the agent drives them over gRPC
//! on a Unix socket (service `skiff.runtime.v1.WasmHost`, `proto/skiff/runtime/v1/host.proto`).
//! `skiff runtime-host --socket S --cache-dir D` calls [`serve`]; a restarted agent reconnects
//! ([`connect`] or [`HostClient`]) and adopts what runs with `List`.
//!
//! Public API: [`HostOptions`], [`serve`], [`HostServer`] (bind, then serve: for tests that need
//! the socket ready), [`HostClient`] (typed) and [`connect`] (raw), [`proto`] (the generated
//! messages), [`InstanceInfo`] and [`InstanceEvent`].
//!
//! Must not: know about pods; an instance is an id, a spec and labels.

mod client;
pub mod container;
mod convert;
mod exec;
mod registry;
mod service;
mod status;

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

pub use client::{ClientError, HostClient, PrepareInfo, connect};
pub use container::{ContainerHost, ContainerSpec};
pub use convert::FieldError;
pub use registry::{InstanceEvent, InstanceInfo, Registry, RegistryError};
pub use service::HostService;

use crate::wasm::{EngineOptions, WasmEngine, WasmError};

/// Generated messages and service of package `skiff.runtime.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("skiff.runtime.v1");
}

/// Where the host listens and how its engine is sized.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The Unix socket to listen on (mode 0600).
    pub socket: PathBuf,
    /// The compiled-module cache directory (mode 0700).
    pub cache_dir: PathBuf,
    /// Instance slots (see [`EngineOptions::max_instances`]).
    pub max_instances: u32,
    /// Largest linear memory of any instance.
    pub max_memory_bytes: u64,
    /// Where Linux containers keep their state and bundles; `None`: Wasm only.
    pub container_dir: Option<PathBuf>,
    /// How to run the container init (`[skiff, linux-init]`); used with `container_dir`.
    pub init_command: Vec<std::ffi::OsString>,
}

impl Default for HostOptions {
    fn default() -> Self {
        let engine = EngineOptions::new("");
        HostOptions {
            socket: PathBuf::from("runtime-host.sock"),
            cache_dir: PathBuf::from("cache"),
            max_instances: engine.max_instances,
            max_memory_bytes: engine.max_memory_bytes,
            container_dir: None,
            init_command: Vec::new(),
        }
    }
}

impl HostOptions {
    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            max_instances: self.max_instances,
            max_memory_bytes: self.max_memory_bytes,
            ..EngineOptions::new(&self.cache_dir)
        }
    }
}

/// Why the host could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("socket {}: {source}", path.display())]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("socket {} is in use by a running runtime host", .0.display())]
    InUse(PathBuf),
    #[error(transparent)]
    Engine(#[from] WasmError),
    #[error("containers: {0}")]
    Containers(#[from] container::ContainerError),
    #[error("serving: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// A bound host: engine ready, socket listening, nothing served yet.
pub struct HostServer {
    listener: UnixListener,
    socket: PathBuf,
    registry: Arc<Registry>,
}

impl HostServer {
    /// Builds the engine and binds the socket (replacing a stale socket file, refusing one a
    /// live host answers on).
    pub async fn bind(options: &HostOptions) -> Result<Self, ServeError> {
        let engine_options = options.engine_options();
        let engine = tokio::task::spawn_blocking(move || WasmEngine::new(engine_options))
            .await
            .map_err(|e| WasmError::Engine(format!("engine task: {e}")))??;
        let containers = match &options.container_dir {
            Some(dir) => Some(ContainerHost::new(dir, options.init_command.clone())?),
            None => None,
        };
        let listener = bind(&options.socket).await?;
        Ok(HostServer {
            listener,
            socket: options.socket.clone(),
            registry: Registry::with_containers(engine, containers),
        })
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Serves until `shutdown` completes, then kills every instance and removes the socket.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServeError> {
        let HostServer {
            listener,
            socket,
            registry,
        } = self;
        tracing::info!(socket = %socket.display(), pid = std::process::id(), "runtime host serving");
        let closing = registry.clone();
        let shutdown = async move {
            shutdown.await;
            closing.close();
        };
        let result = tonic::transport::Server::builder()
            .add_service(proto::wasm_host_server::WasmHostServer::new(
                HostService::new(registry.clone()),
            ))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
            .await;
        registry.kill_all().await;
        let _ = std::fs::remove_file(&socket);
        Ok(result?)
    }
}

/// Binds the host and serves until `shutdown` completes.
pub async fn serve(
    options: HostOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    HostServer::bind(&options).await?.serve(shutdown).await
}

async fn bind(socket: &Path) -> Result<UnixListener, ServeError> {
    let err = |source| ServeError::Socket {
        path: socket.to_path_buf(),
        source,
    };
    if let Some(parent) = socket.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    if std::fs::symlink_metadata(socket).is_ok() {
        if tokio::net::UnixStream::connect(socket).await.is_ok() {
            return Err(ServeError::InUse(socket.to_path_buf()));
        }
        std::fs::remove_file(socket).map_err(err)?;
    }
    let listener = UnixListener::bind(socket).map_err(err)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}
