//! Impersonation, as Kubernetes does it: a caller sends `Impersonate-User`, `Impersonate-Group`
//! (repeatable), `Impersonate-Uid` and `Impersonate-Extra-<key>` headers (what `kubectl --as`,
//! `--as-group`, `--as-uid` send) and the request then acts as that user.
//!
//! Every value named is checked with the verb `impersonate` through the server's [`Chain`],
//! in Kubernetes' order and on Kubernetes' resources: `users` (or `serviceaccounts` in the
//! account's namespace, for a `system:serviceaccount:NS:NAME` user), `groups` (core group),
//! `userextras/<key>` and `uids` (`authentication.k8s.io`), each with the value as the
//! resource name, so a Role's `resourceNames` limit whom one may be. The first value refused
//! refuses the request (403, `users "jane" is forbidden: User "bob" cannot impersonate resource
//! "users" in API group "" at the cluster scope`). Groups, an extra or a uid without a user is
//! a bad request.
//!
//! The impersonated identity: a ServiceAccount user without groups is that ServiceAccount (its
//! groups are Kubernetes' fixed ones); `system:node:NAME` with the group `system:nodes` is that
//! node (as Kubernetes' node authorizer identifies nodes); anyone else is a user with exactly
//! the groups named, and `system:authenticated` added. skiff's identities cannot be
//! unauthenticated, so impersonating `system:anonymous` or `system:unauthenticated` is refused
//! (Kubernetes allows it).
//!
//! Must not: know how requests travel beyond reading an HTTP header map (both front ends carry
//! one), or decide what the impersonated user may do (the request's own authorization does).

use std::collections::BTreeMap;

use http::HeaderMap;

use super::{Attributes, Chain, Identity, NODE_PREFIX, NODES, Verb};
use crate::error::ApiError;

pub const USER_HEADER: &str = "impersonate-user";
pub const GROUP_HEADER: &str = "impersonate-group";
pub const UID_HEADER: &str = "impersonate-uid";
/// Followed by the extra's key, percent-encoded (`Impersonate-Extra-Scopes`).
pub const EXTRA_PREFIX: &str = "impersonate-extra-";

const ANONYMOUS: &str = "system:anonymous";
const UNAUTHENTICATED: &str = "system:unauthenticated";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// Whom a request asks to act as (its `Impersonate-*` headers).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub user: String,
    pub groups: Vec<String>,
    pub uid: String,
    /// Keys lower-cased and unescaped, as Kubernetes reads them.
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The identity a request acts as, with what [`Identity`] has no room for (`kubectl auth
/// whoami` shows them), and who asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impersonated {
    pub identity: Identity,
    pub uid: String,
    pub extra: BTreeMap<String, Vec<String>>,
    /// The authenticated caller.
    pub by: Identity,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImpersonationError {
    /// Malformed headers, or groups, extras or a uid without a user.
    #[error("{0}")]
    BadRequest(String),
    /// A value the caller may not impersonate: Kubernetes' 403, with its `details`.
    #[error("{message}")]
    Forbidden {
        /// `users`, `groups`, `serviceaccounts`, `uids`, `userextras`.
        resource: &'static str,
        group: &'static str,
        name: String,
        message: String,
    },
}

/// One thing to be allowed (Kubernetes' impersonation request).
struct Ask<'a> {
    kind: &'static str,
    resource: &'static str,
    group: &'static str,
    namespace: &'a str,
    name: &'a str,
    subresource: &'a str,
}

/// `NS`, `NAME` of a ServiceAccount's user name.
fn service_account(user: &str) -> Option<(&str, &str)> {
    let (namespace, name) = user.strip_prefix(SERVICE_ACCOUNT_PREFIX)?.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then_some((namespace, name))
}

/// Go's `url.PathUnescape` of an extra's key (`%2F` → `/`); a key that does not unescape is
/// kept as sent.
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => return key.to_string(),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| key.to_string())
}

