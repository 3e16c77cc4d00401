//! W3C trace context (`traceparent: 00-TRACEID-SPANID-FLAGS`): what the current span's is, and
//! how a span joins the trace a `traceparent` names.
//!
//! A pod carries the trace of its create request in the annotation [`POD_ANNOTATION`], so that
//! the scheduler's bind, the agent's sync and the shim's create and start of its containers join
//! that one trace. A function request carries its own in the `traceparent` HTTP header.
//!
//! Must not: keep a trace context anywhere but the span it belongs to.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The pod annotation holding the `traceparent` of the request that created the pod.
pub const POD_ANNOTATION: &str = "skiff.dev/traceparent";

/// The HTTP header (and gRPC metadata key) of W3C trace context.
pub const HEADER: &str = "traceparent";

/// Parses a `traceparent` (version 00; later versions are read as 00, as the W3C spec asks).
pub fn parse(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2 || version == "ff" || !hex(version) {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    if !hex(trace) || !hex(span) || !hex(flags) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let cx = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    cx.is_valid().then_some(cx)
}

fn hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The `traceparent` of a span context.
pub fn format(cx: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        cx.trace_id(),
        cx.span_id(),
        cx.trace_flags().to_u8()
    )
}

/// The `traceparent` of the current span, if spans are made in this process (see
/// [`crate::otel_layer`]) and one is entered.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| format(sc))
}

/// Makes `span` a child of the span `traceparent` names (a remote parent). Whether it did:
/// false when the value is not a `traceparent`, or spans are not made here.
pub fn set_parent(span: &tracing::Span, traceparent: &str) -> bool {
    let Some(remote) = parse(traceparent) else {
        return false;
    };
    let cx = opentelemetry::Context::new().with_remote_span_context(remote);
    span.set_parent(cx).is_ok()
}

/// The trace id of a span context as the 32 lowercase hex digits `traceparent` shows.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let s = cx.span();
    let sc = s.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_bad_values_are_refused() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = parse(v).expect("valid");
        assert_eq!(format(&cx), v);
        assert!(cx.is_remote() && cx.is_sampled());
        // A later version may add fields; its first four are read.
        assert!(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x").is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
