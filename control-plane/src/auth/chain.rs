//! The server's authorizers in order, asked until one allows or denies, and the refusal message
//! in Kubernetes' shape (`User "x" cannot list resource "pods" in API group "" in the namespace
//! "ns"`).
//!
//! Must not: hold policy of its own beyond the admin's (system:masters may do anything).

use std::sync::Arc;

use super::{Attributes, Authorizer, Decision, Identity, MASTERS};
use crate::error::ApiError;

/// Allows the admin and anyone in `system:masters`; no opinion about anyone else.
pub struct AdminAuthorizer;

impl Authorizer for AdminAuthorizer {
    fn authorize(&self, who: &Identity, _: &Attributes<'_>) -> Decision {
        if *who == Identity::Admin || who.in_group(MASTERS) {
            Decision::Allow
        } else {
            Decision::NoOpinion
        }
    }
}

/// The authorizers of a server, asked in order.
#[derive(Clone)]
pub struct Chain {
    authorizers: Arc<[Arc<dyn Authorizer>]>,
}

impl Default for Chain {
    /// The admin alone: what in-process callers (controllers, start-up) need.
    fn default() -> Self {
        Self::new(vec![Arc::new(AdminAuthorizer)])
    }
}

impl Chain {
    pub fn new(authorizers: Vec<Arc<dyn Authorizer>>) -> Self {
        Self {
            authorizers: authorizers.into(),
        }
    }

    /// The first allow or deny; no opinion if nobody has one.
    pub fn decide(&self, who: &Identity, attrs: &Attributes<'_>) -> Decision {
        for authorizer in self.authorizers.iter() {
            match authorizer.authorize(who, attrs) {
                Decision::NoOpinion => continue,
                decided => return decided,
            }
        }
        Decision::NoOpinion
    }

    /// Ok if some authorizer allows; else `Forbidden` (gRPC `PermissionDenied`) naming the verb,
    /// the resource and the namespace.
    pub fn check(&self, who: &Identity, attrs: &Attributes<'_>) -> Result<(), ApiError> {
        match self.decide(who, attrs) {
            Decision::Allow => Ok(()),
            Decision::Deny(reason) => Err(ApiError::Forbidden(refusal(who, attrs, &reason))),
            Decision::NoOpinion => Err(ApiError::Forbidden(refusal(who, attrs, ""))),
        }
    }
}

/// Kubernetes' message for a refused request.
fn refusal(who: &Identity, attrs: &Attributes<'_>, reason: &str) -> String {
    let (group, plural) = resource_of(attrs.kind);
    let resource = if attrs.subresource.is_empty() {
        plural.into_owned()
    } else {
        format!("{plural}/{}", attrs.subresource)
    };
    let scope = if attrs.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", attrs.namespace)
    };
    let mut message = format!(
        "User \"{}\" cannot {} resource \"{resource}\" in API group \"{group}\" {scope}",
        who.name(),
        attrs.verb
    );
    if !reason.is_empty() {
        message.push_str(": ");
        message.push_str(reason);
    }
    message
}

/// A kind's API group and plural resource name (`Deployment` → (`apps`, `deployments`)).
pub fn resource_of(kind: &str) -> (&'static str, std::borrow::Cow<'static, str>) {
    use std::borrow::Cow::{Borrowed, Owned};
    let group = match kind {
        "Deployment" | "ReplicaSet" => "apps",
        "Lease" => "coordination.k8s.io",
        "Ingress" | "IngressClass" | "NetworkPolicy" => "networking.k8s.io",
        "HorizontalPodAutoscaler" => "autoscaling",
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => {
            "rbac.authorization.k8s.io"
        }
        "CertificateSigningRequest" => "certificates.k8s.io",
        "PodDisruptionBudget" => "policy",
        "ScaleFromZero" | "KeyValue" => "skiff.dev",
        "NodeMetrics" | "PodMetrics" => "metrics.k8s.io",
        "PodCustomMetric" | "ServiceCustomMetric" => "custom.metrics.k8s.io",
        // What impersonation names (users and groups are the core group's).
        "UID" | "UserExtra" => "authentication.k8s.io",
        _ => "",
    };
    let plural = match kind {
        "Endpoints" => Borrowed("endpoints"),
        "ScaleFromZero" => Borrowed("scalefromzero"),
        "KeyValue" => Borrowed("keyvalue"),
        // metrics.k8s.io's resources are named for what they measure.
        "NodeMetrics" => Borrowed("nodes"),
        "PodMetrics" | "PodCustomMetric" => Borrowed("pods"),
        "ServiceCustomMetric" => Borrowed("services"),
        _ => {
            let lower = kind.to_ascii_lowercase();
            Owned(if let Some(stem) = lower.strip_suffix('y') {
                format!("{stem}ies")
            } else if lower.ends_with('s') {
                format!("{lower}es")
            } else {
                format!("{lower}s")
            })
        }
    };
    (group, plural)
}

