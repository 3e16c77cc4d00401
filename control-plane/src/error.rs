//! The one error type of the write path (authentication, authorization, the registry, its
//! strategies and admission links, the store beneath) and its one mapping to gRPC status codes.
//! Store errors become API errors once, in the registry ([`ApiError::from_store`]).

use skiff_api::validation::FieldErrors;
use tonic::Status;

use crate::store::StoreError;

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The object is invalid: `Pod "web" is invalid: spec.containers[0].image: required`.
    #[error("{kind} {name:?} is invalid: {errors}")]
    Invalid {
        kind: &'static str,
        name: String,
        errors: FieldErrors,
    },
    /// A value the object asks for is held by another object (a nodePort or a clusterIP already
    /// allocated): the input is valid but the cluster's state refuses it, so it maps to
    /// `FailedPrecondition` (the CLI exits 1), where Kubernetes answers 422 Invalid with the same
    /// field errors.
    #[error("{kind} {name:?} is invalid: {errors}")]
    Taken {
        kind: &'static str,
        name: String,
        errors: FieldErrors,
    },
    /// A pool is used up: no cluster IP or node port is left.
    #[error("{0}")]
    Exhausted(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{plural} {name:?} not found")]
    NotFound { plural: &'static str, name: String },
    #[error("{plural} {name:?} already exists")]
    AlreadyExists { plural: &'static str, name: String },
    #[error(
        "operation cannot be fulfilled on {plural} {name:?}: the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict { plural: &'static str, name: String },
    #[error(
        "resourceVersion {0} is too old (expired): list again and watch from the list's resourceVersion"
    )]
    Expired(u64),
    /// A list asked for a `resourceVersion` newer than the store has reached, still so after
    /// waiting for it (Kubernetes' 504 Timeout with the `ResourceVersionTooLarge` cause): the
    /// version may come from another API server whose writes this one has not seen yet, so the
    /// client may ask again after `retry_after_seconds`.
    #[error("Timeout: Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion {
        requested: u64,
        current: u64,
        retry_after_seconds: u32,
    },
    /// A bind the Binding rules refuse (already bound, raced an update, being deleted).
    #[error("operation cannot be fulfilled on pods/binding {name:?}: {reason}")]
    BindConflict { name: String, reason: String },
    #[error("{0}")]
    Precondition(String),
    /// Not now, try again later (Kubernetes' 429 TooManyRequests): an eviction the pod's
    /// PodDisruptionBudget does not allow yet. `causes` are (type, message) pairs, as in a
    /// `metav1.Status`'s details (`DisruptionBudget`, `The disruption budget web needs 2 ...`).
    #[error("{message}")]
    TooManyRequests {
        message: String,
        causes: Vec<(&'static str, String)>,
    },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// Maps a store error about the object `name` of kind `plural`.
    pub fn from_store(e: StoreError, plural: &'static str, name: &str) -> Self {
        let name = name.to_string();
        match e {
            StoreError::NotFound(_) => ApiError::NotFound { plural, name },
            StoreError::AlreadyExists(_) => ApiError::AlreadyExists { plural, name },
            StoreError::Conflict { .. } => ApiError::Conflict { plural, name },
            StoreError::Compacted { requested, .. } => ApiError::Expired(requested),
            StoreError::Backend(m) => ApiError::Internal(m),
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        let message = e.to_string();
        match e {
            ApiError::Invalid { .. } | ApiError::BadRequest(_) => Status::invalid_argument(message),
            ApiError::NotFound { .. } => Status::not_found(message),
            ApiError::AlreadyExists { .. } => Status::already_exists(message),
            ApiError::Conflict { .. } | ApiError::BindConflict { .. } => Status::aborted(message),
            ApiError::Expired(_) => Status::out_of_range(message),
            ApiError::TooLargeResourceVersion {
                retry_after_seconds,
                ..
            } => {
                let mut status = Status::deadline_exceeded(message);
                if let Ok(v) = retry_after_seconds.to_string().parse() {
                    status.metadata_mut().insert("retry-after", v);
                }
                status
            }
            ApiError::Precondition(_) | ApiError::Taken { .. } => {
                Status::failed_precondition(message)
            }
            ApiError::Exhausted(_) | ApiError::TooManyRequests { .. } => {
                Status::resource_exhausted(message)
            }
            ApiError::Unauthenticated(_) => Status::unauthenticated(message),
            ApiError::Forbidden(_) => Status::permission_denied(message),
            ApiError::Internal(_) => {
                tracing::error!(error = %message, "internal error");
                Status::internal(message)
            }
        }
    }
}
