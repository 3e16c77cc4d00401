//! The node authorizer (Kubernetes' Node authorizer and NodeRestriction, in one place): what a
//! node agent may do, as `system:node:NAME` or, while joining, with a bootstrap token.
//!
//! A node reads the pods bound to it and the Secrets, ConfigMaps, PersistentVolumeClaims and
//! ServiceAccounts they use ([`NodeGraph`]), writes only its pods' status (and deletes only its
//! pods), its own Node and its own Lease, attaches only its own tunnel, and reads cluster-wide
//! what every node needs (Nodes, Services, Endpoints, Namespaces, Ingresses, IngressClasses, the
//! TLS Secrets Ingresses name, and the kubelet-config ConfigMap). A list or watch of pods by a
//! node is held to its own pods by the handler (`spec.nodeName` added to the field selector); a
//! list or watch of the other objects must name one (`metadata.name=`), and is authorized as a
//! read of it. No opinion about anyone but nodes and bootstrap tokens. Must not: read the store
//! per call.

use std::sync::Arc;

use super::node_graph::NodeGraph;
use super::{Attributes, Authorizer, Decision, Identity, Verb};

/// Node agents' rules, over the graph of what each node's pods use.
#[derive(Default)]
pub struct NodeAuthorizer {
    graph: Arc<NodeGraph>,
}

impl NodeAuthorizer {
    pub fn new(graph: Arc<NodeGraph>) -> Self {
        Self { graph }
    }
}

impl Authorizer for NodeAuthorizer {
    fn authorize(&self, who: &Identity, attrs: &Attributes<'_>) -> Decision {
        match who {
            Identity::Node(node) => decide(&self.graph, node, attrs),
            // A bootstrap token only gets a node its certificate (Kubernetes' system:bootstrappers
            // may create certificate signing requests, and nothing else).
            Identity::NodeBootstrap => allow(
                attrs.kind == "CertificateSigningRequest"
                    && attrs.verb == Verb::Create
                    && attrs.subresource.is_empty()
                    && !attrs.name.is_empty(),
            ),
            _ => Decision::NoOpinion,
        }
    }
}

fn allow(yes: bool) -> Decision {
    if yes {
        Decision::Allow
    } else {
        Decision::NoOpinion
    }
}

