//! The `Scheduled` events (`Successfully assigned default/web-1 to node-1`, as kube-scheduler
//! writes them), written off the bind path: a bind never waits for its event. They go through a
//! bounded queue to one writer task that writes up to [`WRITERS`] at once (the store's group
//! commit shares their fsyncs with the binds'); when the queue is full the event is dropped and
//! logged, as client-go's event broadcaster drops what it cannot keep up with — an event is
//! history for people, never state anything depends on.
//!
//! Must not: block the scheduler or fail a bind.

use std::sync::Arc;

use futures::StreamExt;
use skiff_api::ResourceExt;
use skiff_api::v1::{Event, Pod};
use tokio::sync::mpsc;

use crate::auth::Identity;
use crate::registry::Registry;
use crate::store::Store;

/// Events waiting to be written; more are dropped.
pub const QUEUE: usize = 1000;
/// Event writes in flight at once.
pub const WRITERS: usize = 16;

/// The sending side; the writer task ends when it is dropped.
#[derive(Clone)]
pub struct ScheduledEvents {
    queue: mpsc::Sender<Event>,
}

impl ScheduledEvents {
    /// Starts the writer (on the current tokio runtime).
    pub fn spawn(store: Arc<dyn Store>) -> Self {
        let (queue, rx) = mpsc::channel::<Event>(QUEUE);
        let events: Registry<Event> = Registry::new(store);
        tokio::spawn(async move {
            tokio_stream::wrappers::ReceiverStream::new(rx)
                .for_each_concurrent(WRITERS, |event| {
                    let events = events.clone();
                    async move {
                        if let Err(e) = events.create(&Identity::Admin, event).await {
                            tracing::debug!(error = %e, "recording a Scheduled event");
                        }
                    }
                })
                .await;
        });
        Self { queue }
    }

    /// Queues `Scheduled` for `pod`, bound to `node`.
    pub fn scheduled(&self, pod: &Pod, node: &str) {
        let event = skiff_api::events::pod_event(
            skiff_api::events::Reporter {
                component: super::COMPONENT,
                host: "",
            },
            pod,
            None,
            false,
            "Scheduled",
            message(pod, node),
        );
        if self.queue.try_send(event).is_err() {
            tracing::debug!(pod = %pod.name(), "event queue full: a Scheduled event dropped");
        }
    }
}

/// kube-scheduler's message.
pub fn message(pod: &Pod, node: &str) -> String {
    format!(
        "Successfully assigned {}/{} to {node}",
        pod.namespace(),
        pod.name()
    )
}
