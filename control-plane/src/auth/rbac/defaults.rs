//! The default ClusterRoles and ClusterRoleBindings every cluster starts with (Kubernetes'
//! `bootstrappolicy`), written at server start:
//!
//! - `cluster-admin`: everything, bound to the group `system:masters` (the admin credential);
//! - `admin`, `edit`, `view`: the user-facing roles, meant for RoleBindings in a namespace.
//!   As in Kubernetes they are aggregated: their rules are the union of every ClusterRole
//!   labelled `rbac.authorization.k8s.io/aggregate-to-<role>: "true"`, so that an admin can
//!   extend them; the built-in rules live in `system:aggregate-to-admin|edit|view`. view ⊂ edit ⊂
//!   admin, and only admin may read and write Roles and RoleBindings. None of them may touch
//!   cluster-scoped objects (nodes, namespaces' writes) or Secrets (view). A role whose
//!   annotation `rbac.authorization.kubernetes.io/autoupdate` is `"false"` is left as the admin
//!   changed it; the others are put back to the defaults at every start.
//!
//! Must not: decide anything; the authorizer reads these like any other role.

use std::collections::BTreeMap;
use std::sync::Arc;

use skiff_api::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, LabelSelector, ObjectMeta, PolicyRule,
    RoleRef, Subject,
};
use skiff_api::validation::RBAC_GROUP;

use crate::auth::{Identity, MASTERS};
use crate::error::ApiError;
use crate::server::handler::Handler;
use crate::store::Store;

/// The label that adds a ClusterRole's rules to an aggregated role: `...aggregate-to-view`.
pub const AGGREGATE_LABEL_PREFIX: &str = "rbac.authorization.k8s.io/aggregate-to-";
/// Kubernetes' opt-out of start-up reconciliation.
pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
/// The label on every default object.
pub const BOOTSTRAPPING: &str = "kubernetes.io/bootstrapping";

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

fn rule(verbs: &[&str], group: &str, resources: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        api_groups: vec![group.to_string()],
        resources: strings(resources),
        ..Default::default()
    }
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

fn read_write() -> Vec<&'static str> {
    READ.iter().chain(WRITE).copied().collect()
}

/// The rules of `system:aggregate-to-view`: read what a namespace holds, but not its Secrets.
fn view_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            READ,
            "",
            &[
                "pods",
                "pods/log",
                "pods/status",
                "services",
                "services/status",
                "endpoints",
                "configmaps",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "serviceaccounts",
                "events",
                "limitranges",
            ],
        ),
        rule(READ, "", &["namespaces", "namespaces/status"]),
        rule(
            READ,
            "apps",
            &[
                "deployments",
                "deployments/status",
                "deployments/scale",
                "replicasets",
                "replicasets/status",
                "replicasets/scale",
            ],
        ),
        rule(
            READ,
            "autoscaling",
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        rule(
            READ,
            "networking.k8s.io",
            &["ingresses", "ingresses/status"],
        ),
        rule(READ, "coordination.k8s.io", &["leases"]),
        rule(
            READ,
            "policy",
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
    ]
}

/// The rules of `system:aggregate-to-edit`: write a namespace's workloads and configuration,
/// Secrets included, and run commands in its pods; not its roles.
fn edit_rules() -> Vec<PolicyRule> {
    let rw = read_write();
    vec![
        rule(
            &rw,
            "",
            &[
                "pods",
                "services",
                "endpoints",
                "configmaps",
                "secrets",
                "persistentvolumeclaims",
                "serviceaccounts",
                "events",
            ],
        ),
        rule(
            &["create", "get"],
            "",
            &["pods/exec", "pods/portforward", "pods/attach"],
        ),
        rule(&["create"], "", &["serviceaccounts/token"]),
        // Acting as the namespace's ServiceAccounts (as Kubernetes' edit role; their tokens
        // are the editor's already).
        rule(&["impersonate"], "", &["serviceaccounts"]),
        // Evictions (`kubectl drain`), which honour PodDisruptionBudgets.
        rule(&["create"], "", &["pods/eviction"]),
        rule(
            &rw,
            "apps",
            &[
                "deployments",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
            ],
        ),
        rule(&rw, "autoscaling", &["horizontalpodautoscalers"]),
        rule(&rw, "networking.k8s.io", &["ingresses"]),
        rule(&rw, "coordination.k8s.io", &["leases"]),
        rule(&rw, "policy", &["poddisruptionbudgets"]),
    ]
}

/// The rules of `system:aggregate-to-admin`: a namespace's Roles and RoleBindings.
fn admin_rules() -> Vec<PolicyRule> {
    vec![
        rule(&read_write(), RBAC_GROUP, &["roles", "rolebindings"]),
        rule(
            &["create"],
            "authorization.k8s.io",
            &["localsubjectaccessreviews"],
        ),
    ]
}

fn meta(name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    let mut all: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.insert(BOOTSTRAPPING.into(), "rbac-defaults".into());
    ObjectMeta {
        name: name.into(),
        labels: all,
        annotations: [(AUTOUPDATE.to_string(), "true".to_string())].into(),
        ..Default::default()
    }
}

fn aggregated(name: &str, labels: &[(&str, &str)]) -> ClusterRole {
    ClusterRole {
        metadata: Some(meta(name, labels)),
        rules: vec![],
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: vec![LabelSelector {
                match_labels: [(format!("{AGGREGATE_LABEL_PREFIX}{name}"), "true".into())].into(),
                match_expressions: vec![],
            }],
        }),
    }
}

