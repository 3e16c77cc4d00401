//! The node authorizer (Kubernetes' Node authorizer and NodeRestriction, in one place): what a
//! node agent may do, as `system:node:NAME` or, while joining, with a bootstrap token.
//!
//! A node may write its own Node and its own Lease, read cluster-wide what every node needs
//! (Nodes, Services, Endpoints, Namespaces, Ingresses, IngressClasses), and attach its own tunnel.
//! No opinion about anyone but nodes and bootstrap tokens. Must not: read the store per call.

use super::{Attributes, Authorizer, Decision, Identity, Verb};

/// Node agents' rules.
#[derive(Default)]
pub struct NodeAuthorizer;

impl Authorizer for NodeAuthorizer {
    fn authorize(&self, who: &Identity, attrs: &Attributes<'_>) -> Decision {
        match who {
            Identity::Node(node) => decide(node, attrs),
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
fn decide(node: &str, attrs: &Attributes<'_>) -> Decision {
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
            Verb::Create | Verb::Update | Verb::Delete => !name.is_empty() && own(name),
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
        ("Pod", "") => matches!(verb, Verb::Get | Verb::List | Verb::Watch | Verb::Delete),
        ("Pod", "status") => verb == Verb::Update,
        ("Event", "") => matches!(verb, Verb::Create | Verb::Update | Verb::Get | Verb::List),
        (
            "Secret"
            | "ConfigMap"
            | "PersistentVolumeClaim"
            | "Service"
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
        Chain::new(vec![
            Arc::new(super::super::AdminAuthorizer),
            Arc::new(NodeAuthorizer),
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
            let status = Attributes::new(Verb::Update, "Pod", "default")
                .name("web")
                .subresource("status");
            assert!(chain.check(&who, &status).is_ok());
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
