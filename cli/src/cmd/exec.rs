//! `skiff exec POD [-c CONTAINER] [-i] -- COMMAND...`: runs a command in a running container of a
//! pod, relayed by the API server to the pod's node; prints its output and exits with its exit
//! code, as kubectl does.

use std::io::{Read, Write};

use clap::Args;
use skiff_api::client::Transport;
use skiff_api::v1::{
    PodExecInput, PodExecStart, pod_exec_api_client::PodExecApiClient, pod_exec_input,
    pod_exec_output,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use crate::error::{CliError, Result};

#[derive(Args)]
pub struct ExecArgs {
    /// The pod (or `pod/NAME`)
    pod: String,
    /// The container (default: the pod's only one)
    #[arg(short = 'c', long)]
    container: Option<String>,
    /// Pass stdin to the command
    #[arg(short = 'i', long)]
    stdin: bool,
    /// Allocate a terminal (not supported)
    #[arg(short = 't', long)]
    tty: bool,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// The command and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

pub async fn run(transport: &Transport, args: ExecArgs) -> Result<()> {
    if args.tty {
        return Err(CliError::usage(
            "error: -t: terminals are not supported; use -i for stdin",
        ));
    }
    if args.command.first().is_none_or(String::is_empty) {
        return Err(CliError::usage("error: COMMAND: required after `--`"));
    }
    let name = args
        .pod
        .strip_prefix("pod/")
        .unwrap_or(&args.pod)
        .to_string();
    let pod = name.clone();
    let (tx, rx) = mpsc::channel(16);
    let start = PodExecInput {
        message: Some(pod_exec_input::Message::Start(PodExecStart {
            namespace: super::namespace(&args.namespace),
            name,
            container: args.container.unwrap_or_default(),
            command: args.command,
            stdin: args.stdin,
        })),
    };
    // Sent before the call: the server reads `start` before it answers.
    let _ = tx.send(start).await;
    // The end of the request stream only ends the command's stdin; its output still comes.
    if args.stdin {
        std::thread::spawn(move || read_stdin(&tx));
    } else {
        drop(tx);
    }
    let mut client = PodExecApiClient::new(transport.clone());
    let mut output = client
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    while let Some(message) = output.next().await {
        let message = match message {
            Ok(m) => m.message,
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                return Err(CliError::failed(format!("error: {}", s.message())));
            }
            // Mid-session: the API server answered, the pod's node went away.
            Err(s) if s.code() == tonic::Code::Unavailable => {
                return Err(CliError::failed(format!(
                    "error: exec in pod {pod}: {}",
                    s.message()
                )));
            }
            Err(s) => return Err(s.into()),
        };
        match message {
            Some(pod_exec_output::Message::Stdout(data)) => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&data);
                let _ = out.flush();
            }
            Some(pod_exec_output::Message::Stderr(data)) => {
                let _ = std::io::stderr().lock().write_all(&data);
            }
            Some(pod_exec_output::Message::ExitCode(0)) => return Ok(()),
            Some(pod_exec_output::Message::ExitCode(code)) => {
                return Err(CliError {
                    code,
                    message: String::new(),
                });
            }
            None => {}
        }
    }
    Err(CliError::failed(
        "error: the exec stream ended without the command's exit code",
    ))
}

/// Sends stdin in chunks, then its end.
fn read_stdin(tx: &mpsc::Sender<PodExecInput>) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let message = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => pod_exec_input::Message::CloseStdin(true),
            Ok(n) => pod_exec_input::Message::Stdin(buf[..n].to_vec()),
        };
        let last = matches!(message, pod_exec_input::Message::CloseStdin(_));
        let input = PodExecInput {
            message: Some(message),
        };
        if tx.blocking_send(input).is_err() || last {
            return;
        }
    }
}
