//! The shim's spans: one per task Create and Start, in the trace the bundle names (annotation
//! `skiff.dev/traceparent`, written by a skiff agent from its pod sync), and one around the
//! guest's instantiation. Exported when the agent gave the shim its collector
//! (`SKIFF_OTLP_ENDPOINT`, see [`crate::logging`]).
//!
//! Must not: put anything of the task but its id in a span.

use std::path::Path;

/// The `traceparent` annotation of the bundle at `bundle` (its `config.json`), if any.
fn bundle_traceparent(bundle: &Path) -> Option<String> {
    let text = std::fs::read(bundle.join("config.json")).ok()?;
    let spec: serde_json::Value = serde_json::from_slice(&text).ok()?;
    spec.get("annotations")?
        .get(skiff_telemetry::POD_ANNOTATION)?
        .as_str()
        .map(str::to_string)
}

/// The span of task API call `op` (`create task`, `start task`) on task `id` of `bundle`.
pub fn task_span(op: &'static str, id: &str, bundle: &Path) -> tracing::Span {
    let span = tracing::info_span!("task", "otel.name" = op, "otel.kind" = "server", task = %id);
    if let Some(parent) = bundle_traceparent(bundle) {
        skiff_telemetry::set_parent(&span, &parent);
    }
    span
}

/// Marks `span` failed when `result` is an error (its message stays in the shim's log).
pub fn record<T, E>(span: &tracing::Span, result: &Result<T, E>) {
    if result.is_err() {
        span.record("otel.status_code", "ERROR");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_names_the_trace() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(bundle_traceparent(dir.path()), None);
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::json!({"annotations": {skiff_telemetry::POD_ANNOTATION: tp}}).to_string(),
        )
        .expect("write");
        assert_eq!(bundle_traceparent(dir.path()).as_deref(), Some(tp));
    }
}