/// What `node` may do.
fn decide(graph: &NodeGraph, node: &str, attrs: &Attributes<'_>) -> Decision {
    let own = |name: &str| node == name;
    let Attributes {
        verb,
        kind,
        namespace,
        name,
        subresource,
    } = *attrs;
    allow(match (kind, subresource) {
        ("Node", "") | ("Node", "status") => match verb {
            Verb::Get | Verb::List | Verb::Watch => true,
            Verb::Create | Verb::Update | Verb::Patch | Verb::Delete => {
                !name.is_empty() && own(name)
            }
            Verb::Impersonate => false,
        },
        // Renewing its own client certificate.
        ("CertificateSigningRequest", "") => verb == Verb::Create && !name.is_empty() && own(name),
        ("Node", "tunnel") => verb == Verb::Create && !name.is_empty() && own(name),
        // Its pods' figures, the Services it holds for scale from zero, and their wakes.
        ("Node", "metrics") => verb == Verb::Create && own(name),
        ("ScaleFromZero", "") => matches!(verb, Verb::Watch | Verb::Update),
        // wasi:keyvalue for its pods: the service checks the pod runs on the node.
        ("KeyValue", "") => verb == Verb::Update,
        // Heartbeats: a node renews its own Lease in kube-node-lease, and touches no other.
        ("Lease", "") => {
            namespace == skiff_api::validation::NODE_LEASE_NAMESPACE
                && matches!(verb, Verb::Create | Verb::Get | Verb::Update)
                && own(name)
        }
        // A list or watch is held to its own pods by the handler.
        ("Pod", "") if matches!(verb, Verb::List | Verb::Watch) => {
            name.is_empty() || graph.pod_on(node, namespace, name)
        }
        ("Pod", "") => matches!(verb, Verb::Get | Verb::Delete) && graph.pod_on(node, namespace, name),
        ("Pod", "status") => verb == Verb::Update && graph.pod_on(node, namespace, name),
        ("Secret", "") => {
            verb.is_read()
                && (graph.uses(node, kind, namespace, name) || graph.ingress_tls(namespace, name))
        }
        ("ConfigMap", "")
            if namespace == skiff_api::cluster_dns::CONFIG_NAMESPACE
                && name == skiff_api::cluster_dns::CONFIG_NAME =>
        {
            verb.is_read()
        }
        ("ConfigMap" | "PersistentVolumeClaim", "") => {
            verb.is_read() && graph.uses(node, kind, namespace, name)
        }
        ("ServiceAccount", "") => verb == Verb::Get && graph.uses(node, kind, namespace, name),
        ("Event", "") => matches!(verb, Verb::Create | Verb::Update | Verb::Get | Verb::List),
        (
            "Service"
            | "Endpoints"
            | "Namespace"
            // The ingress router serves the Ingresses of its class (and reads the TLS Secrets
            // they name).
            | "Ingress"
            | "IngressClass",
            "",
        ) => verb.is_read(),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Chain;
    use super::*;
    use std::sync::Arc;

    fn chain() -> Chain {
        chain_with(Arc::default())
    }

    fn chain_with(graph: Arc<NodeGraph>) -> Chain {
        Chain::new(vec![
            Arc::new(super::super::AdminAuthorizer),
            Arc::new(NodeAuthorizer::new(graph)),
        ])
    }

    fn n1() -> Identity {
        Identity::Node("n1".into())
    }

    #[test]
    fn a_node_writes_only_its_own_node() {
        let chain = chain();
        for verb in [Verb::Create, Verb::Update, Verb::Delete] {
            let own = Attributes::new(verb, "Node", "").name("n1");
            assert!(chain.check(&n1(), &own).is_ok(), "{verb}");
            let other = Attributes::new(verb, "Node", "").name("n2");
            assert!(chain.check(&n1(), &other).is_err(), "{verb}");
        }
        let status = Attributes::new(Verb::Update, "Node", "")
            .name("n2")
            .subresource("status");
        assert!(chain.check(&n1(), &status).is_err());
        assert!(
            chain
                .check(&n1(), &Attributes::new(Verb::List, "Node", ""))
                .is_ok()
        );
        let tunnel = |name| {
            Attributes::new(Verb::Create, "Node", "")
                .name(name)
                .subresource("tunnel")
        };
        assert!(chain.check(&n1(), &tunnel("n1")).is_ok());
        assert!(chain.check(&n1(), &tunnel("n2")).is_err());
    }

    #[test]
    fn a_node_touches_only_its_lease_in_kube_node_lease() {
        let chain = chain();
        for verb in [Verb::Get, Verb::Create, Verb::Update] {
            let own = Attributes::new(verb, "Lease", "kube-node-lease").name("n1");
            assert!(chain.check(&n1(), &own).is_ok(), "{verb}");
            let other = Attributes::new(verb, "Lease", "kube-node-lease").name("n2");
            assert!(chain.check(&n1(), &other).is_err(), "{verb}");
            let elsewhere = Attributes::new(verb, "Lease", "default").name("n1");
            assert_eq!(
                chain.check(&n1(), &elsewhere).unwrap_err().to_string(),
                format!(
                    "User \"system:node:n1\" cannot {verb} resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"default\""
                )
            );
        }
        for verb in [Verb::Delete, Verb::List, Verb::Watch] {
            let attrs = Attributes::new(verb, "Lease", "kube-node-lease").name("n1");
            assert!(chain.check(&n1(), &attrs).is_err(), "{verb}");
        }
    }

    #[test]
    fn a_node_reaches_only_its_pods_and_what_they_use() {
        use super::super::feed::Index;
        use skiff_api::v1::*;
        let graph = Arc::new(NodeGraph::default());
        let pod = |name: &str, node: &str, secret: &str| Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "shop".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                node_name: node.into(),
                containers: vec![Container {
                    env: vec![EnvVar {
                        name: "PASSWORD".into(),
                        value_from: Some(EnvVarSource {
                            secret_key_ref: Some(KeySelector {
                                name: secret.into(),
                                key: "p".into(),
                                optional: None,
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        graph.put(pod("mine", "n1", "my-secret"));
        graph.put(pod("theirs", "n2", "their-secret"));
        let chain = chain_with(graph);
        let ok = |attrs: Attributes<'_>| chain.check(&n1(), &attrs).is_ok();
        let pods = |verb| Attributes::new(verb, "Pod", "shop");
        assert!(ok(pods(Verb::Get).name("mine")));
        assert!(ok(pods(Verb::Delete).name("mine")));
        assert!(ok(pods(Verb::Update).name("mine").subresource("status")));
        assert!(ok(pods(Verb::List)));
        assert!(!ok(pods(Verb::Get).name("theirs")));
        assert!(!ok(pods(Verb::Delete).name("theirs")));
        assert!(!ok(pods(Verb::Update).name("theirs").subresource("status")));
        assert!(!ok(pods(Verb::Update).name("mine")));
        assert!(!ok(pods(Verb::Watch).name("theirs")));
        let secrets = |verb| Attributes::new(verb, "Secret", "shop");
        for verb in [Verb::Get, Verb::List, Verb::Watch] {
            assert!(ok(secrets(verb).name("my-secret")), "{verb}");
            assert!(!ok(secrets(verb).name("their-secret")), "{verb}");
            // A list or watch of every Secret is no read of one.
            assert!(!ok(secrets(verb)), "{verb}");
        }
        assert!(!ok(secrets(Verb::Update).name("my-secret")));
        assert!(!ok(
            Attributes::new(Verb::Get, "ConfigMap", "shop").name("my-secret")
        ));
        assert!(ok(
            Attributes::new(Verb::Get, "ConfigMap", "skiff-system").name("kubelet-config")
        ));
    }

    #[test]
    fn a_node_may_not_create_pods_exec_or_write_secrets() {
        let chain = chain();
        for who in [n1()] {
            let refused = [
                Attributes::new(Verb::Create, "Pod", "default"),
                Attributes::new(Verb::Update, "Secret", "default").name("s"),
                Attributes::new(Verb::Create, "Pod", "default")
                    .name("web")
                    .subresource("exec"),
                Attributes::new(Verb::Create, "Deployment", "default"),
            ];
            for attrs in refused {
                assert!(chain.check(&who, &attrs).is_err(), "{who:?} {attrs:?}");
            }
        }
        // A bootstrap token asks for a certificate, and does nothing else.
        let csr = |name| Attributes::new(Verb::Create, "CertificateSigningRequest", "").name(name);
        assert!(chain.check(&Identity::NodeBootstrap, &csr("n7")).is_ok());
        assert!(chain.check(&n1(), &csr("n1")).is_ok());
        assert!(chain.check(&n1(), &csr("n2")).is_err());
        for attrs in [
            Attributes::new(Verb::Get, "Node", "").name("n7"),
            Attributes::new(Verb::Create, "Node", "").name("n7"),
            Attributes::new(Verb::List, "Pod", ""),
            Attributes::new(Verb::Get, "Secret", "default").name("s"),
            Attributes::new(Verb::Create, "Node", "")
                .name("n7")
                .subresource("tunnel"),
        ] {
            assert!(
                chain.check(&Identity::NodeBootstrap, &attrs).is_err(),
                "{attrs:?}"
            );
        }
        // Users are not nodes.
        let user = Identity::User {
            name: "system:node:n1".into(),
            groups: vec![],
        };
        let node = Attributes::new(Verb::Update, "Node", "").name("n1");
        assert!(chain.check(&user, &node).is_err());
        assert!(chain.check(&Identity::Admin, &node).is_ok());
    }
}
