//! A span per function request, in the caller's trace when it sends a W3C `traceparent`
//! header: its method, path (never the query, which may carry a token) and status code.
//!
//! Must not: put headers other than `traceparent`, the query or a body in the span.

/// The span of `req` (the server's side of an HTTP call).
pub fn request_span<B>(req: &http::Request<B>) -> tracing::Span {
    let span = tracing::info_span!(
        "function_request",
        "otel.name" = %req.method(),
        "otel.kind" = "server",
        "http.request.method" = %req.method(),
        "url.path" = %req.uri().path(),
        "http.response.status_code" = tracing::field::Empty,
        "otel.status_code" = tracing::field::Empty,
    );
    if let Some(parent) = req
        .headers()
        .get(skiff_telemetry::context::HEADER)
        .and_then(|v| v.to_str().ok())
    {
        skiff_telemetry::set_parent(&span, parent);
    }
    span
}

/// Records the response's status on `span` (5xx: the span failed).
pub fn record_status(span: &tracing::Span, status: http::StatusCode) {
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}
