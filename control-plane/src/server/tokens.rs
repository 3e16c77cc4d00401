//! `ServiceAccountTokenApi.Create`: the `serviceaccounts/token` subresource (Kubernetes'
//! TokenRequest). A token names the ServiceAccount, expires (10 minutes to 48 hours; an hour
//! when the request does not say), and may be bound to a pod or a Secret, which revokes it when
//! that object goes.
//!
//! Who may ask: a node, for a pod bound to it that runs as that ServiceAccount (what the agent
//! mounts into the pod; checked here, as Kubernetes' node authorizer does, since it needs the
//! pod); anyone else needs `create` on `serviceaccounts/token` (RBAC: `edit` and above).
//!
//! Must not: write anything (tokens are not stored).

use skiff_api::v1::*;
use tonic::{Request, Response, Status};

use crate::auth::service_account::ServiceAccountTokens;
use crate::auth::service_account::token::{Claims, ISSUER, Ref};
use crate::auth::{Attributes, Chain, Identity, Verb, identity};
use skiff_api::validation::MIN_TOKEN_EXPIRATION_SECONDS;

/// The longest token lifetime the server grants.
pub const MAX_TOKEN_EXPIRATION_SECONDS: i32 = 48 * 3600;
/// A token's lifetime when the request does not say (Kubernetes' own).
pub const DEFAULT_TOKEN_EXPIRATION_SECONDS: i32 = 3600;

#[derive(Clone)]
pub struct TokenService {
    pub tokens: ServiceAccountTokens,
    pub authz: Chain,
}

