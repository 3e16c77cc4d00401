//! A guest's standard streams: its CRI log file, or pipes the caller gave.
//!
//! Owns [`LogOutput`], the wasmtime-wasi `StdoutStream` that both WASI preview 1 (through its
//! adapter) and preview 2 guests write through: every write becomes CRI records in the
//! instance's [`LogWriter`]; and [`attach`], which wires [`Streams`] (containerd's FIFOs) as
//! asynchronous pipe ends, so that a guest blocked on a full stdout or an empty stdin still
//! ends at a kill. Must not: buffer across writes (a record per write keeps the ordering between
//! stdout and stderr that the guest produced).

use std::fs::File;
use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use tokio::net::unix::pipe;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::{AsyncStdinStream, AsyncStdoutStream, IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use super::error::WasmError;
use super::spec::Streams;
use crate::logs::{LogStream, LogWriter};

/// Sets `b`'s stdin, stdout and stderr to `streams` (each a pipe or FIFO). Must run inside a
/// tokio runtime that outlives the instance: the pipes register with its reactor, which drives
/// them even when the instance runs on another runtime (a network namespace's thread).
pub(crate) fn attach(b: &mut WasiCtxBuilder, streams: &Streams) -> Result<(), WasmError> {
    let dup = |f: &File, name: &str| {
        f.try_clone()
            .map_err(|e| WasmError::InvalidSpec(format!("stdio: {name}: {e}")))
    };
    if let Some(f) = &streams.stdin {
        let rx = pipe::Receiver::from_file(dup(f, "stdin")?)
            .map_err(|e| WasmError::InvalidSpec(format!("stdio: stdin: {e}")))?;
        b.stdin(AsyncStdinStream::new(rx));
    }
    for (name, file) in [("stdout", &streams.stdout), ("stderr", &streams.stderr)] {
        let Some(f) = file else { continue };
        let tx = pipe::Sender::from_file(dup(f, name)?)
            .map_err(|e| WasmError::InvalidSpec(format!("stdio: {name}: {e}")))?;
        let out = AsyncStdoutStream::new(WRITE_BUDGET, tx);
        if name == "stdout" {
            b.stdout(out);
        } else {
            b.stderr(out);
        }
    }
    Ok(())
}

/// Writes `text` to the streams' stderr, if any (a trap's message, after the guest is gone).
pub(crate) fn write_stderr(streams: &Streams, text: &str) {
    if let Some(mut f) = streams.stderr.as_ref() {
        let _ = f.write_all(text.as_bytes());
    }
}

/// Largest write the guest is offered at once.
const WRITE_BUDGET: usize = 64 * 1024;

/// One output (stdout or stderr) of one instance.
#[derive(Clone)]
pub(crate) struct LogOutput {
    log: LogWriter,
    stream: LogStream,
}

impl LogOutput {
    pub(crate) fn new(log: LogWriter, stream: LogStream) -> Self {
        LogOutput { log, stream }
    }

    fn write_bytes(&self, data: &[u8]) -> io::Result<()> {
        self.log.write(self.stream, data)
    }
}

impl IsTerminal for LogOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for LogOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes)
            .map_err(|e| StreamError::LastOperationFailed(e.into()))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.write_bytes(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
