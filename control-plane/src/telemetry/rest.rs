//! A span per REST request (HTTP/1.1 and HTTP/2 alike), opened by the router around its
//! routing: named `GET`, `POST`, ... until the kind's handler names what it acted on (`list
//! pods`, see [`super::request_object`]), ending with the HTTP status code.
//!
//! Must not: read bodies, or put the URL's query (it may hold a label selector a user typed, or
//! a watch's bookmark) or any header but `traceparent` in the span.

/// The span of a REST request (enter it, or instrument the request's future with it).
pub fn span<B>(req: &http::Request<B>) -> tracing::Span {
    let span = super::request_span!(req.method().as_str(), "http");
    super::continue_trace(&span, req.headers());
    span
}

/// Records the response's status on `span`.
pub fn record_status(span: &tracing::Span, status: http::StatusCode) {
    span.record("code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}
