//! Validation of rbac.authorization.k8s.io/v1 kinds (Role, ClusterRole, RoleBinding,
//! ClusterRoleBinding) and the v1 ServiceAccount, as Kubernetes' `pkg/apis/rbac/validation`.
//!
//! Rules need verbs; resource rules need apiGroups and resources; nonResourceURLs only in
//! ClusterRoles and never beside resources. Subjects are `User`, `Group` (API group
//! `rbac.authorization.k8s.io`) or `ServiceAccount` (API group empty; a namespace in a
//! ClusterRoleBinding). A RoleBinding refers to a Role or a ClusterRole, a ClusterRoleBinding to a
//! ClusterRole only.

use super::FieldErrors;
use super::names::is_dns1123_subdomain;
use crate::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, ServiceAccount,
    Subject,
};

/// The API group of the RBAC kinds (and of `User`/`Group` subjects and role refs).
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Kubernetes' `ValidatePathSegmentName`: RBAC objects may be named `system:aggregate-to-view`.
pub fn is_path_segment_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '%'])
}

fn validate_rules(rules: &[PolicyRule], cluster: bool, errors: &mut FieldErrors) {
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("rules[{i}]");
        if rule.verbs.is_empty() {
            errors.add(
                format!("{path}.verbs"),
                "Required value: verbs must contain at least one value",
            );
        }
        if !rule.non_resource_urls.is_empty() {
            if !cluster {
                errors.add(
                    format!("{path}.nonResourceURLs"),
                    "Invalid value: namespaced rules cannot apply to non-resource URLs",
                );
            }
            if !rule.api_groups.is_empty() || !rule.resources.is_empty() {
                errors.add(
                    format!("{path}.nonResourceURLs"),
                    "Invalid value: rules cannot apply to both regular resources and non-resource URLs",
                );
            }
            continue;
        }
        if rule.api_groups.is_empty() {
            errors.add(
                format!("{path}.apiGroups"),
                "Required value: resource rules must supply at least one api group",
            );
        }
        if rule.resources.is_empty() {
            errors.add(
                format!("{path}.resources"),
                "Required value: resource rules must supply at least one resource",
            );
        }
    }
}

pub fn validate_role(role: &Role, errors: &mut FieldErrors) {
    validate_rules(&role.rules, false, errors);
}

pub fn validate_cluster_role(role: &ClusterRole, errors: &mut FieldErrors) {
    validate_rules(&role.rules, true, errors);
    if let Some(aggregation) = &role.aggregation_rule {
        for (i, selector) in aggregation.cluster_role_selectors.iter().enumerate() {
            if let Err(e) = crate::selector::LabelSelector::from_spec(selector) {
                errors.add(
                    format!("aggregationRule.clusterRoleSelectors[{i}]"),
                    e.to_string(),
                );
            }
        }
    }
}

