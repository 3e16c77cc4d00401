//! Role-based access control (Kubernetes' RBAC authorizer): a caller may do what some Role or
//! ClusterRole bound to it allows. ClusterRoleBindings grant their role everywhere (cluster-scoped
//! objects included); a RoleBinding grants its Role or ClusterRole in its own namespace only.
//! RBAC only adds: it allows or has no opinion, never denies.
//!
//! - [`rules`]: the pure judgements (a rule allows a request, a subject names a caller, rules
//!   cover rules);
//! - [`index`]: the RBAC objects in memory, fed by watches;
//! - [`defaults`]: cluster-admin, admin, edit, view, written at server start.
//!
//! Requests on a Namespace object itself (`get namespace shop`) are judged in that namespace, as
//! Kubernetes does, so a RoleBinding in `shop` may let its subjects read `shop`.
//!
//! Must not: read the store per request, or know how requests travel.

pub mod defaults;
pub mod index;
pub mod rules;

use std::sync::Arc;

use skiff_api::v1::PolicyRule;

use super::{Attributes, Authorizer, Decision, Identity, resource_of};
use index::PolicyIndex;

/// The RBAC authorizer over an index.
#[derive(Clone)]
pub struct RbacAuthorizer {
    index: Arc<PolicyIndex>,
}

impl RbacAuthorizer {
    pub fn new(index: Arc<PolicyIndex>) -> Self {
        Self { index }
    }

    pub fn index(&self) -> &Arc<PolicyIndex> {
        &self.index
    }

    /// Every rule that applies to `who` in `namespace` (empty: the cluster-wide ones only), for
    /// `skiff auth can-i --list` and the escalation check.
    pub fn rules_for(&self, who: &Identity, namespace: &str) -> Vec<PolicyRule> {
        let mut out = Vec::new();
        self.visit(who, namespace, |rules| {
            out.extend_from_slice(rules);
            false
        });
        out
    }

    /// Calls `f` with the rules of each grant naming `who` (cluster-wide first, then those of
    /// `namespace`) until `f` returns true; whether it did.
    fn visit(
        &self,
        who: &Identity,
        namespace: &str,
        mut f: impl FnMut(&[PolicyRule]) -> bool,
    ) -> bool {
        for grant in self.index.cluster_grants() {
            if grant.subjects.iter().any(|s| rules::names(s, "", who))
                && f(&self.index.rules_of(&grant, ""))
            {
                return true;
            }
        }
        if namespace.is_empty() {
            return false;
        }
        for grant in self.index.namespace_grants(namespace) {
            if grant
                .subjects
                .iter()
                .any(|s| rules::names(s, namespace, who))
                && f(&self.index.rules_of(&grant, namespace))
            {
                return true;
            }
        }
        false
    }

    /// Would `who` hold every permission of `wanted` in `namespace` (Kubernetes'
    /// `ConfirmNoEscalation`)? The rules it lacks, if any.
    pub fn missing(
        &self,
        who: &Identity,
        namespace: &str,
        wanted: &[PolicyRule],
    ) -> Vec<PolicyRule> {
        let held = self.rules_for(who, namespace);
        wanted
            .iter()
            .filter(|w| !rules::covers(&held, w))
            .cloned()
            .collect()
    }
}

