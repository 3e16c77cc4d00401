//! Events the agent records about its pods (`Pulling`, `Pulled`, `Created`, `Started`, `Failed`,
//! `BackOff`, `Killing`, `Unhealthy`, `OOMKilled`), as kubelet does, so that `skiff describe pod`
//! tells what happened. Recording never blocks the sync loop: events go through a bounded queue
//! ([`QUEUE`]) to one writer task per node, which writes them in the order they were recorded
//! (so `Created` is stored before `Started`, and readers that sort by resourceVersion within a
//! second see them in order). A full queue drops the event and a failed write is only logged, as
//! client-go's broadcaster does: events are history for people, never state. The writer merges
//! repeats ([`skiff_api::events::correlator`]): a crash-looping container's `BackOff` is one
//! Event whose count grows, updated in place.

use skiff_api::ResourceExt;
use skiff_api::client::{Api, Transport};
use skiff_api::events::correlator::{self, Correlator, EventSink};
use skiff_api::v1::{Event, Pod};
use tokio::sync::mpsc;

/// Events waiting to be written; more are dropped.
pub const QUEUE: usize = 1000;

/// Writes events for one node.
#[derive(Clone)]
pub struct Recorder {
    node: String,
    queue: mpsc::Sender<Event>,
}

impl Recorder {
    /// A recorder whose writer runs on the current tokio runtime until every clone is dropped.
    pub fn new(transport: Transport, node: &str) -> Self {
        let (queue, mut rx) = mpsc::channel::<Event>(QUEUE);
        tokio::spawn(async move {
            let mut correlator = Correlator::default();
            let sink = Sink { transport };
            while let Some(event) = rx.recv().await {
                if let Err(e) = correlator::record(&mut correlator, &sink, event).await {
                    tracing::debug!(error = %e, "recording event");
                }
            }
        });
        Self {
            node: node.to_string(),
            queue,
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
        if self.queue.try_send(event).is_err() {
            tracing::debug!(pod = %pod.name(), reason, "event queue full: an event dropped");
        }
    }
}

/// Events written through the API server, each in its own namespace.
struct Sink {
    transport: Transport,
}

impl Sink {
    fn api(&self, event: &Event) -> Api<Event> {
        Api::new(self.transport.clone(), event.namespace())
    }
}

impl EventSink for Sink {
    type Error = tonic::Status;

    async fn create(&self, event: Event) -> Result<Event, tonic::Status> {
        self.api(&event).create(event).await
    }

    async fn update(&self, event: Event) -> Result<Event, tonic::Status> {
        self.api(&event).update(event).await
    }

    fn is_not_found(error: &tonic::Status) -> bool {
        error.code() == tonic::Code::NotFound
    }
}
