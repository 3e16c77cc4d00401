//! The client side of the runtime host: gRPC over its Unix socket.
//!
//! Owns [`connect`] (the raw tonic client, over a `UnixStream` connector) and [`HostClient`], a
//! typed wrapper that speaks the executor's own types ([`WasmSpec`], [`InstanceInfo`]). Must not:
//! start or supervise the host process (the node agent does).

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{Stream, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::convert::{self, FieldError};
use super::proto;
use super::proto::wasm_host_client::WasmHostClient;
use super::registry::{InstanceEvent, InstanceInfo};
use crate::wasm::{ModuleKind, Origin, WasmSpec};

/// Why a call to the runtime host failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to the runtime host at {}: {detail}", socket.display())]
    Connect { socket: PathBuf, detail: String },
    /// The host answered with an error; the message names the cause.
    #[error("{}", .0.message())]
    Rpc(#[from] tonic::Status),
    #[error("the runtime host sent a bad message: {0}")]
    Decode(#[from] FieldError),
}

impl ClientError {
    /// The gRPC code of an answered call.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Rpc(s) => Some(s.code()),
            _ => None,
        }
    }
}

/// Connects to the host listening on `socket`; the raw generated client.
pub async fn connect(socket: impl AsRef<Path>) -> Result<WasmHostClient<Channel>, ClientError> {
    let socket = socket.as_ref().to_path_buf();
    let path = socket.clone();
    // The URI is required by the API and ignored by the connector.
    let channel = Endpoint::from_static("http://runtime-host.invalid")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|e| ClientError::Connect {
            socket,
            detail: error_chain(&e),
        })?;
    Ok(WasmHostClient::new(channel))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// What [`HostClient::prepare`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareInfo {
    pub digest: String,
    pub kind: ModuleKind,
    pub origin: Origin,
    pub elapsed: Duration,
}

/// A typed client of the runtime host; cheap to clone.
#[derive(Clone)]
pub struct HostClient {
    inner: WasmHostClient<Channel>,
}

impl HostClient {
    pub async fn connect(socket: impl AsRef<Path>) -> Result<Self, ClientError> {
        Ok(HostClient {
            inner: connect(socket).await?,
        })
    }

    /// The generated client, for calls not wrapped here.
    pub fn raw(&self) -> WasmHostClient<Channel> {
        self.inner.clone()
    }

    pub async fn prepare(&self, module_path: &Path) -> Result<PrepareInfo, ClientError> {
        let r = self
            .raw()
            .prepare(proto::PrepareRequest {
                module_path: module_path.display().to_string(),
            })
            .await?
            .into_inner();
        Ok(PrepareInfo {
            kind: convert::kind_from_proto(r.kind()).ok_or_else(|| FieldError {
                field: "kind".into(),
                problem: "unspecified".into(),
            })?,
            origin: convert::origin_from_proto(r.origin()).ok_or_else(|| FieldError {
                field: "origin".into(),
                problem: "unspecified".into(),
            })?,
            elapsed: Duration::from_nanos(r.elapsed_nanos),
            digest: r.digest,
        })
    }

    /// Starts `spec` (idempotent on its id); returns the instance and whether this call
    /// created it.
    pub async fn start(&self, spec: &WasmSpec) -> Result<(InstanceInfo, bool), ClientError> {
        let r = self
            .raw()
            .start(proto::StartRequest {
                spec: Some(convert::spec_to_proto(spec)),
                container: None,
            })
            .await?
            .into_inner();
        let instance = r.instance.ok_or_else(|| FieldError {
            field: "instance".into(),
            problem: "missing".into(),
        })?;
        Ok((convert::instance_from_proto(instance)?, r.created))
    }

    /// Kills an instance and returns its final state.
    pub async fn kill(&self, id: &str) -> Result<InstanceInfo, ClientError> {
        let r = self
            .raw()
            .kill(proto::KillRequest {
                id: id.to_string(),
                grace_seconds: 0,
            })
            .await?;
        Ok(convert::instance_from_proto(r.into_inner())?)
    }

    /// Forgets an instance (killing it first if it runs) and returns its last state.
    pub async fn remove(&self, id: &str) -> Result<InstanceInfo, ClientError> {
        let r = self
            .raw()
            .remove(proto::RemoveRequest { id: id.to_string() })
            .await?;
        Ok(convert::instance_from_proto(r.into_inner())?)
    }

    pub async fn list(&self) -> Result<Vec<InstanceInfo>, ClientError> {
        let r = self.raw().list(proto::ListRequest {}).await?.into_inner();
        r.instances
            .into_iter()
            .map(|i| convert::instance_from_proto(i).map_err(ClientError::from))
            .collect()
    }

    /// The current state of every instance, then every change.
    pub async fn watch(
        &self,
    ) -> Result<impl Stream<Item = Result<InstanceEvent, ClientError>> + use<>, ClientError> {
        let stream = self.raw().watch(proto::WatchRequest {}).await?.into_inner();
        Ok(stream.map(|item| {
            let event = item?;
            let instance = event.instance.ok_or_else(|| FieldError {
                field: "instance".into(),
                problem: "missing".into(),
            })?;
            Ok(InstanceEvent {
                instance: convert::instance_from_proto(instance)?,
                removed: event.removed,
            })
        }))
    }

    pub async fn info(&self) -> Result<proto::InfoResponse, ClientError> {
        Ok(self.raw().info(proto::InfoRequest {}).await?.into_inner())
    }
}
