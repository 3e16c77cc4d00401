//! The gRPC side of the write path: one generic handler per kind that authorizes the caller and
//! hands the request to the kind's [`Registry`], where the rules of the API live.
//!
//! Authorization sees the namespace the request acts in (a node may renew Leases in
//! `kube-node-lease` only); a list or watch across namespaces acts in none.
//!
//! Must not: build store keys, apply kind rules or touch the store: the registry does.

use skiff_api::v1::{DeleteRequest, ListMeta, ListRequest, WatchRequest};
use tokio::sync::mpsc;

use crate::auth::{Identity, Verb, authorize};
use crate::error::ApiError;
use crate::registry::{Registry, Strategy};
use crate::store::Store;

/// The namespace a write of `obj` lands in (`default` when left out; empty if cluster-scoped).
fn namespace_of<K: Strategy>(obj: &K) -> String {
    use skiff_api::ResourceExt;
    Registry::<K>::namespace_of(obj.namespace())
}

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
        authorize(who, Verb::Create, K::KIND, &namespace_of(&obj))?;
        self.registry.create(who, obj).await
    }

    pub async fn get(&self, who: &Identity, namespace: &str, name: &str) -> Result<K, ApiError> {
        authorize(
            who,
            Verb::Get,
            K::KIND,
            &Registry::<K>::namespace_of(namespace),
        )?;
        self.registry.get(namespace, name).await
    }

    pub async fn list(
        &self,
        who: &Identity,
        req: &ListRequest,
    ) -> Result<(Vec<K>, ListMeta), ApiError> {
        authorize(who, Verb::List, K::KIND, &req.namespace)?;
        self.registry.list(req).await
    }

    pub async fn update(&self, who: &Identity, obj: K) -> Result<K, ApiError> {
        authorize(who, Verb::Update, K::KIND, &namespace_of(&obj))?;
        self.registry.update(who, obj).await
    }

    pub async fn update_status(&self, who: &Identity, obj: K) -> Result<K, ApiError> {
        authorize(who, Verb::UpdateStatus, K::KIND, &namespace_of(&obj))?;
        self.registry.update_status(who, obj).await
    }

    pub async fn delete(&self, who: &Identity, req: &DeleteRequest) -> Result<K, ApiError> {
        let namespace = Registry::<K>::namespace_of(&req.namespace);
        authorize(who, Verb::Delete, K::KIND, &namespace)?;
        self.registry.delete(who, req).await
    }

    /// Watch events as (type, object), ending with an error if the watch cannot continue.
    pub async fn watch(
        &self,
        who: &Identity,
        req: &WatchRequest,
    ) -> Result<mpsc::Receiver<Result<(&'static str, K), ApiError>>, ApiError> {
        authorize(who, Verb::Watch, K::KIND, &req.namespace)?;
        self.registry.watch(req).await
    }
}
