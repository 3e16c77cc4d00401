//! Events the agent records about its pods (`Started`, `Failed`, `BackOff`, `Killing`), as
//! kubelet does, so that `skiff describe pod` tells what happened. Recording never blocks the
//! sync loop: each event is written by a task of its own, and a failure is only logged.

use skiff_api::ResourceExt;
use skiff_api::client::{Api, Transport};
use skiff_api::v1::{Event, Pod};

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
        let reporter = skiff_api::events::Reporter {
            component: "skiff-agent",
            host: &self.node,
        };
        let event =
            skiff_api::events::pod_event(reporter, pod, container, warning, reason, message);
        let api: Api<Event> = Api::new(self.transport.clone(), pod.namespace());
        tokio::spawn(async move {
            if let Err(e) = api.create(event).await {
                tracing::debug!(error = %e, "recording event");
            }
        });
    }
}
