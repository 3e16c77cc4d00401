//! The RBAC objects in memory, kept by list + watch of the four kinds, so that the authorizer
//! answers from here and never reads the store per request.
//!
//! A ClusterRole with an `aggregationRule` is read as the union of its own rules and those of
//! every other ClusterRole its selectors match (Kubernetes' aggregation, computed when read
//! rather than written back into the role by a controller).
//!
//! Must not: write anything, or decide (the [`super::RbacAuthorizer`] does).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use skiff_api::ResourceExt;
use skiff_api::selector::LabelSelector;
use skiff_api::v1::{
    ClusterRole, ClusterRoleBinding, ListRequest, PolicyRule, Role, RoleBinding, WatchRequest,
};

use crate::error::ApiError;
use crate::registry::{Registry, Strategy};
use crate::store::Store;

/// A binding as the index keeps it: whom it names and which role it grants.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub subjects: Vec<skiff_api::v1::Subject>,
    /// `Role` or `ClusterRole`.
    pub role_kind: String,
    pub role_name: String,
}

/// Roles and bindings by namespace and name.
#[derive(Default)]
pub struct PolicyIndex {
    /// namespace → name → rules.
    roles: DashMap<String, HashMap<String, Arc<Vec<PolicyRule>>>>,
    cluster_roles: DashMap<String, Arc<ClusterRole>>,
    /// namespace → name → grant.
    role_bindings: DashMap<String, HashMap<String, Arc<Grant>>>,
    cluster_role_bindings: DashMap<String, Arc<Grant>>,
    synced: AtomicBool,
}

