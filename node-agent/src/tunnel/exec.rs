//! `skiff exec` on the agent's end of the node tunnel: finds the running attempt of the
//! container and runs the command in it through the runtime host, relaying stdin down and
//! output up. An aborted task (the client went away) drops the host's stream, and the host then
//! kills the command.

use skiff_api::v1::*;
use skiff_runtime::host::proto;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::Served;
use crate::pods::instance_id;

pub(super) async fn run(
    id: u64,
    open: TunnelExecOpen,
    served: Served,
    input: mpsc::Receiver<PodExecInput>,
    up: mpsc::Sender<TunnelUp>,
) {
    let reply = |output: Vec<PodExecOutput>, error: String| TunnelUp {
        message: Some(tunnel_up::Message::Exec(TunnelExecData {
            stream_id: id,
            output,
            error,
        })),
    };
    let mut answers = match start(&open, &served, input).await {
        Ok(answers) => answers,
        Err(error) => {
            let _ = up.send(reply(Vec::new(), error)).await;
            return;
        }
    };
    loop {
        let (message, error) = match answers.next().await {
            Some(Ok(answer)) => (answer.message, String::new()),
            Some(Err(s)) => (None, describe(&open, &s)),
            None => (
                None,
                format!(
                    "exec in container {:?} of pod {:?}: ended without an exit code",
                    open.container, open.name
                ),
            ),
        };
        let output = match message {
            Some(proto::exec_response::Message::Stdout(data)) => {
                pod_exec_output::Message::Stdout(data)
            }
            Some(proto::exec_response::Message::Stderr(data)) => {
                pod_exec_output::Message::Stderr(data)
            }
            Some(proto::exec_response::Message::ExitCode(code)) => {
                pod_exec_output::Message::ExitCode(code)
            }
            None if error.is_empty() => continue,
            None => {
                let _ = up.send(reply(Vec::new(), error)).await;
                return;
            }
        };
        let last = matches!(output, pod_exec_output::Message::ExitCode(_));
        let output = vec![PodExecOutput {
            message: Some(output),
        }];
        if up.send(reply(output, String::new())).await.is_err() || last {
            return;
        }
    }
}

/// The message that ends stream `id` with `error`.
pub(super) fn failure(id: u64, error: String) -> TunnelUp {
    TunnelUp {
        message: Some(tunnel_up::Message::Exec(TunnelExecData {
            stream_id: id,
            output: Vec::new(),
            error,
        })),
    }
}

/// Starts the command in the container's running attempt; the host's answer stream.
async fn start(
    open: &TunnelExecOpen,
    served: &Served,
    input: mpsc::Receiver<PodExecInput>,
) -> Result<tonic::Streaming<proto::ExecResponse>, String> {
    let state = served
        .logs
        .get(&open.uid, &open.container)
        .filter(|s| s.running)
        .ok_or_else(|| {
            format!(
                "container {:?} of pod {:?} is not running: nothing to exec into",
                open.container, open.name
            )
        })?;
    let first = proto::ExecRequest {
        message: Some(proto::exec_request::Message::Start(proto::ExecStart {
            id: instance_id(&open.uid, &open.container, state.attempt),
            args: open.command.clone(),
            env: Vec::new(),
            stdin: open.stdin,
        })),
    };
    let rest = tokio_stream::wrappers::ReceiverStream::new(input).filter_map(|data| {
        let message = match data.message? {
            pod_exec_input::Message::Stdin(bytes) => proto::exec_request::Message::Stdin(bytes),
            pod_exec_input::Message::CloseStdin(_) => {
                proto::exec_request::Message::CloseStdin(true)
            }
            pod_exec_input::Message::Start(_) => return None,
        };
        Some(proto::ExecRequest {
            message: Some(message),
        })
    });
    let requests = tokio_stream::once(first).chain(rest);
    served
        .runtime
        .exec(requests)
        .await
        .map_err(|s| describe(open, &s))
}

/// The host's refusal, naming the pod and container.
fn describe(open: &TunnelExecOpen, status: &tonic::Status) -> String {
    format!(
        "exec in container {:?} of pod {:?}: {}",
        open.container,
        open.name,
        status.message()
    )
}
