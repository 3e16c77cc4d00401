//! What each node may read, as the node authorizer sees it (Kubernetes' node authorizer graph):
//! the pods bound to each node, and the Secrets, ConfigMaps, PersistentVolumeClaims and
//! ServiceAccounts those pods use (volumes, projected sources, env, envFrom, image pull secrets,
//! the pod's ServiceAccount, the `wasi:config` sources of `skiff.dev/wasi-config-from`); plus the TLS Secrets Ingresses name, which every node's ingress
//! router serves.
//!
//! Kept in memory by watches of Pods and Ingresses ([`super::feed`]); asked synchronously.
//! Must not: decide anything (the node authorizer does), or read the store per question.

use std::collections::HashSet;
use std::sync::Arc;

use dashmap::DashMap;
use skiff_api::host_interfaces::ConfigSource;
use skiff_api::v1::{Ingress, Pod, PodSpec};

use super::feed::{self, Index};
use crate::error::ApiError;
use crate::registry::Registry;

/// (namespace, name).
type Key = (String, String);
/// (node, kind, namespace, name).
type Use = (String, &'static str, String, String);
/// A bound pod: its node, and what it uses as (kind, name), each once.
type Bound = (String, Vec<(&'static str, String)>);

/// The graph.
#[derive(Default)]
pub struct NodeGraph {
    /// Bound pods: their node and what they use (each once).
    pods: DashMap<Key, Bound>,
    /// How many of a node's pods use an object.
    uses: DashMap<Use, usize>,
    /// Secrets named by Ingresses' TLS: each Ingress's list.
    ingress_tls: DashMap<Key, Vec<String>>,
    /// How many pods are bound to each node (for its rate limit).
    per_node: DashMap<String, usize>,
}

/// What a pod spec uses, each (kind, name) once.
pub fn references(spec: &PodSpec) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    let mut add = |kind: &'static str, name: &str| {
        if !name.is_empty() && !out.iter().any(|(k, n)| *k == kind && n == name) {
            out.push((kind, name.to_string()));
        }
    };
    for volume in &spec.volumes {
        if let Some(s) = &volume.secret {
            add("Secret", &s.secret_name);
        }
        if let Some(c) = &volume.config_map {
            add("ConfigMap", &c.name);
        }
        if let Some(p) = &volume.persistent_volume_claim {
            add("PersistentVolumeClaim", &p.claim_name);
        }
        for source in volume.projected.iter().flat_map(|p| &p.sources) {
            if let Some(s) = &source.secret {
                add("Secret", &s.name);
            }
            if let Some(c) = &source.config_map {
                add("ConfigMap", &c.name);
            }
        }
    }
    for container in spec.containers.iter().chain(&spec.init_containers) {
        for from in container.env.iter().filter_map(|e| e.value_from.as_ref()) {
            if let Some(r) = &from.secret_key_ref {
                add("Secret", &r.name);
            }
            if let Some(r) = &from.config_map_key_ref {
                add("ConfigMap", &r.name);
            }
        }
        for from in &container.env_from {
            if let Some(r) = &from.secret_ref {
                add("Secret", &r.name);
            }
            if let Some(r) = &from.config_map_ref {
                add("ConfigMap", &r.name);
            }
        }
    }
    for pull in &spec.image_pull_secrets {
        add("Secret", &pull.name);
    }
    add("ServiceAccount", &spec.service_account_name);
    out
}

impl NodeGraph {
    /// Whether pod `namespace/name` is bound to `node`.
    pub fn pod_on(&self, node: &str, namespace: &str, name: &str) -> bool {
        self.pods
            .get(&(namespace.to_string(), name.to_string()))
            .is_some_and(|p| p.0 == node)
    }

    /// How many pods are bound to `node`.
    pub fn pods_on(&self, node: &str) -> usize {
        self.per_node.get(node).map_or(0, |n| *n)
    }

    /// Whether a pod bound to `node` uses the `kind` object `namespace/name`.
    pub fn uses(&self, node: &str, kind: &str, namespace: &str, name: &str) -> bool {
        let Some(kind) = [
            "Secret",
            "ConfigMap",
            "PersistentVolumeClaim",
            "ServiceAccount",
        ]
        .into_iter()
        .find(|k| *k == kind) else {
            return false;
        };
        self.uses.contains_key(&(
            node.to_string(),
            kind,
            namespace.to_string(),
            name.to_string(),
        ))
    }

    /// Whether an Ingress names Secret `namespace/name` for TLS.
    pub fn ingress_tls(&self, namespace: &str, name: &str) -> bool {
        self.ingress_tls
            .iter()
            .any(|e| e.key().0 == namespace && e.value().iter().any(|n| n == name))
    }

    fn unbind(&self, key: &Key) {
        if let Some((_, (node, refs))) = self.pods.remove(key) {
            let emptied = self.per_node.get_mut(&node).is_some_and(|mut n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
            if emptied {
                self.per_node.remove_if(&node, |_, n| *n == 0);
            }
            for (kind, name) in refs {
                let at = (node.clone(), kind, key.0.clone(), name);
                let gone = self.uses.get_mut(&at).is_some_and(|mut n| {
                    *n = n.saturating_sub(1);
                    *n == 0
                });
                if gone {
                    self.uses.remove_if(&at, |_, n| *n == 0);
                }
            }
        }
    }

    fn bind(&self, pod: &Pod) {
        let Some(meta) = pod.metadata.as_ref() else {
            return;
        };
        let key = (meta.namespace.clone(), meta.name.clone());
        self.unbind(&key);
        let Some(spec) = pod.spec.as_ref().filter(|s| !s.node_name.is_empty()) else {
            return;
        };
        let mut refs = references(spec);
        // The ConfigMaps and Secrets `skiff.dev/wasi-config-from` names for `wasi:config`.
        for source in skiff_api::host_interfaces::config_sources(pod.metadata.as_ref()) {
            let named = match source {
                ConfigSource::ConfigMap(name) => ("ConfigMap", name),
                ConfigSource::Secret(name) => ("Secret", name),
            };
            if !named.1.is_empty() && !refs.contains(&named) {
                refs.push(named);
            }
        }
        for (kind, name) in &refs {
            *self
                .uses
                .entry((spec.node_name.clone(), kind, key.0.clone(), name.clone()))
                .or_insert(0) += 1;
        }
        *self.per_node.entry(spec.node_name.clone()).or_insert(0) += 1;
        self.pods.insert(key, (spec.node_name.clone(), refs));
    }

    /// Loads pods and Ingresses, then follows both (the tasks run until aborted).
    pub async fn start(
        self: &Arc<Self>,
        pods: Registry<Pod>,
        ingresses: Registry<Ingress>,
    ) -> Result<Vec<tokio::task::JoinHandle<()>>, ApiError> {
        let pods_version = feed::load(&pods, "", "", self.as_ref()).await?;
        let ingress_version = feed::load(&ingresses, "", "", self.as_ref()).await?;
        let as_pods: Arc<dyn Index<Pod>> = self.clone();
        let as_ingresses: Arc<dyn Index<Ingress>> = self.clone();
        Ok(vec![
            tokio::spawn(feed::follow(
                pods,
                String::new(),
                String::new(),
                as_pods,
                pods_version,
            )),
            tokio::spawn(feed::follow(
                ingresses,
                String::new(),
                String::new(),
                as_ingresses,
                ingress_version,
            )),
        ])
    }
}

impl Index<Pod> for NodeGraph {
    fn replace(&self, objects: Vec<Pod>) {
        let listed: HashSet<Key> = objects
            .iter()
            .filter_map(|p| p.metadata.as_ref())
            .map(|m| (m.namespace.clone(), m.name.clone()))
            .collect();
        let stale: Vec<Key> = self
            .pods
            .iter()
            .map(|e| e.key().clone())
            .filter(|k| !listed.contains(k))
            .collect();
        for key in stale {
            self.unbind(&key);
        }
        for pod in &objects {
            self.bind(pod);
        }
    }

    fn put(&self, object: Pod) {
        self.bind(&object);
    }

    fn remove(&self, object: Pod) {
        if let Some(meta) = object.metadata {
            self.unbind(&(meta.namespace, meta.name));
        }
    }
}

impl Index<Ingress> for NodeGraph {
    fn replace(&self, objects: Vec<Ingress>) {
        self.ingress_tls.clear();
        for ingress in objects {
            Index::<Ingress>::put(self, ingress);
        }
    }

    fn put(&self, object: Ingress) {
        let Some(meta) = object.metadata else {
            return;
        };
        let names: Vec<String> = object
            .spec
            .iter()
            .flat_map(|s| &s.tls)
            .map(|t| t.secret_name.clone())
            .filter(|n| !n.is_empty())
            .collect();
        self.ingress_tls.insert((meta.namespace, meta.name), names);
    }

    fn remove(&self, object: Ingress) {
        if let Some(meta) = object.metadata {
            self.ingress_tls.remove(&(meta.namespace, meta.name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::*;

    fn pod(name: &str, node: &str, secret: &str) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "shop".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                node_name: node.into(),
                volumes: vec![Volume {
                    name: "s".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: secret.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                containers: vec![Container {
                    name: "c".into(),
                    env_from: vec![EnvFromSource {
                        config_map_ref: Some(OptionalObjectReference {
                            name: "settings".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                image_pull_secrets: vec![LocalObjectReference {
                    name: "pull".into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_node_sees_what_its_pods_use_until_they_go() {
        let g = NodeGraph::default();
        g.put(pod("a", "n1", "db"));
        g.put(pod("b", "n2", "other"));
        g.put(pod("pending", "", "never"));
        assert!(g.pod_on("n1", "shop", "a"));
        assert!(!g.pod_on("n1", "shop", "b"));
        assert!(!g.pod_on("n1", "shop", "pending"));
        assert!(g.uses("n1", "Secret", "shop", "db"));
        assert!(g.uses("n1", "Secret", "shop", "pull"));
        assert!(g.uses("n1", "ConfigMap", "shop", "settings"));
        assert!(!g.uses("n1", "Secret", "shop", "other"));
        assert!(!g.uses("n1", "Secret", "default", "db"));
        assert!(!g.uses("n1", "Pod", "shop", "a"));
        // Two pods share a ConfigMap: it stays until both are gone.
        g.put(pod("b2", "n1", "db"));
        g.remove(pod("a", "n1", "db"));
        assert!(g.uses("n1", "Secret", "shop", "db"));
        g.remove(pod("b2", "n1", "db"));
        assert!(!g.uses("n1", "Secret", "shop", "db"));
        assert!(!g.uses("n1", "ConfigMap", "shop", "settings"));
        // A pod changing what it uses (or a relist without it) takes the old use away.
        g.put(pod("c", "n1", "first"));
        g.put(pod("c", "n1", "second"));
        assert!(!g.uses("n1", "Secret", "shop", "first"));
        assert!(g.uses("n1", "Secret", "shop", "second"));
        g.replace(vec![pod("b", "n2", "other")]);
        assert!(!g.uses("n1", "Secret", "shop", "second"));
        assert!(g.uses("n2", "Secret", "shop", "other"));
    }

    #[test]
    fn wasi_config_sources_are_used() {
        let g = NodeGraph::default();
        let mut p = pod("cfg", "n1", "db");
        p.metadata.as_mut().unwrap().annotations.insert(
            skiff_api::host_interfaces::CONFIG_FROM.into(),
            "configmap:app-config,secret:app-secret".into(),
        );
        g.put(p);
        assert!(g.uses("n1", "ConfigMap", "shop", "app-config"));
        assert!(g.uses("n1", "Secret", "shop", "app-secret"));
    }

    #[test]
    fn ingress_tls_secrets_are_known() {
        let g = NodeGraph::default();
        let ingress = Ingress {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                namespace: "shop".into(),
                ..Default::default()
            }),
            spec: Some(IngressSpec {
                tls: vec![IngressTls {
                    hosts: vec![],
                    secret_name: "web-tls".into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        Index::<Ingress>::put(&g, ingress.clone());
        assert!(g.ingress_tls("shop", "web-tls"));
        assert!(!g.ingress_tls("default", "web-tls"));
        Index::<Ingress>::remove(&g, ingress);
        assert!(!g.ingress_tls("shop", "web-tls"));
    }
}
