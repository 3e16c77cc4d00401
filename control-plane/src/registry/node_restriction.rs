//! NodeRestriction (Kubernetes' admission plugin of that name, for what needs the object): what a
//! node (`system:node:NAME`) may write in its own Node and in Events. The node authorizer has
//! already held it to its own Node and to Events; this looks inside them.
//!
//! - Node labels: a node may set, change or remove only the labels kubelets may (Kubernetes'
//!   rules): outside the `kubernetes.io` and `k8s.io` domains anything; inside them only
//!   `kubernetes.io/{hostname,arch,os}`, `beta.kubernetes.io/{arch,os,instance-type}`,
//!   `node.kubernetes.io/instance-type`, `topology.kubernetes.io/{region,zone}`,
//!   `failure-domain.beta.kubernetes.io/{region,zone}`, and keys under `kubelet.kubernetes.io`
//!   and `node.kubernetes.io`. So never `node-restriction.kubernetes.io/`, which admins use to
//!   steer workloads to nodes a node cannot claim for itself, nor `node-role.kubernetes.io/`.
//! - Node taints: a node may add taints (an agent registers with `--taints`) but not remove or
//!   change one it has (an admin's `NoSchedule` or `NoExecute` keeps pods off it). Kubernetes
//!   forbids any change on update; skiff's agent adds the taints it was started with to a Node
//!   that exists already.
//! - Events: only about the node itself or a pod bound to it (`involvedObject`), beyond
//!   Kubernetes, where a kubelet may write any Event: a node cannot fill another namespace's
//!   `describe` with lies.
//!
//! Must not: write to the store, or judge anyone but nodes.

use std::collections::BTreeSet;
use std::sync::Arc;

use skiff_api::Resource;
use skiff_api::v1::{Event, Node, Pod};

use super::admission::{Attributes, ObjectMut, Operation, Validating};
use super::{decode, key};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::store::Store;

/// The labels kubelets may set in the restricted domains.
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];

/// Domains (and their subdomains) whose keys kubelets may set freely.
const KUBELET_DOMAINS: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

fn in_domain(prefix: &str, domain: &str) -> bool {
    prefix == domain || prefix.ends_with(&format!(".{domain}"))
}

/// Whether a node may set, change or remove the label `key`.
pub fn node_may_set_label(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else {
        return true;
    };
    let restricted = in_domain(prefix, "kubernetes.io") || in_domain(prefix, "k8s.io");
    !restricted
        || KUBELET_LABELS.contains(&key)
        || KUBELET_DOMAINS.iter().any(|d| in_domain(prefix, d))
}

/// The label keys `new` adds, changes or removes against `old`.
fn changed_labels<'a>(
    old: &'a std::collections::BTreeMap<String, String>,
    new: &'a std::collections::BTreeMap<String, String>,
) -> BTreeSet<&'a str> {
    let mut changed: BTreeSet<&str> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, _)| k.as_str())
        .collect();
    changed.extend(
        old.keys()
            .filter(|k| !new.contains_key(*k))
            .map(String::as_str),
    );
    changed
}

/// The link.
pub struct NodeRestriction {
    pub store: Arc<dyn Store>,
}

impl NodeRestriction {
    async fn stored<K: Resource + super::Strategy>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<K>, ApiError> {
        match self
            .store
            .get(&key::<K>(namespace, name))
            .await
            .map_err(|e| ApiError::from_store(e, K::PLURAL, name))?
        {
            Some(kv) => Ok(Some(decode(&kv)?)),
            None => Ok(None),
        }
    }

