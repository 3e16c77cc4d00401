//! `wasi:logging/logging`, from `wit/logging`: each record becomes one line of the instance's
//! stderr (its CRI log under a node, the task's stderr FIFO under a plain containerd), as
//! `LEVEL context: message` (`LEVEL message` without a context), so `skiff logs` shows it beside
//! the guest's own output.
//!
//! A message is cut at [`MAX_RECORD_BYTES`]; a newline inside it is written as `\n` so one record
//! stays one line. Must not: filter by level (every record is kept; readers filter).

use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use super::{HostParts, HostView};
use crate::logs::{LogStream, LogWriter};
use crate::wasm::spec::Streams;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/logging",
        world: "wasi:logging/imports",
        imports: { default: trappable },
    });
}

use bindings::wasi::logging::logging::{self as generated, Level};

/// The package and version served, as `wit/logging/world.wit` declares it.
pub const PACKAGE: &str = "wasi:logging@0.1.0-draft";

/// Longest record written (context and message); the rest is cut, marked with `…`.
pub const MAX_RECORD_BYTES: usize = 16 * 1024;

/// Where an instance's records go.
#[derive(Clone)]
pub enum Sink {
    /// Its CRI log file.
    Log(LogWriter),
    /// Its stderr stream (the shim's FIFO).
    Streams(Arc<Streams>),
    /// Nowhere.
    Discard,
}

impl Sink {
    fn write(&self, line: &str) {
        match self {
            Sink::Log(log) => {
                if let Err(e) = log.write(LogStream::Stderr, line.as_bytes()) {
                    tracing::debug!(error = %e, "writing a guest's log record");
                }
            }
            Sink::Streams(streams) => crate::wasm::stdio::write_stderr(streams, line),
            Sink::Discard => {}
        }
    }
}

/// The line a record is written as (with its newline).
pub fn line(level: &str, context: &str, message: &str) -> String {
    let mut text = if context.is_empty() {
        message.to_string()
    } else {
        format!("{context}: {message}")
    };
    if text.len() > MAX_RECORD_BYTES {
        let mut cut = MAX_RECORD_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    let text = text.trim_end_matches(['\n', '\r']).replace('\n', "\\n");
    format!("{level} {text}\n")
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "TRACE",
        Level::Debug => "DEBUG",
        Level::Info => "INFO",
        Level::Warn => "WARN",
        Level::Error => "ERROR",
        Level::Critical => "CRITICAL",
    }
}

impl generated::Host for HostParts<'_> {
    fn log(&mut self, level: Level, context: String, message: String) -> wasmtime::Result<()> {
        self.ctx
            .log
            .write(&line(level_name(level), &context, &message));
        Ok(())
    }
}

struct HasLogging;

impl HasData for HasLogging {
    type Data<'a> = HostParts<'a>;
}

pub(super) fn add_to_linker<T: HostView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    generated::add_to_linker::<T, HasLogging>(linker, view::<T>)
}

fn view<T: HostView>(data: &mut T) -> HostParts<'_> {
    data.host()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_one_line_each() {
        assert_eq!(
            line("INFO", "kv", "counter is 3"),
            "INFO kv: counter is 3\n"
        );
        assert_eq!(line("WARN", "", "low disk"), "WARN low disk\n");
        assert_eq!(line("ERROR", "a", "two\nlines\n"), "ERROR a: two\\nlines\n");
        let long = "é".repeat(MAX_RECORD_BYTES);
        let l = line("DEBUG", "", &long);
        assert!(l.len() <= MAX_RECORD_BYTES + 16, "{}", l.len());
        assert!(l.ends_with("…\n"));
    }
}
