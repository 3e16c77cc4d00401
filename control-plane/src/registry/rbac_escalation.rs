//! RBAC's escalation check (Kubernetes' `ConfirmNoEscalation` and `BindingAuthorized`), a
//! validating link on writes of the four RBAC kinds:
//!
//! - a Role or ClusterRole may hold only rules its author holds (in the role's namespace, or
//!   cluster-wide for a ClusterRole), unless the author may `escalate` roles/clusterroles;
//! - a RoleBinding or ClusterRoleBinding may grant only a role whose rules its author holds where
//!   the binding applies, unless the author may `bind` that role.
//!
//! So an `admin` of a namespace may hand out `edit` or `view` there, but not `cluster-admin`.
//! The author's rules are read from the store on each such write (they are rare), through the
//! same evaluation as the authorizer ([`crate::auth::rbac`]). `system:masters` skip the check.
//!
//! Must not: write to the store.

use std::sync::Arc;

use skiff_api::ResourceExt;
use skiff_api::v1::{
    ClusterRole, ClusterRoleBinding, ListRequest, PolicyRule, Role, RoleBinding, RoleRef,
};

use super::admission::{Attributes, ObjectMut, Operation, Validating};
use super::{Registry, Strategy};
use crate::auth::rbac::index::PolicyIndex;
use crate::auth::rbac::{RbacAuthorizer, rules};
use crate::auth::{Identity, MASTERS};
use crate::error::ApiError;
use crate::store::Store;

pub struct RbacEscalation {
    pub store: Arc<dyn Store>,
}

async fn list<K: Strategy>(store: &Arc<dyn Store>, namespace: &str) -> Result<Vec<K>, ApiError> {
    let req = ListRequest {
        namespace: namespace.to_string(),
        ..Default::default()
    };
    Ok(Registry::<K>::new(store.clone()).list(&req).await?.0)
}

impl RbacEscalation {
    /// The RBAC objects that bear on `namespace` (empty: cluster-wide only), in a fresh index.
    async fn authorizer(&self, namespace: &str) -> Result<RbacAuthorizer, ApiError> {
        let index = Arc::new(PolicyIndex::default());
        for role in list::<ClusterRole>(&self.store, "").await? {
            index.put_cluster_role(&role);
        }
        for binding in list::<ClusterRoleBinding>(&self.store, "").await? {
            index.put_cluster_role_binding(&binding);
        }
        if !namespace.is_empty() {
            for role in list::<Role>(&self.store, namespace).await? {
                index.put_role(&role);
            }
            for binding in list::<RoleBinding>(&self.store, namespace).await? {
                index.put_role_binding(&binding);
            }
        }
        Ok(RbacAuthorizer::new(index))
    }

    /// Whether `who` may `verb` (`escalate`, `bind`) `resource` `name` in `namespace`.
    fn may(
        authz: &RbacAuthorizer,
        who: &Identity,
        namespace: &str,
        verb: &str,
        resource: &str,
        name: &str,
    ) -> bool {
        let request = rules::Request {
            verb,
            group: skiff_api::validation::RBAC_GROUP,
            resource,
            subresource: "",
            name,
        };
        authz
            .rules_for(who, namespace)
            .iter()
            .any(|r| rules::allows(r, &request))
    }

    /// The rules `role_ref` grants in `namespace`.
    async fn granted(
        &self,
        role_ref: Option<&RoleRef>,
        namespace: &str,
    ) -> Result<Vec<PolicyRule>, ApiError> {
        let Some(r) = role_ref else {
            return Ok(Vec::new());
        };
        let index = PolicyIndex::default();
        if r.kind == "Role" {
            match Registry::<Role>::new(self.store.clone())
                .get(namespace, &r.name)
                .await
            {
                Ok(role) => return Ok(role.rules),
                Err(ApiError::NotFound { .. }) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        }
        for role in list::<ClusterRole>(&self.store, "").await? {
            index.put_cluster_role(&role);
        }
        Ok(index.cluster_role_rules(&r.name))
    }
}

fn refused(kind: &str, name: &str, who: &Identity, what: &str, missing: &[PolicyRule]) -> ApiError {
    let rules: Vec<String> = missing
        .iter()
        .map(|r| {
            format!(
                "{{APIGroups:{:?}, Resources:{:?}, ResourceNames:{:?}, Verbs:{:?}}}",
                r.api_groups, r.resources, r.resource_names, r.verbs
            )
        })
        .collect();
    let groups: Vec<String> = who.groups().iter().map(|g| g.to_string()).collect();
    ApiError::Forbidden(format!(
        "{kind}.rbac.authorization.k8s.io {name:?} is forbidden: user {:?} (groups={groups:?}) is attempting to {what} RBAC permissions not currently held: {}",
        who.name(),
        rules.join(" ")
    ))
}

#[async_trait::async_trait]
impl Validating for RbacEscalation {
    fn name(&self) -> &'static str {
        "RBACEscalation"
    }

