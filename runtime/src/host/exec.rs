//! `Exec` sessions: one command started in a running container, its stdin fed from the caller's
//! requests, its stdout and stderr streamed back, then its exit code.
//!
//! Owns: the pipes and the wait of one exec'd process, and ending it (SIGTERM to the executor's
//! helper, which kills and reaps the command) when the caller goes away. After the command
//! exits, output is forwarded until the pipes stay silent for [`LINGER`] (only processes it left
//! behind still hold them), then the session ends, as a terminal would not wait for a daemon.
//! Must not: decide where the command runs (the registry) or how (the linux executor).

use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::{Status, Streaming};

use super::proto::{self, exec_request, exec_response};
use super::registry::Registry;
use crate::linux::StdioSet;

/// How long output is still awaited after the command exits, from the last read.
const LINGER: Duration = Duration::from_secs(2);
/// How long the helper gets to kill and reap the command.
const KILL_WAIT: Duration = Duration::from_secs(5);

pub(super) type Answer = Result<proto::ExecResponse, Status>;

/// Starts `start` and returns the stream of its answers; `requests` carries the rest of the
/// caller's stream (stdin).
pub(super) fn run(
    registry: &Registry,
    start: proto::ExecStart,
    requests: Streaming<proto::ExecRequest>,
) -> Result<mpsc::Receiver<Answer>, Status> {
    if start.id.is_empty() {
        return Err(Status::invalid_argument("start.id: required"));
    }
    if start.args.first().is_none_or(String::is_empty) {
        return Err(Status::invalid_argument(
            "start.args: a command is required",
        ));
    }
    let stdio = StdioSet {
        stdin: Some(if start.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        }),
        stdout: Some(Stdio::piped()),
        stderr: Some(Stdio::piped()),
    };
    let mut child = registry.exec(&start.id, start.args, start.env, stdio)?;
    let (tx, rx) = mpsc::channel(64);
    let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let stdin = pipes
        .0
        .and_then(|p| tokio::process::ChildStdin::from_std(p).ok());
    let stdout = pipes
        .1
        .and_then(|p| tokio::process::ChildStdout::from_std(p).ok());
    let stderr = pipes
        .2
        .and_then(|p| tokio::process::ChildStderr::from_std(p).ok());
    let process = Process::new(child);
    tokio::spawn(feed_stdin(requests, stdin));
    tokio::spawn(supervise(process, stdout, stderr, tx));
    Ok(rx)
}

/// The exec helper, killable until it is reaped (then its pid may name another process). The
/// child is taken out when it is reaped.
#[derive(Clone)]
struct Process {
    pid: Pid,
    child: Arc<Mutex<Option<Child>>>,
}

impl Process {
    fn new(child: Child) -> Self {
        Process {
            pid: Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX)),
            child: Arc::new(Mutex::new(Some(child))),
        }
    }

    /// SIGTERM asks the helper to kill and reap the command; SIGKILL is the last resort (the
    /// command then dies of its parent-death signal, but is left for a reaper).
    fn signal(&self, signal: Signal) {
        let child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        if child.is_some() {
            let _ = nix::sys::signal::kill(self.pid, signal);
        }
    }

    /// Blocks until the helper exits; its exit code (128 + signal when killed).
    fn wait(&self) -> i32 {
        // Wait without reaping first, so that `signal` never hits a recycled pid: the reap below
        // happens under the lock `signal` takes.
        while let Err(nix::errno::Errno::EINTR) = nix::sys::wait::waitid(
            Id::Pid(self.pid),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        ) {}
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        match child.take().map(|mut c| c.wait()) {
            Some(Ok(s)) => {
                use std::os::unix::process::ExitStatusExt;
                s.code()
                    .or_else(|| s.signal().map(|sig| 128 + sig))
                    .unwrap_or(255)
            }
            _ => 255,
        }
    }
}

/// Copies the caller's stdin into the process until the caller closes it.
async fn feed_stdin(
    mut requests: Streaming<proto::ExecRequest>,
    mut stdin: Option<tokio::process::ChildStdin>,
) {
    while let Some(Ok(request)) = requests.next().await {
        match request.message {
            Some(exec_request::Message::Stdin(data)) => {
                let Some(pipe) = stdin.as_mut() else { continue };
                if pipe.write_all(&data).await.is_err() {
                    // The process closed its stdin: the rest is dropped, as a pipe would.
                    stdin = None;
                }
            }
            Some(exec_request::Message::CloseStdin(_)) => stdin = None,
            Some(exec_request::Message::Start(_)) | None => {}
        }
    }
}

/// Forwards the output, ends the process if the caller goes away, and sends the exit code last.
async fn supervise(
    process: Process,
    stdout: Option<tokio::process::ChildStdout>,
    stderr: Option<tokio::process::ChildStderr>,
    tx: mpsc::Sender<Answer>,
) {
    let (exited_tx, exited) = tokio::sync::watch::channel(false);
    let mut pumps = tokio::task::JoinSet::new();
    if let Some(out) = stdout {
        let wrap = exec_response::Message::Stdout;
        pumps.spawn(pump(out, tx.clone(), wrap, exited.clone()));
    }
    if let Some(err) = stderr {
        let wrap = exec_response::Message::Stderr;
        pumps.spawn(pump(err, tx.clone(), wrap, exited.clone()));
    }
    let waiter = process.clone();
    let exit = tokio::task::spawn_blocking(move || waiter.wait());
    tokio::pin!(exit);
    let code = tokio::select! {
        code = &mut exit => code.unwrap_or(255),
        () = tx.closed() => {
            process.signal(Signal::SIGTERM);
            if tokio::time::timeout(KILL_WAIT, &mut exit).await.is_err() {
                process.signal(Signal::SIGKILL);
                let _ = exit.await;
            }
            return;
        }
    };
    exited_tx.send_replace(true);
    while pumps.join_next().await.is_some() {}
    let _ = tx
        .send(Ok(proto::ExecResponse {
            message: Some(exec_response::Message::ExitCode(code)),
        }))
        .await;
}

/// Forwards one output stream. Once the command has exited, a read that waits longer than
/// [`LINGER`] ends it (only background processes still hold the pipe); sends are never timed.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    tx: mpsc::Sender<Answer>,
    wrap: fn(Vec<u8>) -> exec_response::Message,
    exited: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let read = if *exited.borrow() {
            match tokio::time::timeout(LINGER, from.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => return,
            }
        } else {
            let mut exited = exited.clone();
            tokio::select! {
                r = from.read(&mut buf) => r,
                // Exited meanwhile: read again under the linger.
                _ = exited.wait_for(|e| *e) => continue,
            }
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let answer = proto::ExecResponse {
                    message: Some(wrap(buf[..n].to_vec())),
                };
                if tx.send(Ok(answer)).await.is_err() {
                    return;
                }
            }
        }
    }
}
