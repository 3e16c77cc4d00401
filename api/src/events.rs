//! Building Events about pods, the one shape every reporter (scheduler, agents, controllers)
//! writes: `generateName: <pod>.`, the pod as involvedObject (and a container as its fieldPath),
//! first/last timestamp now, count 1.

use crate::ResourceExt;
use crate::v1::{Event, EventSource, ObjectMeta, ObjectReference, Pod};

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
    let now = crate::time::now();
    Event {
        metadata: Some(ObjectMeta {
            generate_name: format!("{}.", pod.name()),
            namespace: pod.namespace().to_string(),
            ..Default::default()
        }),
        involved_object: Some(ObjectReference {
            kind: "Pod".into(),
            api_version: "v1".into(),
            namespace: pod.namespace().to_string(),
            name: pod.name().to_string(),
            uid: pod.meta().uid.clone(),
            field_path: container
                .map(|c| format!("spec.containers{{{c}}}"))
                .unwrap_or_default(),
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
