//! The agent's end of the node tunnel: it dials the API server, says which node it is, and
//! serves the requests that come down: logs ([`logs`]) and exec sessions ([`exec`]).
//!
//! Owns: the tunnel connection (redialled after any break) and the streams open on it, each a
//! task that a cancel from the server aborts. Must not: decide who may ask (the API server does).

mod exec;
mod logs;

use std::collections::HashMap;
use std::time::Duration;

use skiff_api::client::Transport;
use skiff_api::v1::*;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use crate::host::Runtime;
use crate::pods::LogIndex;

/// What the tunnel's requests are served from.
#[derive(Clone)]
pub struct Served {
    pub logs: LogIndex,
    pub runtime: Runtime,
}

/// One stream open on the tunnel.
struct Open {
    task: tokio::task::JoinHandle<()>,
    /// An exec session's stdin.
    input: Option<mpsc::Sender<PodExecInput>>,
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
    while let Some(message) = down.next().await {
        let message = message?;
        let id = message.stream_id;
        streams.retain(|_, open| !open.task.is_finished());
        match message.message {
            Some(tunnel_down::Message::OpenLog(open)) => {
                let task =
                    tokio::spawn(logs::send_log(id, open, served.logs.clone(), up_tx.clone()));
                streams.insert(id, Open { task, input: None });
            }
            Some(tunnel_down::Message::OpenExec(open)) => {
                // Room for a burst of stdin; a command that reads none holds up this loop (and so
                // the node's other streams) only once this is full.
                let (input, input_rx) = mpsc::channel(64);
                let task =
                    tokio::spawn(exec::run(id, open, served.clone(), input_rx, up_tx.clone()));
                let input = Some(input);
                streams.insert(id, Open { task, input });
            }
            Some(tunnel_down::Message::ExecInput(data)) => {
                let input = streams.get(&id).and_then(|open| open.input.clone());
                if let Some(input) = input {
                    let _ = input.send(data).await;
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
    for open in streams.values() {
        open.task.abort();
    }
    Ok(())
}
