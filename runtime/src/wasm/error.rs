//! Why preparing or starting a Wasm instance failed.
//!
//! Owns [`WasmError`], the one error type of the wasm executor. Every variant names the file, the
//! import or the setting at fault, so that the message alone tells a user what to fix. Must not:
//! map to wire status codes (its caller does: the shim answers with ttrpc codes).

use std::io;
use std::path::{Path, PathBuf};

/// A failure to prepare (read, compile, link) or start a Wasm module or component.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// The module file cannot be read.
    #[error("reading {}: {}", path.display(), describe_io(source))]
    Read { path: PathBuf, source: io::Error },
    /// The bytes are neither a valid module nor a valid component (or `.wat` that does not parse).
    #[error("invalid wasm module {}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    /// A core module without the `_start` export of a WASI command.
    #[error("module {} has no _start export (not a WASI command)", path.display())]
    NoStart { path: PathBuf },
    /// A component that does not export `wasi:cli/run`.
    #[error(
        "component {} does not target world wasi:cli/command or wasi:http/proxy ({})",
        path.display(),
        describe_exports(exports)
    )]
    NotCommand { path: PathBuf, exports: Vec<String> },
    /// The spec asks for a function, and the component exports no `wasi:http` handler.
    #[error(
        "component {} does not export wasi:http/incoming-handler: it is not a function (it is a command)",
        path.display()
    )]
    NotFunction { path: PathBuf },
    /// An import the host does not provide (the message names it).
    #[error("{} imports what this host does not provide: {message}", path.display())]
    UnknownImport { path: PathBuf, message: String },
    /// A host interface (`wit/`: wasi:config, wasi:keyvalue, wasi:logging) imported but not
    /// granted by the spec.
    #[error(
        "{} imports {import}, which is not granted (grant {grant:?} to use it)",
        path.display()
    )]
    NotGranted {
        path: PathBuf,
        import: String,
        grant: &'static str,
    },
    /// The spec is unusable (a preopen that cannot be opened, a bad guest path, ...).
    #[error("{0}")]
    InvalidSpec(String),
    /// Every instance slot of the pooling allocator is taken.
    #[error("no free instance slot: {0}")]
    Exhausted(String),
    /// The log file cannot be created.
    #[error("log file {}: {}", path.display(), describe_io(source))]
    Log { path: PathBuf, source: io::Error },
    /// The on-disk module cache cannot be used.
    #[error("module cache {}: {}", path.display(), describe_io(source))]
    Cache { path: PathBuf, source: io::Error },
    /// The engine could not be configured.
    #[error("wasm engine: {0}")]
    Engine(String),
    /// Instantiation failed for a reason not listed above.
    #[error("instantiating {id}: {message}")]
    Instantiate { id: String, message: String },
}

impl WasmError {
    pub(crate) fn read(path: &Path, source: io::Error) -> Self {
        WasmError::Read {
            path: path.to_path_buf(),
            source,
        }
    }

    /// True for errors caused by what the caller asked for (bad file, bad spec), as opposed to
    /// the host's own trouble.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            WasmError::Invalid { .. }
                | WasmError::NoStart { .. }
                | WasmError::NotCommand { .. }
                | WasmError::NotFunction { .. }
                | WasmError::UnknownImport { .. }
                | WasmError::NotGranted { .. }
                | WasmError::InvalidSpec(_)
        )
    }

    /// True when the module file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, WasmError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// `No such file` rather than `No such file or directory (os error 2)`.
fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "No such file".to_string(),
        io::ErrorKind::PermissionDenied => "Permission denied".to_string(),
        _ => e.to_string(),
    }
}

fn describe_exports(exports: &[String]) -> String {
    if exports.is_empty() {
        "it exports nothing; a command exports wasi:cli/run, a function wasi:http/incoming-handler"
            .to_string()
    } else {
        format!(
            "it exports {} but not wasi:cli/run nor wasi:http/incoming-handler",
            exports
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// The whole cause chain of a wasmtime error on one line (`outer: inner: root`).
pub(crate) fn chain(e: &wasmtime::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_cause() {
        let e = WasmError::read(
            Path::new("/x/a.wasm"),
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert_eq!(e.to_string(), "reading /x/a.wasm: No such file");
        assert!(e.is_not_found());
        let e = WasmError::NotCommand {
            path: "c.wasm".into(),
            exports: vec![],
        };
        assert_eq!(
            e.to_string(),
            "component c.wasm does not target world wasi:cli/command or wasi:http/proxy (it exports nothing; a command exports wasi:cli/run, a function wasi:http/incoming-handler)"
        );
        let e = WasmError::NotCommand {
            path: "c.wasm".into(),
            exports: vec!["wasi:http/handler@0.4.0".into()],
        };
        assert!(
            e.to_string()
                .contains("it exports `wasi:http/handler@0.4.0` but not wasi:cli/run")
        );
    }
}
