//! Container logs in the CRI format Kubernetes uses, written by executors and read by the agent.
//!
//! A log file holds one record per line: `<RFC3339Nano UTC time> <stdout|stderr> <F|P> <content>`,
//! where `P` marks a partial line (its continuation follows in the next record of the stream) and
//! `F` a full one. [`LogWriter`] assembles each stream's writes into lines, appends records and
//! rotates the file to `<path>.1` past a size;
//! [`read_log`] reads (and optionally follows, across rotation) a file as [`LogLine`]s;
//! [`LogPipes`] carry a process's stdout and stderr into a [`LogWriter`].
//!
//! Must not: know about pods, containers or the API; paths are given by the caller.

mod copy;
mod format;
mod reader;
mod writer;

pub use copy::{LogCopy, LogPipes};
pub use format::{LogLine, LogStream, ParseError, encode_records, parse_line};
pub use reader::read_log;
pub use writer::LogWriter;
