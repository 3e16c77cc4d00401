//! Node tunnels: each node agent dials in and keeps one `NodeTunnelApi.Attach` stream open; the
//! API server relays `skiff logs`, `skiff exec` and `skiff port-forward` ([`super::port_forward`])
//! down it. A node therefore needs no listening
//! port, no certificate of its own for serving, and works behind NAT (edge nodes).
//!
//! Owns: the registry of connected nodes, stream ids, relaying answers to the waiting client, and
//! cancelling a stream on the node when its client goes away. Must not: read logs itself.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use skiff_api::v1::*;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::revocation::{Revocable, end_when_revoked};
use crate::auth::{Attributes, Chain, Identity, Verb, identity};
use crate::registry::Registry as Objects;

type LogSender = mpsc::Sender<Result<PodLogChunk, Status>>;
type ExecSender = mpsc::Sender<Result<PodExecOutput, Status>>;
pub(super) type ForwardSender = mpsc::Sender<Result<PortForwardOutput, Status>>;

/// The client waiting for a stream's answers.
pub(super) enum Sink {
    Log(LogSender),
    Exec(ExecSender),
    Forward(ForwardSender),
}

impl Sink {
    /// Tells the client its stream broke.
    fn fail(&self, status: Status) {
        match self {
            Sink::Log(tx) => {
                let _ = tx.try_send(Err(status));
            }
            Sink::Exec(tx) => {
                let _ = tx.try_send(Err(status));
            }
            Sink::Forward(tx) => {
                let _ = tx.try_send(Err(status));
            }
        }
    }
}

/// The connected nodes and the log streams waiting on them.
#[derive(Clone, Default)]
pub struct Tunnels {
    inner: Arc<Mutex<Registry>>,
    next_id: Arc<AtomicU64>,
}

#[derive(Default)]
struct Registry {
    /// node name → (connection number, sender of requests down its tunnel).
    nodes: HashMap<String, (u64, mpsc::Sender<TunnelDown>)>,
    /// stream id → (the node that must answer it, the client waiting for its data).
    streams: HashMap<u64, (String, Sink)>,
}

impl Tunnels {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves plain maps behind; they stay usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Is `node` connected now?
    pub fn connected(&self, node: &str) -> bool {
        self.lock().nodes.contains_key(node)
    }
}

/// Serves both tunnel ends: agents (`NodeTunnelApi`) and clients (`PodLogApi`, `PodExecApi`).
#[derive(Clone)]
pub struct TunnelService {
    tunnels: Tunnels,
    pub(super) pods: Objects<Pod>,
    pub(super) authz: Chain,
}

impl TunnelService {
    pub fn new(tunnels: Tunnels, pods: Objects<Pod>, authz: Chain) -> Self {
        Self {
            tunnels,
            pods,
            authz,
        }
    }
}

type DownStream = Pin<Box<dyn Stream<Item = Result<TunnelDown, Status>> + Send>>;
pub type LogStream = Pin<Box<dyn Stream<Item = Result<PodLogChunk, Status>> + Send>>;
pub type ExecStream = Pin<Box<dyn Stream<Item = Result<PodExecOutput, Status>> + Send>>;

#[tonic::async_trait]
impl node_tunnel_api_server::NodeTunnelApi for TunnelService {
    type AttachStream = DownStream;

