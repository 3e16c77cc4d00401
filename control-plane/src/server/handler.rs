//! The gRPC side of the write path: one generic handler per kind that authorizes the caller and
//! hands the request to the kind's [`Registry`], where the rules of the API live.
//!
//! Authorization sees the namespace the request acts in (a node may renew Leases in
//! `kube-node-lease` only); a list or watch across namespaces acts in none.
//!
//! Must not: build store keys, apply kind rules or touch the store: the registry does.

use std::borrow::Cow;

use skiff_api::v1::{DeleteRequest, ListMeta, ListRequest, WatchRequest};
use tokio::sync::mpsc;

use crate::auth::{Attributes, Chain, Identity, Verb};
use crate::error::ApiError;
use crate::registry::{Registry, Strategy};
use crate::store::Store;

/// The namespace a write of `obj` lands in (`default` when left out; empty if cluster-scoped).
fn namespace_of<K: Strategy>(obj: &K) -> String {
    use skiff_api::ResourceExt;
    Registry::<K>::namespace_of(obj.namespace())
}

/// The one object a field selector holds a list or watch to (`metadata.name=NAME`): the list is
/// authorized as a read of it, as Kubernetes does. Empty when there is none.
fn selected_name(fields: &str) -> &str {
    fields
        .split(',')
        .map(str::trim)
        .find_map(|term| {
            term.strip_prefix("metadata.name==")
                .or_else(|| term.strip_prefix("metadata.name="))
        })
        .map(str::trim)
        .unwrap_or("")
}

/// A node lists and watches only the pods bound to it: `spec.nodeName=NODE` joins its field
/// selector (Kubernetes' node authorizer asks kubelets for that selector; here it is added).
fn scoped_fields<'a, K: Strategy>(who: &Identity, fields: &'a str) -> Cow<'a, str> {
    match who.node_name() {
        Some(node) if K::KIND == "Pod" => Cow::Owned(if fields.trim().is_empty() {
            format!("spec.nodeName={node}")
        } else {
            format!("{fields},spec.nodeName={node}")
        }),
        _ => Cow::Borrowed(fields),
    }
}

/// The name of `obj` (empty when it is to be generated).
fn name_of<K: Strategy>(obj: &K) -> &str {
    use skiff_api::ResourceExt;
    obj.name()
}

/// Authorized access to one kind.
pub struct Handler<K> {
    registry: Registry<K>,
    authz: Chain,
}

impl<K> Clone for Handler<K> {
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
            authz: self.authz.clone(),
        }
    }
}

impl<K: Strategy> Handler<K> {
    /// A handler that allows the admin alone (in-process callers: controllers, start-up).
    pub fn new(store: std::sync::Arc<dyn Store>) -> Self {
        Self::with_chain(store, Chain::default())
    }

    /// A handler asking `authz` about every call (the API server's).
    pub fn with_chain(store: std::sync::Arc<dyn Store>, authz: Chain) -> Self {
        Self {
            registry: Registry::new(store),
            authz,
        }
    }

    fn check(
        &self,
        who: &Identity,
        verb: Verb,
        namespace: &str,
        name: &str,
        subresource: &str,
    ) -> Result<(), ApiError> {
        let attrs = Attributes {
            verb,
            kind: K::KIND,
            namespace,
            name,
            subresource,
        };
        self.authz.check(who, &attrs)
    }

    /// The registry behind the handler (for callers that have authorized on their own).
    pub fn registry(&self) -> &Registry<K> {
        &self.registry
    }

    pub async fn create(&self, who: &Identity, obj: K) -> Result<K, ApiError> {
        self.check(who, Verb::Create, &namespace_of(&obj), name_of(&obj), "")?;
        self.registry.create(who, obj).await
    }

    pub async fn get(&self, who: &Identity, namespace: &str, name: &str) -> Result<K, ApiError> {
        let ns = Registry::<K>::namespace_of(namespace);
        self.check(who, Verb::Get, &ns, name, "")?;
        self.registry.get(namespace, name).await
    }

    pub async fn list(
        &self,
        who: &Identity,
        req: &ListRequest,
    ) -> Result<(Vec<K>, ListMeta), ApiError> {
        let fields = scoped_fields::<K>(who, &req.field_selector);
        self.check(who, Verb::List, &req.namespace, selected_name(&fields), "")?;
        match fields {
            Cow::Borrowed(_) => self.registry.list(req).await,
            Cow::Owned(field_selector) => {
                let scoped = ListRequest {
                    field_selector,
                    ..req.clone()
                };
                self.registry.list(&scoped).await
            }
        }
    }

    pub async fn update(&self, who: &Identity, obj: K) -> Result<K, ApiError> {
        self.check(who, Verb::Update, &namespace_of(&obj), name_of(&obj), "")?;
        self.registry.update(who, obj).await
    }

    pub async fn update_status(&self, who: &Identity, obj: K) -> Result<K, ApiError> {
        self.check(
            who,
            Verb::Update,
            &namespace_of(&obj),
            name_of(&obj),
            "status",
        )?;
        self.registry.update_status(who, obj).await
    }

    /// An update the REST API makes as `verb` (`update` of a PUT, `patch` of a PATCH) on the
    /// object or its `subresource` (`status` writes the status only; `scale` is an update of
    /// `spec.replicas`), authorized as Kubernetes authorizes it.
    pub async fn update_as(
        &self,
        who: &Identity,
        obj: K,
        verb: Verb,
        subresource: &str,
    ) -> Result<K, ApiError> {
        self.check(who, verb, &namespace_of(&obj), name_of(&obj), subresource)?;
        if subresource == "status" {
            self.registry.update_status(who, obj).await
        } else {
            self.registry.update(who, obj).await
        }
    }

    pub async fn delete(&self, who: &Identity, req: &DeleteRequest) -> Result<K, ApiError> {
        let namespace = Registry::<K>::namespace_of(&req.namespace);
        self.check(who, Verb::Delete, &namespace, &req.name, "")?;
        self.registry.delete(who, req).await
    }

    /// Watch events as (type, object), ending with an error if the watch cannot continue.
    pub async fn watch(
        &self,
        who: &Identity,
        req: &WatchRequest,
    ) -> Result<mpsc::Receiver<Result<(&'static str, K), ApiError>>, ApiError> {
        let fields = scoped_fields::<K>(who, &req.field_selector);
        self.check(who, Verb::Watch, &req.namespace, selected_name(&fields), "")?;
        match fields {
            Cow::Borrowed(_) => self.registry.watch(req).await,
            Cow::Owned(field_selector) => {
                let scoped = WatchRequest {
                    field_selector,
                    ..req.clone()
                };
                self.registry.watch(&scoped).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{Pod, Secret};

    #[test]
    fn a_named_list_is_a_read_and_a_node_lists_its_own_pods() {
        assert_eq!(selected_name("metadata.name=db"), "db");
        assert_eq!(selected_name("type=x, metadata.name==db"), "db");
        assert_eq!(selected_name("metadata.name!=db"), "");
        assert_eq!(selected_name(""), "");
        let n1 = Identity::Node("n1".into());
        assert_eq!(scoped_fields::<Pod>(&n1, ""), "spec.nodeName=n1");
        assert_eq!(
            scoped_fields::<Pod>(&n1, "spec.nodeName=n2"),
            "spec.nodeName=n2,spec.nodeName=n1"
        );
        assert_eq!(
            scoped_fields::<Secret>(&n1, "metadata.name=db"),
            "metadata.name=db"
        );
        assert_eq!(scoped_fields::<Pod>(&Identity::Admin, ""), "");
    }
}