/// Every default ClusterRole.
pub fn cluster_roles() -> Vec<ClusterRole> {
    let to = |role: &str| (format!("{AGGREGATE_LABEL_PREFIX}{role}"), "true");
    let (admin, edit, view) = (to("admin"), to("edit"), to("view"));
    let parts = |name: &str, labels: &[&(String, &str)], rules| ClusterRole {
        metadata: Some(meta(
            name,
            &labels
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect::<Vec<_>>(),
        )),
        rules,
        aggregation_rule: None,
    };
    vec![
        ClusterRole {
            metadata: Some(meta("cluster-admin", &[])),
            rules: vec![
                rule(&["*"], "*", &["*"]),
                PolicyRule {
                    verbs: strings(&["*"]),
                    non_resource_urls: strings(&["*"]),
                    ..Default::default()
                },
            ],
            aggregation_rule: None,
        },
        aggregated("admin", &[]),
        // edit and view are themselves parts of the roles above them.
        aggregated("edit", &[(admin.0.as_str(), "true")]),
        aggregated(
            "view",
            &[(admin.0.as_str(), "true"), (edit.0.as_str(), "true")],
        ),
        parts("system:aggregate-to-admin", &[&admin], admin_rules()),
        parts("system:aggregate-to-edit", &[&admin, &edit], edit_rules()),
        parts(
            "system:aggregate-to-view",
            &[&admin, &edit, &view],
            view_rules(),
        ),
        // metrics-server's role: whoever may view a namespace may read its pods' figures
        // (`kubectl top pods`).
        parts(
            "system:aggregated-metrics-reader",
            &[&admin, &edit, &view],
            vec![rule(READ, "metrics.k8s.io", &["pods", "nodes"])],
        ),
        // The custom metrics API's (a function's requests, latency, cold starts): whoever may
        // view a namespace may read its functions' figures, as its pods' CPU and memory.
        // Kubernetes has no default role for it (prometheus-adapter's manifests bind theirs).
        parts(
            "system:aggregated-custom-metrics-reader",
            &[&admin, &edit, &view],
            vec![rule(
                READ,
                "custom.metrics.k8s.io",
                &["pods/*", "services/*"],
            )],
        ),
    ]
}

/// Every default ClusterRoleBinding: `cluster-admin` for `system:masters`.
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    vec![ClusterRoleBinding {
        metadata: Some(meta("cluster-admin", &[])),
        subjects: vec![Subject {
            kind: "Group".into(),
            api_group: RBAC_GROUP.into(),
            name: MASTERS.into(),
            namespace: String::new(),
        }],
        role_ref: Some(RoleRef {
            api_group: RBAC_GROUP.into(),
            kind: "ClusterRole".into(),
            name: "cluster-admin".into(),
        }),
    }]
}

fn autoupdate(meta: Option<&ObjectMeta>) -> bool {
    meta.and_then(|m| m.annotations.get(AUTOUPDATE))
        .is_none_or(|v| v != "false")
}

/// Writes the defaults: creates the missing ones and puts back the rules of those an admin
/// changed without opting out (autoupdate `"false"`).
pub async fn ensure(store: &Arc<dyn Store>) -> Result<(), ApiError> {
    let roles = Handler::<ClusterRole>::new(store.clone());
    for want in cluster_roles() {
        let name = want
            .metadata
            .as_ref()
            .map_or("", |m| m.name.as_str())
            .to_string();
        match roles.get(&Identity::Admin, "", &name).await {
            Err(ApiError::NotFound { .. }) => match roles.create(&Identity::Admin, want).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            },
            Ok(mut have) => {
                if autoupdate(have.metadata.as_ref())
                    && (have.rules != want.rules || have.aggregation_rule != want.aggregation_rule)
                {
                    have.rules = want.rules;
                    have.aggregation_rule = want.aggregation_rule;
                    roles.update(&Identity::Admin, have).await?;
                }
            }
            Err(e) => return Err(e),
        }
    }
    let bindings = Handler::<ClusterRoleBinding>::new(store.clone());
    for want in cluster_role_bindings() {
        let name = want
            .metadata
            .as_ref()
            .map_or("", |m| m.name.as_str())
            .to_string();
        match bindings.get(&Identity::Admin, "", &name).await {
            Err(ApiError::NotFound { .. }) => match bindings.create(&Identity::Admin, want).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            },
            Ok(mut have) => {
                if autoupdate(have.metadata.as_ref()) && have.subjects != want.subjects {
                    have.subjects = want.subjects;
                    bindings.update(&Identity::Admin, have).await?;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::validation;

    #[test]
    fn the_defaults_are_valid() {
        for role in cluster_roles() {
            validation::validate(&role).unwrap();
        }
        for binding in cluster_role_bindings() {
            validation::validate(&binding).unwrap();
        }
    }

    #[test]
    fn view_is_in_edit_and_edit_in_admin() {
        let roles = cluster_roles();
        let labels = |name: &str| {
            roles
                .iter()
                .find(|r| r.metadata.as_ref().unwrap().name == name)
                .unwrap()
                .metadata
                .as_ref()
                .unwrap()
                .labels
                .clone()
        };
        let view = labels("system:aggregate-to-view");
        for role in ["admin", "edit", "view"] {
            assert_eq!(
                view.get(&format!("{AGGREGATE_LABEL_PREFIX}{role}"))
                    .map(String::as_str),
                Some("true")
            );
        }
        assert!(
            !labels("system:aggregate-to-edit")
                .contains_key(&format!("{AGGREGATE_LABEL_PREFIX}view"))
        );
        // view reads no Secrets.
        assert!(
            view_rules()
                .iter()
                .all(|r| !r.resources.iter().any(|x| x == "secrets"))
        );
    }
}
