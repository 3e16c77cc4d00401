//! `KeyValueApi`: `wasi:keyvalue` for Wasm pods, called by node agents on behalf of the pods
//! they run, onto the registry's [`Buckets`].
//!
//! Each request names its pod (namespace, name, uid) and the node running it. The server works
//! only in that pod's namespace, and only if the pod exists with that uid, is bound to that node,
//! and is granted `keyvalue` (annotation `skiff.dev/wasi-interfaces`): a node reaches the
//! buckets of the namespaces of pods it runs, and of no other. (A node with a certificate is held to
//! its own name; a bootstrap token to the name the request gives.)
//! The admin may call it for any pod. Must not: touch the store but through [`Buckets`].

use skiff_api::host_interfaces::{Interface, grants};
use skiff_api::v1::*;
use tonic::{Request, Response, Status};

use crate::auth::{Attributes, Chain, Identity, Verb, identity};
use crate::error::ApiError;
use crate::registry::Registry;
use crate::registry::keyvalue::Buckets;

/// The service: the pods it checks callers against, and the buckets.
#[derive(Clone)]
pub struct KeyValueService {
    pub pods: Registry<Pod>,
    pub buckets: Buckets,
    pub authz: Chain,
}

impl KeyValueService {
    /// The namespace the caller may work in for `caller`'s pod.
    async fn namespace_of(
        &self,
        who: &Identity,
        caller: Option<&KeyValueCaller>,
    ) -> Result<String, ApiError> {
        let caller = caller
            .filter(|c| !c.namespace.is_empty() && !c.pod.is_empty())
            .ok_or_else(|| ApiError::BadRequest("caller: the pod is required".into()))?;
        let attrs = Attributes::new(Verb::Update, "KeyValue", &caller.namespace);
        self.authz.check(who, &attrs)?;
        let denied = |why: String| {
            ApiError::Forbidden(format!(
                "keyvalue for pod {}/{}: {why}",
                caller.namespace, caller.pod
            ))
        };
        let pod = match self.pods.get(&caller.namespace, &caller.pod).await {
            Ok(pod) => pod,
            Err(ApiError::NotFound { .. }) => return Err(denied("no such pod".into())),
            Err(e) => return Err(e),
        };
        let meta = pod.metadata.as_ref();
        if meta.map(|m| m.uid.as_str()) != Some(caller.pod_uid.as_str()) {
            return Err(denied(format!("its uid is not {:?}", caller.pod_uid)));
        }
        let node = pod.spec.as_ref().map(|s| s.node_name.as_str());
        // A node's own name, when it has one, else the one it gives.
        let caller_node = who.node_name().unwrap_or(caller.node.as_str());
        if *who != Identity::Admin && node != Some(caller_node) {
            return Err(denied(format!("it does not run on node {caller_node:?}")));
        }
        if !grants(meta, Interface::KeyValue) {
            return Err(denied(format!(
                "its annotation {} does not grant \"keyvalue\"",
                skiff_api::host_interfaces::INTERFACES
            )));
        }
        Ok(caller.namespace.clone())
    }

    async fn call(&self, who: &Identity, r: KeyValueRequest) -> Result<KeyValueResponse, ApiError> {
        let ns = self.namespace_of(who, r.caller.as_ref()).await?;
        let b = &self.buckets;
        let mut out = KeyValueResponse::default();
        match KeyValueOp::try_from(r.op).unwrap_or(KeyValueOp::Unspecified) {
            KeyValueOp::Unspecified => {
                return Err(ApiError::BadRequest(format!("op {}: unknown", r.op)));
            }
            KeyValueOp::Open => b.open(&ns, &r.bucket).await?,
            KeyValueOp::Get => {
                if let Some(value) = b.get(&ns, &r.bucket, &r.key).await? {
                    out.found = true;
                    out.value = value.to_vec();
                }
            }
            KeyValueOp::Set => b.set(&ns, &r.bucket, &r.key, r.value.into()).await?,
            KeyValueOp::Delete => b.delete(&ns, &r.bucket, &r.key).await?,
            KeyValueOp::Exists => out.exists = b.exists(&ns, &r.bucket, &r.key).await?,
            KeyValueOp::ListKeys => {
                let page = b.list_keys(&ns, &r.bucket, r.cursor).await?;
                out.keys = page.keys;
                out.cursor = page.cursor;
            }
            KeyValueOp::Increment => {
                out.number = b.increment(&ns, &r.bucket, &r.key, r.delta).await?;
            }
        }
        Ok(out)
    }
}