impl Wanted {
    /// The impersonation a request's headers ask for; `None` when they ask for none.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Wanted>, ImpersonationError> {
        let text = |name: &str, v: &http::HeaderValue| {
            v.to_str().map(str::to_string).map_err(|_| {
                ImpersonationError::BadRequest(format!("the {name} header is not text"))
            })
        };
        let mut wanted = Wanted::default();
        let mut any = false;
        for (name, value) in headers {
            let name = name.as_str();
            if name == USER_HEADER {
                // Kubernetes reads the first value; an empty one is no user.
                if wanted.user.is_empty() {
                    wanted.user = text("Impersonate-User", value)?;
                }
            } else if name == GROUP_HEADER {
                wanted.groups.push(text("Impersonate-Group", value)?);
            } else if name == UID_HEADER {
                if wanted.uid.is_empty() {
                    wanted.uid = text("Impersonate-Uid", value)?;
                }
            } else if let Some(key) = name.strip_prefix(EXTRA_PREFIX) {
                let value = text("Impersonate-Extra", value)?;
                wanted.extra.entry(unescape(key)).or_default().push(value);
            } else {
                continue;
            }
            any = true;
        }
        if !any {
            return Ok(None);
        }
        if wanted.user.is_empty() {
            if wanted.groups.is_empty() && wanted.extra.is_empty() && wanted.uid.is_empty() {
                return Ok(None);
            }
            let mut asked = Vec::new();
            asked.extend(wanted.groups.iter().map(|g| format!("group {g:?}")));
            for (key, values) in &wanted.extra {
                asked.extend(values.iter().map(|v| format!("extra {key}={v:?}")));
            }
            if !wanted.uid.is_empty() {
                asked.push(format!("uid {:?}", wanted.uid));
            }
            return Err(ImpersonationError::BadRequest(format!(
                "requested [{}] without impersonating a user",
                asked.join(", ")
            )));
        }
        Ok(Some(wanted))
    }

    /// The checks, in Kubernetes' order: the user, each group, each extra value, the uid.
    fn asks(&self) -> Vec<Ask<'_>> {
        let mut asks = Vec::new();
        let ask = |kind, resource, group, name| Ask {
            kind,
            resource,
            group,
            namespace: "",
            name,
            subresource: "",
        };
        asks.push(match service_account(&self.user) {
            Some((namespace, name)) => Ask {
                namespace,
                ..ask("ServiceAccount", "serviceaccounts", "", name)
            },
            None => ask("User", "users", "", &self.user),
        });
        for group in &self.groups {
            asks.push(ask("Group", "groups", "", group));
        }
        for (key, values) in &self.extra {
            for value in values {
                asks.push(Ask {
                    subresource: key,
                    ..ask("UserExtra", "userextras", AUTHENTICATION_GROUP, value)
                });
            }
        }
        if !self.uid.is_empty() {
            asks.push(ask("UID", "uids", AUTHENTICATION_GROUP, &self.uid));
        }
        asks
    }

    /// The identity asked for (once allowed).
    fn identity(&self) -> Identity {
        if self.groups.is_empty()
            && let Some((namespace, name)) = service_account(&self.user)
        {
            return Identity::ServiceAccount {
                namespace: namespace.into(),
                name: name.into(),
            };
        }
        if let Some(node) = self.user.strip_prefix(NODE_PREFIX)
            && !node.is_empty()
            && self.groups.iter().any(|g| g == NODES)
        {
            return Identity::Node(node.into());
        }
        Identity::User {
            name: self.user.clone(),
            groups: self.groups.clone(),
        }
    }
}

/// `authentication.k8s.io`, the group of `uids` and `userextras`.
pub const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