    async fn validate(&self, attrs: &Attributes<'_>, obj: ObjectMut<'_>) -> Result<(), ApiError> {
        if !matches!(attrs.operation, Operation::Create | Operation::Update) {
            return Ok(());
        }
        let who = attrs.user;
        if *who == Identity::Admin || who.in_group(MASTERS) {
            return Ok(());
        }
        let namespace = if attrs.namespaced {
            attrs.namespace
        } else {
            ""
        };
        match obj {
            ObjectMut::Role(role) => {
                let authz = self.authorizer(namespace).await?;
                let missing = authz.missing(who, namespace, &role.rules);
                if !missing.is_empty()
                    && !Self::may(&authz, who, namespace, "escalate", "roles", role.name())
                {
                    return Err(refused("roles", role.name(), who, "grant", &missing));
                }
            }
            ObjectMut::ClusterRole(role) => {
                let authz = self.authorizer("").await?;
                let mut wanted = role.rules.clone();
                if role.aggregation_rule.is_some() {
                    // Its rules will be those of the roles it selects: judge them as if now.
                    let index = PolicyIndex::default();
                    for other in list::<ClusterRole>(&self.store, "").await? {
                        index.put_cluster_role(&other);
                    }
                    index.put_cluster_role(role);
                    wanted = index.cluster_role_rules(role.name());
                }
                let missing = authz.missing(who, "", &wanted);
                if !missing.is_empty()
                    && !Self::may(&authz, who, "", "escalate", "clusterroles", role.name())
                {
                    return Err(refused("clusterroles", role.name(), who, "grant", &missing));
                }
            }
            ObjectMut::RoleBinding(binding) => {
                self.check_binding(
                    who,
                    namespace,
                    binding.role_ref.as_ref(),
                    "rolebindings",
                    binding.name(),
                )
                .await?;
            }
            ObjectMut::ClusterRoleBinding(binding) => {
                self.check_binding(
                    who,
                    "",
                    binding.role_ref.as_ref(),
                    "clusterrolebindings",
                    binding.name(),
                )
                .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

impl RbacEscalation {
    async fn check_binding(
        &self,
        who: &Identity,
        namespace: &str,
        role_ref: Option<&RoleRef>,
        kind: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let granted = self.granted(role_ref, namespace).await?;
        let authz = self.authorizer(namespace).await?;
        let missing = authz.missing(who, namespace, &granted);
        if missing.is_empty() {
            return Ok(());
        }
        let (resource, role_name) = match role_ref {
            Some(r) if r.kind == "Role" => ("roles", r.name.as_str()),
            Some(r) => ("clusterroles", r.name.as_str()),
            None => ("clusterroles", ""),
        };
        if Self::may(&authz, who, namespace, "bind", resource, role_name) {
            return Ok(());
        }
        Err(refused(kind, name, who, "bind", &missing))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{Harness, meta};
    use skiff_api::v1::Subject;
    use skiff_api::validation::RBAC_GROUP;

    use super::*;

    fn role_ref(kind: &str, name: &str) -> Option<RoleRef> {
        Some(RoleRef {
            api_group: RBAC_GROUP.into(),
            kind: kind.into(),
            name: name.into(),
        })
    }

    fn bob() -> Identity {
        Identity::User {
            name: "bob".into(),
            groups: vec![],
        }
    }

    fn binding(name: &str, role: Option<RoleRef>) -> RoleBinding {
        RoleBinding {
            metadata: meta("dev", name),
            subjects: vec![Subject {
                kind: "User".into(),
                api_group: RBAC_GROUP.into(),
                name: "eve".into(),
                namespace: String::new(),
            }],
            role_ref: role,
        }
    }

    #[tokio::test]
    async fn a_namespace_admin_grants_only_what_it_holds() {
        let h = Harness::new().await;
        h.namespace("dev").await;
        crate::auth::rbac::defaults::ensure(&h.store).await.unwrap();
        // bob administers dev.
        let mut admin = binding("bob-admin", role_ref("ClusterRole", "admin"));
        admin.subjects[0].name = "bob".into();
        h.create(admin).await.unwrap();
        let bindings = h.registry::<RoleBinding>();
        // He may hand out edit and view in dev...
        bindings
            .create(&bob(), binding("eve-edit", role_ref("ClusterRole", "edit")))
            .await
            .unwrap();
        // ...but not cluster-admin, even only in dev.
        let err = bindings
            .create(
                &bob(),
                binding("eve-root", role_ref("ClusterRole", "cluster-admin")),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::Forbidden(_)), "{err}");
        assert!(
            err.to_string().contains(
                "rolebindings.rbac.authorization.k8s.io \"eve-root\" is forbidden: user \"bob\""
            ),
            "{err}"
        );
        // A Role of his own holds only rules he holds: pods yes, nodes no.
        let roles = h.registry::<Role>();
        let rule = |resource: &str| PolicyRule {
            verbs: vec!["get".into()],
            api_groups: vec!["".into()],
            resources: vec![resource.into()],
            ..Default::default()
        };
        let role = |name: &str, resource: &str| Role {
            metadata: meta("dev", name),
            rules: vec![rule(resource)],
        };
        roles.create(&bob(), role("pods", "pods")).await.unwrap();
        let err = roles
            .create(&bob(), role("nodes", "nodes"))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("attempting to grant RBAC permissions not currently held"),
            "{err}"
        );
        // The admin is never held back.
        roles
            .create(&Identity::Admin, role("nodes", "nodes"))
            .await
            .unwrap();
    }
}