fn validate_role_ref(role_ref: Option<&RoleRef>, cluster: bool, errors: &mut FieldErrors) {
    let Some(r) = role_ref else {
        errors.add("roleRef", "Required value");
        return;
    };
    if r.api_group != RBAC_GROUP {
        errors.add(
            "roleRef.apiGroup",
            format!(
                "Unsupported value: {:?}: supported values: {RBAC_GROUP:?}",
                r.api_group
            ),
        );
    }
    let kinds: &[&str] = if cluster {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    if !kinds.contains(&r.kind.as_str()) {
        errors.add(
            "roleRef.kind",
            format!(
                "Unsupported value: {:?}: supported values: {}",
                r.kind,
                super::quoted(kinds)
            ),
        );
    }
    if r.name.is_empty() {
        errors.add("roleRef.name", "Required value");
    } else if !is_path_segment_name(&r.name) {
        errors.add(
            "roleRef.name",
            format!("Invalid value: {:?}: may not contain '/' or '%'", r.name),
        );
    }
}

fn validate_subjects(subjects: &[Subject], cluster: bool, errors: &mut FieldErrors) {
    for (i, s) in subjects.iter().enumerate() {
        let path = format!("subjects[{i}]");
        if s.name.is_empty() {
            errors.add(format!("{path}.name"), "Required value");
        }
        match s.kind.as_str() {
            "ServiceAccount" => {
                if !s.api_group.is_empty() {
                    errors.add(
                        format!("{path}.apiGroup"),
                        format!("Unsupported value: {:?}: supported values: \"\"", s.api_group),
                    );
                }
                if !s.name.is_empty() && !is_dns1123_subdomain(&s.name) {
                    errors.add(
                        format!("{path}.name"),
                        format!("Invalid value: {:?}: not a valid ServiceAccount name", s.name),
                    );
                }
                if cluster && s.namespace.is_empty() {
                    errors.add(format!("{path}.namespace"), "Required value");
                }
            }
            "User" | "Group" => {
                if s.api_group != RBAC_GROUP {
                    errors.add(
                        format!("{path}.apiGroup"),
                        format!(
                            "Unsupported value: {:?}: supported values: {RBAC_GROUP:?}",
                            s.api_group
                        ),
                    );
                }
            }
            other => errors.add(
                format!("{path}.kind"),
                format!(
                    "Unsupported value: {other:?}: supported values: \"ServiceAccount\", \"User\", \"Group\""
                ),
            ),
        }
    }
}

pub fn validate_role_binding(binding: &RoleBinding, errors: &mut FieldErrors) {
    validate_role_ref(binding.role_ref.as_ref(), false, errors);
    validate_subjects(&binding.subjects, false, errors);
}

pub fn validate_cluster_role_binding(binding: &ClusterRoleBinding, errors: &mut FieldErrors) {
    validate_role_ref(binding.role_ref.as_ref(), true, errors);
    validate_subjects(&binding.subjects, true, errors);
}

pub fn validate_service_account(sa: &ServiceAccount, errors: &mut FieldErrors) {
    for (i, s) in sa.image_pull_secrets.iter().enumerate() {
        if s.name.is_empty() {
            errors.add(format!("imagePullSecrets[{i}].name"), "Required value");
        }
    }
    for (i, s) in sa.secrets.iter().enumerate() {
        if s.name.is_empty() {
            errors.add(format!("secrets[{i}].name"), "Required value");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;

    fn paths(errors: &FieldErrors) -> Vec<&str> {
        errors.0.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn a_kubernetes_role_and_binding_decode_and_validate() {
        let text = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: dev}
rules:
- apiGroups: [""]
  resources: ["pods", "pods/log"]
  verbs: ["get", "watch", "list"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read-pods, namespace: dev}
subjects:
- kind: User
  name: jane
  apiGroup: rbac.authorization.k8s.io
- kind: ServiceAccount
  name: builder
roleRef:
  kind: Role
  name: pod-reader
  apiGroup: rbac.authorization.k8s.io
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:aggregate-to-view:widgets", labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}}
rules:
- nonResourceURLs: ["/healthz"]
  verbs: ["get"]
"#;
        let m = manifest::parse("rbac.yaml", text).unwrap();
        let role: Role = m[0].decode_valid("default").unwrap();
        assert_eq!(role.rules[0].resources, ["pods", "pods/log"]);
        let binding: RoleBinding = m[1].decode_valid("default").unwrap();
        assert_eq!(binding.subjects.len(), 2);
        let cr: ClusterRole = m[2].decode_valid("default").unwrap();
        assert_eq!(cr.rules[0].non_resource_urls, ["/healthz"]);
    }

    #[test]
    fn rules_need_verbs_groups_and_resources() {
        let mut errors = FieldErrors::default();
        let role = Role {
            rules: vec![
                PolicyRule::default(),
                PolicyRule {
                    verbs: vec!["get".into()],
                    non_resource_urls: vec!["/x".into()],
                    resources: vec!["pods".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        validate_role(&role, &mut errors);
        assert_eq!(
            paths(&errors),
            [
                "rules[0].verbs",
                "rules[0].apiGroups",
                "rules[0].resources",
                "rules[1].nonResourceURLs",
                "rules[1].nonResourceURLs"
            ]
        );
    }

    #[test]
    fn bindings_check_role_refs_and_subjects() {
        let mut errors = FieldErrors::default();
        let binding = ClusterRoleBinding {
            role_ref: Some(RoleRef {
                api_group: RBAC_GROUP.into(),
                kind: "Role".into(),
                name: "x".into(),
            }),
            subjects: vec![
                Subject {
                    kind: "ServiceAccount".into(),
                    name: "ci".into(),
                    ..Default::default()
                },
                Subject {
                    kind: "User".into(),
                    name: "jane".into(),
                    ..Default::default()
                },
                Subject {
                    kind: "Robot".into(),
                    name: "r2".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        validate_cluster_role_binding(&binding, &mut errors);
        assert_eq!(
            paths(&errors),
            [
                "roleRef.kind",
                "subjects[0].namespace",
                "subjects[1].apiGroup",
                "subjects[2].kind"
            ]
        );
        let mut errors = FieldErrors::default();
        validate_role_binding(&RoleBinding::default(), &mut errors);
        assert_eq!(paths(&errors), ["roleRef"]);
    }

    #[test]
    fn path_segment_names() {
        assert!(is_path_segment_name("system:masters"));
        assert!(!is_path_segment_name("a/b"));
        assert!(!is_path_segment_name(".."));
        assert!(!is_path_segment_name(""));
    }
}
