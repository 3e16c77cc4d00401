//! CLI errors and exit codes: 1 the request failed, 2 bad usage or bad input (DESIGN §3).

use std::fmt;

/// An error with the exit code it ends the process with.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        let reason = match s.code() {
            Code::InvalidArgument => "Invalid",
            Code::NotFound => "NotFound",
            Code::AlreadyExists => "AlreadyExists",
            Code::Aborted => "Conflict",
            // The cluster's state refuses the request (a nodePort or clusterIP another object
            // holds, a namespace being deleted): not bad input, so exit 1.
            Code::FailedPrecondition => "Conflict",
            Code::Unauthenticated => "Unauthorized",
            Code::PermissionDenied => "Forbidden",
            Code::OutOfRange => "Expired",
            Code::Unavailable => {
                return CliError::failed(format!(
                    "cannot reach the skiff API server: {}",
                    s.message()
                ));
            }
            _ => "InternalError",
        };
        let message = format!("Error from server ({reason}): {}", s.message());
        if s.code() == Code::InvalidArgument {
            CliError::usage(message)
        } else {
            CliError::failed(message)
        }
    }
}

impl From<skiff_api::client::ClientError> for CliError {
    fn from(e: skiff_api::client::ClientError) -> Self {
        CliError::usage(e.to_string())
    }
}

impl From<skiff_api::manifest::ManifestError> for CliError {
    fn from(e: skiff_api::manifest::ManifestError) -> Self {
        CliError::usage(format!("error: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, CliError>;
