//! Traces of the API server: a span per API request (gRPC in [`grpc`], REST in [`rest`]), named
//! for what it does (`create pods`, from the method or the URL: a span's name is fixed once it
//! starts) with its verb, resource, namespace, name and code, and the trace context a pod
//! carries from its create request on ([`stamp_pod`]).
//!
//! A request that sends a W3C `traceparent` (header or gRPC metadata) continues that trace.
//! The process's subscriber and exporter are `skiff-telemetry`'s (installed by the CLI).
//!
//! Must not: put a request or response body, a header value other than `traceparent`, or any
//! field of an object but its namespace and name in a span.

pub mod grpc;
pub mod rest;

use skiff_api::v1::ObjectMeta;

/// The fields every request span has (filled in as they become known).
macro_rules! request_span {
    ($system:expr, $verb:expr, $resource:expr) => {
        tracing::info_span!(
            "api_request",
            "otel.name" = %format_args!("{} {}", $verb, $resource),
            "otel.kind" = "server",
            "rpc.system" = $system,
            verb = %$verb,
            resource = %$resource,
            namespace = tracing::field::Empty,
            name = tracing::field::Empty,
            code = tracing::field::Empty,
            "rpc.grpc.status_code" = tracing::field::Empty,
            "otel.status_code" = tracing::field::Empty,
        )
    };
}
pub(crate) use request_span;

/// Joins `span` to the trace of a `traceparent` the caller sent.
fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    if let Some(parent) = headers
        .get(skiff_telemetry::context::HEADER)
        .and_then(|v| v.to_str().ok())
    {
        skiff_telemetry::set_parent(span, parent);
    }
}

/// Records on the current request span the namespace and name a kind's call acted on (the
/// audit's object; a gRPC call's are in its body). Called where the handlers write their audit
/// event (`server::limits::Call::done`).
pub fn request_object(namespace: &str, name: &str) {
    let span = tracing::Span::current();
    if !namespace.is_empty() {
        span.record("namespace", namespace);
    }
    if !name.is_empty() {
        span.record("name", name);
    }
}

/// Gives a pod being created the `traceparent` of the request creating it (annotation
/// [`skiff_telemetry::POD_ANNOTATION`]), so that its scheduling, its node's sync and its shim's
/// create and start join the request's trace. Only when this server exports traces, and never
/// over one the creator set (a client's own trace wins).
pub fn stamp_pod(meta: &mut ObjectMeta) {
    if !skiff_telemetry::exporting()
        || meta
            .annotations
            .contains_key(skiff_telemetry::POD_ANNOTATION)
    {
        return;
    }
    if let Some(traceparent) = skiff_telemetry::current_traceparent() {
        meta.annotations
            .insert(skiff_telemetry::POD_ANNOTATION.to_string(), traceparent);
    }
}

/// The span of the scheduler's bind of a pod to `node`, in the pod's trace when it carries one.
pub fn bind_span(pod: &skiff_api::v1::Pod, node: &str) -> tracing::Span {
    use skiff_api::ResourceExt;
    let span = tracing::info_span!(
        "bind_pod",
        "otel.name" = "schedule pod",
        namespace = %pod.namespace(),
        name = %pod.name(),
        node = %node,
    );
    if let Some(parent) = pod.meta().annotations.get(skiff_telemetry::POD_ANNOTATION) {
        skiff_telemetry::set_parent(&span, parent);
    }
    span
}
