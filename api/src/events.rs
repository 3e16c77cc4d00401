//! Building Events, the one shape every reporter (scheduler, agents, controllers) writes:
//! `generateName: <object>.`, the object as involvedObject (for a pod, a container as its
//! fieldPath), first/last timestamp now, count 1. Events about cluster-scoped objects (Nodes)
//! live in `default`, as Kubernetes keeps them. Repeats are merged into one Event by
//! [`correlator`] before they are written.

pub mod correlator;

use crate::v1::{Event, EventSource, ObjectMeta, ObjectReference, Pod};
use crate::{Resource, ResourceExt};

/// Who reports: `skiff-scheduler`, or `skiff-agent` on host `node-1`.
#[derive(Debug, Clone, Copy)]
pub struct Reporter<'a> {
    pub component: &'a str,
    pub host: &'a str,
}

/// A Normal (or, with `warning`, Warning) event `reason: message` about `pod`.
pub fn pod_event(
    reporter: Reporter<'_>,
    pod: &Pod,
    container: Option<&str>,
    warning: bool,
    reason: &str,
    message: String,
) -> Event {
    let mut event = object_event(reporter, pod, warning, reason, message);
    if let (Some(c), Some(io)) = (container, event.involved_object.as_mut()) {
        io.field_path = format!("spec.containers{{{c}}}");
    }
    event
}

/// A Normal (or Warning) event `reason: message` about any object.
pub fn object_event<K: Resource>(
    reporter: Reporter<'_>,
    obj: &K,
    warning: bool,
    reason: &str,
    message: String,
) -> Event {
    let now = crate::time::now();
    let namespace = if K::NAMESPACED {
        obj.namespace().to_string()
    } else {
        "default".to_string()
    };
    Event {
        metadata: Some(ObjectMeta {
            generate_name: format!("{}.", obj.name()),
            namespace,
            ..Default::default()
        }),
        involved_object: Some(ObjectReference {
            kind: K::KIND.into(),
            api_version: K::API_VERSION.into(),
            namespace: obj.namespace().to_string(),
            name: obj.name().to_string(),
            uid: obj.meta().uid.clone(),
            ..Default::default()
        }),
        reason: reason.to_string(),
        message,
        source: Some(EventSource {
            component: reporter.component.to_string(),
            host: reporter.host.to_string(),
        }),
        first_timestamp: Some(now),
        last_timestamp: Some(now),
        count: 1,
        r#type: if warning { "Warning" } else { "Normal" }.into(),
        reporting_component: reporter.component.to_string(),
        reporting_instance: reporter.host.to_string(),
        ..Default::default()
    }
}
