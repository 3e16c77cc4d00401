//! A guest's stdout and stderr, written to its CRI log file.
//!
//! Owns [`LogOutput`], the wasmtime-wasi `StdoutStream` that both WASI preview 1 (through its
//! adapter) and preview 2 guests write through: every write becomes CRI records in the
//! instance's [`LogWriter`]. Must not: buffer across writes (a record per write keeps the
//! ordering between stdout and stderr that the guest produced).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::logs::{LogStream, LogWriter};

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