    async fn attach(
        &self,
        req: Request<Streaming<TunnelUp>>,
    ) -> Result<Response<DownStream>, Status> {
        let who = identity(&req)?;
        // The tunnel closes when the node's certificate is revoked.
        let revocable = Revocable::of(&req);
        let mut up = req.into_inner();
        let node = match up.message().await? {
            Some(TunnelUp {
                message: Some(tunnel_up::Message::Hello(hello)),
            }) if !hello.node_name.is_empty() => hello.node_name,
            _ => {
                return Err(Status::invalid_argument(
                    "tunnel: the first message must be a hello naming the node",
                ));
            }
        };
        // A node attaches only as itself: the name is held to the caller's identity.
        let attach = Attributes::new(Verb::Create, "Node", "")
            .name(&node)
            .subresource("tunnel");
        self.authz.check(&who, &attach)?;
        let (down_tx, down_rx) = mpsc::channel(64);
        let conn = self.tunnels.next_id.fetch_add(1, Ordering::Relaxed);
        self.tunnels
            .lock()
            .nodes
            .insert(node.clone(), (conn, down_tx));
        tracing::info!(%node, "node tunnel connected");

        let tunnels = self.tunnels.clone();
        let revoked = revocable.as_ref().map(Revocable::revoked);
        tokio::spawn(async move {
            let revoked = async move {
                match revoked {
                    Some(revoked) => revoked.await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(revoked);
            loop {
                let msg = tokio::select! {
                    msg = up.next() => msg,
                    () = &mut revoked => break,
                };
                let Some(msg) = msg else { break };
                match msg {
                    Ok(TunnelUp {
                        message: Some(tunnel_up::Message::Log(data)),
                    }) => relay(&tunnels, &node, data).await,
                    Ok(TunnelUp {
                        message: Some(tunnel_up::Message::Exec(data)),
                    }) => relay_exec(&tunnels, &node, data).await,
                    Ok(TunnelUp {
                        message: Some(tunnel_up::Message::Forward(data)),
                    }) => relay_forward(&tunnels, &node, data).await,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let orphans: Vec<Sink> = {
                let mut registry = tunnels.lock();
                // A newer connection of the same node may have replaced this one already.
                if registry.nodes.get(&node).is_some_and(|(c, _)| *c == conn) {
                    registry.nodes.remove(&node);
                }
                let ids: Vec<u64> = registry
                    .streams
                    .iter()
                    .filter(|(_, (n, _))| *n == node)
                    .map(|(id, _)| *id)
                    .collect();
                ids.iter()
                    .filter_map(|id| registry.streams.remove(id).map(|(_, tx)| tx))
                    .collect()
            };
            // Their node is gone: tell the waiting clients instead of leaving them hanging.
            for sink in orphans {
                sink.fail(Status::unavailable(format!("node {node:?} disconnected")));
            }
            tracing::info!(%node, "node tunnel closed");
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(down_rx).map(Ok);
        Ok(Response::new(end_when_revoked(revocable, stream)))
    }
}

impl Registry {
    /// The log client of stream `id`, if `node` owns it; removed from the map when `end`.
    fn log_sink(&mut self, node: &str, id: u64, end: bool) -> Option<LogSender> {
        match self.streams.get(&id) {
            Some((n, Sink::Log(tx))) if n == node => {
                let tx = tx.clone();
                if end {
                    self.streams.remove(&id);
                }
                Some(tx)
            }
            _ => None,
        }
    }

    /// As [`Registry::log_sink`], for an exec client.
    fn exec_sink(&mut self, node: &str, id: u64, end: bool) -> Option<ExecSender> {
        match self.streams.get(&id) {
            Some((n, Sink::Exec(tx))) if n == node => {
                let tx = tx.clone();
                if end {
                    self.streams.remove(&id);
                }
                Some(tx)
            }
            _ => None,
        }
    }
}

/// Hands bytes from a pod's port to the port-forward client; the end or an error ends the stream.
async fn relay_forward(tunnels: &Tunnels, node: &str, data: TunnelForwardData) {
    let end = data.end || !data.error.is_empty();
    let sender = {
        let mut registry = tunnels.lock();
        match registry.streams.get(&data.stream_id) {
            Some((n, Sink::Forward(tx))) if n == node => {
                let tx = tx.clone();
                if end {
                    registry.streams.remove(&data.stream_id);
                }
                Some(tx)
            }
            _ => None,
        }
    };
    let Some(sender) = sender else { return };
    if !data.error.is_empty() {
        let _ = sender
            .send(Err(Status::failed_precondition(data.error)))
            .await;
    } else if !data.data.is_empty() {
        let _ = sender.send(Ok(PortForwardOutput { data: data.data })).await;
    }
}

/// Hands one answer of `node` to the client waiting for it; a node answers only its own streams.
async fn relay(tunnels: &Tunnels, node: &str, data: TunnelLogData) {
    let end = data.end || !data.error.is_empty();
    let sender = tunnels.lock().log_sink(node, data.stream_id, end);
    let Some(sender) = sender else { return };
    if !data.error.is_empty() {
        let _ = sender
            .send(Err(Status::failed_precondition(data.error)))
            .await;
        return;
    }
    for chunk in data.chunks {
        if sender.send(Ok(chunk)).await.is_err() {
            break;
        }
    }
}

/// Hands exec output of `node` to its client; an exit code or an error ends the stream.
async fn relay_exec(tunnels: &Tunnels, node: &str, data: TunnelExecData) {
    let exited = data
        .output
        .iter()
        .any(|o| matches!(o.message, Some(pod_exec_output::Message::ExitCode(_))));
    let end = exited || !data.error.is_empty();
    let sender = tunnels.lock().exec_sink(node, data.stream_id, end);
    let Some(sender) = sender else { return };
    if !data.error.is_empty() {
        let _ = sender
            .send(Err(Status::failed_precondition(data.error)))
            .await;
        return;
    }
    for output in data.output {
        if sender.send(Ok(output)).await.is_err() {
            break;
        }
    }
}

/// Removes a stream when its client goes away, and tells the node to stop.
pub(super) struct StreamGuard {
    tunnels: Tunnels,
    id: u64,
    node: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let down = {
            let mut registry = self.tunnels.lock();
            let open = registry.streams.remove(&self.id).is_some();
            registry
                .nodes
                .get(&self.node)
                .filter(|_| open)
                .map(|(_, tx)| tx.clone())
        };
        if let Some(tx) = down {
            let cancel = TunnelDown {
                stream_id: self.id,
                message: Some(tunnel_down::Message::Cancel(TunnelCancel {})),
            };
            // The channel may be full for a moment; the cancel must still arrive.
            if let Err(mpsc::error::TrySendError::Full(cancel)) = tx.try_send(cancel) {
                tokio::spawn(async move {
                    let _ = tx.send(cancel).await;
                });
            }
        }
    }
}

impl TunnelService {
    /// Registers a stream on the node of `pod` for `sink` and sends `open` down its tunnel;
    /// returns the stream id, the node's tunnel and the guard that cancels it when dropped.
    pub(super) async fn open(
        &self,
        pod: &Pod,
        what: &str,
        sink: Sink,
        open: tunnel_down::Message,
    ) -> Result<(u64, mpsc::Sender<TunnelDown>, StreamGuard), Status> {
        let name = pod.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("");
        let node = pod
            .spec
            .as_ref()
            .map(|s| s.node_name.clone())
            .unwrap_or_default();
        if node.is_empty() {
            return Err(Status::failed_precondition(format!(
                "pod {name:?} is not scheduled to a node yet: {what}"
            )));
        }
        let id = self.tunnels.next_id.fetch_add(1, Ordering::Relaxed);
        let down = {
            let mut registry = self.tunnels.lock();
            let down = registry.nodes.get(&node).map(|(_, tx)| tx.clone());
            if down.is_some() {
                registry.streams.insert(id, (node.clone(), sink));
            }
            down
        };
        let down = down.ok_or_else(|| {
            Status::unavailable(format!("node {node:?} (of pod {name:?}) is not connected"))
        })?;
        let guard = StreamGuard {
            tunnels: self.tunnels.clone(),
            id,
            node: node.clone(),
        };
        let open = TunnelDown {
            stream_id: id,
            message: Some(open),
        };
        down.send(open)
            .await
            .map_err(|_| Status::unavailable(format!("node {node:?} disconnected")))?;
        Ok((id, down, guard))
    }
}

pub(super) fn uid_of(pod: &Pod) -> String {
    pod.metadata
        .as_ref()
        .map(|m| m.uid.clone())
        .unwrap_or_default()
}

#[tonic::async_trait]
impl pod_log_api_server::PodLogApi for TunnelService {
    type LogsStream = LogStream;

    async fn logs(&self, req: Request<PodLogRequest>) -> Result<Response<LogStream>, Status> {
        let who = identity(&req)?;
        self.logs_for(&who, req.into_inner())
            .await
            .map(Response::new)
    }
}

/// The log and exec sessions of a caller already authenticated: the gRPC services above and the
/// REST subresources (`pods/log`, `pods/exec`, `pods/attach`) both open them here.
impl TunnelService {
    /// `who` reads the log of a pod's container (`get pods/log`).
    pub async fn logs_for(&self, who: &Identity, r: PodLogRequest) -> Result<LogStream, Status> {
        let logs = Attributes::new(Verb::Get, "Pod", &r.namespace)
            .name(&r.name)
            .subresource("log");
        self.authz.check(who, &logs)?;
        self.open_log(r).await
    }

    /// Streams a pod's log with no authorization of its own (the caller's is done: `pods/log`,
    /// or `pods/attach`, which follows the output from now on).
    pub async fn open_log(&self, r: PodLogRequest) -> Result<LogStream, Status> {
        let pod = self.pods.get(&r.namespace, &r.name).await?;
        let container = pick_container(&pod, &r.container)?;
        let (tx, rx) = mpsc::channel(64);
        let open = tunnel_down::Message::OpenLog(TunnelLogOpen {
            uid: uid_of(&pod),
            namespace: r.namespace,
            name: r.name,
            container,
            follow: r.follow,
            previous: r.previous,
            tail_lines: r.tail_lines,
            since_time: r.since_time,
            timestamps: r.timestamps,
        });
        let (_, _, guard) = self.open(&pod, "no logs", Sink::Log(tx), open).await?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |item| {
            let _ = &guard; // lives as long as the client's stream
            item
        });
        Ok(Box::pin(stream))
    }

    /// `who` runs a command in a pod's container (`create pods/exec`); `input` carries its stdin
    /// (and its end) after `r`. Dropping the answer stream stops the command.
    pub async fn exec_for<S>(
        &self,
        who: &Identity,
        r: PodExecStart,
        input: S,
    ) -> Result<ExecStream, Status>
    where
        S: Stream<Item = Result<PodExecInput, Status>> + Send + Unpin + 'static,
    {
        let exec = Attributes::new(Verb::Create, "Pod", &r.namespace)
            .name(&r.name)
            .subresource("exec");
        self.authz.check(who, &exec)?;
        if r.command.first().is_none_or(String::is_empty) {
            return Err(Status::invalid_argument("command: required"));
        }
        let pod = self.pods.get(&r.namespace, &r.name).await?;
        let container = pick_container(&pod, &r.container)?;
        if skiff_api::workload::container_kind(&pod, &container)
            == skiff_api::workload::WorkloadKind::Wasm
        {
            return Err(Status::failed_precondition(format!(
                "container {container:?} of pod {:?} is a Wasm container: it runs no \
                 processes a command could join; exec needs a Linux container",
                r.name
            )));
        }
        let (tx, rx) = mpsc::channel(64);
        let open = tunnel_down::Message::OpenExec(TunnelExecOpen {
            uid: uid_of(&pod),
            namespace: r.namespace,
            name: r.name,
            container,
            command: r.command,
            stdin: r.stdin,
        });
        let session = self
            .open(&pod, "nothing runs yet", Sink::Exec(tx), open)
            .await?;
        // The client's stdin, down the same tunnel; its end closes the command's stdin.
        let close = PodExecInput {
            message: Some(pod_exec_input::Message::CloseStdin(true)),
        };
        let to_down = |m: PodExecInput| match m.message {
            Some(pod_exec_input::Message::Start(_)) => None,
            _ => Some(tunnel_down::Message::ExecInput(m)),
        };
        Ok(relay_session(session, input, to_down, close, rx))
    }
}

#[tonic::async_trait]
impl pod_exec_api_server::PodExecApi for TunnelService {
    type ExecStream = ExecStream;

    async fn exec(
        &self,
        req: Request<Streaming<PodExecInput>>,
    ) -> Result<Response<ExecStream>, Status> {
        let who = identity(&req)?;
        let mut input = req.into_inner();
        let r = match input.message().await? {
            Some(PodExecInput {
                message: Some(pod_exec_input::Message::Start(start)),
            }) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "exec: the first message must be `start`",
                ));
            }
        };
        self.exec_for(&who, r, input).await.map(Response::new)
    }
}

/// A client's session over a node tunnel: its input relayed down the tunnel as stream `id`
/// (`to_down` maps each message, `None` to skip one; `end` is sent when the input ends), and the
/// node's answers for the client. The relay ends with the client's answer stream, and the node's
/// stream is cancelled then ([`StreamGuard`]).
pub(super) fn relay_session<I, O>(
    (id, down, guard): (u64, mpsc::Sender<TunnelDown>, StreamGuard),
    mut input: impl Stream<Item = Result<I, Status>> + Send + Unpin + 'static,
    to_down: fn(I) -> Option<tunnel_down::Message>,
    end: I,
    answers: mpsc::Receiver<Result<O, Status>>,
) -> Pin<Box<dyn Stream<Item = Result<O, Status>> + Send>>
where
    I: prost::Message + Default + Send + 'static,
    O: Send + 'static,
{
    let relay = tokio::spawn(async move {
        while let Some(Ok(message)) = input.next().await {
            let Some(message) = to_down(message) else {
                continue;
            };
            let message = TunnelDown {
                stream_id: id,
                message: Some(message),
            };
            if down.send(message).await.is_err() {
                return;
            }
        }
        if let Some(message) = to_down(end) {
            let _ = down
                .send(TunnelDown {
                    stream_id: id,
                    message: Some(message),
                })
                .await;
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(answers).map(move |item| {
        let _ = &guard; // lives as long as the client's stream
        item
    });
    Box::pin(AbortOnDrop {
        inner: stream,
        task: relay.abort_handle(),
    })
}

/// Ends a session's input relay with the client's answer stream.
struct AbortOnDrop<S> {
    inner: S,
    task: tokio::task::AbortHandle,
}

impl<S: Stream + Unpin> Stream for AbortOnDrop<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl<S> Drop for AbortOnDrop<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The container a log or exec request means: the named one, or the pod's only one.
fn pick_container(pod: &Pod, wanted: &str) -> Result<String, Status> {
    let names: Vec<&str> = pod
        .spec
        .as_ref()
        .map(|s| {
            s.init_containers
                .iter()
                .chain(&s.containers)
                .map(|c| c.name.as_str())
                .collect()
        })
        .unwrap_or_default();
    let pod_name = pod.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("");
    if wanted.is_empty() {
        return match names.as_slice() {
            [one] => Ok(one.to_string()),
            _ => Err(Status::invalid_argument(format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                names.join(" ")
            ))),
        };
    }
    if names.contains(&wanted) {
        Ok(wanted.to_string())
    } else {
        Err(Status::invalid_argument(format!(
            "container {wanted} is not valid for pod {pod_name}, choose one of: [{}]",
            names.join(" ")
        )))
    }
}