/// `who` acting as `wanted`, if `chain` allows `who` to impersonate every value named.
pub fn impersonate(
    chain: &Chain,
    who: &Identity,
    wanted: &Wanted,
) -> Result<Impersonated, ImpersonationError> {
    for ask in wanted.asks() {
        let attrs = Attributes {
            verb: Verb::Impersonate,
            kind: ask.kind,
            namespace: ask.namespace,
            name: ask.name,
            subresource: ask.subresource,
        };
        if let Err(e) = chain.check(who, &attrs) {
            let why = match e {
                ApiError::Forbidden(m) => m,
                other => other.to_string(),
            };
            let qualified = if ask.group.is_empty() {
                ask.resource.to_string()
            } else {
                format!("{}.{}", ask.resource, ask.group)
            };
            return Err(ImpersonationError::Forbidden {
                resource: ask.resource,
                group: ask.group,
                name: ask.name.to_string(),
                message: format!("{qualified} {:?} is forbidden: {why}", ask.name),
            });
        }
    }
    if wanted.user == ANONYMOUS || wanted.groups.iter().any(|g| g == UNAUTHENTICATED) {
        return Err(ImpersonationError::BadRequest(format!(
            "impersonating {ANONYMOUS} or the group {UNAUTHENTICATED} is not supported by skiff (every identity is authenticated)"
        )));
    }
    Ok(Impersonated {
        identity: wanted.identity(),
        uid: wanted.uid.clone(),
        extra: wanted.extra.clone(),
        by: who.clone(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use skiff_api::v1::{
        ClusterRole, ClusterRoleBinding, ObjectMeta, PolicyRule, Role, RoleBinding, RoleRef,
        Subject,
    };
    use skiff_api::validation::RBAC_GROUP;

    use super::*;
    use crate::auth::AdminAuthorizer;
    use crate::auth::rbac::RbacAuthorizer;
    use crate::auth::rbac::index::PolicyIndex;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn wanted(pairs: &[(&str, &str)]) -> Wanted {
        Wanted::from_headers(&headers(pairs)).unwrap().unwrap()
    }

    fn rule(verbs: &[&str], group: &str, resources: &[&str], names: &[&str]) -> PolicyRule {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        PolicyRule {
            verbs: s(verbs),
            api_groups: vec![group.into()],
            resources: s(resources),
            resource_names: s(names),
            ..Default::default()
        }
    }

    fn user_subject(name: &str) -> Subject {
        Subject {
            kind: "User".into(),
            api_group: RBAC_GROUP.into(),
            name: name.into(),
            namespace: String::new(),
        }
    }

    fn meta(ns: &str, name: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            name: name.into(),
            namespace: ns.into(),
            ..Default::default()
        })
    }

    /// bob may be jane (only), in the group `devs` (only), with the extra `scopes=view` and any
    /// uid; he may be ServiceAccounts of `shop` by a RoleBinding there.
    fn chain() -> Chain {
        let index = Arc::new(PolicyIndex::default());
        index.put_cluster_role(&ClusterRole {
            metadata: meta("", "impersonate-jane"),
            rules: vec![
                rule(&["impersonate"], "", &["users"], &["jane"]),
                rule(&["impersonate"], "", &["groups"], &["devs"]),
                rule(
                    &["impersonate"],
                    AUTHENTICATION_GROUP,
                    &["userextras/scopes"],
                    &["view"],
                ),
                rule(&["impersonate"], AUTHENTICATION_GROUP, &["uids"], &[]),
            ],
            ..Default::default()
        });
        index.put_cluster_role_binding(&ClusterRoleBinding {
            metadata: meta("", "bob"),
            role_ref: Some(RoleRef {
                api_group: RBAC_GROUP.into(),
                kind: "ClusterRole".into(),
                name: "impersonate-jane".into(),
            }),
            subjects: vec![user_subject("bob")],
        });
        index.put_role(&Role {
            metadata: meta("shop", "sa-impersonator"),
            rules: vec![rule(&["impersonate"], "", &["serviceaccounts"], &[])],
        });
        index.put_role_binding(&RoleBinding {
            metadata: meta("shop", "bob"),
            role_ref: Some(RoleRef {
                api_group: RBAC_GROUP.into(),
                kind: "Role".into(),
                name: "sa-impersonator".into(),
            }),
            subjects: vec![user_subject("bob")],
        });
        Chain::new(vec![
            Arc::new(AdminAuthorizer),
            Arc::new(RbacAuthorizer::new(index)),
        ])
    }

    fn bob() -> Identity {
        Identity::User {
            name: "bob".into(),
            groups: vec![],
        }
    }

    #[test]
    fn headers_parse_as_kubernetes_reads_them() {
        assert_eq!(
            Wanted::from_headers(&headers(&[("x-other", "1")])),
            Ok(None)
        );
        let w = wanted(&[
            ("Impersonate-User", "jane"),
            ("Impersonate-Group", "devs"),
            ("Impersonate-Group", "ops"),
            ("Impersonate-Uid", "u-1"),
            ("Impersonate-Extra-Scopes", "view"),
            ("Impersonate-Extra-Scopes", "edit"),
            ("Impersonate-Extra-Example.com%2Fteam", "a"),
        ]);
        assert_eq!(w.user, "jane");
        assert_eq!(w.groups, ["devs", "ops"]);
        assert_eq!(w.uid, "u-1");
        assert_eq!(w.extra["scopes"], ["view", "edit"]);
        assert_eq!(w.extra["example.com/team"], ["a"]);
        // Groups without a user: refused, naming what was asked.
        let e = Wanted::from_headers(&headers(&[("Impersonate-Group", "devs")])).unwrap_err();
        assert_eq!(
            e,
            ImpersonationError::BadRequest(
                "requested [group \"devs\"] without impersonating a user".into()
            )
        );
        assert!(matches!(
            Wanted::from_headers(&headers(&[("Impersonate-Uid", "u")])),
            Err(ImpersonationError::BadRequest(_))
        ));
        assert!(matches!(
            Wanted::from_headers(&headers(&[("Impersonate-Extra-a", "b")])),
            Err(ImpersonationError::BadRequest(_))
        ));
        // An empty user header alone asks for nothing.
        assert_eq!(
            Wanted::from_headers(&headers(&[("Impersonate-User", "")])),
            Ok(None)
        );
    }

    #[test]
    fn each_value_is_checked_with_its_resource_name() {
        let chain = chain();
        let got = impersonate(&chain, &bob(), &wanted(&[("Impersonate-User", "jane")])).unwrap();
        assert_eq!(
            got.identity,
            Identity::User {
                name: "jane".into(),
                groups: vec![]
            }
        );
        assert_eq!(
            got.identity.groups(),
            ["system:authenticated"],
            "system:authenticated added"
        );
        assert_eq!(got.by, bob());
        // Another user: refused in Kubernetes' words.
        let e = impersonate(&chain, &bob(), &wanted(&[("Impersonate-User", "alice")]));
        assert_eq!(
            e.unwrap_err(),
            ImpersonationError::Forbidden {
                resource: "users",
                group: "",
                name: "alice".into(),
                message: "users \"alice\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope".into(),
            }
        );
        // A group not named in the rule.
        let e = impersonate(
            &chain,
            &bob(),
            &wanted(&[
                ("Impersonate-User", "jane"),
                ("Impersonate-Group", "devs"),
                ("Impersonate-Group", "system:masters"),
            ]),
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("groups \"system:masters\" is forbidden: User \"bob\" cannot impersonate resource \"groups\""),
            "{e}"
        );
        // Extras by key and value; any uid.
        let ok = impersonate(
            &chain,
            &bob(),
            &wanted(&[
                ("Impersonate-User", "jane"),
                ("Impersonate-Group", "devs"),
                ("Impersonate-Extra-Scopes", "view"),
                ("Impersonate-Uid", "u-1"),
            ]),
        )
        .unwrap();
        assert_eq!(ok.identity.groups(), ["devs", "system:authenticated"]);
        assert_eq!(ok.uid, "u-1");
        let e = impersonate(
            &chain,
            &bob(),
            &wanted(&[
                ("Impersonate-User", "jane"),
                ("Impersonate-Extra-Scopes", "admin"),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "userextras.authentication.k8s.io \"admin\" is forbidden: User \"bob\" cannot impersonate resource \"userextras/scopes\" in API group \"authentication.k8s.io\" at the cluster scope"
        );
        // Someone with no grant at all.
        let carol = Identity::User {
            name: "carol".into(),
            groups: vec![],
        };
        assert!(matches!(
            impersonate(&chain, &carol, &wanted(&[("Impersonate-User", "jane")])),
            Err(ImpersonationError::Forbidden { .. })
        ));
        // The admin may be anyone.
        assert!(
            impersonate(
                &chain,
                &Identity::Admin,
                &wanted(&[("Impersonate-User", "x")])
            )
            .is_ok()
        );
    }

    #[test]
    fn service_accounts_and_nodes_are_themselves() {
        let chain = chain();
        let sa = wanted(&[("Impersonate-User", "system:serviceaccount:shop:web")]);
        let got = impersonate(&chain, &bob(), &sa).unwrap();
        assert_eq!(
            got.identity,
            Identity::ServiceAccount {
                namespace: "shop".into(),
                name: "web".into()
            }
        );
        // Checked in the account's namespace: bob's Role is in `shop` only.
        let e = impersonate(
            &chain,
            &bob(),
            &wanted(&[("Impersonate-User", "system:serviceaccount:dev:web")]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "serviceaccounts \"web\" is forbidden: User \"bob\" cannot impersonate resource \"serviceaccounts\" in API group \"\" in the namespace \"dev\""
        );
        let node = impersonate(
            &chain,
            &Identity::Admin,
            &wanted(&[
                ("Impersonate-User", "system:node:n1"),
                ("Impersonate-Group", "system:nodes"),
            ]),
        )
        .unwrap();
        assert_eq!(node.identity, Identity::Node("n1".into()));
        let not_node = impersonate(
            &chain,
            &Identity::Admin,
            &wanted(&[("Impersonate-User", "system:node:n1")]),
        )
        .unwrap();
        assert!(matches!(not_node.identity, Identity::User { .. }));
        let anonymous = impersonate(
            &chain,
            &Identity::Admin,
            &wanted(&[("Impersonate-User", "system:anonymous")]),
        );
        assert!(matches!(anonymous, Err(ImpersonationError::BadRequest(_))));
    }
}
