//! A process's stdio on containerd's FIFOs.
//!
//! containerd (or `ctr`) makes one FIFO per stream and holds the other ends. Output FIFOs are
//! opened read-write: the open never blocks, and a reader that goes away and comes back (a
//! restarted containerd) never turns writes into `EPIPE`. They are handed to the process as they
//! are. Stdin goes through a pipe instead, fed from the FIFO by a task: containerd signals the end
//! of input with `CloseIO`, not by closing the FIFO, so [`StdinCloser::close`] drains what is
//! buffered and then closes the pipe, and the process reads EOF. Must not: interpret the bytes.

use std::fs::File;
use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

/// How long a closing stdin waits for more buffered input.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// The stdio paths containerd gave for a process (empty: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Io {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// Opened streams for a process: stdin's pipe read end and the output FIFOs.
#[derive(Debug, Default)]
pub struct Opened {
    pub stdin: Option<File>,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
}

/// Ends a process's stdin.
#[derive(Debug)]
pub struct StdinCloser(oneshot::Sender<()>);

impl StdinCloser {
    pub fn close(self) {
        let _ = self.0.send(());
    }
}

/// Refuses stdio URIs (`binary://`, `file://`: `ctr --log-uri`, nerdctl's logging) by name; only
/// FIFO paths are supported.
fn check_path(path: &str, name: &str) -> io::Result<()> {
    match path.split_once("://") {
        Some((scheme, _)) if scheme != "fifo" => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{name} {path}: {scheme}:// log URIs are not supported (FIFO paths only)"),
        )),
        _ => Ok(()),
    }
}

fn output(path: &str, name: &str) -> io::Result<Option<File>> {
    if path.is_empty() {
        return Ok(None);
    }
    check_path(path, name)?;
    let path = path.strip_prefix("fifo://").unwrap_or(path);
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map(Some)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {name} {path}: {e}")))
}

/// Opens `io`'s streams; stdin, if any, is pumped by a task of the current runtime until the
/// returned closer fires.
pub fn open(io: &Io) -> io::Result<(Opened, Option<StdinCloser>)> {
    let mut opened = Opened {
        stdin: None,
        stdout: output(&io.stdout, "stdout")?,
        stderr: output(&io.stderr, "stderr")?,
    };
    check_path(&io.stdin, "stdin")?;
    if io.stdin.is_empty() {
        return Ok((opened, None));
    }
    let fifo = pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(&io.stdin)
        .map_err(|e| io::Error::new(e.kind(), format!("opening stdin {}: {e}", io.stdin)))?;
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let writer = pipe::Sender::from_owned_fd(write)?;
    let (tx, rx) = oneshot::channel();
    tokio::spawn(pump(fifo, writer, rx));
    opened.stdin = Some(File::from(read));
    Ok((opened, Some(StdinCloser(tx))))
}

/// Copies the stdin FIFO into the process's pipe until closed, then drains what is left.
async fn pump(mut fifo: pipe::Receiver, mut to: pipe::Sender, mut closed: oneshot::Receiver<()>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            _ = &mut closed => break,
            n = fifo.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
    // What the writer put in the FIFO before it asked for the close: read until it stays empty
    // (readiness comes from the reactor, so each read is given a moment to see data).
    while let Ok(Ok(n)) = tokio::time::timeout(DRAIN_WAIT, fifo.read(&mut buf)).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn fifo(dir: &std::path::Path, name: &str) -> String {
        let p = dir.join(name);
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        p.display().to_string()
    }

    #[tokio::test]
    async fn stdin_is_pumped_and_closed_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let io = Io {
            stdin: fifo(dir.path(), "in"),
            ..Io::default()
        };
        let (opened, closer) = open(&io).unwrap();
        let mut writer = std::fs::OpenOptions::new()
            .write(true)
            .open(&io.stdin)
            .unwrap();
        std::io::Write::write_all(&mut writer, b"hello\n").unwrap();
        drop(writer);
        closer.unwrap().close();
        let mut stdin = opened.stdin.unwrap();
        let text = tokio::task::spawn_blocking(move || {
            let mut s = String::new();
            stdin.read_to_string(&mut s).map(|_| s)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(text, "hello\n");
    }

    #[tokio::test]
    async fn missing_paths_are_no_streams_and_bad_ones_name_the_stream() {
        let (opened, closer) = open(&Io::default()).unwrap();
        assert!(opened.stdin.is_none() && opened.stdout.is_none() && closer.is_none());
        let e = open(&Io {
            stdout: "/nonexistent/dir/out".into(),
            ..Io::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("stdout /nonexistent/dir/out"), "{e}");
        let e = open(&Io {
            stdout: "binary:///usr/bin/logger?x=1".into(),
            ..Io::default()
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("binary:// log URIs are not supported"),
            "{e}"
        );
    }
}