#[cfg(test)]
mod tests {
    use super::super::Verb;
    use super::*;

    struct Fixed(Decision);
    impl Authorizer for Fixed {
        fn authorize(&self, _: &Identity, _: &Attributes<'_>) -> Decision {
            self.0.clone()
        }
    }

    fn jane() -> Identity {
        Identity::User {
            name: "jane".into(),
            groups: vec![],
        }
    }

    #[test]
    fn the_first_opinion_wins() {
        let attrs = Attributes::new(Verb::List, "Pod", "shop");
        let chain = Chain::new(vec![
            Arc::new(AdminAuthorizer),
            Arc::new(Fixed(Decision::NoOpinion)),
            Arc::new(Fixed(Decision::Deny("not on Sundays".into()))),
            Arc::new(Fixed(Decision::Allow)),
        ]);
        assert!(chain.check(&Identity::Admin, &attrs).is_ok());
        let refused = chain.check(&jane(), &attrs).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "User \"jane\" cannot list resource \"pods\" in API group \"\" in the namespace \"shop\": not on Sundays"
        );
        assert_eq!(
            tonic::Status::from(refused).code(),
            tonic::Code::PermissionDenied
        );
        let masters = Identity::User {
            name: "root".into(),
            groups: vec![MASTERS.into()],
        };
        assert!(chain.check(&masters, &attrs).is_ok());
    }

    #[test]
    fn nobody_allowing_is_a_refusal_in_kubernetes_words() {
        let chain = Chain::default();
        let exec = Attributes::new(Verb::Create, "Pod", "shop")
            .name("web")
            .subresource("exec");
        assert_eq!(
            chain.check(&jane(), &exec).unwrap_err().to_string(),
            "User \"jane\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"shop\""
        );
        let nodes = Attributes::new(Verb::Delete, "Node", "");
        assert_eq!(
            chain
                .check(&Identity::Node("n1".into()), &nodes)
                .unwrap_err()
                .to_string(),
            "User \"system:node:n1\" cannot delete resource \"nodes\" in API group \"\" at the cluster scope"
        );
    }

    #[test]
    fn plurals_and_groups() {
        for (kind, group, plural) in [
            ("Pod", "", "pods"),
            ("Endpoints", "", "endpoints"),
            ("Ingress", "networking.k8s.io", "ingresses"),
            ("IngressClass", "networking.k8s.io", "ingressclasses"),
            ("NetworkPolicy", "networking.k8s.io", "networkpolicies"),
            ("Deployment", "apps", "deployments"),
            ("Lease", "coordination.k8s.io", "leases"),
            ("PersistentVolumeClaim", "", "persistentvolumeclaims"),
            (
                "HorizontalPodAutoscaler",
                "autoscaling",
                "horizontalpodautoscalers",
            ),
            (
                "ClusterRoleBinding",
                "rbac.authorization.k8s.io",
                "clusterrolebindings",
            ),
            ("PodMetrics", "metrics.k8s.io", "pods"),
            ("NodeMetrics", "metrics.k8s.io", "nodes"),
            ("PodCustomMetric", "custom.metrics.k8s.io", "pods"),
            ("ServiceCustomMetric", "custom.metrics.k8s.io", "services"),
        ] {
            assert_eq!(resource_of(kind), (group, plural.into()), "{kind}");
        }
    }
}
