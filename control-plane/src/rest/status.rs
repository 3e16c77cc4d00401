//! Errors as Kubernetes' `metav1.Status`: the HTTP code, `reason` and `details` Kubernetes gives
//! for each [`ApiError`], so that kubectl prints `Error from server (NotFound): pods "x" not
//! found` and client libraries branch on the reason.
//!
//! Must not: decide what is an error (the handlers and the registry do).

use serde_json::{Value, json};

use super::{Body, Response};
use crate::error::ApiError;

/// A failed REST request, ready to be written as a `metav1.Status`.
#[derive(Debug, Clone)]
pub struct RestError {
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `Forbidden`, ...
    pub reason: &'static str,
    pub message: String,
    /// `details` (name, group, kind, causes), when known (boxed: errors stay small).
    pub details: Option<Box<Value>>,
    /// Seconds, sent as `Retry-After` (429, 504).
    pub retry_after: Option<u64>,
}

impl RestError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "NotFound", message)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    /// The error of an API call on `kind` objects (`group`, plural `resource`) named `name`.
    pub fn from_api(e: ApiError, group: &str, kind: &str, name: &str) -> Self {
        // Kubernetes names the resource with its group: `deployments.apps "web" not found`.
        let message = match (&e, group) {
            (_, "") => e.to_string(),
            (
                ApiError::NotFound { plural, .. }
                | ApiError::AlreadyExists { plural, .. }
                | ApiError::Conflict { plural, .. },
                group,
            ) => e
                .to_string()
                .replacen(plural, &format!("{plural}.{group}"), 1),
            _ => e.to_string(),
        };
        let details = |causes: Option<Value>| {
            let mut d = json!({ "name": name, "group": group, "kind": kind });
            if let Some(c) = causes {
                d["causes"] = c;
            }
            d
        };
        match e {
            ApiError::Invalid { errors, name, .. } | ApiError::Taken { errors, name, .. } => {
                let causes: Vec<Value> = errors
                    .0
                    .iter()
                    .map(|f| {
                        json!({
                            "reason": cause_reason(&f.message),
                            "message": f.message,
                            "field": f.path,
                        })
                    })
                    .collect();
                let mut d = json!({ "name": name, "group": group, "kind": kind, "causes": causes });
                if name.is_empty() {
                    d.as_object_mut().map(|m| m.remove("name"));
                }
                RestError::new(422, "Invalid", message).with_details(d)
            }
            ApiError::BadRequest(_) => RestError::bad_request(message),
            ApiError::NotFound { plural, name } => RestError::new(404, "NotFound", message)
                .with_details(json!({ "name": name, "group": group, "kind": plural })),
            ApiError::AlreadyExists { plural, name } => {
                RestError::new(409, "AlreadyExists", message)
                    .with_details(json!({ "name": name, "group": group, "kind": plural }))
            }
            ApiError::Conflict { plural, name } => RestError::new(409, "Conflict", message)
                .with_details(json!({ "name": name, "group": group, "kind": plural })),
            ApiError::BindConflict { .. } => {
                RestError::new(409, "Conflict", message).with_details(details(None))
            }
            ApiError::Expired(_) => RestError::new(410, "Expired", message),
            ApiError::TooLargeResourceVersion {
                retry_after_seconds,
                ..
            } => {
                // Kubernetes' NewTooLargeResourceVersionError: a Timeout whose one cause names it.
                let mut e = RestError::new(504, "Timeout", message).with_details(json!({
                    "causes": [{
                        "reason": "ResourceVersionTooLarge",
                        "message": "Too large resource version",
                    }],
                    "retryAfterSeconds": retry_after_seconds,
                }));
                e.retry_after = (retry_after_seconds > 0).then_some(u64::from(retry_after_seconds));
                e
            }
            ApiError::Precondition(m) if m.contains("being terminated") => {
                RestError::new(403, "Forbidden", m).with_details(details(Some(json!([{
                    "reason": "NamespaceTerminating",
                    "message": message,
                    "field": "metadata.namespace",
                }]))))
            }
            ApiError::Precondition(_) => {
                RestError::new(409, "Conflict", message).with_details(details(None))
            }
            ApiError::Exhausted(_) => RestError::internal(message),
            ApiError::TooManyRequests { causes, .. } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|(reason, message)| json!({ "reason": reason, "message": message }))
                    .collect();
                let mut d = details(None);
                if !causes.is_empty() {
                    d["causes"] = json!(causes);
                }
                RestError::new(429, "TooManyRequests", message).with_details(d)
            }
            ApiError::Unauthenticated(_) => RestError::new(401, "Unauthorized", "Unauthorized"),
            ApiError::Forbidden(_) => {
                RestError::new(403, "Forbidden", message).with_details(details(None))
            }
            ApiError::Internal(_) => {
                tracing::error!(error = %message, "internal error");
                RestError::internal(message)
            }
        }
    }

    /// A refusal of the gate (authentication, rate limit) as the REST error Kubernetes gives.
    pub fn from_grpc(status: &tonic::Status) -> Self {
        match status.code() {
            tonic::Code::Unauthenticated => RestError::new(401, "Unauthorized", "Unauthorized"),
            tonic::Code::ResourceExhausted => {
                let mut e = RestError::new(429, "TooManyRequests", status.message());
                e.retry_after = status
                    .metadata()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .or(Some(1));
                if let Some(s) = e.retry_after {
                    e.details = Some(Box::new(json!({ "retryAfterSeconds": s })));
                }
                e
            }
            tonic::Code::PermissionDenied => RestError::new(403, "Forbidden", status.message()),
            tonic::Code::NotFound => RestError::not_found(status.message()),
            tonic::Code::InvalidArgument => RestError::bad_request(status.message()),
            _ => RestError::internal(status.message()),
        }
    }

    /// The gRPC status of the same failure, for the audit log.
    pub fn to_grpc(&self) -> tonic::Status {
        let code = match self.code {
            400 | 422 | 415 => tonic::Code::InvalidArgument,
            401 => tonic::Code::Unauthenticated,
            403 => tonic::Code::PermissionDenied,
            404 => tonic::Code::NotFound,
            405 => tonic::Code::Unimplemented,
            409 if self.reason == "AlreadyExists" => tonic::Code::AlreadyExists,
            409 => tonic::Code::Aborted,
            410 => tonic::Code::OutOfRange,
            429 => tonic::Code::ResourceExhausted,
            504 => tonic::Code::DeadlineExceeded,
            _ => tonic::Code::Internal,
        };
        tonic::Status::new(code, self.message.clone())
    }

    /// The `metav1.Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = (**d).clone();
        }
        status
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response {
        let mut response = json_response(self.code, &self.to_status());
        if let Some(s) = self.retry_after
            && let Ok(v) = http::HeaderValue::from_str(&s.to_string())
        {
            response.headers_mut().insert(http::header::RETRY_AFTER, v);
        }
        response
    }
}

