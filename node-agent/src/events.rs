//! Events the agent records about its pods (`Started`, `Failed`, `BackOff`, `Killing`), as
//! kubelet does, so that `skiff describe pod` tells what happened. Recording never blocks the
//! sync loop: each event is written by a task of its own, and a failure is only logged.

use skiff_api::ResourceExt;
use skiff_api::client::{Api, Transport};
use skiff_api::v1::{Event, EventSource, ObjectMeta, ObjectReference, Pod};

/// Writes events for one node.
#[derive(Clone)]
pub struct Recorder {
    transport: Transport,
    node: String,
}

impl Recorder {
    pub fn new(transport: Transport, node: &str) -> Self {
        Self {
            transport,
            node: node.to_string(),
        }
    }

    /// Records `reason: message` about `pod` (and its container, if given).
    pub fn pod(
        &self,
        pod: &Pod,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        message: String,
    ) {
        let now = skiff_api::time::now();
        let event = Event {
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
                component: "skiff-agent".into(),
                host: self.node.clone(),
            }),
            first_timestamp: Some(now),
            last_timestamp: Some(now),
            count: 1,
            r#type: if warning { "Warning" } else { "Normal" }.into(),
            reporting_component: "skiff-agent".into(),
            reporting_instance: self.node.clone(),
            ..Default::default()
        };
        let api: Api<Event> = Api::new(self.transport.clone(), pod.namespace());
        tokio::spawn(async move {
            if let Err(e) = api.create(event).await {
                tracing::debug!(error = %e, "recording event");
            }
        });
    }
}