#[tonic::async_trait]
impl key_value_api_server::KeyValueApi for KeyValueService {
    async fn call(
        &self,
        req: Request<KeyValueRequest>,
    ) -> Result<Response<KeyValueResponse>, Status> {
        let who = identity(&req)?;
        Ok(Response::new(
            KeyValueService::call(self, &who, req.into_inner()).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::tests::{Harness, pod};

    fn request(caller: &KeyValueCaller, op: KeyValueOp, key: &str) -> KeyValueRequest {
        KeyValueRequest {
            caller: Some(caller.clone()),
            bucket: "b".into(),
            op: op.into(),
            key: key.into(),
            value: b"v".to_vec(),
            ..Default::default()
        }
    }

    /// A service over a store holding `default/web` on node n1 (granted keyvalue when `granted`).
    async fn service(granted: bool) -> (Harness, KeyValueService, KeyValueCaller) {
        let h = Harness::new().await;
        let mut p = pod("default", "web");
        if let Some(spec) = p.spec.as_mut() {
            spec.node_name = "n1".into();
        }
        if granted && let Some(meta) = p.metadata.as_mut() {
            meta.annotations.insert(
                skiff_api::host_interfaces::INTERFACES.into(),
                "keyvalue".into(),
            );
        }
        let created = h.create(p).await.unwrap();
        let service = KeyValueService {
            pods: h.registry(),
            buckets: Buckets::new(h.store.clone()),
            authz: crate::auth::Chain::new(vec![
                std::sync::Arc::new(crate::auth::AdminAuthorizer),
                std::sync::Arc::new(crate::auth::node::NodeAuthorizer::default()),
            ]),
        };
        let caller = KeyValueCaller {
            namespace: "default".into(),
            pod: "web".into(),
            pod_uid: created.metadata.unwrap().uid,
            node: "n1".into(),
        };
        (h, service, caller)
    }

    #[tokio::test]
    async fn a_node_reaches_only_the_buckets_of_pods_it_runs_and_that_are_granted() {
        let (_h, s, caller) = service(true).await;
        let node = Identity::Node("n1".into());
        s.call(&node, request(&caller, KeyValueOp::Open, ""))
            .await
            .unwrap();
        s.call(&node, request(&caller, KeyValueOp::Set, "k"))
            .await
            .unwrap();
        let got = s
            .call(&node, request(&caller, KeyValueOp::Get, "k"))
            .await
            .unwrap();
        assert!(got.found && got.value == b"v");
        let refused = |c: KeyValueCaller, why: &'static str| {
            let s = s.clone();
            async move {
                let e = s
                    .call(
                        &Identity::Node("n1".into()),
                        request(&c, KeyValueOp::Get, "k"),
                    )
                    .await
                    .unwrap_err();
                assert!(matches!(e, ApiError::Forbidden(_)), "{e}");
                assert!(e.to_string().contains(why), "{e}");
            }
        };
        // A stale uid, a pod that does not exist.
        let stale = KeyValueCaller {
            pod_uid: "old".into(),
            ..caller.clone()
        };
        refused(stale, "its uid is not").await;
        let absent = KeyValueCaller {
            pod: "nope".into(),
            ..caller.clone()
        };
        refused(absent, "no such pod").await;
        // Another namespace named with this pod's name: no such pod there.
        let elsewhere = KeyValueCaller {
            namespace: "kube-system".into(),
            ..caller.clone()
        };
        refused(elsewhere, "no such pod").await;
        // A node is held to its own name, whatever the request says; a bootstrap token is refused.
        let e = s
            .call(
                &Identity::NodeBootstrap,
                request(&caller, KeyValueOp::Get, "k"),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::Forbidden(_)), "{e}");
        let e = s
            .call(
                &Identity::Node("n2".into()),
                request(&caller, KeyValueOp::Get, "k"),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("does not run on node \"n2\""), "{e}");
        s.call(
            &Identity::Node("n1".into()),
            request(&caller, KeyValueOp::Get, "k"),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_pod_not_granted_keyvalue_is_refused() {
        let (_h, s, caller) = service(false).await;
        let e = s
            .call(
                &Identity::Node("n1".into()),
                request(&caller, KeyValueOp::Open, ""),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("does not grant \"keyvalue\""), "{e}");
    }
}
