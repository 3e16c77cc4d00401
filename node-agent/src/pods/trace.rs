//! The span of one pod sync (a worker's reconcile): in the pod's own trace while the pod is
//! starting (some container not yet started once), so that a pod's start reads as one trace
//! from its create request through the scheduler's bind to this sync and the shim's create and
//! start (the bundle carries the sync's `traceparent` to the shim); a trace of its own after
//! that, so that a pod running for weeks does not grow one trace without end.
//!
//! Must not: put anything of the pod in the span but its namespace, name and uid.

use skiff_api::ResourceExt;
use skiff_api::v1::Pod;

/// The span of a sync of `pod`; `starting`: some container of it has not started yet.
pub fn sync_span(pod: &Pod, starting: bool) -> tracing::Span {
    let span = tracing::info_span!(
        "pod_sync",
        "otel.name" = "sync pod",
        namespace = %pod.namespace(),
        name = %pod.name(),
        uid = %pod.meta().uid,
    );
    if starting && let Some(parent) = pod.meta().annotations.get(skiff_telemetry::POD_ANNOTATION) {
        skiff_telemetry::set_parent(&span, parent);
    }
    span
}