    async fn check_node(&self, node: &str, op: Operation, new: &Node) -> Result<(), ApiError> {
        let forbidden =
            |why: String| ApiError::Forbidden(format!("nodes {node:?} is forbidden: {why}"));
        let old = match op {
            Operation::Create => None,
            Operation::Update => self.stored::<Node>("", node).await?,
            _ => return Ok(()),
        };
        let empty = Default::default();
        let old_labels = old
            .as_ref()
            .and_then(|n| n.metadata.as_ref())
            .map_or(&empty, |m| &m.labels);
        let new_labels = new.metadata.as_ref().map_or(&empty, |m| &m.labels);
        let refused: Vec<&str> = changed_labels(old_labels, new_labels)
            .into_iter()
            .filter(|k| !node_may_set_label(k))
            .collect();
        if !refused.is_empty() {
            return Err(forbidden(format!(
                "is not allowed to modify labels: {}",
                refused.join(", ")
            )));
        }
        if let Some(old) = &old {
            let taints = |n: &Node| {
                n.spec
                    .as_ref()
                    .map(|s| s.taints.clone())
                    .unwrap_or_default()
            };
            let (before, after) = (taints(old), taints(new));
            if let Some(gone) = before.iter().find(|t| !after.contains(t)) {
                return Err(forbidden(format!(
                    "is not allowed to remove or modify taints (taint {:?} with effect {})",
                    gone.key, gone.effect
                )));
            }
        }
        Ok(())
    }

    async fn check_event(&self, node: &str, event: &Event) -> Result<(), ApiError> {
        let involved = event.involved_object.clone().unwrap_or_default();
        let about_itself = involved.kind == "Node" && involved.name == node;
        let about_its_pod = involved.kind == "Pod"
            && self
                .stored::<Pod>(&involved.namespace, &involved.name)
                .await?
                .and_then(|p| p.spec)
                .is_some_and(|s| s.node_name == node);
        if about_itself || about_its_pod {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "events is forbidden: node {node:?} may only record events about itself and its pods, not {} {:?}",
            if involved.kind.is_empty() {
                "<none>"
            } else {
                involved.kind.as_str()
            },
            if involved.namespace.is_empty() {
                involved.name.clone()
            } else {
                format!("{}/{}", involved.namespace, involved.name)
            }
        )))
    }
}

