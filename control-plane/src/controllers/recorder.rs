//! Events written by the controllers (`ScalingReplicaSet`, `SuccessfulCreate`, `NodeNotReady`,
//! ...), so that `skiff describe` tells what they did. A failed write is logged, never fatal.
//! Repeats are merged ([`skiff_api::events::correlator`]): each recorder (one per component)
//! keeps its own correlator, and writes one event at a time so that a repeat always finds the
//! Event it counts on.

use std::sync::Arc;

use skiff_api::Resource;
use skiff_api::events::correlator::{self, Correlator, EventSink};
use skiff_api::events::{Reporter, object_event};
use skiff_api::v1::Event;

use crate::auth::Identity;
use crate::error::ApiError;
use crate::registry::Registry;
use crate::store::Store;

#[derive(Clone)]
pub struct Recorder {
    component: &'static str,
    events: Registry<Event>,
    correlator: Arc<tokio::sync::Mutex<Correlator>>,
}

impl Recorder {
    pub fn new(store: Arc<dyn Store>, component: &'static str) -> Self {
        Self {
            component,
            events: Registry::new(store),
            correlator: Default::default(),
        }
    }

    pub async fn normal<K: Resource>(&self, obj: &K, reason: &str, message: String) {
        self.write(obj, false, reason, message).await;
    }

    pub async fn warning<K: Resource>(&self, obj: &K, reason: &str, message: String) {
        self.write(obj, true, reason, message).await;
    }

    async fn write<K: Resource>(&self, obj: &K, warning: bool, reason: &str, message: String) {
        let reporter = Reporter {
            component: self.component,
            host: "",
        };
        let event = object_event(reporter, obj, warning, reason, message);
        let mut correlator = self.correlator.lock().await;
        if let Err(e) = correlator::record(&mut correlator, &self.events, event).await {
            tracing::debug!(error = %e, reason, "recording an event");
        }
    }
}

impl EventSink for Registry<Event> {
    type Error = ApiError;

    async fn create(&self, event: Event) -> Result<Event, ApiError> {
        Registry::create(self, &Identity::Admin, event).await
    }

    async fn update(&self, event: Event) -> Result<Event, ApiError> {
        Registry::update(self, &Identity::Admin, event).await
    }

    fn is_not_found(error: &ApiError) -> bool {
        matches!(error, ApiError::NotFound { .. })
    }
}
