//! `PodEvictionApi` (gRPC) and the authorized entry the REST `pods/eviction` route shares: a
//! caller needs `create` on `pods/eviction` (not `delete` on pods, as Kubernetes), then the
//! registry's [`Evictions`] rules decide (the pod's PodDisruptionBudget). An evicted pod gets a
//! Warning `Evicted` event (`Evicted through the Eviction API ...`), so `describe` says why it
//! went (Kubernetes says it in the pod's `DisruptionTarget` condition only; kubelet's
//! node-pressure evictions use the same reason).
//!
//! Must not: apply eviction rules of its own (the registry holds them) or touch the store.

use std::sync::Arc;

use skiff_api::v1::{Eviction, EvictionResult, Pod, pod_eviction_api_server::PodEvictionApi};
use tonic::{Request, Response, Status};

use super::limits::{Call, object_ref};
use crate::auth::{Attributes, Chain, Identity, Verb, identity};
use crate::error::ApiError;
use crate::registry::Registry;
use crate::registry::eviction::{Evicted, Evictions};
use crate::store::Store;

/// Authorized evictions (one per API server, shared by its gRPC and REST front ends).
#[derive(Clone)]
pub struct EvictionService {
    evictions: Evictions,
    authz: Chain,
    pods: Registry<Pod>,
    events: crate::controllers::recorder::Recorder,
}

impl EvictionService {
    pub fn new(store: Arc<dyn Store>, authz: Chain) -> Self {
        Self {
            evictions: Evictions::new(store.clone()),
            authz,
            pods: Registry::new(store.clone()),
            events: crate::controllers::recorder::Recorder::new(store, "skiff-apiserver"),
        }
    }

    /// Evicts pod `namespace/name` for `who`, as `eviction` asks.
    pub async fn evict(
        &self,
        who: &Identity,
        namespace: &str,
        name: &str,
        eviction: &Eviction,
    ) -> Result<EvictionResult, ApiError> {
        let namespace = Registry::<Pod>::namespace_of(namespace);
        let attrs = Attributes {
            verb: Verb::Create,
            kind: "Pod",
            namespace: &namespace,
            name,
            subresource: "eviction",
        };
        self.authz.check(who, &attrs)?;
        // The pod as it was, for its event (uid and all).
        let before = self.pods.get(&namespace, name).await.ok();
        let evicted = self
            .evictions
            .evict(who, &namespace, name, eviction)
            .await?;
        if let (Some(pod), Evicted::Deleted { budget }) = (&before, &evicted) {
            let message = match budget {
                Some(b) => format!(
                    "Evicted through the Eviction API (the disruption budget {b} allowed it)"
                ),
                None => "Evicted through the Eviction API".to_string(),
            };
            self.events.warning(pod, "Evicted", message).await;
        }
        let message = match evicted {
            Evicted::Deleted { budget: Some(b) } => {
                format!("pod {namespace}/{name} evicted (disruption budget {b})")
            }
            Evicted::Deleted { budget: None } => format!("pod {namespace}/{name} evicted"),
            Evicted::DryRun => format!("pod {namespace}/{name} evicted (dry run)"),
        };
        Ok(EvictionResult {
            status: "Success".into(),
            message,
        })
    }
}

#[tonic::async_trait]
impl PodEvictionApi for EvictionService {
    async fn evict(&self, req: Request<Eviction>) -> Result<Response<EvictionResult>, Status> {
        let who = identity(&req)?;
        let call = Call::of(&req);
        let eviction = req.into_inner();
        let meta = eviction.metadata.clone().unwrap_or_default();
        let (namespace, name) = (meta.namespace, meta.name);
        let result = EvictionService::evict(self, &who, &namespace, &name, &eviction)
            .await
            .map_err(Status::from);
        call.done(
            &who,
            "create",
            object_ref::<Pod>(&namespace, &name, "eviction", false),
            &result,
        );
        Ok(Response::new(result?))
    }
}