/// A field error's `reason` as Kubernetes' validation names it, guessed from its message.
fn cause_reason(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.starts_with("required") || m.contains("is required") || m.contains("must be specified") {
        "FieldValueRequired"
    } else if m.contains("unsupported value") || m.contains("must be one of") {
        "FieldValueNotSupported"
    } else if m.contains("forbidden") || m.contains("immutable") || m.contains("may not") {
        "FieldValueForbidden"
    } else if m.contains("duplicate") {
        "FieldValueDuplicate"
    } else if m.contains("too long") || m.contains("too many") {
        "FieldValueTooLong"
    } else {
        "FieldValueInvalid"
    }
}

/// A JSON response with status `code`.
pub fn json_response(code: u16, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    http::Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::new(http_body_util::Full::new(bytes::Bytes::from(
            body,
        ))))
        .unwrap_or_else(|_| http::Response::new(Body::empty()))
}

/// A successful `metav1.Status` (what a deletecollection answers, for one).
pub fn success(details: Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::validation::{FieldError, FieldErrors};

    #[test]
    fn api_errors_get_kubernetes_codes_and_reasons() {
        let nf = RestError::from_api(
            ApiError::NotFound {
                plural: "pods",
                name: "x".into(),
            },
            "",
            "Pod",
            "x",
        );
        assert_eq!((nf.code, nf.reason), (404, "NotFound"));
        assert_eq!(nf.message, "pods \"x\" not found");
        assert_eq!(nf.to_status()["details"]["kind"], "pods");
        let invalid = RestError::from_api(
            ApiError::Invalid {
                kind: "Pod",
                name: "web".into(),
                errors: FieldErrors(vec![FieldError {
                    path: "spec.containers[0].image".into(),
                    message: "required".into(),
                }]),
            },
            "",
            "Pod",
            "web",
        );
        assert_eq!((invalid.code, invalid.reason), (422, "Invalid"));
        let status = invalid.to_status();
        assert_eq!(
            status["details"]["causes"][0]["field"],
            "spec.containers[0].image"
        );
        assert_eq!(
            status["details"]["causes"][0]["reason"],
            "FieldValueRequired"
        );
        let conflict = RestError::from_api(
            ApiError::Conflict {
                plural: "pods",
                name: "x".into(),
            },
            "",
            "Pod",
            "x",
        );
        assert_eq!((conflict.code, conflict.reason), (409, "Conflict"));
        let grouped = RestError::from_api(
            ApiError::AlreadyExists {
                plural: "deployments",
                name: "web".into(),
            },
            "apps",
            "Deployment",
            "web",
        );
        assert_eq!(grouped.message, "deployments.apps \"web\" already exists");
        let gone = RestError::from_api(ApiError::Expired(3), "", "Pod", "");
        assert_eq!((gone.code, gone.reason), (410, "Expired"));
        let too_large = RestError::from_api(
            ApiError::TooLargeResourceVersion {
                requested: 90,
                current: 42,
                retry_after_seconds: 1,
            },
            "",
            "Pod",
            "",
        );
        assert_eq!((too_large.code, too_large.reason), (504, "Timeout"));
        let status = too_large.to_status();
        assert_eq!(
            status["message"],
            "Timeout: Too large resource version: 90, current: 42"
        );
        assert_eq!(
            status["details"]["causes"][0]["reason"],
            "ResourceVersionTooLarge"
        );
        assert_eq!(status["details"]["retryAfterSeconds"], 1);
        assert_eq!(too_large.to_grpc().code(), tonic::Code::DeadlineExceeded);
        assert_eq!(
            too_large.into_response().headers()[http::header::RETRY_AFTER],
            "1"
        );
        let limited = RestError::from_grpc(&{
            let mut s = tonic::Status::resource_exhausted("slow down");
            s.metadata_mut().insert("retry-after", "2".parse().unwrap());
            s
        });
        assert_eq!((limited.code, limited.retry_after), (429, Some(2)));
        let response = limited.into_response();
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "2");
    }
}
