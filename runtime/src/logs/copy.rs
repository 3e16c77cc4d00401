//! A process's stdout and stderr carried into a CRI log: two pipes, each copied into one
//! [`LogWriter`] by a tokio task.
//!
//! Owns [`LogPipes::new`] (the pipes, the write ends to hand to the process) and
//! [`LogCopy::drain`]: called once the process has exited, it copies what the pipes still hold
//! (everything the process wrote before its exit) and finishes the log, without waiting for the
//! pipes to close: a process the exited one left behind (a daemon in a container without a pid
//! namespace of its own) may still hold them. Such a process's later output is still copied
//! until the pipes close. Must not: open the log file (the caller gives the writer) or decide
//! where a process's output goes.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

use super::format::LogStream;
use super::writer::LogWriter;

/// The write ends of the pipes, for the process, and the copy that reads them.
pub struct LogPipes {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub copy: LogCopy,
}

/// The copy of a process's output into its log (see [`LogPipes`]).
pub struct LogCopy {
    log: LogWriter,
    /// One per stream: a drain request, answered once that stream's pipe is empty.
    drains: [mpsc::UnboundedSender<oneshot::Sender<()>>; 2],
}

impl LogPipes {
    /// Makes the pipes and starts copying them into `log`. Must be called within a tokio
    /// runtime (the copies are its tasks).
    pub fn new(log: LogWriter) -> io::Result<Self> {
        let (out_r, stdout) = pipe_pair()?;
        let (err_r, stderr) = pipe_pair()?;
        let drains = [
            start(out_r, log.clone(), LogStream::Stdout)?,
            start(err_r, log.clone(), LogStream::Stderr)?,
        ];
        Ok(LogPipes {
            stdout,
            stderr,
            copy: LogCopy { log, drains },
        })
    }
}

impl LogCopy {
    /// Copies what both pipes hold now into the log, then writes what is left of an
    /// unfinished line ([`LogWriter::finish`]). Call it after the process exited: everything it
    /// wrote is then in the log. Returns without waiting for the pipes to close.
    pub async fn drain(&self) {
        let mut answers = Vec::with_capacity(2);
        for drain in &self.drains {
            let (tx, rx) = oneshot::channel();
            // A copy that already ended (its pipe closed) has copied everything.
            if drain.send(tx).is_ok() {
                answers.push(rx);
            }
        }
        for answer in answers {
            let _ = answer.await;
        }
        if let Err(e) = self.log.finish() {
            tracing::warn!(error = %e, "writing the end of a process's log");
        }
    }
}

fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

fn start(
    read: OwnedFd,
    log: LogWriter,
    stream: LogStream,
) -> io::Result<mpsc::UnboundedSender<oneshot::Sender<()>>> {
    let rx = pipe::Receiver::from_owned_fd(read)?;
    let (tx, requests) = mpsc::unbounded_channel();
    tokio::spawn(copy(rx, log, stream, requests));
    Ok(tx)
}

const BUF: usize = 32 * 1024;

/// Copies the pipe into the log until it closes, answering drain requests on the way.
async fn copy(
    mut rx: pipe::Receiver,
    log: LogWriter,
    stream: LogStream,
    mut requests: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
) {
    let mut buf = vec![0u8; BUF];
    let mut requests_open = true;
    loop {
        tokio::select! {
            read = rx.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => write(&log, stream, &buf[..n]),
            },
            request = requests.recv(), if requests_open => match request {
                Some(answer) => {
                    let closed = drain_now(&rx, &log, stream, &mut buf);
                    let _ = answer.send(());
                    if closed {
                        return;
                    }
                }
                None => requests_open = false,
            },
        }
    }
}

/// Reads the pipe until it is empty (true if closed), straight from the descriptor: tokio's
/// readiness may not have seen the last writes yet.
fn drain_now(rx: &pipe::Receiver, log: &LogWriter, stream: LogStream, buf: &mut [u8]) -> bool {
    loop {
        match nix::unistd::read(rx.as_fd(), buf) {
            Ok(0) => return true,
            Ok(n) => write(log, stream, &buf[..n]),
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => return false,
            Err(_) => return true,
        }
    }
}

fn write(log: &LogWriter, stream: LogStream, data: &[u8]) {
    if let Err(e) = log.write(stream, data) {
        tracing::warn!(error = %e, "writing a process's log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::parse_line;
    use std::io::Write;

    fn records(path: &std::path::Path) -> Vec<(LogStream, bool, String)> {
        std::fs::read(path)
            .unwrap()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let r = parse_line(l).unwrap();
                (r.stream, r.partial, String::from_utf8(r.content).unwrap())
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drained_output_is_in_the_log_though_a_writer_keeps_the_pipe_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let pipes = LogPipes::new(LogWriter::create(&path, 1 << 20).unwrap()).unwrap();
        let mut out = std::fs::File::from(pipes.stdout);
        let mut err = std::fs::File::from(pipes.stderr);
        // More than the copy reads at once, and a line left open.
        let big = "x".repeat(3 * BUF) + "\n";
        out.write_all(big.as_bytes()).unwrap();
        out.write_all(b"one\ntwo").unwrap();
        err.write_all(b"oops\n").unwrap();
        // Both write ends stay open (a process left behind): the drain must not wait for them.
        tokio::time::timeout(std::time::Duration::from_secs(5), pipes.copy.drain())
            .await
            .expect("the drain waited for the pipes to close");
        let got = records(&path);
        let stdout: Vec<&(LogStream, bool, String)> =
            got.iter().filter(|r| r.0 == LogStream::Stdout).collect();
        let text: String = stdout
            .iter()
            .take_while(|r| r.2 != "one")
            .map(|r| r.2.as_str())
            .collect();
        assert_eq!(text.len(), 3 * BUF);
        let tail: Vec<(bool, &str)> = stdout
            .iter()
            .skip_while(|r| r.2 != "one")
            .map(|r| (r.1, r.2.as_str()))
            .collect();
        assert_eq!(tail, [(false, "one"), (true, "two")]);
        assert!(got.contains(&(LogStream::Stderr, false, "oops".into())));
        // What the one left behind writes later still goes to the log.
        out.write_all(b"later\n").unwrap();
        drop((out, err));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !records(&path).iter().any(|r| r.2 == "later") {
            assert!(std::time::Instant::now() < deadline, "later output lost");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_drain_after_the_pipes_closed_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let pipes = LogPipes::new(LogWriter::create(&path, 1 << 20).unwrap()).unwrap();
        let mut out = std::fs::File::from(pipes.stdout);
        out.write_all(b"bye\n").unwrap();
        drop((out, pipes.stderr));
        pipes.copy.drain().await;
        assert_eq!(records(&path), [(LogStream::Stdout, false, "bye".into())]);
    }
}
