//! CRI log files for tasks that Create gave no output FIFO (a skiff agent's pods): the
//! annotations that ask for one, and the log of a Linux task's init.
//!
//! [`LOG_PATH`] names the file, [`LOG_MAX_BYTES`] its rotation threshold. A Wasm guest writes
//! its records itself (the wasm executor's `Stdio::Log`); a Linux task's init gets pipes whose
//! output [`LinuxLog`] copies into the file, and drains before the task's exit is published
//! (everything the init wrote is in the file when containerd, or the agent, hears of the exit).
//! FIFOs given at Create win: with either output FIFO, no log file. Must not: open containerd's
//! FIFOs (that is `stdio`).

use std::fs::File;
use std::path::PathBuf;

use oci_spec::runtime::Spec;
use skiff_runtime::bundle::{LOG_MAX_BYTES, LOG_PATH};
use skiff_runtime::logs::{LogCopy, LogPipes, LogWriter};
use skiff_runtime::wasm::DEFAULT_LOG_MAX_BYTES;

use crate::stdio::Io;

/// Where a task's output goes when it goes to a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub path: PathBuf,
    /// 0: the runtime's default.
    pub max_bytes: u64,
}

/// The log file the spec asks for, unless `io` names an output FIFO.
pub fn log_file(spec: &Spec, io_has_output: bool) -> Result<Option<LogFile>, String> {
    let annotation = |key| crate::shim::annotation(spec, key);
    let Some(path) = annotation(LOG_PATH).filter(|_| !io_has_output) else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    if !path.is_absolute() {
        return Err(format!("annotation {LOG_PATH} {path:?}: must be absolute"));
    }
    let max_bytes = match annotation(LOG_MAX_BYTES) {
        Some(v) => v
            .parse()
            .map_err(|_| format!("annotation {LOG_MAX_BYTES} {v:?}: not a byte count"))?,
        None => 0,
    };
    Ok(Some(LogFile { path, max_bytes }))
}

/// Whether Create gave an output FIFO.
pub fn has_output(io: &Io) -> bool {
    !io.stdout.is_empty() || !io.stderr.is_empty()
}

/// A Linux task init's output, on its way to its log file.
pub struct LinuxLog {
    copy: LogCopy,
}

impl LinuxLog {
    /// Opens (appending) the log file and the pipes; returns the write ends for the init's
    /// stdout and stderr. Must be called within the shim's async runtime.
    pub fn open(file: &LogFile) -> Result<(Self, File, File), String> {
        let max = if file.max_bytes == 0 {
            DEFAULT_LOG_MAX_BYTES
        } else {
            file.max_bytes
        };
        let writer = LogWriter::create(&file.path, max)
            .map_err(|e| format!("annotation {LOG_PATH}: {}: {e}", file.path.display()))?;
        let pipes = LogPipes::new(writer).map_err(|e| format!("log pipes: {e}"))?;
        Ok((
            LinuxLog { copy: pipes.copy },
            File::from(pipes.stdout),
            File::from(pipes.stderr),
        ))
    }

    /// Copies what the init wrote before its exit into the file (see [`LogCopy::drain`]).
    pub async fn drain(&self) {
        self.copy.drain().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(annotations: serde_json::Value) -> Spec {
        serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "annotations": annotations,
        }))
        .unwrap()
    }

    #[test]
    fn the_annotations_name_the_file_unless_a_fifo_is_given() {
        let s =
            spec(serde_json::json!({LOG_PATH: "/var/log/pods/p/c/0.log", LOG_MAX_BYTES: "4096"}));
        assert_eq!(
            log_file(&s, false).unwrap(),
            Some(LogFile {
                path: "/var/log/pods/p/c/0.log".into(),
                max_bytes: 4096
            })
        );
        assert_eq!(log_file(&s, true).unwrap(), None);
        assert_eq!(log_file(&spec(serde_json::json!({})), false).unwrap(), None);
        let e = log_file(&spec(serde_json::json!({LOG_PATH: "rel.log"})), false).unwrap_err();
        assert!(e.contains("must be absolute"), "{e}");
        let bad = spec(serde_json::json!({LOG_PATH: "/l.log", LOG_MAX_BYTES: "10k"}));
        assert!(log_file(&bad, false).unwrap_err().contains(LOG_MAX_BYTES));
        assert!(has_output(&Io {
            stderr: "/run/x/stderr".into(),
            ..Io::default()
        }));
        assert!(!has_output(&Io {
            stdin: "/run/x/stdin".into(),
            ..Io::default()
        }));
    }
}