impl TokenService {
    /// May `who` have a token of `namespace/name` bound to `pod`?
    fn authorize(
        &self,
        who: &Identity,
        namespace: &str,
        name: &str,
        pod: Option<&BoundObjectReference>,
    ) -> Result<(), Status> {
        // A bootstrap token is only for joining: it falls to the chain, which refuses it.
        let node = match who {
            Identity::Node(node) => node.as_str(),
            _ => {
                let attrs = Attributes::new(Verb::Create, "ServiceAccount", namespace)
                    .name(name)
                    .subresource("token");
                return Ok(self.authz.check(who, &attrs)?);
            }
        };
        let refuse = |why: &str| {
            Status::permission_denied(format!(
                "User \"{}\" cannot create resource \"serviceaccounts/token\" in API group \"\" in the namespace \"{namespace}\": {why}",
                who.name()
            ))
        };
        let Some(pod) = pod.filter(|p| p.kind == "Pod") else {
            return Err(refuse("a node may only ask for tokens bound to its pods"));
        };
        let facts = self
            .tokens
            .bindings()
            .pod(namespace, &pod.name)
            .ok_or_else(|| refuse("no such pod"))?;
        if facts.node != node || facts.uid != pod.uid || facts.service_account != name {
            return Err(refuse(&format!(
                "pod {:?} is not this node's, or does not run as service account {name:?}",
                pod.name
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl service_account_token_api_server::ServiceAccountTokenApi for TokenService {
    async fn create(
        &self,
        req: Request<CreateTokenRequest>,
    ) -> Result<Response<TokenRequest>, Status> {
        let who = identity(&req)?;
        let call = req.into_inner();
        let namespace = if call.namespace.is_empty() {
            "default"
        } else {
            call.namespace.as_str()
        };
        let request = call.request.unwrap_or_default();
        self.issue(&who, namespace, &call.name, request)
            .map(Response::new)
    }
}

impl TokenService {
    /// A token of ServiceAccount `namespace/name` for `who`, as `request` asks (the
    /// `serviceaccounts/token` subresource of both front ends).
    pub fn issue(
        &self,
        who: &Identity,
        namespace: &str,
        name: &str,
        mut request: TokenRequest,
    ) -> Result<TokenRequest, Status> {
        let spec = request.spec.clone().unwrap_or_default();
        let bound = spec.bound_object_ref.as_ref();
        if let Some(b) = bound
            && b.kind != "Pod"
            && b.kind != "Secret"
        {
            return Err(Status::invalid_argument(format!(
                "spec.boundObjectRef.kind: Unsupported value: {:?}: supported values: \"Pod\", \"Secret\"",
                b.kind
            )));
        }
        self.authorize(who, namespace, name, bound)?;
        let seconds = spec
            .expiration_seconds
            .unwrap_or(DEFAULT_TOKEN_EXPIRATION_SECONDS);
        if seconds < MIN_TOKEN_EXPIRATION_SECONDS {
            return Err(Status::invalid_argument(format!(
                "spec.expirationSeconds: Invalid value: {seconds}: may not specify a duration less than {MIN_TOKEN_EXPIRATION_SECONDS} seconds"
            )));
        }
        let seconds = seconds.min(MAX_TOKEN_EXPIRATION_SECONDS);
        let bindings = self.tokens.bindings();
        let sa_uid = bindings
            .account_uid(namespace, name)
            .ok_or_else(|| Status::not_found(format!("serviceaccounts {name:?} not found")))?;
        let (mut pod, mut secret) = (None, None);
        match bound {
            Some(b) if b.kind == "Secret" => {
                let uid = bindings
                    .secret_uid(namespace, &b.name)
                    .filter(|u| b.uid.is_empty() || *u == b.uid)
                    .ok_or_else(|| Status::not_found(format!("secrets {:?} not found", b.name)))?;
                secret = Some(Ref {
                    name: b.name.clone(),
                    uid,
                });
            }
            Some(b) => {
                let facts = bindings
                    .pod(namespace, &b.name)
                    .filter(|f| b.uid.is_empty() || f.uid == b.uid)
                    .ok_or_else(|| Status::not_found(format!("pods {:?} not found", b.name)))?;
                pod = Some(Ref {
                    name: b.name.clone(),
                    uid: facts.uid,
                });
            }
            None => {}
        }
        let audiences = if spec.audiences.is_empty() {
            vec![ISSUER.to_string()]
        } else {
            spec.audiences.clone()
        };
        let now = skiff_api::time::now().seconds;
        let mut claims = Claims::new(
            namespace,
            Ref {
                name: name.to_string(),
                uid: sa_uid,
            },
            pod,
            audiences.clone(),
            now,
            i64::from(seconds),
        );
        claims.kubernetes.secret = secret;
        let token = self.tokens.signer().sign(&claims);
        tracing::debug!(caller = %who.name(), namespace = %namespace, service_account = %name, seconds, "token issued");
        request.spec = Some(TokenRequestSpec {
            audiences,
            expiration_seconds: Some(seconds),
            bound_object_ref: spec.bound_object_ref,
        });
        request.status = Some(TokenRequestStatus {
            token,
            expiration_timestamp: Some(skiff_api::Timestamp {
                seconds: claims.exp,
                nanos: 0,
            }),
        });
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use skiff_api::v1::service_account_token_api_server::ServiceAccountTokenApi;

    use super::*;
    use crate::auth::AdminAuthorizer;
    use crate::auth::service_account::Bindings;
    use crate::auth::service_account::token::Signer;

    fn service() -> TokenService {
        let bindings = Arc::new(Bindings::default());
        bindings.put_account(&ServiceAccount {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                namespace: "shop".into(),
                uid: "sa-1".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        bindings.put_pod(&Pod {
            metadata: Some(ObjectMeta {
                name: "web-1".into(),
                namespace: "shop".into(),
                uid: "pod-1".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                service_account_name: "web".into(),
                node_name: "n1".into(),
                ..Default::default()
            }),
            status: None,
        });
        TokenService {
            tokens: ServiceAccountTokens::new(Signer::generate(), bindings),
            authz: Chain::new(vec![Arc::new(AdminAuthorizer)]),
        }
    }

    async fn ask(
        svc: &TokenService,
        who: Identity,
        pod: Option<&str>,
        seconds: i32,
    ) -> Result<TokenRequest, Status> {
        let mut req = Request::new(CreateTokenRequest {
            namespace: "shop".into(),
            name: "web".into(),
            request: Some(TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(seconds),
                    bound_object_ref: pod.map(|p| BoundObjectReference {
                        kind: "Pod".into(),
                        api_version: "v1".into(),
                        name: p.into(),
                        uid: "pod-1".into(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        });
        req.extensions_mut().insert(who);
        svc.create(req).await.map(|r| r.into_inner())
    }

    #[tokio::test]
    async fn a_node_gets_tokens_for_its_own_pods_only() {
        let svc = service();
        let n1 = Identity::Node("n1".into());
        let got = ask(&svc, n1.clone(), Some("web-1"), 3607).await.unwrap();
        let token = got.status.unwrap().token;
        let now = skiff_api::time::now().seconds;
        assert_eq!(
            svc.tokens.authenticate(&token, now),
            Some(Ok(Identity::ServiceAccount {
                namespace: "shop".into(),
                name: "web".into()
            }))
        );
        // Another node, a token bound to nothing, a joining agent, a user without RBAC: no.
        for (who, pod) in [
            (Identity::Node("n2".into()), Some("web-1")),
            (n1.clone(), None),
            (Identity::NodeBootstrap, Some("web-1")),
            (
                Identity::User {
                    name: "jane".into(),
                    groups: vec![],
                },
                Some("web-1"),
            ),
        ] {
            let e = ask(&svc, who.clone(), pod, 3607).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{who:?}: {e:?}");
        }
        // Lifetimes: at least 10 minutes, at most 48 hours.
        let e = ask(&svc, Identity::Admin, None, 60).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let long = ask(&svc, Identity::Admin, None, 10 * 24 * 3600)
            .await
            .unwrap();
        assert_eq!(
            long.spec.unwrap().expiration_seconds,
            Some(MAX_TOKEN_EXPIRATION_SECONDS)
        );
    }

    #[test]
    fn a_token_bound_to_a_secret_dies_with_it() {
        let svc = service();
        let secret = Secret {
            metadata: Some(ObjectMeta {
                name: "bot-token".into(),
                namespace: "shop".into(),
                uid: "secret-1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        svc.tokens.bindings().put_secret(&secret);
        let bound = |kind: &str, name: &str| TokenRequest {
            spec: Some(TokenRequestSpec {
                bound_object_ref: Some(BoundObjectReference {
                    kind: kind.into(),
                    api_version: "v1".into(),
                    name: name.into(),
                    uid: String::new(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let got = svc
            .issue(
                &Identity::Admin,
                "shop",
                "web",
                bound("Secret", "bot-token"),
            )
            .unwrap();
        let token = got.status.unwrap().token;
        let now = skiff_api::time::now().seconds;
        assert!(matches!(svc.tokens.authenticate(&token, now), Some(Ok(_))));
        // Re-made under the same name, it is another Secret: the token is dead.
        let mut again = secret.clone();
        again.metadata.as_mut().unwrap().uid = "secret-2".into();
        svc.tokens.bindings().put_secret(&again);
        assert!(matches!(svc.tokens.authenticate(&token, now), Some(Err(_))));
        // No such Secret, or a kind no token binds to.
        let e = svc
            .issue(&Identity::Admin, "shop", "web", bound("Secret", "nope"))
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        let e = svc
            .issue(&Identity::Admin, "shop", "web", bound("ConfigMap", "c"))
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }
}
