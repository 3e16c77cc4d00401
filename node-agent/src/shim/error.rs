//! What can go wrong between the agent and its shims: [`ShimError`], one enum for the module.
//!
//! A refusal by the shim keeps its ttrpc code ([`ShimError::code`]), so that the pod loop can
//! tell "no such task" (adopt nothing, recreate) from "it is running" (kill first) without
//! reading messages. Every message names the shim group or task and the operation.

use std::path::PathBuf;
use std::time::Duration;

use containerd_shim::protos::ttrpc;

pub use containerd_shim::protos::ttrpc::Code;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// A file or directory of the agent's shim state (records, bundles, sockets).
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Something the caller gave that cannot work (an id with a `/`, a socket path too long).
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    /// The shim binary could not be run at all.
    #[error("running {} start for {group}: {source}", binary.display())]
    Spawn {
        binary: PathBuf,
        group: String,
        source: std::io::Error,
    },
    /// `shim start` (or `delete`) ran and failed; its stderr says why.
    #[error("shim {action} for {group} failed ({status}): {stderr}")]
    Action {
        action: &'static str,
        group: String,
        status: String,
        stderr: String,
    },
    /// Connecting to a shim's socket failed (the shim is gone, or never came up).
    #[error("connecting to shim {group} at {address}: {reason}")]
    Connect {
        group: String,
        address: String,
        reason: String,
    },
    /// The agent knows no shim for the group (nothing recorded in its data dir).
    #[error("shim {group}: no address recorded")]
    NotRecorded { group: String },
    /// A call got no answer in time.
    #[error("{op} {id}: no answer from shim {group} within {after:?}")]
    Timeout {
        op: &'static str,
        id: String,
        group: String,
        after: Duration,
    },
    /// The shim answered with an error status (NotFound, FailedPrecondition, ...).
    #[error("{op} {id}: {message} ({code:?})")]
    Rpc {
        op: &'static str,
        id: String,
        code: Code,
        message: String,
    },
    /// The connection broke (the shim died or closed it) or the call failed locally.
    #[error("{op} {id}: shim {group}: {reason}")]
    Transport {
        op: &'static str,
        id: String,
        group: String,
        reason: String,
    },
    /// An answer the agent could not read (an unknown stats type, a bad event).
    #[error("{what}: {reason}")]
    Decode { what: String, reason: String },
    /// The events endpoint could not be served.
    #[error("events endpoint {address}: {reason}")]
    Events { address: String, reason: String },
    /// The OCI spec could not be built or written.
    #[error("bundle {}: {reason}", path.display())]
    Bundle { path: PathBuf, reason: String },
}

impl ShimError {
    /// The shim's status code, for refusals ([`ShimError::Rpc`]).
    pub fn code(&self) -> Option<Code> {
        match self {
            ShimError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The shim does not know the task (or exec): never created, or deleted.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(Code::NOT_FOUND)
    }

    /// The shim could not be reached or went away mid-call: the caller may relaunch it (and
    /// its tasks are gone with it).
    pub fn is_shim_gone(&self) -> bool {
        matches!(
            self,
            ShimError::Connect { .. } | ShimError::Transport { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ShimError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        ShimError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Converts a ttrpc error of call `op` on `id` in shim `group`.
    pub(crate) fn from_ttrpc(op: &'static str, id: &str, group: &str, e: ttrpc::Error) -> Self {
        match e {
            ttrpc::Error::RpcStatus(status) => ShimError::Rpc {
                op,
                id: id.to_string(),
                code: status.code(),
                message: status.message().to_string(),
            },
            other => ShimError::Transport {
                op,
                id: id.to_string(),
                group: group.to_string(),
                reason: match other {
                    ttrpc::Error::RemoteClosed => "the shim closed the connection".to_string(),
                    ttrpc::Error::LocalClosed => "the connection is closed".to_string(),
                    other => other.to_string(),
                },
            },
        }
    }
}
