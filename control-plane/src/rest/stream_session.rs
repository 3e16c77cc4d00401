//! One `pods/exec` or `pods/attach` session over an upgraded WebSocket connection: the client's
//! stdin goes to the command, the command's output comes back on the stdout and stderr channels,
//! and its end — an exit code, or why it failed — on the error channel, then a close frame.
//!
//! Owns: pumping both directions at once (the client's frames are read by a task of their own,
//! since a frame read is not cancel-safe), answering pings, ending the session when either side
//! ends. Dropping the output stream is what stops the command on its node (the tunnel's guard).
//!
//! Must not: decide who may exec or where the pod runs (the caller opened the stream already).

use std::time::Duration;

use futures::{Stream, StreamExt};
use skiff_api::v1::{PodExecInput, pod_exec_input};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::stream_channel::{self as channel, ClientFrame, Protocol};
use super::stream_ws::{self as ws, Incoming, WsReader};

/// How long the server waits for the client's close frame after its own.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What the session sends the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The command ended with this code: the session is over.
    Exit(i32),
}

/// Why a session's output stopped before an exit code (written to the error channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// Kubernetes' `StatusReason` (`InternalError`, `NotFound`, ...).
    pub reason: &'static str,
    pub code: u16,
}

/// The session's parameters from the request's query.
#[derive(Debug, Clone, Default)]
pub struct Streams {
    pub stdout: bool,
    pub stderr: bool,
    /// The command, for the exit status' message.
    pub command: Vec<String>,
}

/// Runs the session until the command ends or the client goes away. `stdin` is where the
/// client's input goes (None: the session takes none, and input is dropped); it is dropped when
/// the client closes stdin (v5), which ends the command's input.
pub async fn run<R, W, O>(
    reader: R,
    mut writer: W,
    protocol: Protocol,
    streams: Streams,
    mut output: O,
    mut stdin: Option<mpsc::Sender<PodExecInput>>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
    O: Stream<Item = Result<Output, Failure>> + Unpin,
{
    let (incoming_tx, mut incoming) = mpsc::channel(16);
    let read_task = tokio::spawn(async move {
        let mut reader = WsReader::new(reader);
        loop {
            let next = reader.next().await;
            let last = !matches!(next, Ok(Some(Incoming::Binary(_) | Incoming::Text(_))))
                && !matches!(next, Ok(Some(Incoming::Ping(_) | Incoming::Pong)));
            if incoming_tx.send(next).await.is_err() || last {
                return;
            }
        }
    });
    let _reader = AbortOnDrop(read_task.abort_handle());
    let end = loop {
        tokio::select! {
            message = incoming.recv() => match message.map(Result::transpose).unwrap_or(None) {
                Some(Ok(Incoming::Binary(bytes))) => {
                    match channel::parse_client(protocol, &bytes) {
                        Ok(ClientFrame::Stdin(data)) => {
                            if let Some(tx) = &stdin {
                                let input = PodExecInput {
                                    message: Some(pod_exec_input::Message::Stdin(data)),
                                };
                                if tx.send(input).await.is_err() {
                                    stdin = None;
                                }
                            }
                        }
                        // The end of the input stream closes the command's stdin.
                        Ok(ClientFrame::CloseStdin) => stdin = None,
                        Ok(ClientFrame::Resize { .. } | ClientFrame::Ignored) => {}
                        Err(e) => {
                            let status = channel::failure_status(&e.to_string(), "BadRequest", 400);
                            break End::Status(status, ws::CLOSE_PROTOCOL_ERROR);
                        }
                    }
                }
                // Text frames belong to the base64 protocols, which are not offered.
                Some(Ok(Incoming::Text(_) | Incoming::Pong)) => {}
                Some(Ok(Incoming::Ping(payload))) => {
                    if send(&mut writer, &ws::pong(&payload)).await.is_err() {
                        return;
                    }
                }
                // The client went away: the command is stopped when `output` drops.
                Some(Ok(Incoming::Close(_))) | None => break End::ClientClosed,
                Some(Err(e)) => break End::Broken(e.close_code()),
            },
            out = output.next() => match out {
                Some(Ok(Output::Stdout(data))) if streams.stdout => {
                    if send(&mut writer, &ws::binary(&channel::frame(channel::STDOUT, &data))).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Output::Stderr(data))) if streams.stderr => {
                    if send(&mut writer, &ws::binary(&channel::frame(channel::STDERR, &data))).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Output::Stdout(_) | Output::Stderr(_))) => {}
                Some(Ok(Output::Exit(code))) => {
                    break End::Status(channel::exit_status(code, &streams.command), ws::CLOSE_NORMAL);
                }
                Some(Err(f)) => {
                    break End::Status(channel::failure_status(&f.message, f.reason, f.code), ws::CLOSE_NORMAL);
                }
                // An attach (or a log) ends when the container stops.
                None => break End::Status(channel::exit_status(0, &[]), ws::CLOSE_NORMAL),
            },
        }
    };
    drop(stdin);
    drop(output);
    match end {
        End::ClientClosed => {
            let _ = send(&mut writer, &ws::close(ws::CLOSE_NORMAL)).await;
        }
        End::Broken(code) => {
            let _ = send(&mut writer, &ws::close(code)).await;
        }
        End::Status(status, code) => {
            let status = channel::frame(channel::ERROR, status.to_string().as_bytes());
            if send(&mut writer, &ws::binary(&status)).await.is_err()
                || send(&mut writer, &ws::close(code)).await.is_err()
            {
                return;
            }
            // Let the client read everything and answer the close before the connection ends:
            // closing a socket with unread input would reset it and could lose the tail.
            let _ = tokio::time::timeout(CLOSE_GRACE, async {
                while let Some(Ok(Some(message))) = incoming.recv().await {
                    if matches!(message, Incoming::Close(_)) {
                        return;
                    }
                }
            })
            .await;
        }
    }
    let _ = writer.shutdown().await;
}

