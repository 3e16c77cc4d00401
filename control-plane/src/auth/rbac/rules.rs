//! RBAC's pure judgements, as Kubernetes' `pkg/apis/rbac/v1/evaluation_helpers.go`: does a rule
//! allow a request, does a binding's subject name a caller, does a set of rules cover another
//! (the escalation check).
//!
//! Must not: read the store or any index; callers hand in the rules and subjects to judge.

use skiff_api::v1::{PolicyRule, Subject};

use super::super::Identity;

/// `*`: every verb, group, resource or name.
pub const ALL: &str = "*";

/// One request, as RBAC rules see it: `get` `apps` `deployments` `scale` `web`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    /// Empty for the object itself.
    pub subresource: &'a str,
    /// Empty for a create or a list or watch of many.
    pub name: &'a str,
}

fn has(values: &[String], wanted: &str) -> bool {
    values.iter().any(|v| v == ALL || v == wanted)
}

/// Kubernetes' `ResourceMatches`: `pods`, `pods/log`, `*`, `*/log` (any resource's log) and
/// `pods/*` (any subresource of pods; not the pods themselves).
fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    let combined = if subresource.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{subresource}")
    };
    rule.resources.iter().any(|r| {
        r == ALL
            || *r == combined
            || (!subresource.is_empty()
                && (r.strip_prefix("*/") == Some(subresource)
                    || r.strip_suffix("/*") == Some(resource)))
    })
}

/// Does `rule` allow `req`?
pub fn allows(rule: &PolicyRule, req: &Request<'_>) -> bool {
    has(&rule.verbs, req.verb)
        && has(&rule.api_groups, req.group)
        && resource_matches(rule, req.resource, req.subresource)
        && (rule.resource_names.is_empty()
            || (!req.name.is_empty() && rule.resource_names.iter().any(|n| n == req.name)))
}