impl Authorizer for RbacAuthorizer {
    fn authorize(&self, who: &Identity, attrs: &Attributes<'_>) -> Decision {
        let (group, resource) = resource_of(attrs.kind);
        let request = rules::Request {
            verb: attrs.verb.as_str(),
            group,
            resource: &resource,
            subresource: attrs.subresource,
            name: attrs.name,
        };
        let namespace = if attrs.kind == "Namespace" && attrs.namespace.is_empty() {
            attrs.name
        } else {
            attrs.namespace
        };
        let allowed = self.visit(who, namespace, |rules| {
            rules.iter().any(|r| rules::allows(r, &request))
        });
        if allowed {
            Decision::Allow
        } else {
            Decision::NoOpinion
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AdminAuthorizer, Chain, Verb};
    use skiff_api::v1::{
        ClusterRole, ClusterRoleBinding, ObjectMeta, Role, RoleBinding, RoleRef, Subject,
    };
    use skiff_api::validation::RBAC_GROUP;

    fn meta(ns: &str, name: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            name: name.into(),
            namespace: ns.into(),
            ..Default::default()
        })
    }

    fn user(name: &str) -> Subject {
        Subject {
            kind: "User".into(),
            api_group: RBAC_GROUP.into(),
            name: name.into(),
            namespace: String::new(),
        }
    }

    fn role_ref(kind: &str, name: &str) -> Option<RoleRef> {
        Some(RoleRef {
            api_group: RBAC_GROUP.into(),
            kind: kind.into(),
            name: name.into(),
        })
    }

    fn jane() -> Identity {
        Identity::User {
            name: "jane".into(),
            groups: vec![],
        }
    }

    /// The default roles, `view` for jane cluster-wide and `edit` for her in `dev`.
    fn authorizer() -> RbacAuthorizer {
        let index = Arc::new(PolicyIndex::default());
        for role in defaults::cluster_roles() {
            index.put_cluster_role(&role);
        }
        for binding in defaults::cluster_role_bindings() {
            index.put_cluster_role_binding(&binding);
        }
        index.put_cluster_role_binding(&ClusterRoleBinding {
            metadata: meta("", "jane-view"),
            subjects: vec![user("jane")],
            role_ref: role_ref("ClusterRole", "view"),
        });
        index.put_role_binding(&RoleBinding {
            metadata: meta("dev", "jane-edit"),
            subjects: vec![user("jane")],
            role_ref: role_ref("ClusterRole", "edit"),
        });
        RbacAuthorizer::new(index)
    }

    fn may(a: &RbacAuthorizer, who: &Identity, attrs: Attributes<'_>) -> bool {
        a.authorize(who, &attrs) == Decision::Allow
    }

    #[test]
    fn view_reads_but_never_writes() {
        let a = authorizer();
        let jane = jane();
        assert!(may(&a, &jane, Attributes::new(Verb::List, "Pod", "prod")));
        assert!(may(
            &a,
            &jane,
            Attributes::new(Verb::Get, "Deployment", "prod").name("web")
        ));
        assert!(may(
            &a,
            &jane,
            Attributes::new(Verb::Get, "Pod", "prod")
                .name("web")
                .subresource("log")
        ));
        for verb in [Verb::Create, Verb::Update, Verb::Delete] {
            assert!(
                !may(&a, &jane, Attributes::new(verb, "Pod", "prod")),
                "{verb}"
            );
        }
        // view reads no Secrets, and nothing cluster-scoped.
        assert!(!may(
            &a,
            &jane,
            Attributes::new(Verb::Get, "Secret", "prod").name("s")
        ));
        assert!(!may(&a, &jane, Attributes::new(Verb::List, "Node", "")));
        assert!(!may(
            &a,
            &jane,
            Attributes::new(Verb::Create, "Pod", "prod")
                .name("w")
                .subresource("exec")
        ));
    }

    #[test]
    fn a_namespaced_edit_role_stays_in_its_namespace() {
        let a = authorizer();
        let jane = jane();
        for verb in [Verb::Create, Verb::Update, Verb::Delete] {
            assert!(
                may(&a, &jane, Attributes::new(verb, "Deployment", "dev")),
                "{verb}"
            );
            assert!(
                !may(&a, &jane, Attributes::new(verb, "Deployment", "prod")),
                "{verb}"
            );
        }
        assert!(may(
            &a,
            &jane,
            Attributes::new(Verb::Get, "Secret", "dev").name("s")
        ));
        assert!(may(
            &a,
            &jane,
            Attributes::new(Verb::Create, "Pod", "dev")
                .name("w")
                .subresource("exec")
        ));
        // edit may not grant: Roles and RoleBindings are admin's.
        assert!(!may(
            &a,
            &jane,
            Attributes::new(Verb::Create, "RoleBinding", "dev")
        ));
        // A namespace's own object is judged in it: jane reads `dev` (view) but not deletes it.
        assert!(may(
            &a,
            &jane,
            Attributes::new(Verb::Get, "Namespace", "").name("dev")
        ));
        assert!(!may(
            &a,
            &jane,
            Attributes::new(Verb::Delete, "Namespace", "").name("dev")
        ));
        // No opinion about strangers.
        let bob = Identity::User {
            name: "bob".into(),
            groups: vec![],
        };
        assert_eq!(
            a.authorize(&bob, &Attributes::new(Verb::List, "Pod", "dev")),
            Decision::NoOpinion
        );
    }

    #[test]
    fn roles_bindings_and_their_removal() {
        let a = authorizer();
        let index = a.index();
        let sa = Identity::ServiceAccount {
            namespace: "shop".into(),
            name: "reader".into(),
        };
        let read_cm = Attributes::new(Verb::Get, "ConfigMap", "shop").name("settings");
        assert!(!may(&a, &sa, read_cm));
        index.put_role(&Role {
            metadata: meta("shop", "cm-reader"),
            rules: vec![PolicyRule {
                verbs: vec!["get".into()],
                api_groups: vec!["".into()],
                resources: vec!["configmaps".into()],
                resource_names: vec!["settings".into()],
                non_resource_urls: vec![],
            }],
        });
        index.put_role_binding(&RoleBinding {
            metadata: meta("shop", "reader"),
            subjects: vec![Subject {
                kind: "ServiceAccount".into(),
                name: "reader".into(),
                ..Default::default()
            }],
            role_ref: role_ref("Role", "cm-reader"),
        });
        assert!(may(&a, &sa, read_cm));
        assert!(!may(
            &a,
            &sa,
            Attributes::new(Verb::Get, "ConfigMap", "shop").name("other")
        ));
        assert!(!may(
            &a,
            &sa,
            Attributes::new(Verb::Get, "ConfigMap", "dev").name("settings")
        ));
        index.remove_role("shop", "cm-reader");
        assert!(!may(&a, &sa, read_cm));
    }

    #[test]
    fn aggregation_extends_the_default_roles() {
        let a = authorizer();
        let jane = jane();
        let leases = Attributes::new(Verb::List, "Lease", "prod");
        assert!(may(&a, &jane, leases));
        let hpa_write = Attributes::new(Verb::Create, "Ingress", "prod");
        assert!(!may(&a, &jane, hpa_write));
        // An admin adds a part to view: a rule of its own kind.
        a.index().put_cluster_role(&ClusterRole {
            metadata: Some(ObjectMeta {
                name: "ingress-writer".into(),
                labels: [(
                    format!("{}view", defaults::AGGREGATE_LABEL_PREFIX),
                    "true".into(),
                )]
                .into(),
                ..Default::default()
            }),
            rules: vec![PolicyRule {
                verbs: vec!["create".into()],
                api_groups: vec!["networking.k8s.io".into()],
                resources: vec!["ingresses".into()],
                ..Default::default()
            }],
            aggregation_rule: None,
        });
        assert!(may(&a, &jane, hpa_write));
    }

    #[test]
    fn cluster_admin_is_for_masters_and_refusals_are_kubernetes() {
        let a = authorizer();
        let root = Identity::User {
            name: "root".into(),
            groups: vec![crate::auth::MASTERS.into()],
        };
        assert!(may(
            &a,
            &root,
            Attributes::new(Verb::Delete, "Node", "").name("n1")
        ));
        let chain = Chain::new(vec![Arc::new(AdminAuthorizer), Arc::new(a)]);
        let refused = chain
            .check(
                &jane(),
                &Attributes::new(Verb::Create, "Deployment", "prod"),
            )
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "User \"jane\" cannot create resource \"deployments\" in API group \"apps\" in the namespace \"prod\""
        );
    }

    #[test]
    fn escalation_is_measured_against_held_rules() {
        let a = authorizer();
        let jane = jane();
        let edit = a.index().cluster_role_rules("edit");
        assert!(a.missing(&jane, "dev", &edit).is_empty());
        assert!(!a.missing(&jane, "prod", &edit).is_empty());
        let admin = a.index().cluster_role_rules("admin");
        let lacking = a.missing(&jane, "dev", &admin);
        assert!(
            lacking
                .iter()
                .any(|r| r.resources.iter().any(|x| x == "rolebindings"))
        );
    }
}
