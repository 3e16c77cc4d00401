//! `skiff exec` on the agent's end of the node tunnel: finds the running attempt of the
//! container and runs the command in it through its shim ([`crate::containers::exec`]),
//! relaying stdin down and output up. An aborted task (the client went away) drops the output
//! channel, and the command is then killed.

use skiff_api::v1::*;
use tokio::sync::mpsc;

use super::Served;
use crate::containers::exec::{ExecInput, ExecOutput};
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
        let output = match answers.recv().await {
            Some(ExecOutput::Stdout(data)) => pod_exec_output::Message::Stdout(data),
            Some(ExecOutput::Stderr(data)) => pod_exec_output::Message::Stderr(data),
            Some(ExecOutput::Exit(code)) => pod_exec_output::Message::ExitCode(code),
            None => {
                let error = format!(
                    "exec in container {:?} of pod {:?}: ended without an exit code",
                    open.container, open.name
                );
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

/// Starts the command in the container's running attempt; its output channel.
async fn start(
    open: &TunnelExecOpen,
    served: &Served,
    mut input: mpsc::Receiver<PodExecInput>,
) -> Result<mpsc::Receiver<ExecOutput>, String> {
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
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(data) = input.recv().await {
            let message = match data.message {
                Some(pod_exec_input::Message::Stdin(bytes)) => ExecInput::Stdin(bytes),
                Some(pod_exec_input::Message::CloseStdin(_)) => ExecInput::CloseStdin,
                _ => continue,
            };
            if tx.send(message).await.is_err() {
                return;
            }
        }
    });
    let id = instance_id(&open.uid, &open.container, state.attempt);
    served
        .runtime
        .exec(&id, open.command.clone(), open.stdin, rx)
        .await
        .map_err(|e| {
            format!(
                "exec in container {:?} of pod {:?}: {e}",
                open.container, open.name
            )
        })
}
