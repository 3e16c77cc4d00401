//! The events endpoint the agent's shims publish to: containerd's
//! `containerd.services.events.ttrpc.v1.Events/Forward` over ttrpc on a Unix socket in the data
//! dir (the `TTRPC_ADDRESS` each shim is started with), turned into [`ShimEvent`]s on a tokio
//! broadcast.
//!
//! A shim connects when it starts and fails to start without this endpoint; once started it
//! survives the endpoint going away (an agent restart): its publisher retries each event five
//! times over about 15 s, reconnecting to the same address, then drops it. So events are hints,
//! as under containerd: a subscriber that lags (the broadcast drops the oldest) or an agent that
//! was down learns the truth from State and Wait. Events of another namespace are dropped.
//!
//! Must not: act on events (the pod loop does), or block a shim's Forward.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::protos::api::Empty;
use containerd_shim::protos::events::task::{TaskExit, TaskOOM};
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::shim_async::{Events, create_events};
use containerd_shim::protos::ttrpc;
use containerd_shim::protos::ttrpc::r#async::transport::Listener;
use containerd_shim::protos::ttrpc::r#async::{Server, TtrpcContext};
use tokio::sync::broadcast;

use super::error::ShimError;
use super::task::ExitStatus;

/// A task event from a shim that the agent acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShimEvent {
    /// A process ended: the task's init (`exec_id` `None`) or one of its execs.
    Exited {
        id: String,
        exec_id: Option<String>,
        pid: u32,
        exit: ExitStatus,
    },
    /// The task's memory limit was hit (a Wasm guest's `memory.grow` refused, or the OOM
    /// killer in a Linux task's cgroup); its Exited follows.
    Oom { id: String },
}

impl ShimEvent {
    /// Reads one forwarded event; `Ok(None)` for topics the agent does not use (create, start,
    /// delete, exec-added, exec-started: what a call's answer already told it).
    pub(crate) fn decode(topic: &str, value: &[u8]) -> Result<Option<Self>, String> {
        let event = match topic {
            "/tasks/exit" => {
                let e = TaskExit::parse_from_bytes(value).map_err(|e| e.to_string())?;
                ShimEvent::Exited {
                    // containerd's habit: the init's exit carries the container's id as its own.
                    exec_id: (e.id != e.container_id && !e.id.is_empty()).then(|| e.id.clone()),
                    exit: ExitStatus::from_proto(e.exit_status, &e.exited_at),
                    id: e.container_id,
                    pid: e.pid,
                }
            }
            "/tasks/oom" => {
                let e = TaskOOM::parse_from_bytes(value).map_err(|e| e.to_string())?;
                ShimEvent::Oom { id: e.container_id }
            }
            _ => return Ok(None),
        };
        Ok(Some(event))
    }
}

/// The Forward handler: decodes and broadcasts.
struct Forwarder {
    namespace: String,
    tx: broadcast::Sender<ShimEvent>,
}

#[async_trait]
impl Events for Forwarder {
    async fn forward(&self, _ctx: &TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
        let envelope = req.envelope.into_option().unwrap_or_default();
        if envelope.namespace != self.namespace {
            tracing::debug!(
                namespace = %envelope.namespace,
                topic = %envelope.topic,
                "a shim event of another namespace dropped"
            );
            return Ok(Empty::new());
        }
        let value = envelope
            .event
            .as_ref()
            .map(|a| a.value.as_slice())
            .unwrap_or_default();
        match ShimEvent::decode(&envelope.topic, value) {
            // No subscriber: nobody to tell, and a shim must never be refused for it.
            Ok(Some(event)) => drop(self.tx.send(event)),
            Ok(None) => {}
            // Acknowledged all the same: a refusal would only make the shim send it again.
            Err(e) => {
                tracing::warn!(topic = %envelope.topic, error = %e, "an unreadable shim event")
            }
        }
        Ok(Empty::new())
    }
}

/// The running endpoint. [`EventsServer::shutdown`] stops it and removes its socket; dropped
/// inside a runtime, it is shut down in the background.
pub struct EventsServer {
    path: PathBuf,
    /// In a mutex only to be `Sync` (ttrpc's server is not): it is touched at shutdown alone.
    server: std::sync::Mutex<Option<Server>>,
    tx: broadcast::Sender<ShimEvent>,
}

