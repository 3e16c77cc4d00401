//! The agent's end of the node tunnel: it dials the API server, says which node it is, and
//! serves the requests that come down: logs ([`logs`]), exec sessions ([`exec`]) and
//! port-forward connections ([`forward`]).
//!
//! Owns: the tunnel connection (redialled after any break) and the streams open on it, each a
//! task that a cancel from the server aborts. Must not: decide who may ask (the API server does).

mod exec;
mod forward;
mod logs;

use std::collections::HashMap;
use std::time::Duration;

use skiff_api::client::Transport;
use skiff_api::v1::*;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use crate::containers::Containers;
use crate::pods::LogIndex;

/// What the tunnel's requests are served from.
#[derive(Clone)]
pub struct Served {
    pub logs: LogIndex,
    pub runtime: Containers,
}

/// Chunks of a port-forward client's bytes that may wait for a slow pod before the connection
/// is ended (the tunnel has no per-stream flow control: up to 32 MiB at the client's 32 KiB).
const FORWARD_BACKLOG: usize = 1024;

/// One stream open on the tunnel.
struct Open {
    task: tokio::task::JoinHandle<()>,
    input: Input,
}

/// What the client sends down an open stream.
enum Input {
    None,
    /// An exec session's stdin.
    Exec(mpsc::Sender<PodExecInput>),
    /// A port-forward connection's bytes.
    Forward(mpsc::Sender<PortForwardInput>),
}

/// Keeps a tunnel open to each API server of `config` (one connection per address), so that
/// logs, exec and port-forward reach this node through whichever server a client calls: with
/// several servers on etcd (docs/ha.md), a server relays only to the nodes attached to it. Each
/// dial presents the node's current certificate (`identity`, read again at every redial, so a
/// renewed one is used from the next connection on). With one address, this is [`run`] on
/// `transport`.
pub async fn run_to_each(
    config: skiff_api::client::ClientConfig,
    transport: Transport,
    node: String,
    served: Served,
    identity: impl Fn() -> Option<skiff_api::client::ClientIdentity> + Send + Sync + 'static,
) {
    let servers: Vec<String> = config
        .server
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if servers.len() <= 1 {
        return run(transport, node, served).await;
    }
    let identity = std::sync::Arc::new(identity);
    let mut tunnels = tokio::task::JoinSet::new();
    for server in servers {
        let one = skiff_api::client::ClientConfig {
            server: server.clone(),
            ..config.clone()
        };
        let (node, served, identity) = (node.clone(), served.clone(), identity.clone());
        tunnels.spawn(async move {
            loop {
                // The renewer (if any) lives as long as the connection made with it.
                let dialled = match identity() {
                    Some(id) => one.connect_renewable(&id).map(|(t, r)| (t, Some(r))),
                    None => one.connect().map(|t| (t, None)),
                };
                match dialled {
                    Ok((t, _renewer)) => {
                        if let Err(e) = serve(&t, &node, &served).await {
                            tracing::warn!(%server, error = %e, "node tunnel");
                        }
                    }
                    Err(e) => tracing::warn!(%server, error = %e, "node tunnel: cannot dial"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    while tunnels.join_next().await.is_some() {}
}

/// Keeps the tunnel open forever, redialling after any break.
pub async fn run(transport: Transport, node: String, served: Served) {
    loop {
        if let Err(e) = serve(&transport, &node, &served).await {
            tracing::warn!(error = %e, "node tunnel");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn serve(transport: &Transport, node: &str, served: &Served) -> Result<(), tonic::Status> {
    let (up_tx, up_rx) = mpsc::channel::<TunnelUp>(256);
    up_tx
        .send(TunnelUp {
            message: Some(tunnel_up::Message::Hello(TunnelHello {
                node_name: node.to_string(),
            })),
        })
        .await
        .map_err(|_| tonic::Status::internal("tunnel closed"))?;
    let mut client = node_tunnel_api_client::NodeTunnelApiClient::new(transport.clone());
    let mut down = client
        .attach(tokio_stream::wrappers::ReceiverStream::new(up_rx))
        .await?
        .into_inner();
    let mut streams: HashMap<u64, Open> = HashMap::new();
    let result = serve_streams(&mut down, served, &up_tx, &mut streams).await;
    // The tunnel broke or ended: nobody is left to read these streams' answers.
    for open in streams.values() {
        open.task.abort();
    }
    result
}

async fn serve_streams(
    down: &mut tonic::Streaming<TunnelDown>,
    served: &Served,
    up_tx: &mpsc::Sender<TunnelUp>,
    streams: &mut HashMap<u64, Open>,
) -> Result<(), tonic::Status> {
    while let Some(message) = down.next().await {
        let message = message?;
        let id = message.stream_id;
        streams.retain(|_, open| !open.task.is_finished());
        match message.message {
            Some(tunnel_down::Message::OpenLog(open)) => {
                let task =
                    tokio::spawn(logs::send_log(id, open, served.logs.clone(), up_tx.clone()));
                streams.insert(
                    id,
                    Open {
                        task,
                        input: Input::None,
                    },
                );
            }
            Some(tunnel_down::Message::OpenExec(open)) => {
                // Room for a burst of stdin (up to 64 chunks of the client's 32 KiB) beside the
                // pipe's own buffer.
                let (input, input_rx) = mpsc::channel(64);
                let task =
                    tokio::spawn(exec::run(id, open, served.clone(), input_rx, up_tx.clone()));
                let input = Input::Exec(input);
                streams.insert(id, Open { task, input });
            }
            Some(tunnel_down::Message::OpenForward(open)) => {
                let (input, input_rx) = mpsc::channel(FORWARD_BACKLOG);
                let task = tokio::spawn(forward::run(id, open, input_rx, up_tx.clone()));
                let input = Input::Forward(input);
                streams.insert(id, Open { task, input });
            }
            Some(tunnel_down::Message::ForwardInput(data)) => {
                let input = streams.get(&id).and_then(|open| match &open.input {
                    Input::Forward(tx) => Some(tx.clone()),
                    _ => None,
                });
                if let Some(input) = input
                    && let Err(mpsc::error::TrySendError::Full(_)) = input.try_send(data)
                    && let Some(open) = streams.remove(&id)
                {
                    open.task.abort();
                    let _ = up_tx.try_send(TunnelUp {
                        message: Some(tunnel_up::Message::Forward(TunnelForwardData {
                            stream_id: id,
                            error: "port-forward: the pod does not read what is sent; the \
                                    connection was ended (32 MiB were waiting)"
                                .into(),
                            ..Default::default()
                        })),
                    });
                }
            }
            Some(tunnel_down::Message::ExecInput(data)) => {
                let input = streams.get(&id).and_then(|open| match &open.input {
                    Input::Exec(tx) => Some(tx.clone()),
                    _ => None,
                });
                // Never wait here: this loop serves every stream of the node (cancels too).
                if let Some(input) = input
                    && let Err(mpsc::error::TrySendError::Full(_)) = input.try_send(data)
                    && let Some(open) = streams.remove(&id)
                {
                    open.task.abort();
                    let error = "stdin: the command does not read its input; the session was \
                                 ended (more than 64 chunks were waiting)";
                    let _ = up_tx.try_send(exec::failure(id, error.to_string()));
                }
            }
            Some(tunnel_down::Message::Cancel(_)) => {
                if let Some(open) = streams.remove(&id) {
                    open.task.abort();
                }
            }
            None => {}
        }
    }
    Ok(())
}
