//! `AccessReviewApi`: may the caller (SelfSubjectAccessReview) or someone else
//! (SubjectAccessReview) do a thing, and who is the caller (SelfSubjectReview) — what `skiff
//! auth can-i` and `skiff auth whoami` ask.
//!
//! Any authenticated caller may ask about itself (Kubernetes' `system:basic-user`); asking about
//! another needs `create` on `subjectaccessreviews`. The answer is the server's own chain's, so
//! it is exactly what a request would meet.
//!
//! Must not: change anything.

use skiff_api::kinds::{KINDS, KindInfo};
use skiff_api::v1::*;
use tonic::{Request, Response, Status};

use crate::auth::{Attributes, Chain, Decision, Identity, Verb, identity, resource_of};

#[derive(Clone)]
pub struct AccessReviewService {
    pub authz: Chain,
}

/// A verb of an RBAC rule as skiff's API knows it; `None` for verbs it does not serve.
pub fn verb_of(verb: &str) -> Option<Verb> {
    Some(match verb {
        "get" => Verb::Get,
        "list" => Verb::List,
        "watch" => Verb::Watch,
        "create" => Verb::Create,
        "update" => Verb::Update,
        "patch" => Verb::Patch,
        "delete" => Verb::Delete,
        "impersonate" => Verb::Impersonate,
        _ => return None,
    })
}

/// The kind served as `resource` in `group` (`deployments`, `apps`); an empty group matches a
/// resource of any group, as kubectl's short forms do.
fn kind_of(resource: &str, group: &str) -> Option<&'static KindInfo> {
    KINDS
        .iter()
        .find(|k| k.plural == resource && (group.is_empty() || resource_of(k.kind).0 == group))
}

/// The identity a SubjectAccessReview asks about, from a user name and groups.
pub fn identity_of(user: &str, groups: &[String]) -> Identity {
    if let Some(rest) = user.strip_prefix("system:serviceaccount:")
        && let Some((namespace, name)) = rest.split_once(':')
    {
        return Identity::ServiceAccount {
            namespace: namespace.into(),
            name: name.into(),
        };
    }
    if let Some(node) = user.strip_prefix(crate::auth::NODE_PREFIX) {
        return Identity::Node(node.into());
    }
    if user == "admin" {
        return Identity::Admin;
    }
    Identity::User {
        name: user.into(),
        groups: groups.to_vec(),
    }
}

/// The chain's answer about `who` doing what `attrs` describe.
pub fn review(
    chain: &Chain,
    who: &Identity,
    attrs: &ResourceAttributes,
) -> SubjectAccessReviewStatus {
    let no = |reason: String| SubjectAccessReviewStatus {
        allowed: false,
        denied: false,
        reason,
    };
    let Some(verb) = verb_of(&attrs.verb) else {
        return no(format!("skiff serves no verb {:?}", attrs.verb));
    };
    // What impersonation names are no kinds (crate::auth::impersonation).
    let impersonated = match (verb, attrs.group.as_str(), attrs.resource.as_str()) {
        (Verb::Impersonate, "", "users") => Some(("User", false)),
        (Verb::Impersonate, "", "groups") => Some(("Group", false)),
        (Verb::Impersonate, "", "serviceaccounts") => Some(("ServiceAccount", true)),
        (Verb::Impersonate, crate::auth::impersonation::AUTHENTICATION_GROUP, "uids") => {
            Some(("UID", false))
        }
        (Verb::Impersonate, crate::auth::impersonation::AUTHENTICATION_GROUP, "userextras") => {
            Some(("UserExtra", false))
        }
        _ => None,
    };
    let (kind, namespaced) = match impersonated {
        Some(k) => k,
        None => match kind_of(&attrs.resource, &attrs.group) {
            Some(k) => (k.kind, k.namespaced),
            None => {
                return no(format!(
                    "the server doesn't have a resource type {:?}",
                    attrs.resource
                ));
            }
        },
    };
    let namespace = if namespaced {
        attrs.namespace.as_str()
    } else {
        ""
    };
    let request = Attributes {
        verb,
        kind,
        namespace,
        name: &attrs.name,
        subresource: &attrs.subresource,
    };
    match chain.decide(who, &request) {
        Decision::Allow => SubjectAccessReviewStatus {
            allowed: true,
            denied: false,
            reason: String::new(),
        },
        Decision::Deny(reason) => SubjectAccessReviewStatus {
            allowed: false,
            denied: true,
            reason,
        },
        Decision::NoOpinion => no(String::new()),
    }
}

fn answer(
    mut review_obj: SubjectAccessReview,
    status: SubjectAccessReviewStatus,
) -> SubjectAccessReview {
    review_obj.status = Some(status);
    review_obj
}