/// Does `subject` (of a binding in `binding_namespace`; empty for a ClusterRoleBinding) name
/// `who`? A ServiceAccount subject without a namespace is in the binding's own.
pub fn names(subject: &Subject, binding_namespace: &str, who: &Identity) -> bool {
    match subject.kind.as_str() {
        "User" => who.name() == subject.name.as_str(),
        "Group" => who.in_group(&subject.name),
        "ServiceAccount" => {
            let namespace = if subject.namespace.is_empty() {
                binding_namespace
            } else {
                subject.namespace.as_str()
            };
            // By user name, as Kubernetes: a user named `system:serviceaccount:NS:NAME` (an
            // impersonation of the account with groups of its own) is the account too.
            match who {
                Identity::ServiceAccount {
                    namespace: ns,
                    name,
                } => ns == namespace && *name == subject.name,
                Identity::User { name, .. } => {
                    name.strip_prefix("system:serviceaccount:")
                        .and_then(|rest| rest.split_once(':'))
                        == Some((namespace, subject.name.as_str()))
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// Does `held` cover every request `wanted` allows (Kubernetes' `Covers`, used to refuse a role
/// or binding that grants more than its author holds)? Each verb, group, resource and name of
/// `wanted` is checked one by one; a `*` in `wanted` needs a `*` in `held`.
pub fn covers(held: &[PolicyRule], wanted: &PolicyRule) -> bool {
    if !wanted.non_resource_urls.is_empty() {
        // skiff serves no non-resource URLs; only a holder of every URL covers them.
        return held
            .iter()
            .any(|h| has(&h.verbs, ALL) && h.non_resource_urls.iter().any(|u| u == ALL));
    }
    let names: Vec<&str> = if wanted.resource_names.is_empty() {
        vec![""]
    } else {
        wanted.resource_names.iter().map(String::as_str).collect()
    };
    for verb in &wanted.verbs {
        for group in &wanted.api_groups {
            for resource in &wanted.resources {
                for name in &names {
                    let covered = held.iter().any(|h| {
                        let all_names = name.is_empty();
                        (h.verbs.iter().any(|v| v == ALL || v == verb))
                            && (h.api_groups.iter().any(|g| g == ALL || g == group))
                            && (h.resources.iter().any(|r| r == ALL || r == resource)
                                || resource_covered_by_pattern(h, resource))
                            && if all_names {
                                h.resource_names.is_empty()
                            } else {
                                h.resource_names.is_empty()
                                    || h.resource_names.iter().any(|n| n == name)
                            }
                    });
                    if !covered {
                        return false;
                    }
                }
            }
        }
    }
    true
}

/// `pods/log` wanted, `pods/*` or `*/log` held.
fn resource_covered_by_pattern(held: &PolicyRule, resource: &str) -> bool {
    match resource.split_once('/') {
        Some((res, sub)) if res != ALL && sub != ALL => resource_matches(held, res, sub),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        PolicyRule {
            verbs: v(verbs),
            api_groups: v(groups),
            resources: v(resources),
            resource_names: v(names),
            non_resource_urls: vec![],
        }
    }

    fn req<'a>(
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        sub: &'a str,
        name: &'a str,
    ) -> Request<'a> {
        Request {
            verb,
            group,
            resource,
            subresource: sub,
            name,
        }
    }

    #[test]
    fn verbs_groups_resources_and_names() {
        let read_pods = rule(&["get", "list"], &[""], &["pods"], &[]);
        assert!(allows(&read_pods, &req("get", "", "pods", "", "web")));
        assert!(allows(&read_pods, &req("list", "", "pods", "", "")));
        assert!(!allows(&read_pods, &req("delete", "", "pods", "", "web")));
        assert!(!allows(&read_pods, &req("get", "apps", "pods", "", "web")));
        // A subresource is its own resource.
        assert!(!allows(&read_pods, &req("get", "", "pods", "log", "web")));
        let one = rule(&["get"], &[""], &["configmaps"], &["settings"]);
        assert!(allows(&one, &req("get", "", "configmaps", "", "settings")));
        assert!(!allows(&one, &req("get", "", "configmaps", "", "other")));
        // A list has no name: resourceNames never allow it.
        assert!(!allows(&one, &req("list", "", "configmaps", "", "")));
        let all = rule(&["*"], &["*"], &["*"], &[]);
        assert!(allows(
            &all,
            &req("delete", "apps", "deployments", "scale", "x")
        ));
    }

    #[test]
    fn subresource_patterns() {
        let logs = rule(&["get"], &[""], &["*/log"], &[]);
        assert!(allows(&logs, &req("get", "", "pods", "log", "web")));
        assert!(!allows(&logs, &req("get", "", "pods", "", "web")));
        let pod_subs = rule(&["create"], &[""], &["pods/*"], &[]);
        assert!(allows(&pod_subs, &req("create", "", "pods", "exec", "web")));
        assert!(!allows(&pod_subs, &req("create", "", "pods", "", "web")));
    }

    #[test]
    fn subjects_name_users_groups_and_service_accounts() {
        let subject = |kind: &str, name: &str, ns: &str| Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: ns.into(),
            api_group: String::new(),
        };
        let jane = Identity::User {
            name: "jane".into(),
            groups: vec!["dev".into()],
        };
        let sa = Identity::ServiceAccount {
            namespace: "shop".into(),
            name: "web".into(),
        };
        assert!(names(&subject("User", "jane", ""), "shop", &jane));
        assert!(!names(&subject("User", "bob", ""), "shop", &jane));
        assert!(names(&subject("Group", "dev", ""), "shop", &jane));
        assert!(names(
            &subject("Group", "system:authenticated", ""),
            "",
            &jane
        ));
        assert!(names(&subject("ServiceAccount", "web", ""), "shop", &sa));
        assert!(names(&subject("ServiceAccount", "web", "shop"), "", &sa));
        assert!(!names(&subject("ServiceAccount", "web", ""), "other", &sa));
        assert!(!names(&subject("ServiceAccount", "web", ""), "shop", &jane));
        assert!(names(
            &subject("User", "system:serviceaccount:shop:web", ""),
            "",
            &sa
        ));
        assert!(names(
            &subject("Group", "system:serviceaccounts:shop", ""),
            "",
            &sa
        ));
    }

    #[test]
    fn covering_rules() {
        let held = [
            rule(&["get", "list"], &[""], &["pods", "services"], &[]),
            rule(&["*"], &["apps"], &["deployments"], &[]),
            rule(&["get"], &[""], &["pods/*"], &[]),
        ];
        assert!(covers(&held, &rule(&["get"], &[""], &["pods"], &[])));
        assert!(covers(&held, &rule(&["get"], &[""], &["pods"], &["web"])));
        assert!(covers(
            &held,
            &rule(&["delete", "update"], &["apps"], &["deployments"], &[])
        ));
        assert!(covers(&held, &rule(&["get"], &[""], &["pods/log"], &[])));
        assert!(!covers(&held, &rule(&["delete"], &[""], &["pods"], &[])));
        assert!(!covers(&held, &rule(&["get"], &[""], &["secrets"], &[])));
        assert!(!covers(&held, &rule(&["*"], &[""], &["pods"], &[])));
        assert!(!covers(&held, &rule(&["get"], &["*"], &["pods"], &[])));
        let named = [rule(&["get"], &[""], &["configmaps"], &["a"])];
        assert!(covers(
            &named,
            &rule(&["get"], &[""], &["configmaps"], &["a"])
        ));
        assert!(!covers(
            &named,
            &rule(&["get"], &[""], &["configmaps"], &[])
        ));
        let everything = [rule(&["*"], &["*"], &["*"], &[])];
        assert!(covers(&everything, &rule(&["*"], &["*"], &["*"], &[])));
    }
}
