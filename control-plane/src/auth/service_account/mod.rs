//! ServiceAccounts as API callers: tokens issued through the `serviceaccounts/token`
//! subresource (Kubernetes' TokenRequest), bound to a pod or a Secret and expiring, and their
//! authentication.
//!
//! A token is the ServiceAccount `system:serviceaccount:NS:NAME` while its signature, issuer,
//! audience and lifetime check out ([`token`]) *and* the ServiceAccount and the pod or Secret it
//! is bound to still exist with the uids the token names: deleting either revokes it at once.
//! They are looked up in memory ([`Bindings`], fed by watches), never in the store per request.
//!
//! - [`token`]: signing and checking JWTs.
//!
//! Must not: decide what a ServiceAccount may do (RBAC does).

pub mod token;

use std::sync::Arc;

use dashmap::DashMap;
use skiff_api::ResourceExt;
use skiff_api::v1::{Pod, Secret, ServiceAccount};

use super::Identity;
use super::rbac::index::feed;
use crate::error::ApiError;
use crate::store::Store;
use token::{Signer, TokenError};

/// What a bound token's checks need of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFacts {
    pub uid: String,
    pub node: String,
    pub service_account: String,
}

/// ServiceAccounts', pods' and Secrets' uids by (namespace, name).
#[derive(Default)]
pub struct Bindings {
    accounts: DashMap<(String, String), String>,
    pods: DashMap<(String, String), PodFacts>,
    secrets: DashMap<(String, String), String>,
}

fn key(namespace: &str, name: &str) -> (String, String) {
    (namespace.to_string(), name.to_string())
}

impl Bindings {
    pub fn put_account(&self, sa: &ServiceAccount) {
        self.accounts
            .insert(key(sa.namespace(), sa.name()), sa.meta().uid.clone());
    }

    pub fn put_pod(&self, pod: &Pod) {
        let spec = pod.spec.as_ref();
        let account = spec.map_or("", |s| s.service_account_name.as_str());
        self.pods.insert(
            key(pod.namespace(), pod.name()),
            PodFacts {
                uid: pod.meta().uid.clone(),
                node: spec.map(|s| s.node_name.clone()).unwrap_or_default(),
                service_account: if account.is_empty() {
                    "default".into()
                } else {
                    account.to_string()
                },
            },
        );
    }

    pub fn put_secret(&self, secret: &Secret) {
        self.secrets.insert(
            key(secret.namespace(), secret.name()),
            secret.meta().uid.clone(),
        );
    }

    pub fn secret_uid(&self, namespace: &str, name: &str) -> Option<String> {
        self.secrets
            .get(&key(namespace, name))
            .map(|u| u.value().clone())
    }

    pub fn account_uid(&self, namespace: &str, name: &str) -> Option<String> {
        self.accounts
            .get(&key(namespace, name))
            .map(|u| u.value().clone())
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<PodFacts> {
        self.pods
            .get(&key(namespace, name))
            .map(|p| p.value().clone())
    }

    /// Follows ServiceAccounts, pods and Secrets; returns once all are listed.
    pub async fn start(self: &Arc<Self>, store: Arc<dyn Store>) -> Result<(), ApiError> {
        feed::<ServiceAccount, _>(
            self.clone(),
            store.clone(),
            |b, sa| b.put_account(sa),
            |b, ns, n| {
                b.accounts.remove(&key(ns, n));
            },
            |b| b.accounts.clear(),
        )
        .await?;
        feed::<Pod, _>(
            self.clone(),
            store.clone(),
            |b, pod| b.put_pod(pod),
            |b, ns, n| {
                b.pods.remove(&key(ns, n));
            },
            |b| b.pods.clear(),
        )
        .await?;
        feed::<Secret, _>(
            self.clone(),
            store,
            |b, secret| b.put_secret(secret),
            |b, ns, n| {
                b.secrets.remove(&key(ns, n));
            },
            |b| b.secrets.clear(),
        )
        .await
    }
}

/// Why a ServiceAccount token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("service account {0}/{1} has been deleted")]
    AccountGone(String, String),
    #[error("pod {0}/{1} the token is bound to has been deleted")]
    PodGone(String, String),
    #[error("secret {0}/{1} the token is bound to has been deleted")]
    SecretGone(String, String),
}

