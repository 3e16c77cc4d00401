//! Bootstrap tokens: the Secrets of type `bootstrap.kubernetes.io/token` in `kube-system`, kept
//! in memory by a watch, and checked as bearer tokens (`<id>.<secret>`) in constant time.
//!
//! A token is good while its Secret exists, says `usage-bootstrap-authentication: "true"` and is
//! not past its `expiration`; deleting the Secret (`skiff token revoke`) revokes it at once.
//! Must not: decide what a bootstrap token may do (the node authorizer does).

use std::sync::Arc;

use dashmap::DashMap;
use skiff_api::join::{BOOTSTRAP_NAMESPACE, BOOTSTRAP_SECRET_TYPE, BootstrapToken};
use skiff_api::v1::Secret;
use subtle::ConstantTimeEq;

use super::feed::{self, Index};
use crate::error::ApiError;
use crate::registry::Registry;

/// The field selector of bootstrap token Secrets.
fn fields() -> String {
    format!("type={BOOTSTRAP_SECRET_TYPE}")
}

/// The known bootstrap tokens, by id.
#[derive(Default)]
pub struct BootstrapTokens {
    by_id: DashMap<String, BootstrapToken>,
}

/// Why a token was refused (logged, never told to the caller).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Unknown,
    WrongSecret,
    Expired,
    NotForAuthentication,
}

impl BootstrapTokens {
    /// Checks `id`.`secret` at `now` (unix seconds).
    pub fn check(&self, id: &str, secret: &str, now: i64) -> Result<(), Refused> {
        let token = self.by_id.get(id).ok_or(Refused::Unknown)?;
        if !bool::from(token.secret.as_bytes().ct_eq(secret.as_bytes())) {
            return Err(Refused::WrongSecret);
        }
        if token.expired(now) {
            return Err(Refused::Expired);
        }
        if !token.authentication {
            return Err(Refused::NotForAuthentication);
        }
        Ok(())
    }

    /// Whether the token `id` is known and good at `now`.
    pub fn valid(&self, id: &str, now: i64) -> bool {
        self.by_id
            .get(id)
            .is_some_and(|t| !t.expired(now) && t.authentication)
    }

    /// Loads the tokens, then keeps them in step with the store (the task runs until aborted).
    pub async fn start(
        self: &Arc<Self>,
        secrets: Registry<Secret>,
    ) -> Result<tokio::task::JoinHandle<()>, ApiError> {
        let version = feed::load(&secrets, BOOTSTRAP_NAMESPACE, &fields(), self.as_ref()).await?;
        let index: Arc<dyn Index<Secret>> = self.clone();
        Ok(tokio::spawn(feed::follow(
            secrets,
            BOOTSTRAP_NAMESPACE.to_string(),
            fields(),
            index,
            version,
        )))
    }
}

impl Index<Secret> for BootstrapTokens {
    fn replace(&self, objects: Vec<Secret>) {
        self.by_id.clear();
        for secret in objects {
            self.put(secret);
        }
    }

    fn put(&self, secret: Secret) {
        match BootstrapToken::from_secret(&secret) {
            Some(token) => {
                self.by_id.insert(token.id.clone(), token);
            }
            // Changed into something that is no token: it no longer authenticates.
            None => self.remove(secret),
        }
    }

    fn remove(&self, secret: Secret) {
        let name = secret.metadata.map(|m| m.name).unwrap_or_default();
        if let Some(id) = name.strip_prefix(skiff_api::join::BOOTSTRAP_NAME_PREFIX) {
            self.by_id.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::join::{JoinToken, bootstrap_secret};

    fn token(id: &str) -> JoinToken {
        JoinToken::parse(&format!(
            "skiff-join.{}.{id}.0123456789abcdef",
            "ab".repeat(32)
        ))
        .unwrap()
    }

    #[test]
    fn tokens_expire_and_are_revoked() {
        let tokens = BootstrapTokens::default();
        tokens.replace(vec![
            bootstrap_secret(&token("aaaaaa"), Some(1000), ""),
            bootstrap_secret(&token("bbbbbb"), None, ""),
        ]);
        assert_eq!(tokens.check("aaaaaa", "0123456789abcdef", 999), Ok(()));
        assert_eq!(
            tokens.check("aaaaaa", "0123456789abcdef", 1000),
            Err(Refused::Expired)
        );
        assert_eq!(
            tokens.check("aaaaaa", "0123456789abcdeg", 999),
            Err(Refused::WrongSecret)
        );
        assert_eq!(
            tokens.check("cccccc", "0123456789abcdef", 0),
            Err(Refused::Unknown)
        );
        assert_eq!(tokens.check("bbbbbb", "0123456789abcdef", i64::MAX), Ok(()));
        tokens.remove(bootstrap_secret(&token("bbbbbb"), None, ""));
        assert_eq!(
            tokens.check("bbbbbb", "0123456789abcdef", 0),
            Err(Refused::Unknown)
        );
        // A Secret changed to say it is not for authentication.
        let mut not_auth = bootstrap_secret(&token("aaaaaa"), None, "");
        not_auth
            .data
            .insert("usage-bootstrap-authentication".into(), b"false".to_vec());
        tokens.put(not_auth);
        assert_eq!(
            tokens.check("aaaaaa", "0123456789abcdef", 0),
            Err(Refused::NotForAuthentication)
        );
        // A Secret changed into garbage stops authenticating.
        let mut garbled = bootstrap_secret(&token("aaaaaa"), None, "");
        garbled.data.remove("token-secret");
        tokens.put(garbled);
        assert_eq!(
            tokens.check("aaaaaa", "0123456789abcdef", 0),
            Err(Refused::Unknown)
        );
    }

    #[tokio::test]
    async fn the_index_follows_the_store() {
        let h = crate::registry::tests::Harness::new().await;
        let secrets = Registry::<Secret>::new(h.store.clone());
        let ns = skiff_api::v1::Namespace {
            metadata: Some(skiff_api::v1::ObjectMeta {
                name: BOOTSTRAP_NAMESPACE.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        Registry::new(h.store.clone())
            .create(&super::super::Identity::Admin, ns)
            .await
            .unwrap();
        let admin = super::super::Identity::Admin;
        secrets
            .create(&admin, bootstrap_secret(&token("aaaaaa"), None, ""))
            .await
            .unwrap();
        let tokens = Arc::new(BootstrapTokens::default());
        let task = tokens.start(secrets.clone()).await.unwrap();
        assert!(tokens.valid("aaaaaa", 0));
        secrets
            .create(&admin, bootstrap_secret(&token("bbbbbb"), None, ""))
            .await
            .unwrap();
        let request = skiff_api::v1::DeleteRequest {
            namespace: BOOTSTRAP_NAMESPACE.into(),
            name: "bootstrap-token-aaaaaa".into(),
            ..Default::default()
        };
        secrets.delete(&admin, &request).await.unwrap();
        for _ in 0..200 {
            if tokens.valid("bbbbbb", 0) && !tokens.valid("aaaaaa", 0) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(tokens.valid("bbbbbb", 0));
        assert!(!tokens.valid("aaaaaa", 0));
        task.abort();
    }
}
