//! Warnings an API call returns beside its answer (Kubernetes' `Warning:` response header, as
//! kubectl prints them): admission links add them with [`warn`] while a request is served inside
//! [`collect`], and the gRPC service puts them in the response's `warning` metadata
//! ([`into_response`]), one entry each.
//!
//! Outside a [`collect`] scope (the controllers' own writes) a warning is only logged at debug.
//!
//! Must not: carry errors (a refused write is an `ApiError`), or anything secret: warnings reach
//! the client as they are written.

use std::cell::RefCell;
use std::future::Future;

/// The gRPC metadata key warnings travel in.
pub const METADATA_KEY: &str = "warning";

tokio::task_local! {
    static WARNINGS: RefCell<Vec<String>>;
}

/// Runs `call`, returning its output and the warnings added while it ran.
pub async fn collect<F: Future>(call: F) -> (F::Output, Vec<String>) {
    WARNINGS
        .scope(RefCell::new(Vec::new()), async {
            let out = call.await;
            let warnings = WARNINGS.with(|w| w.take());
            (out, warnings)
        })
        .await
}

/// Adds a warning to the request being served (once: the same text twice is said once).
pub fn warn(message: impl Into<String>) {
    let message = message.into();
    let added = WARNINGS.try_with(|w| {
        let mut w = w.borrow_mut();
        if !w.contains(&message) {
            w.push(message.clone());
        }
    });
    if added.is_err() {
        tracing::debug!(warning = %message, "warning outside a request");
    }
}

/// `value` as a response with `warnings` in its metadata. Metadata is ASCII: other characters
/// are written as `\u{..}` escapes.
pub fn into_response<T>(value: T, warnings: Vec<String>) -> tonic::Response<T> {
    let mut response = tonic::Response::new(value);
    for w in warnings {
        let ascii: String = w
            .chars()
            .map(|c| {
                if c.is_ascii() && !c.is_ascii_control() {
                    c.to_string()
                } else {
                    c.escape_unicode().to_string()
                }
            })
            .collect();
        if let Ok(v) = ascii.parse() {
            response.metadata_mut().append(METADATA_KEY, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn warnings_reach_the_response_once_each() {
        let ((), warnings) = collect(async {
            warn("would violate PodSecurity \"restricted:latest\": x");
            tokio::task::yield_now().await;
            warn("would violate PodSecurity \"restricted:latest\": x");
            warn("naïve");
        })
        .await;
        assert_eq!(warnings.len(), 2);
        let response = into_response((), warnings);
        let values: Vec<&str> = response
            .metadata()
            .get_all(METADATA_KEY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(
            values,
            [
                "would violate PodSecurity \"restricted:latest\": x",
                "na\\u{ef}ve"
            ]
        );
        // Outside a request, nothing panics.
        warn("ignored");
    }
}