/// Issues and checks ServiceAccount tokens.
#[derive(Clone)]
pub struct ServiceAccountTokens {
    signer: Arc<Signer>,
    bindings: Arc<Bindings>,
}

impl ServiceAccountTokens {
    pub fn new(signer: Signer, bindings: Arc<Bindings>) -> Self {
        Self {
            signer: Arc::new(signer),
            bindings,
        }
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    pub fn bindings(&self) -> &Arc<Bindings> {
        &self.bindings
    }

    /// `None` if `token` is not a JWT at all (another authenticator's); else who it is, or why
    /// not.
    pub fn authenticate(&self, token: &str, now: i64) -> Option<Result<Identity, Refused>> {
        if !Signer::looks_like_jwt(token) {
            return None;
        }
        Some(self.check(token, now))
    }

    fn check(&self, token: &str, now: i64) -> Result<Identity, Refused> {
        let claims = self.signer.verify(token, now)?;
        let k = &claims.kubernetes;
        let (ns, sa) = (k.namespace.clone(), k.serviceaccount.name.clone());
        if self.bindings.account_uid(&ns, &sa).as_deref() != Some(k.serviceaccount.uid.as_str()) {
            return Err(Refused::AccountGone(ns, sa));
        }
        if let Some(pod) = &k.pod
            && self.bindings.pod(&ns, &pod.name).map(|p| p.uid).as_deref() != Some(pod.uid.as_str())
        {
            return Err(Refused::PodGone(ns, pod.name.clone()));
        }
        if let Some(secret) = &k.secret
            && self.bindings.secret_uid(&ns, &secret.name).as_deref() != Some(secret.uid.as_str())
        {
            return Err(Refused::SecretGone(ns, secret.name.clone()));
        }
        Ok(Identity::ServiceAccount {
            namespace: ns,
            name: sa,
        })
    }
}

impl super::authn::TokenAuthenticator for ServiceAccountTokens {
    fn authenticate_token(&self, token: &[u8]) -> Option<Result<Identity, String>> {
        let token = std::str::from_utf8(token).ok()?;
        let now = skiff_api::time::now().seconds;
        self.authenticate(token, now)
            .map(|r| r.map_err(|e| e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{ObjectMeta, PodSpec};
    use token::{Claims, ISSUER, Ref};

    fn meta(name: &str, uid: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            name: name.into(),
            namespace: "shop".into(),
            uid: uid.into(),
            ..Default::default()
        })
    }

    #[test]
    fn a_bound_token_lives_as_long_as_its_account_and_pod() {
        let bindings = Arc::new(Bindings::default());
        let sa = ServiceAccount {
            metadata: meta("web", "sa-1"),
            ..Default::default()
        };
        let pod = Pod {
            metadata: meta("web-1", "pod-1"),
            spec: Some(PodSpec {
                service_account_name: "web".into(),
                node_name: "n1".into(),
                ..Default::default()
            }),
            status: None,
        };
        bindings.put_account(&sa);
        bindings.put_pod(&pod);
        let tokens = ServiceAccountTokens::new(Signer::generate(), bindings.clone());
        let claims = Claims::new(
            "shop",
            Ref {
                name: "web".into(),
                uid: "sa-1".into(),
            },
            Some(Ref {
                name: "web-1".into(),
                uid: "pod-1".into(),
            }),
            vec![ISSUER.into()],
            1000,
            3600,
        );
        let token = tokens.signer().sign(&claims);
        assert_eq!(
            tokens.authenticate(&token, 1500),
            Some(Ok(Identity::ServiceAccount {
                namespace: "shop".into(),
                name: "web".into()
            }))
        );
        assert_eq!(tokens.authenticate("t0k3n", 1500), None);
        // The pod re-created under the same name is another pod.
        let mut again = pod.clone();
        again.metadata.as_mut().unwrap().uid = "pod-2".into();
        bindings.put_pod(&again);
        assert_eq!(
            tokens.authenticate(&token, 1500),
            Some(Err(Refused::PodGone("shop".into(), "web-1".into())))
        );
        bindings.put_pod(&pod);
        bindings.accounts.remove(&key("shop", "web"));
        assert_eq!(
            tokens.authenticate(&token, 1500),
            Some(Err(Refused::AccountGone("shop".into(), "web".into())))
        );
    }
}