impl EventsServer {
    /// Serves on the Unix socket `path` (replacing a socket no one answers on), keeping
    /// `namespace`'s events, with room for `capacity` events per lagging subscriber.
    pub async fn serve(path: &Path, namespace: &str, capacity: usize) -> Result<Self, ShimError> {
        let address = path.display().to_string();
        let fail = |reason: String| ShimError::Events {
            address: address.clone(),
            reason,
        };
        let listener = bind(path).map_err(fail)?;
        let listener = Listener::try_from(listener).map_err(|e| fail(e.to_string()))?;
        let (tx, _) = broadcast::channel(capacity.max(1));
        let forwarder = Forwarder {
            namespace: namespace.to_string(),
            tx: tx.clone(),
        };
        let mut server = Server::new()
            .add_listener(listener)
            .register_service(create_events(Arc::new(forwarder)));
        server.start().await.map_err(|e| fail(e.to_string()))?;
        Ok(EventsServer {
            path: path.to_path_buf(),
            server: std::sync::Mutex::new(Some(server)),
            tx,
        })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ShimEvent> {
        self.tx.subscribe()
    }

    fn take_server(&self) -> Option<Server> {
        self.server.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Stops accepting, closes the shims' connections (they reconnect to the next agent) and
    /// removes the socket.
    pub async fn shutdown(self) {
        let server = self.take_server();
        if let Some(server) = server {
            stop(server, &self.path).await;
        }
    }
}

impl Drop for EventsServer {
    fn drop(&mut self) {
        if let (Some(server), Ok(runtime)) =
            (self.take_server(), tokio::runtime::Handle::try_current())
        {
            let path = self.path.clone();
            runtime.spawn(async move { stop(server, &path).await });
        }
    }
}

async fn stop(mut server: Server, path: &Path) {
    if let Err(e) = server.shutdown().await {
        tracing::warn!(error = %e, "stopping the shim events endpoint");
    }
    let _ = std::fs::remove_file(path);
}

/// Binds `path` (mode 0600); a socket there that refuses connections is a dead agent's and is
/// replaced, one that answers belongs to a live agent and is an error.
fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener, String> {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::{UnixListener, UnixStream};
    if path.exists() {
        match UnixStream::connect(path) {
            Ok(_) => {
                return Err("another agent serves it (is one running on this data dir?)".into());
            }
            Err(_) => {
                std::fs::remove_file(path).map_err(|e| format!("removing the stale socket: {e}"))?
            }
        }
    }
    let listener = UnixListener::bind(path).map_err(|e| format!("binding: {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("setting its mode: {e}"))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;

    #[test]
    fn an_init_exit_has_no_exec_id_and_an_exec_exit_has_one() {
        let mut e = TaskExit {
            container_id: "c1".into(),
            id: "c1".into(),
            pid: 7,
            exit_status: 3,
            ..Default::default()
        };
        e.exited_at = containerd_shim::protos::protobuf::MessageField::some(Timestamp {
            seconds: 5,
            ..Default::default()
        });
        let bytes = e.write_to_bytes().unwrap();
        let decoded = ShimEvent::decode("/tasks/exit", &bytes).unwrap().unwrap();
        assert_eq!(
            decoded,
            ShimEvent::Exited {
                id: "c1".into(),
                exec_id: None,
                pid: 7,
                exit: ExitStatus {
                    code: 3,
                    at: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(5)),
                },
            }
        );
        e.id = "probe-1".into();
        let bytes = e.write_to_bytes().unwrap();
        match ShimEvent::decode("/tasks/exit", &bytes).unwrap().unwrap() {
            ShimEvent::Exited { exec_id, .. } => assert_eq!(exec_id.as_deref(), Some("probe-1")),
            other => panic!("{other:?}"),
        }
        assert_eq!(ShimEvent::decode("/tasks/paused", &[]).unwrap(), None);
        assert!(ShimEvent::decode("/tasks/exit", b"\xff\xff").is_err());
    }
}
