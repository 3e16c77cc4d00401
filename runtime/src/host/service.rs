//! The `WasmHost` gRPC service: each handler decodes, calls the registry, encodes.
//!
//! Owns [`HostService`]. Must not: hold state of its own or decide anything the registry or the
//! executor decides.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert;
use super::exec;
use super::proto;
use super::registry::{InstanceEvent, Registry};

/// The service over one registry.
pub struct HostService {
    registry: Arc<Registry>,
}

impl HostService {
    pub fn new(registry: Arc<Registry>) -> Self {
        HostService { registry }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<proto::WatchEvent, Status>> + Send>>;
type ExecStream = Pin<Box<dyn Stream<Item = exec::Answer> + Send>>;

#[tonic::async_trait]
impl proto::wasm_host_server::WasmHost for HostService {
    async fn prepare(
        &self,
        request: Request<proto::PrepareRequest>,
    ) -> Result<Response<proto::PrepareResponse>, Status> {
        let path = request.into_inner().module_path;
        if path.is_empty() {
            return Err(Status::invalid_argument("module_path: required"));
        }
        let outcome = self.registry.engine().prepare(Path::new(&path)).await?;
        let mut response = proto::PrepareResponse {
            digest: outcome.prepared.digest().to_string(),
            elapsed_nanos: u64::try_from(outcome.elapsed.as_nanos()).unwrap_or(u64::MAX),
            ..Default::default()
        };
        response.set_kind(convert::kind_to_proto(outcome.prepared.kind()));
        response.set_origin(convert::origin_to_proto(outcome.origin));
        Ok(Response::new(response))
    }

    async fn start(
        &self,
        request: Request<proto::StartRequest>,
    ) -> Result<Response<proto::StartResponse>, Status> {
        let request = request.into_inner();
        let (info, created) = match (request.spec, request.container) {
            (Some(spec), None) => {
                let spec = convert::spec_from_proto(spec)?;
                self.registry.start(spec).await?
            }
            (None, Some(container)) => {
                let digest = container.image_digest.clone();
                let (spec, labels) = convert::container_from_proto(container)?;
                self.registry.start_container(spec, labels, digest).await?
            }
            (Some(_), Some(_)) => {
                return Err(Status::invalid_argument(
                    "spec, container: give one, not both",
                ));
            }
            (None, None) => return Err(Status::invalid_argument("spec or container: required")),
        };
        Ok(Response::new(proto::StartResponse {
            instance: Some(convert::instance_to_proto(&info)),
            created,
        }))
    }

    async fn kill(
        &self,
        request: Request<proto::KillRequest>,
    ) -> Result<Response<proto::Instance>, Status> {
        let request = request.into_inner();
        let grace = std::time::Duration::from_secs(request.grace_seconds.into());
        let info = self.registry.kill(&request.id, grace).await?;
        Ok(Response::new(convert::instance_to_proto(&info)))
    }

    async fn remove(
        &self,
        request: Request<proto::RemoveRequest>,
    ) -> Result<Response<proto::Instance>, Status> {
        let info = self.registry.remove(&request.into_inner().id).await?;
        Ok(Response::new(convert::instance_to_proto(&info)))
    }

    async fn list(
        &self,
        _request: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListResponse>, Status> {
        Ok(Response::new(proto::ListResponse {
            instances: self
                .registry
                .list()
                .iter()
                .map(convert::instance_to_proto)
                .collect(),
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        _request: Request<proto::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (snapshot, mut events) = self.registry.watch();
        let closed = self.registry.closed();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            tokio::pin!(closed);
            for instance in snapshot {
                let event = InstanceEvent {
                    instance,
                    removed: false,
                };
                if tx.send(Ok(convert::event_to_proto(&event))).await.is_err() {
                    return;
                }
            }
            loop {
                let item = tokio::select! {
                    _ = tx.closed() => return,
                    _ = &mut closed => return,
                    event = events.recv() => match event {
                        Ok(e) => Ok(convert::event_to_proto(&e)),
                        Err(broadcast::error::RecvError::Lagged(n)) => Err(Status::aborted(format!(
                            "watch fell behind by {n} events; watch again"
                        ))),
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                };
                let end = item.is_err();
                if tx.send(item).await.is_err() || end {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn info(
        &self,
        _request: Request<proto::InfoRequest>,
    ) -> Result<Response<proto::InfoResponse>, Status> {
        let list = self.registry.list();
        let engine = self.registry.engine();
        let options = engine.options();
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(Response::new(proto::InfoResponse {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            instances: count(list.len()),
            running: count(list.iter().filter(|i| i.running()).count()),
            engine: Some(proto::EngineSettings {
                max_instances: options.max_instances,
                max_memory_bytes: options.max_memory_bytes,
                epoch_tick_nanos: u64::try_from(options.epoch_tick.as_nanos()).unwrap_or(0),
                cache_dir: options.cache_dir.display().to_string(),
                memory_init_cow: options.memory_init_cow,
                prepared_modules: count(engine.prepared_count()),
            }),
        }))
    }

    type ExecStream = ExecStream;

    async fn exec(
        &self,
        request: Request<tonic::Streaming<proto::ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut requests = request.into_inner();
        let start = match requests.message().await? {
            Some(proto::ExecRequest {
                message: Some(proto::exec_request::Message::Start(start)),
            }) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "exec: the first request must be `start`",
                ));
            }
        };
        let rx = exec::run(&self.registry, start, requests)?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