enum End {
    ClientClosed,
    Broken(u16),
    Status(serde_json::Value, u16),
}

async fn send<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::stream_ws::tests::client_frame;
    use tokio::io::AsyncReadExt;

    /// The whole server frames at the start of `bytes`, as (opcode, payload).
    fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while bytes.len() >= 2 {
            let opcode = bytes[0] & 0x0F;
            let (len, head) = match bytes[1] {
                126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
                127 if bytes.len() >= 10 => (
                    u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if bytes.len() < head + len {
                break;
            }
            out.push((opcode, bytes[head..head + len].to_vec()));
            bytes = &bytes[head + len..];
        }
        out
    }

    fn streams() -> Streams {
        Streams {
            stdout: true,
            stderr: true,
            command: vec!["cat".into()],
        }
    }

    #[tokio::test]
    async fn stdin_reaches_the_command_and_output_and_exit_code_come_back() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (server_read, server_write) = tokio::io::split(server);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let (stdin_tx, mut stdin_rx) = mpsc::channel(8);
        let (out_tx, out_rx) = mpsc::channel(8);
        let output = tokio_stream::wrappers::ReceiverStream::new(out_rx);
        let session = tokio::spawn(run(
            server_read,
            server_write,
            Protocol::V5,
            streams(),
            output,
            Some(stdin_tx),
        ));
        client_write
            .write_all(&client_frame(true, 0x2, b"\x00hello\n"))
            .await
            .unwrap();
        client_write
            .write_all(&client_frame(true, 0x9, b"hb"))
            .await
            .unwrap();
        client_write
            .write_all(&client_frame(true, 0x2, &[255, 0]))
            .await
            .unwrap();
        let first = stdin_rx.recv().await.unwrap();
        assert_eq!(
            first.message,
            Some(pod_exec_input::Message::Stdin(b"hello\n".to_vec()))
        );
        // v5's close of stdin ends the input stream (the tunnel then closes the command's stdin).
        assert!(stdin_rx.recv().await.is_none());
        out_tx
            .send(Ok(Output::Stdout(b"hello\n".to_vec())))
            .await
            .unwrap();
        out_tx
            .send(Ok(Output::Stderr(b"warn\n".to_vec())))
            .await
            .unwrap();
        out_tx.send(Ok(Output::Exit(3))).await.unwrap();
        // The client answers the server's close.
        client_write
            .write_all(&client_frame(true, 0x8, &1000u16.to_be_bytes()))
            .await
            .unwrap();
        session.await.unwrap();
        let mut bytes = Vec::new();
        client_read.read_to_end(&mut bytes).await.unwrap();
        let frames = server_frames(&bytes);
        assert_eq!(frames[0], (0xA, b"hb".to_vec()));
        assert_eq!(frames[1], (0x2, b"\x01hello\n".to_vec()));
        assert_eq!(frames[2], (0x2, b"\x02warn\n".to_vec()));
        let (opcode, status) = &frames[3];
        assert_eq!((*opcode, status[0]), (0x2, channel::ERROR));
        let status: serde_json::Value = serde_json::from_slice(&status[1..]).unwrap();
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        assert_eq!(frames[4], (0x8, 1000u16.to_be_bytes().to_vec()));
        assert_eq!(frames.len(), 5);
    }

    #[tokio::test]
    async fn a_client_that_leaves_stops_the_command_and_a_failure_is_reported() {
        // The client closes: the session ends and drops the output (which stops the command).
        let (client, server) = tokio::io::duplex(4096);
        let (server_read, server_write) = tokio::io::split(server);
        let (_client_read, mut client_write) = tokio::io::split(client);
        let (out_tx, out_rx) = mpsc::channel::<Result<Output, Failure>>(8);
        let session = tokio::spawn(run(
            server_read,
            server_write,
            Protocol::V4,
            streams(),
            tokio_stream::wrappers::ReceiverStream::new(out_rx),
            None,
        ));
        client_write
            .write_all(&client_frame(true, 0x8, &1000u16.to_be_bytes()))
            .await
            .unwrap();
        session.await.unwrap();
        assert!(out_tx.is_closed(), "the output stream was dropped");

        // The node goes away mid-session: the failure's message reaches the error channel.
        let (client, server) = tokio::io::duplex(4096);
        let (server_read, server_write) = tokio::io::split(server);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let failure = Failure {
            message: "node \"n1\" disconnected".into(),
            reason: "InternalError",
            code: 500,
        };
        let output = futures::stream::iter([Ok(Output::Stdout(b"partial".to_vec())), Err(failure)]);
        let session = tokio::spawn(run(
            server_read,
            server_write,
            Protocol::V5,
            Streams {
                stdout: false,
                ..streams()
            },
            output,
            None,
        ));
        let mut bytes = Vec::new();
        while !server_frames(&bytes).iter().any(|(op, _)| *op == 0x8) {
            let mut buf = [0u8; 1024];
            let n = client_read.read(&mut buf).await.unwrap();
            assert!(n > 0, "the connection ended before the close frame");
            bytes.extend_from_slice(&buf[..n]);
        }
        client_write
            .write_all(&client_frame(true, 0x8, &1000u16.to_be_bytes()))
            .await
            .unwrap();
        session.await.unwrap();
        let frames = server_frames(&bytes);
        assert_eq!(frames.len(), 2, "{frames:?}");
        let status: serde_json::Value = serde_json::from_slice(&frames[0].1[1..]).unwrap();
        assert_eq!(status["message"], "node \"n1\" disconnected");
        assert_eq!(frames[1].0, 0x8);
    }
}
