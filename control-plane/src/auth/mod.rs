//! Who is calling, and may they: the authentication/authorization seam of the API server.
//!
//! - [`authn`]: credentials to an [`Identity`] (client certificates of the cluster CA
//!   ([`x509`]), the admin token, bootstrap tokens ([`bootstrap`])), attached to every request by
//!   the gRPC interceptor; node certificates are checked against the revocation list
//!   ([`revocation`]).
//! - [`Authorizer`]: one policy's answer about one request ([`Attributes`]): allow, deny, or no
//!   opinion. The server holds one [`Chain`] (admin → node → RBAC); a request nobody allows is
//!   refused with `PermissionDenied`, in Kubernetes' message shape.
//!
//! Authorizers are synchronous and read in-memory state (indexes kept by watches), never the
//! store per call. Must not: know how requests travel (gRPC) beyond the interceptor in [`authn`],
//! or write anything.

pub mod authn;
pub mod bootstrap;
mod chain;
pub mod feed;
pub mod impersonation;
pub mod node;
pub mod node_graph;
pub mod rbac;
pub mod revocation;
pub mod service_account;
pub mod token_file;
pub mod x509;

use std::borrow::Cow;

pub use authn::{Authenticator, identity, new_token};
pub use chain::{AdminAuthorizer, Chain, resource_of};

/// Who is calling (Kubernetes' `user.Info`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// The admin credential; groups `system:masters`.
    Admin,
    /// A bootstrap token: may only ask for its node's certificate (and what joining needs).
    NodeBootstrap,
    /// A node agent with its certificate: `system:node:NAME`, the node's name.
    Node(String),
    /// A client certificate's CN and Os, or a user bearer token.
    User { name: String, groups: Vec<String> },
    /// `system:serviceaccount:NS:NAME`.
    ServiceAccount { namespace: String, name: String },
}

/// The group every authenticated caller is in.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The admin's group: allowed everything.
pub const MASTERS: &str = "system:masters";
/// Nodes' group.
pub const NODES: &str = "system:nodes";
/// The prefix of a node's user name.
pub const NODE_PREFIX: &str = "system:node:";
/// Bootstrap tokens' group.
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";

impl Identity {
    /// The user name, as Kubernetes prints it (`system:node:n1`).
    pub fn name(&self) -> Cow<'_, str> {
        match self {
            Identity::Admin => Cow::Borrowed("admin"),
            Identity::NodeBootstrap => Cow::Borrowed("system:bootstrap"),
            Identity::Node(node) => Cow::Owned(format!("{NODE_PREFIX}{node}")),
            Identity::User { name, .. } => Cow::Borrowed(name),
            Identity::ServiceAccount { namespace, name } => {
                Cow::Owned(format!("system:serviceaccount:{namespace}:{name}"))
            }
        }
    }

    /// The groups, `system:authenticated` included.
    pub fn groups(&self) -> Vec<Cow<'_, str>> {
        let mut groups: Vec<Cow<'_, str>> = match self {
            Identity::Admin => vec![Cow::Borrowed(MASTERS)],
            Identity::NodeBootstrap => vec![Cow::Borrowed(BOOTSTRAPPERS)],
            Identity::Node(_) => vec![Cow::Borrowed(NODES)],
            Identity::User { groups, .. } => groups
                .iter()
                .filter(|g| *g != AUTHENTICATED)
                .map(|g| Cow::Borrowed(g.as_str()))
                .collect(),
            Identity::ServiceAccount { namespace, .. } => vec![
                Cow::Borrowed("system:serviceaccounts"),
                Cow::Owned(format!("system:serviceaccounts:{namespace}")),
            ],
        };
        groups.push(Cow::Borrowed(AUTHENTICATED));
        groups
    }

    /// Whether the caller is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups().iter().any(|g| g == group)
    }

    /// The node this identity is, if it is one.
    pub fn node_name(&self) -> Option<&str> {
        match self {
            Identity::Node(name) => Some(name),
            _ => None,
        }
    }
}

/// An API verb, as Kubernetes names them in RBAC rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Create,
    Get,
    List,
    Watch,
    Update,
    /// A PATCH (REST): authorized as Kubernetes does, apart from `update`.
    Patch,
    Delete,
    /// Acting as another user, group, uid or extra (`Impersonate-*` headers,
    /// [`impersonation`]).
    Impersonate,
}

impl Verb {
    /// `create`, `get`, ...: the name in RBAC rules and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Create => "create",
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::Impersonate => "impersonate",
        }
    }

    /// Reads: get, list, watch.
    pub fn is_read(self) -> bool {
        matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request does (Kubernetes' `authorizer.Attributes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes<'a> {
    pub verb: Verb,
    /// The kind (`Pod`); [`resource_of`] gives its API group and plural.
    pub kind: &'a str,
    /// Empty: cluster-scoped, or a list or watch across all namespaces.
    pub namespace: &'a str,
    /// Empty for a create without a name yet, or a list or watch of many.
    pub name: &'a str,
    /// `status`, `log`, `exec`, `portforward`, `tunnel`, ...; empty for the object itself.
    pub subresource: &'a str,
}

impl<'a> Attributes<'a> {
    /// `verb` on `kind` objects in `namespace` (no name, no subresource).
    pub fn new(verb: Verb, kind: &'a str, namespace: &'a str) -> Self {
        Self {
            verb,
            kind,
            namespace,
            name: "",
            subresource: "",
        }
    }

    pub fn name(self, name: &'a str) -> Self {
        Self { name, ..self }
    }

    pub fn subresource(self, subresource: &'a str) -> Self {
        Self {
            subresource,
            ..self
        }
    }
}

/// One authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused, and no later authorizer is asked; the reason is added to the message.
    Deny(String),
    /// Ask the next authorizer.
    NoOpinion,
}

/// One authorization policy.
pub trait Authorizer: Send + Sync {
    fn authorize(&self, who: &Identity, attrs: &Attributes<'_>) -> Decision;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_groups_are_kubernetes() {
        let node = Identity::Node("n1".into());
        assert_eq!(node.name(), "system:node:n1");
        assert_eq!(node.groups(), ["system:nodes", "system:authenticated"]);
        let sa = Identity::ServiceAccount {
            namespace: "shop".into(),
            name: "web".into(),
        };
        assert_eq!(sa.name(), "system:serviceaccount:shop:web");
        assert_eq!(
            sa.groups(),
            [
                "system:serviceaccounts",
                "system:serviceaccounts:shop",
                "system:authenticated"
            ]
        );
        let user = Identity::User {
            name: "jane".into(),
            groups: vec!["dev".into(), AUTHENTICATED.into()],
        };
        assert_eq!(user.groups(), ["dev", "system:authenticated"]);
        assert!(Identity::Admin.in_group(MASTERS));
        assert!(!node.in_group(MASTERS));
        assert_eq!(node.node_name(), Some("n1"));
        assert_eq!(Identity::Admin.node_name(), None);
    }
}
