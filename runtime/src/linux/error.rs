//! Errors of the linux executor: each names the container, file or spec field at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    #[error("bundle {bundle}: {message}")]
    Bundle { bundle: PathBuf, message: String },
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container {0:?} already exists")]
    Exists(String),
    #[error("container id {0:?}: use 1-64 letters, digits, '-', '_' or '.', not starting with '.'")]
    BadId(String),
    #[error("container {id:?} is {status}, not {wanted}")]
    State {
        id: String,
        status: &'static str,
        wanted: &'static str,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("creating container {id:?}: {message}")]
    Init { id: String, message: String },
    #[error("seccomp profile: {0}")]
    Seccomp(String),
    #[error("cgroup {path}: {message}")]
    Cgroup { path: PathBuf, message: String },
}

impl LinuxError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    pub fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        Self::Sys {
            what: what.into(),
            source,
        }
    }
}

/// Adds context to a nix call.
pub trait SysContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, LinuxError>;
}

impl<T> SysContext<T> for nix::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, LinuxError> {
        self.map_err(|e| LinuxError::sys(what(), e))
    }
}

impl<T> SysContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, LinuxError> {
        self.map_err(|e| LinuxError::io(what(), e))
    }
}