#[tonic::async_trait]
impl access_review_api_server::AccessReviewApi for AccessReviewService {
    async fn create_self_subject_access_review(
        &self,
        req: Request<SubjectAccessReview>,
    ) -> Result<Response<SubjectAccessReview>, Status> {
        let who = identity(&req)?;
        let body = req.into_inner();
        let attrs = body
            .spec
            .as_ref()
            .and_then(|s| s.resource_attributes.clone())
            .ok_or_else(|| Status::invalid_argument("spec.resourceAttributes: Required value"))?;
        let status = review(&self.authz, &who, &attrs);
        Ok(Response::new(answer(body, status)))
    }

    async fn create_subject_access_review(
        &self,
        req: Request<SubjectAccessReview>,
    ) -> Result<Response<SubjectAccessReview>, Status> {
        let who = identity(&req)?;
        self.authz.check(
            &who,
            &Attributes::new(Verb::Create, "SubjectAccessReview", ""),
        )?;
        let body = req.into_inner();
        let spec = body.spec.clone().unwrap_or_default();
        if spec.user.is_empty() {
            return Err(Status::invalid_argument("spec.user: Required value"));
        }
        let attrs = spec
            .resource_attributes
            .ok_or_else(|| Status::invalid_argument("spec.resourceAttributes: Required value"))?;
        let subject = identity_of(&spec.user, &spec.groups);
        let status = review(&self.authz, &subject, &attrs);
        Ok(Response::new(answer(body, status)))
    }

    async fn who_am_i(
        &self,
        req: Request<SelfSubjectReviewRequest>,
    ) -> Result<Response<SelfSubjectReview>, Status> {
        let who = identity(&req)?;
        Ok(Response::new(SelfSubjectReview {
            user_info: Some(UserInfo {
                username: who.name().into_owned(),
                groups: who.groups().into_iter().map(|g| g.into_owned()).collect(),
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AdminAuthorizer;
    use std::sync::Arc;

    fn attrs(verb: &str, resource: &str, ns: &str) -> ResourceAttributes {
        ResourceAttributes {
            verb: verb.into(),
            resource: resource.into(),
            namespace: ns.into(),
            ..Default::default()
        }
    }

    #[test]
    fn reviews_answer_as_the_chain_would() {
        let chain = Chain::new(vec![Arc::new(AdminAuthorizer)]);
        assert!(review(&chain, &Identity::Admin, &attrs("delete", "nodes", "x")).allowed);
        let jane = identity_of("jane", &[]);
        let no = review(&chain, &jane, &attrs("list", "pods", "default"));
        assert!(!no.allowed && !no.denied);
        let unknown = review(&chain, &Identity::Admin, &attrs("get", "widgets", ""));
        assert!(!unknown.allowed);
        assert!(unknown.reason.contains("widgets"), "{}", unknown.reason);
        let patch = review(&chain, &Identity::Admin, &attrs("patch", "pods", ""));
        assert!(patch.allowed);
        let escalate = review(&chain, &Identity::Admin, &attrs("escalate", "pods", ""));
        assert!(!escalate.allowed);
        // A group that is not the resource's names nothing.
        let mut wrong_group = attrs("get", "deployments", "");
        wrong_group.group = "batch".into();
        assert!(!review(&chain, &Identity::Admin, &wrong_group).allowed);
        // `can-i impersonate users|groups|uids|userextras/KEY`: the resources impersonation
        // checks, though they are no kinds.
        for (group, resource) in [
            ("", "users"),
            ("", "groups"),
            ("", "serviceaccounts"),
            ("authentication.k8s.io", "uids"),
            ("authentication.k8s.io", "userextras"),
        ] {
            let mut a = attrs("impersonate", resource, "default");
            a.group = group.into();
            assert!(review(&chain, &Identity::Admin, &a).allowed, "{resource}");
            assert!(!review(&chain, &jane, &a).allowed, "{resource}");
        }
        let mut foreign = attrs("impersonate", "users", "");
        foreign.group = "apps".into();
        assert!(!review(&chain, &Identity::Admin, &foreign).allowed);
    }

    #[test]
    fn subjects_by_user_name() {
        assert_eq!(
            identity_of("system:serviceaccount:shop:web", &[]),
            Identity::ServiceAccount {
                namespace: "shop".into(),
                name: "web".into()
            }
        );
        assert_eq!(
            identity_of("system:node:n1", &[]),
            Identity::Node("n1".into())
        );
        assert_eq!(
            identity_of("jane", &["dev".into()]),
            Identity::User {
                name: "jane".into(),
                groups: vec!["dev".into()]
            }
        );
    }
}
