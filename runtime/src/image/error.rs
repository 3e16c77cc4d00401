//! Why a pull failed, in words a user can act on, and whether trying again may help.
//!
//! Every message starts with the image reference. Registry failures are sorted into the cases
//! a node agent treats differently: the registry could not be reached (retry), the image does not
//! exist, access was refused, the bytes did not match their digest, or the image is not a Wasm
//! image (names the media types found).

use std::path::PathBuf;

/// A failed pull.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The reference does not parse (Kubernetes' `InvalidImageName`).
    #[error("{reference}: invalid image reference: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// Connection refused, timed out, DNS failure, or the transfer broke off.
    #[error("{reference}: registry {registry} unreachable: {reason}")]
    Unreachable {
        reference: String,
        registry: String,
        reason: String,
    },
    /// The manifest (tag or digest), the repository or a blob does not exist.
    #[error("{reference}: {detail}")]
    NotFound { reference: String, detail: String },
    /// The registry refused anonymous access, or its token service failed.
    #[error("{reference}: unauthorized: {detail}")]
    Unauthorized { reference: String, detail: String },
    /// A blob or manifest whose bytes do not match its digest or declared size.
    #[error("{reference}: {what} {digest} failed verification: {detail}")]
    DigestMismatch {
        reference: String,
        what: &'static str,
        digest: String,
        detail: String,
    },
    /// Neither a Wasm OCI artifact nor an OCI image whose entrypoint is a `.wasm` file.
    #[error("{reference}: not a Wasm image: {detail}")]
    NotWasm { reference: String, detail: String },
    /// A manifest, config or module above the store's limits.
    #[error("{reference}: {what} is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        reference: String,
        what: String,
        size: u64,
        limit: u64,
    },
    /// A manifest, config or layer that cannot be read (bad JSON, bad tar, unsupported format).
    #[error("{reference}: invalid {what}: {detail}")]
    Invalid {
        reference: String,
        what: &'static str,
        detail: String,
    },
    /// Policy `Never` and the image is not in the store (Kubernetes' `ErrImageNeverPull`).
    #[error(
        "{reference}: not present on this node and the pull policy is Never (pull it first, or use IfNotPresent)"
    )]
    NotPresent { reference: String },
    /// Any other answer of the registry (a 5xx is retryable, the rest is not).
    #[error("{reference}: registry error: {detail}")]
    Registry {
        reference: String,
        detail: String,
        retryable: bool,
    },
    /// The store's own files.
    #[error("image store: {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl PullError {
    /// Whether the same pull may succeed later without anything changing on the image's side
    /// (registry down, network broken, disk full). A missing tag can appear later too, but that
    /// takes a push: callers that wait for that retry anyway, with back-off.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Io { .. } => true,
            Self::Registry { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// The Kubernetes waiting reason for a container whose image this is.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidReference { .. } => "InvalidImageName",
            Self::NotPresent { .. } => "ErrImageNeverPull",
            _ => "ErrImagePull",
        }
    }

    pub(super) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