impl PolicyIndex {
    /// Whether every kind has been listed once.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn put_role(&self, role: &Role) {
        self.roles
            .entry(role.namespace().to_string())
            .or_default()
            .insert(role.name().to_string(), Arc::new(role.rules.clone()));
    }

    pub fn remove_role(&self, namespace: &str, name: &str) {
        if let Some(mut roles) = self.roles.get_mut(namespace) {
            roles.remove(name);
        }
    }

    pub fn put_cluster_role(&self, role: &ClusterRole) {
        self.cluster_roles
            .insert(role.name().to_string(), Arc::new(role.clone()));
    }

    pub fn remove_cluster_role(&self, name: &str) {
        self.cluster_roles.remove(name);
    }

    pub fn put_role_binding(&self, binding: &RoleBinding) {
        let grant = grant(&binding.subjects, binding.role_ref.as_ref());
        self.role_bindings
            .entry(binding.namespace().to_string())
            .or_default()
            .insert(binding.name().to_string(), Arc::new(grant));
    }

    pub fn remove_role_binding(&self, namespace: &str, name: &str) {
        if let Some(mut bindings) = self.role_bindings.get_mut(namespace) {
            bindings.remove(name);
        }
    }

    pub fn put_cluster_role_binding(&self, binding: &ClusterRoleBinding) {
        let grant = grant(&binding.subjects, binding.role_ref.as_ref());
        self.cluster_role_bindings
            .insert(binding.name().to_string(), Arc::new(grant));
    }

    pub fn remove_cluster_role_binding(&self, name: &str) {
        self.cluster_role_bindings.remove(name);
    }

    /// The ClusterRoleBindings' grants (a snapshot).
    pub fn cluster_grants(&self) -> Vec<Arc<Grant>> {
        self.cluster_role_bindings
            .iter()
            .map(|e| e.value().clone())
            .collect()
    }

    /// The grants of the RoleBindings in `namespace` (a snapshot).
    pub fn namespace_grants(&self, namespace: &str) -> Vec<Arc<Grant>> {
        self.role_bindings
            .get(namespace)
            .map(|b| b.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The rules a grant in `namespace` (empty for a ClusterRoleBinding) gives; empty if its role
    /// does not exist (yet), as in Kubernetes.
    pub fn rules_of(&self, grant: &Grant, namespace: &str) -> Vec<PolicyRule> {
        match grant.role_kind.as_str() {
            "Role" if !namespace.is_empty() => self
                .roles
                .get(namespace)
                .and_then(|r| r.get(&grant.role_name).map(|rules| rules.as_ref().clone()))
                .unwrap_or_default(),
            "ClusterRole" => self.cluster_role_rules(&grant.role_name),
            _ => Vec::new(),
        }
    }

    /// A ClusterRole's rules, its aggregated ones included.
    pub fn cluster_role_rules(&self, name: &str) -> Vec<PolicyRule> {
        let Some(role) = self.cluster_roles.get(name).map(|r| r.value().clone()) else {
            return Vec::new();
        };
        let mut rules = role.rules.clone();
        let Some(aggregation) = &role.aggregation_rule else {
            return rules;
        };
        let selectors: Vec<LabelSelector> = aggregation
            .cluster_role_selectors
            .iter()
            .filter_map(|s| LabelSelector::from_spec(s).ok())
            .filter(|s| !s.is_empty())
            .collect();
        let mut parts: Vec<Arc<ClusterRole>> = self
            .cluster_roles
            .iter()
            .filter(|e| e.key() != name)
            .filter(|e| {
                selectors
                    .iter()
                    .any(|s| s.matches(&e.value().meta().labels))
            })
            .map(|e| e.value().clone())
            .collect();
        // A stable order, so that the union reads the same every time.
        parts.sort_by(|a, b| a.name().cmp(b.name()));
        for part in parts {
            for rule in &part.rules {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
        rules
    }

    /// Fills the index from `store` and keeps it current: returns once every kind has been
    /// listed, the watches go on in tasks of their own (relisting after a watch ends).
    pub async fn start(self: &Arc<Self>, store: Arc<dyn Store>) -> Result<(), ApiError> {
        feed::<Role, _>(
            self.clone(),
            store.clone(),
            |i, o| i.put_role(o),
            |i, ns, n| i.remove_role(ns, n),
            |i| i.roles.clear(),
        )
        .await?;
        feed::<ClusterRole, _>(
            self.clone(),
            store.clone(),
            |i, o| i.put_cluster_role(o),
            |i, _, n| i.remove_cluster_role(n),
            |i| i.cluster_roles.clear(),
        )
        .await?;
        feed::<RoleBinding, _>(
            self.clone(),
            store.clone(),
            |i, o| i.put_role_binding(o),
            |i, ns, n| i.remove_role_binding(ns, n),
            |i| i.role_bindings.clear(),
        )
        .await?;
        feed::<ClusterRoleBinding, _>(
            self.clone(),
            store,
            |i, o| i.put_cluster_role_binding(o),
            |i, _, n| i.remove_cluster_role_binding(n),
            |i| i.cluster_role_bindings.clear(),
        )
        .await?;
        self.synced.store(true, Ordering::Release);
        Ok(())
    }
}

fn grant(subjects: &[skiff_api::v1::Subject], role_ref: Option<&skiff_api::v1::RoleRef>) -> Grant {
    Grant {
        subjects: subjects.to_vec(),
        role_kind: role_ref.map(|r| r.kind.clone()).unwrap_or_default(),
        role_name: role_ref.map(|r| r.name.clone()).unwrap_or_default(),
    }
}

type Put<I, K> = fn(&I, &K);
type Remove<I> = fn(&I, &str, &str);
type Clear<I> = fn(&I);

/// Lists `K` into `index`, then follows its watch in a task; when a watch ends the kind is
/// listed again (replacing what the index held of it). Returns once the first list is in.
pub(crate) async fn feed<K: Strategy, I: Send + Sync + 'static>(
    index: Arc<I>,
    store: Arc<dyn Store>,
    put: Put<I, K>,
    remove: Remove<I>,
    clear: Clear<I>,
) -> Result<(), ApiError> {
    let registry = Registry::<K>::new(store);
    let revision = relist(index.as_ref(), &registry, put, clear).await?;
    tokio::spawn(async move {
        let mut revision = revision;
        loop {
            follow(index.as_ref(), &registry, &revision, put, remove).await;
            loop {
                match relist(index.as_ref(), &registry, put, clear).await {
                    Ok(r) => {
                        revision = r;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(kind = K::KIND, error = %e, "rbac index: listing again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    });
    Ok(())
}

async fn relist<K: Strategy, I>(
    index: &I,
    registry: &Registry<K>,
    put: Put<I, K>,
    clear: Clear<I>,
) -> Result<String, ApiError> {
    let (items, meta) = registry.list(&ListRequest::default()).await?;
    clear(index);
    for item in &items {
        put(index, item);
    }
    Ok(meta.resource_version)
}

/// Applies watch events until the watch ends.
async fn follow<K: Strategy, I>(
    index: &I,
    registry: &Registry<K>,
    revision: &str,
    put: Put<I, K>,
    remove: Remove<I>,
) {
    let req = WatchRequest {
        resource_version: revision.to_string(),
        ..Default::default()
    };
    let mut events = match registry.watch(&req).await {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(kind = K::KIND, error = %e, "rbac index: watch");
            tokio::time::sleep(Duration::from_millis(200)).await;
            return;
        }
    };
    while let Some(event) = events.recv().await {
        match event {
            Ok(("DELETED", obj)) => remove(index, obj.namespace(), obj.name()),
            Ok((_, obj)) => put(index, &obj),
            Err(e) => {
                tracing::debug!(kind = K::KIND, error = %e, "rbac index: watch ended");
                return;
            }
        }
    }
}
