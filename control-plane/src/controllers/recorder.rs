//! Events written by the controllers (`ScalingReplicaSet`, `SuccessfulCreate`, `NodeNotReady`,
//! ...), so that `skiff describe` tells what they did. A failed write is logged, never fatal.

use std::sync::Arc;

use skiff_api::Resource;
use skiff_api::events::{Reporter, object_event};
use skiff_api::v1::Event;

use crate::auth::Identity;
use crate::registry::Registry;
use crate::store::Store;

#[derive(Clone)]
pub struct Recorder {
    component: &'static str,
    events: Registry<Event>,
}

impl Recorder {
    pub fn new(store: Arc<dyn Store>, component: &'static str) -> Self {
        Self {
            component,
            events: Registry::new(store),
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
        if let Err(e) = self.events.create(&Identity::Admin, event).await {
            tracing::debug!(error = %e, reason, "recording an event");
        }
    }
}
