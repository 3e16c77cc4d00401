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

#[cfg(test)]
mod tests {
    use skiff_api::ResourceExt;
    use skiff_api::v1::{DeleteRequest, ListRequest, Namespace, ObjectMeta};

    use super::*;
    use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};

    async fn events(registry: &Registry<Event>) -> Vec<Event> {
        let request = ListRequest {
            namespace: "default".into(),
            ..Default::default()
        };
        registry.list(&request).await.unwrap().0
    }

    #[tokio::test]
    async fn a_repeat_counts_on_the_stored_event_and_comes_back_after_a_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(&dir.path().join("store.redb"), EmbeddedOptions::default())
                .unwrap(),
        );
        let namespace = Namespace {
            metadata: Some(ObjectMeta {
                name: "default".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        Registry::<Namespace>::new(store.clone())
            .create(&Identity::Admin, namespace.clone())
            .await
            .unwrap();
        let recorder = Recorder::new(store.clone(), "node-lifecycle-controller");
        let registry: Registry<Event> = Registry::new(store);
        let said = "Node node-1 status is now: NodeNotReady";
        for _ in 0..3 {
            recorder
                .normal(&namespace, "NodeNotReady", said.to_string())
                .await;
        }
        recorder
            .normal(&namespace, "NodeReady", "ready".to_string())
            .await;
        let stored = events(&registry).await;
        assert_eq!(stored.len(), 2, "{stored:#?}");
        let repeated = stored.iter().find(|e| e.reason == "NodeNotReady").unwrap();
        assert_eq!(repeated.count, 3);
        assert_eq!(repeated.message, said);

        // Deleted (the TTL sweep): the next repeat creates it again, counting on.
        let request = DeleteRequest {
            namespace: "default".into(),
            name: repeated.meta().name.clone(),
            ..Default::default()
        };
        registry.delete(&Identity::Admin, &request).await.unwrap();
        recorder
            .normal(&namespace, "NodeNotReady", said.to_string())
            .await;
        let stored = events(&registry).await;
        let again: Vec<&Event> = stored
            .iter()
            .filter(|e| e.reason == "NodeNotReady")
            .collect();
        assert_eq!(again.len(), 1, "{stored:#?}");
        assert_eq!(again[0].count, 4);
    }
}