#[async_trait::async_trait]
impl Validating for NodeRestriction {
    fn name(&self) -> &'static str {
        "NodeRestriction"
    }

    async fn validate(&self, attrs: &Attributes<'_>, obj: ObjectMut<'_>) -> Result<(), ApiError> {
        let Identity::Node(node) = attrs.user else {
            return Ok(());
        };
        match obj {
            ObjectMut::Node(n) => self.check_node(node, attrs.operation, n).await,
            ObjectMut::Event(e)
                if matches!(attrs.operation, Operation::Create | Operation::Update) =>
            {
                self.check_event(node, e).await
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{NodeSpec, ObjectMeta, ObjectReference, PodSpec, Taint};

    #[test]
    fn kubelets_set_only_their_labels_in_kubernetes_domains() {
        for ok in [
            "rack",
            "example.com/disk",
            "kubernetes.io/hostname",
            "topology.kubernetes.io/zone",
            "node.kubernetes.io/exclude-from-external-load-balancers",
            "kubelet.kubernetes.io/x",
            "foo.node.kubernetes.io/bar",
            "notkubernetes.io/x",
        ] {
            assert!(node_may_set_label(ok), "{ok}");
        }
        for refused in [
            "node-restriction.kubernetes.io/pci",
            "node-role.kubernetes.io/control-plane",
            "kubernetes.io/role",
            "k8s.io/x",
            "team.k8s.io/x",
        ] {
            assert!(!node_may_set_label(refused), "{refused}");
        }
    }

    fn node(labels: &[(&str, &str)], taints: &[&str]) -> Node {
        Node {
            metadata: Some(ObjectMeta {
                name: "n1".into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                taints: taints
                    .iter()
                    .map(|k| Taint {
                        key: k.to_string(),
                        effect: "NoSchedule".into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            status: None,
        }
    }

    async fn link() -> (crate::registry::tests::Harness, NodeRestriction) {
        let h = crate::registry::tests::Harness::new().await;
        let link = NodeRestriction {
            store: h.store.clone(),
        };
        (h, link)
    }

    async fn judge(
        link: &NodeRestriction,
        who: &Identity,
        op: Operation,
        obj: ObjectMut<'_>,
        kind: &'static str,
        ns: &str,
    ) -> Result<(), ApiError> {
        let attrs = Attributes {
            operation: op,
            kind,
            namespaced: !ns.is_empty(),
            namespace: ns,
            name: "n1",
            user: who,
        };
        link.validate(&attrs, obj).await
    }

    #[tokio::test]
    async fn a_node_keeps_to_its_labels_and_adds_taints_only() {
        let (h, link) = link().await;
        let n1 = Identity::Node("n1".into());
        let stored = node(
            &[
                ("node-restriction.kubernetes.io/pci", "true"),
                ("rack", "a"),
            ],
            &["admin"],
        );
        h.store
            .create(
                &key::<Node>("", "n1"),
                prost::Message::encode_to_vec(&stored).into(),
            )
            .await
            .unwrap();
        let update = |n: &mut Node| judge_owned(&link, &n1, Operation::Update, n.clone());
        // Its own labels and a new taint: yes.
        let mut ok = stored.clone();
        ok.metadata
            .as_mut()
            .unwrap()
            .labels
            .insert("rack".into(), "b".into());
        ok.metadata
            .as_mut()
            .unwrap()
            .labels
            .insert("topology.kubernetes.io/zone".into(), "z".into());
        ok.spec
            .as_mut()
            .unwrap()
            .taints
            .push(node(&[], &["own"]).spec.unwrap().taints[0].clone());
        update(&mut ok).await.unwrap();
        // Removing the admin's restricted label, or adding one: no.
        let mut removed = stored.clone();
        removed
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .remove("node-restriction.kubernetes.io/pci");
        let e = update(&mut removed).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "nodes \"n1\" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/pci"
        );
        let mut role = stored.clone();
        role.metadata
            .as_mut()
            .unwrap()
            .labels
            .insert("node-role.kubernetes.io/control-plane".into(), "".into());
        assert!(matches!(
            update(&mut role).await,
            Err(ApiError::Forbidden(_))
        ));
        // Dropping the admin's taint: no.
        let mut untainted = stored.clone();
        untainted.spec.as_mut().unwrap().taints.clear();
        let e = update(&mut untainted).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("is not allowed to remove or modify taints"),
            "{e}"
        );
        // Registering with a restricted label: no; the admin: anything.
        let e = judge_owned(
            &link,
            &n1,
            Operation::Create,
            node(&[("node-restriction.kubernetes.io/x", "")], &[]),
        )
        .await;
        assert!(matches!(e, Err(ApiError::Forbidden(_))));
        judge_owned(&link, &Identity::Admin, Operation::Update, untainted)
            .await
            .unwrap();
    }

    async fn judge_owned(
        link: &NodeRestriction,
        who: &Identity,
        op: Operation,
        mut n: Node,
    ) -> Result<(), ApiError> {
        judge(link, who, op, ObjectMut::Node(&mut n), "Node", "").await
    }

    #[tokio::test]
    async fn a_node_records_events_about_itself_and_its_pods_only() {
        let (h, link) = link().await;
        let n1 = Identity::Node("n1".into());
        for (name, node) in [("mine", "n1"), ("theirs", "n2")] {
            let pod = Pod {
                metadata: Some(ObjectMeta {
                    name: name.into(),
                    namespace: "default".into(),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    node_name: node.into(),
                    containers: vec![skiff_api::v1::Container {
                        name: "c".into(),
                        image: "file:/x.wasm".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                status: None,
            };
            h.store
                .create(
                    &key::<Pod>("default", name),
                    prost::Message::encode_to_vec(&pod).into(),
                )
                .await
                .unwrap();
        }
        let event = |kind: &str, namespace: &str, name: &str| Event {
            involved_object: Some(ObjectReference {
                kind: kind.into(),
                namespace: namespace.into(),
                name: name.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let link = &link;
        let check = |mut e: Event, who: Identity| async move {
            judge(
                link,
                &who,
                Operation::Create,
                ObjectMut::Event(&mut e),
                "Event",
                "default",
            )
            .await
        };
        check(event("Pod", "default", "mine"), n1.clone())
            .await
            .unwrap();
        check(event("Node", "", "n1"), n1.clone()).await.unwrap();
        for (kind, ns, name) in [
            ("Pod", "default", "theirs"),
            ("Node", "", "n2"),
            ("Pod", "default", "gone"),
            ("Service", "default", "web"),
        ] {
            let e = check(event(kind, ns, name), n1.clone()).await.unwrap_err();
            assert!(
                e.to_string()
                    .contains("may only record events about itself and its pods"),
                "{kind} {name}: {e}"
            );
        }
        // Others are not judged here.
        check(event("Service", "default", "web"), Identity::Admin)
            .await
            .unwrap();
    }
}
