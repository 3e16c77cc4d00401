//! The review resources kubectl's `auth` commands create: `authorization.k8s.io/v1`
//! SelfSubjectAccessReview (`kubectl auth can-i`), SubjectAccessReview (asking about another
//! user: needs `create subjectaccessreviews`), and `authentication.k8s.io/v1` SelfSubjectReview
//! (`kubectl auth whoami`). The answers are the gRPC AccessReviewApi's
//! ([`crate::server::access_review::review`]: the server's own authorizer chain).
//!
//! Must not: change anything (a review is answered, never stored).

use std::sync::Arc;

use serde_json::{Value, json};
use skiff_api::v1::ResourceAttributes;

use super::discovery::SubresourceDiscovery;
use super::status::{RestError, json_response};
use super::{Request, Response, Routes, Subresource};
use crate::audit::ObjectRef;
use crate::auth::{Attributes, Chain, Verb};
use crate::server::access_review::{identity_of, review};

/// Registers the review resources.
pub fn register(routes: &mut Routes, authz: &Chain) {
    for (group, resource, kind, other) in [
        (
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            "SelfSubjectAccessReview",
            false,
        ),
        (
            "authorization.k8s.io",
            "subjectaccessreviews",
            "SubjectAccessReview",
            true,
        ),
    ] {
        routes.resource(
            group,
            "v1",
            resource,
            Arc::new(AccessReview {
                authz: authz.clone(),
                kind,
                other,
            }),
        );
    }
    routes.resource(
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        Arc::new(WhoAmI),
    );
}

struct AccessReview {
    authz: Chain,
    kind: &'static str,
    /// A SubjectAccessReview (about `spec.user`), not a self review.
    other: bool,
}

fn attributes(v: &Value) -> ResourceAttributes {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    ResourceAttributes {
        namespace: s("namespace"),
        verb: s("verb"),
        group: s("group"),
        resource: s("resource"),
        subresource: s("subresource"),
        name: s("name"),
    }
}

/// Non-resource paths every authenticated caller may get (Kubernetes' `system:discovery` and
/// `system:public-info-viewer`).
fn public_path(path: &str) -> bool {
    [
        "/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi",
    ]
    .iter()
    .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

impl AccessReview {
    async fn answer(&self, req: &mut Request) -> Result<Value, RestError> {
        if req.http.method() != http::Method::POST {
            return Err(RestError::method_not_allowed(format!(
                "{}s can only be created",
                self.kind
            )));
        }
        let body = req.body().await?;
        let mut review_obj = super::codec::parse_body(&body)?;
        let spec = review_obj.get("spec").cloned().unwrap_or(Value::Null);
        let subject = if self.other {
            self.authz
                .check(
                    &req.who,
                    &Attributes::new(Verb::Create, "SubjectAccessReview", ""),
                )
                .map_err(|e| RestError::from_api(e, "authorization.k8s.io", self.kind, ""))?;
            let user = spec.get("user").and_then(Value::as_str).unwrap_or("");
            if user.is_empty() {
                return Err(RestError::new(
                    422,
                    "Invalid",
                    format!("{} is invalid: spec.user: Required value", self.kind),
                ));
            }
            let groups: Vec<String> = spec
                .get("groups")
                .and_then(Value::as_array)
                .map(|g| {
                    g.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            identity_of(user, &groups)
        } else {
            req.who.clone()
        };
        let status = if let Some(attrs) = spec.get("resourceAttributes") {
            let s = review(&self.authz, &subject, &attributes(attrs));
            let mut status = json!({ "allowed": s.allowed });
            if s.denied {
                status["denied"] = json!(true);
            }
            if !s.reason.is_empty() {
                status["reason"] = json!(s.reason);
            }
            status
        } else if let Some(attrs) = spec.get("nonResourceAttributes") {
            let path = attrs.get("path").and_then(Value::as_str).unwrap_or("");
            let verb = attrs.get("verb").and_then(Value::as_str).unwrap_or("");
            let allowed =
                subject == crate::auth::Identity::Admin || (verb == "get" && public_path(path));
            json!({ "allowed": allowed })
        } else {
            return Err(RestError::new(
                422,
                "Invalid",
                format!(
                    "{} is invalid: spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
                    self.kind
                ),
            ));
        };
        review_obj["apiVersion"] = json!("authorization.k8s.io/v1");
        review_obj["kind"] = json!(self.kind);
        review_obj["status"] = status;
        Ok(review_obj)
    }
}

fn audited(req: &Request, resource: &str, group: &str, result: &Result<Value, RestError>) {
    let object = ObjectRef {
        resource: resource.into(),
        namespace: String::new(),
        name: String::new(),
        api_group: group.into(),
        api_version: "v1".into(),
        subresource: String::new(),
    };
    req.call.done(
        &req.who,
        "create",
        object,
        &result.as_ref().map(|_| ()).map_err(RestError::to_grpc),
    );
}

#[async_trait::async_trait]
impl Subresource for AccessReview {
    async fn serve(&self, mut req: Request) -> Response {
        let result = self.answer(&mut req).await;
        audited(&req, &req.target.resource, "authorization.k8s.io", &result);
        match result {
            Ok(v) => json_response(201, &v),
            Err(e) => e.into_response(),
        }
    }

    fn discovery(&self) -> SubresourceDiscovery {
        SubresourceDiscovery {
            group: "authorization.k8s.io",
            version: "v1",
            kind: self.kind,
            verbs: &["create"],
        }
    }
}

struct WhoAmI;

#[async_trait::async_trait]
impl Subresource for WhoAmI {
    async fn serve(&self, req: Request) -> Response {
        if req.http.method() != http::Method::POST {
            return RestError::method_not_allowed("selfsubjectreviews can only be created")
                .into_response();
        }
        let groups: Vec<String> = req
            .who
            .groups()
            .into_iter()
            .map(|g| g.into_owned())
            .collect();
        let mut user_info = json!({ "username": req.who.name(), "groups": groups });
        // An impersonated user's uid and extras, as Kubernetes shows them.
        if let Some(i) = req
            .http
            .extensions()
            .get::<crate::auth::impersonation::Impersonated>()
        {
            if !i.uid.is_empty() {
                user_info["uid"] = json!(i.uid);
            }
            if !i.extra.is_empty() {
                user_info["extra"] = json!(i.extra);
            }
        }
        let body = json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {},
            "status": { "userInfo": user_info },
        });
        let result = Ok(body);
        audited(&req, "selfsubjectreviews", "authentication.k8s.io", &result);
        match result {
            Ok(v) => json_response(201, &v),
            Err(e) => e.into_response(),
        }
    }

    fn discovery(&self) -> SubresourceDiscovery {
        SubresourceDiscovery {
            group: "authentication.k8s.io",
            version: "v1",
            kind: "SelfSubjectReview",
            verbs: &["create"],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_paths_are_public() {
        assert!(public_path("/api"));
        assert!(public_path("/apis/apps/v1"));
        assert!(public_path("/openapi/v3"));
        assert!(!public_path("/metrics"));
        assert!(!public_path("/apiss"));
    }
}
