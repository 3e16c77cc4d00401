//! The gRPC side of the write path: one generic handler per kind that authorizes the caller and
//! hands the request to the kind's [`Registry`], where the rules of the API live.
//!
//! Must not: build store keys, apply kind rules or touch the store: the registry does.

use skiff_api::v1::{DeleteRequest, ListMeta, ListRequest, WatchRequest};
use tokio::sync::mpsc;

use crate::auth::{Identity, Verb, authorize};
use crate::error::ApiError;
use crate::registry::{Registry, Strategy};
use crate::store::Store;

/// Authorized access to one kind.
pub struct Handler<K> {
    registry: Registry<K>,
}

impl<K> Clone for Handler<K> {
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
        }
    }
}

impl<K: Strategy> Handler<K> {
    pub fn new(store: std::sync::Arc<dyn Store>) -> Self {
        Self {
            registry: Registry::new(store),
        }
    }

    /// The registry behind the handler (for callers that have authorized on their own).
    pub fn registry(&self) -> &Registry<K> {
        &self.registry
    }

    pub async fn create(&self, who: &Identity, obj: K) -> Result<K, ApiError> {
        authorize(who, Verb::Create, K::KIND)?;
        self.registry.create(who, obj).await
    }

    pub async fn get(&self, who: &Identity, namespace: &str, name: &str) -> Result<K, ApiError> {
        authorize(who, Verb::Get, K::KIND)?;
        self.registry.get(namespace, name).await
    }

    pub async fn list(
        &self,
        who: &Identity,
        req: &ListRequest,
    ) -> Result<(Vec<K>, ListMeta), ApiError> {
        authorize(who, Verb::List, K::KIND)?;
        self.registry.list(req).await
    }

    pub async fn update(&self, who: &Identity, obj: K) -> Result<K, ApiError> {
        authorize(who, Verb::Update, K::KIND)?;
        self.registry.update(who, obj).await
    }

    pub async fn update_status(&self, who: &Identity, obj: K) -> Result<K, ApiError> {
        authorize(who, Verb::UpdateStatus, K::KIND)?;
        self.registry.update_status(who, obj).await
    }

    pub async fn delete(&self, who: &Identity, req: &DeleteRequest) -> Result<K, ApiError> {
        authorize(who, Verb::Delete, K::KIND)?;
        self.registry.delete(who, req).await
    }

    /// Watch events as (type, object), ending with an error if the watch cannot continue.
    pub async fn watch(
        &self,
        who: &Identity,
        req: &WatchRequest,
    ) -> Result<mpsc::Receiver<Result<(&'static str, K), ApiError>>, ApiError> {
        authorize(who, Verb::Watch, K::KIND)?;
        self.registry.watch(req).await
    }
}
