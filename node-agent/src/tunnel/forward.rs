//! `skiff port-forward` on the agent's end of the node tunnel: one TCP connection to
//! `localhost:PORT` inside the pod's network namespace (as kubelet's port-forward: a server the
//! pod binds to loopback only is reachable, and nothing outside the pod is), relaying bytes both
//! ways until either side closes. An aborted task (the client went away) drops the connection.
//!
//! Must not: connect in the node's own network namespace (a pod without a network of its own has
//! nothing to forward to: its `localhost` would be the node's).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use skiff_api::v1::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::network::netns;

/// How long a connection to the pod's port may take.
const CONNECT: Duration = Duration::from_secs(5);
/// Bytes read from the pod per message up the tunnel.
const CHUNK: usize = 32 * 1024;

pub(super) async fn run(
    id: u64,
    open: TunnelForwardOpen,
    mut input: mpsc::Receiver<PortForwardInput>,
    up: mpsc::Sender<TunnelUp>,
) {
    let reply = |data: Vec<u8>, end: bool, error: String| TunnelUp {
        message: Some(tunnel_up::Message::Forward(TunnelForwardData {
            stream_id: id,
            data,
            end,
            error,
        })),
    };
    let stream = match connect(&open).await {
        Ok(stream) => stream,
        Err(error) => {
            let _ = up.send(reply(Vec::new(), true, error)).await;
            return;
        }
    };
    let (mut from_pod, mut to_pod) = stream.into_split();
    let downstream = async {
        while let Some(message) = input.recv().await {
            let more = match message.message {
                Some(port_forward_input::Message::Data(data)) => {
                    to_pod.write_all(&data).await.is_ok()
                }
                Some(port_forward_input::Message::CloseWrite(_)) => false,
                _ => true,
            };
            if !more {
                break;
            }
        }
        // The client is done sending: the pod reads end of file, and may still answer.
        let _ = to_pod.shutdown().await;
        std::future::pending::<()>().await;
    };
    let upstream = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from_pod.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = up.send(reply(Vec::new(), true, String::new())).await;
                    return;
                }
                Ok(n) => {
                    if up
                        .send(reply(buf[..n].to_vec(), false, String::new()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    // The pod side's end ends the session; the client's end only half-closes it.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

/// A connection to `localhost:port` in the pod's network namespace.
async fn connect(open: &TunnelForwardOpen) -> Result<TcpStream, String> {
    let what = format!("pod {:?} port {}", open.name, open.port);
    let port = u16::try_from(open.port).map_err(|_| format!("{what}: not a port number"))?;
    let path = netns::path(&open.uid);
    if !path.exists() {
        return Err(format!(
            "{what}: the pod has no network of its own on this node (a Wasm pod granted no \
             socket, or a pod not running here): nothing to forward to"
        ));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A thread of its own: entering the namespace must not leak into a pooled thread.
    std::thread::Builder::new()
        .name("port-forward".into())
        .spawn(move || {
            let _ = tx.send(connect_in(&path, port));
        })
        .map_err(|e| format!("{what}: {e}"))?;
    let stream = rx
        .await
        .map_err(|_| format!("{what}: the connecting thread died"))?
        .map_err(|e| format!("{what}: {e}"))?;
    TcpStream::from_std(stream).map_err(|e| format!("{what}: {e}"))
}

/// On the calling thread (which it leaves in the pod's namespace): connects to loopback `port`.
fn connect_in(netns: &Path, port: u16) -> Result<std::net::TcpStream, String> {
    let file = std::fs::File::open(netns).map_err(|e| format!("{}: {e}", netns.display()))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("entering {}: {e}", netns.display()))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = std::net::TcpStream::connect_timeout(&addr, CONNECT)
        .map_err(|e| format!("connecting to {addr} in the pod: {e}"))?;
    stream
        .set_nonblocking(true)
        .map_err(|e| format!("connecting to {addr} in the pod: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
