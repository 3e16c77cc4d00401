//! The server's own join token, `DIR/join-token`: one bootstrap token like those of `skiff token
//! create`, valid [`JOIN_TOKEN_TTL`], kept as its Secret in `kube-system`. A start finds it
//! missing, expired, revoked, or made for another CA, and makes a new one (the file is rewritten,
//! 0600).
//!
//! Must not: authenticate anything (the bootstrap token index does).

use std::path::Path;
use std::time::Duration;

use skiff_api::join::{BOOTSTRAP_NAME_PREFIX, BOOTSTRAP_NAMESPACE, BootstrapToken, JoinToken};
use skiff_api::v1::Secret;

use super::ServerError;
use crate::auth::Identity;
use crate::error::ApiError;
use crate::pki::write_private;
use crate::registry::Registry;

/// How long the join token a server makes at start is good for (kubeadm's default too).
pub const JOIN_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// The join token in `path`, made anew unless it is still good for the CA in `ca_pem`.
pub async fn ensure(
    secrets: &Registry<Secret>,
    path: &Path,
    ca_pem: &str,
) -> Result<String, ServerError> {
    let bootstrap = |e: ApiError| ServerError::Bootstrap(format!("join token: {e}"));
    let ca = skiff_api::join::ca_fingerprint(ca_pem)
        .map_err(|e| ServerError::Bootstrap(e.to_string()))?;
    let now = skiff_api::time::now().seconds;
    if let Ok(text) = std::fs::read_to_string(path)
        && let Ok(token) = JoinToken::parse(&text)
        && token.ca_sha256 == ca
    {
        let name = format!("{BOOTSTRAP_NAME_PREFIX}{}", token.id);
        match secrets.get(BOOTSTRAP_NAMESPACE, &name).await {
            Ok(secret) => {
                if BootstrapToken::from_secret(&secret)
                    .is_some_and(|t| t.secret == token.secret && !t.expired(now))
                {
                    return Ok(token.to_string());
                }
            }
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(bootstrap(e)),
        }
    }
    let token = JoinToken::generate(ca_pem, random_bytes())
        .map_err(|e| ServerError::Bootstrap(e.to_string()))?;
    let expires = now + JOIN_TOKEN_TTL.as_secs() as i64;
    let secret = skiff_api::join::bootstrap_secret(
        &token,
        Some(expires),
        "the join token of skiff server (DIR/join-token)",
    );
    secrets
        .create(&Identity::Admin, secret)
        .await
        .map_err(bootstrap)?;
    write_private(path, format!("{token}\n").as_bytes(), 0o600)?;
    Ok(token.to_string())
}

/// Plenty of CSPRNG bytes for a token's 22 characters.
pub fn random_bytes() -> Vec<u8> {
    use rand::RngCore;
    let mut bytes = vec![0u8; 64];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_good_token_is_kept_and_a_revoked_one_replaced() {
        let h = crate::registry::tests::Harness::new().await;
        let ns = skiff_api::v1::Namespace {
            metadata: Some(skiff_api::v1::ObjectMeta {
                name: BOOTSTRAP_NAMESPACE.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        Registry::new(h.store.clone())
            .create(&Identity::Admin, ns)
            .await
            .unwrap();
        let secrets = Registry::<Secret>::new(h.store.clone());
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::pki::Pki::load_or_create(&dir.path().join("pki")).unwrap();
        let path = dir.path().join("join-token");
        let first = ensure(&secrets, &path, &pki.ca_cert_pem).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            first.as_str()
        );
        let again = ensure(&secrets, &path, &pki.ca_cert_pem).await.unwrap();
        assert_eq!(first, again);
        let parsed = JoinToken::parse(&first).unwrap();
        let stored = BootstrapToken::from_secret(
            &secrets
                .get(
                    BOOTSTRAP_NAMESPACE,
                    &format!("{BOOTSTRAP_NAME_PREFIX}{}", parsed.id),
                )
                .await
                .unwrap(),
        )
        .unwrap();
        let now = skiff_api::time::now().seconds;
        let ttl = stored.expiration.unwrap() - now;
        assert!((86_390..=86_400).contains(&ttl), "{ttl}");
        // Revoked: a new one.
        let request = skiff_api::v1::DeleteRequest {
            namespace: BOOTSTRAP_NAMESPACE.into(),
            name: format!("{BOOTSTRAP_NAME_PREFIX}{}", parsed.id),
            ..Default::default()
        };
        secrets.delete(&Identity::Admin, &request).await.unwrap();
        let replaced = ensure(&secrets, &path, &pki.ca_cert_pem).await.unwrap();
        assert_ne!(replaced, first);
    }
}
