//! ServiceAccount tokens: JWTs (RFC 7519) signed with Ed25519 (`alg: EdDSA`) by the server's
//! key `DIR/pki/sa.key` (made on first start, 0600; servers of one cluster share it with the rest
//! of the data dir), with Kubernetes' claims: `iss`, `sub` (`system:serviceaccount:NS:NAME`),
//! `aud`, `exp`, `iat`, `nbf`, `jti`, and `kubernetes.io` naming the namespace, the
//! ServiceAccount and the pod or Secret the token is bound to (with their uids).
//!
//! This file signs and checks the token alone (signature, issuer, audience, lifetime); whether
//! the ServiceAccount and pod still exist is the authenticator's question ([`super`]).
//! Must not: read the store.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

/// The issuer of skiff's tokens, and the audience the API server accepts (kubeadm's default
/// `--service-account-issuer` and `--api-audiences`).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Clock skew allowed on `nbf` and `exp`.
const LEEWAY_SECONDS: i64 = 60;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a JWT")]
    Malformed,
    #[error("the token's signature is not this cluster's")]
    Signature,
    #[error("the token was issued by {0:?}, not this cluster")]
    Issuer(String),
    #[error("the token is not meant for the API server (audience {0:?})")]
    Audience(Vec<String>),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
}

/// A named object with its uid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Ref {
    pub name: String,
    pub uid: String,
}

/// The `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KubernetesClaim {
    pub namespace: String,
    pub serviceaccount: Ref,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pod: Option<Ref>,
    /// The Secret the token is bound to (a TokenRequest's `boundObjectRef`), if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret: Option<Ref>,
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaim,
}

impl Claims {
    /// Claims for a token of `namespace/name` (uid `sa_uid`), bound to `pod` if given, for
    /// `audiences`, valid `seconds` from `now`.
    pub fn new(
        namespace: &str,
        sa: Ref,
        pod: Option<Ref>,
        audiences: Vec<String>,
        now: i64,
        seconds: i64,
    ) -> Self {
        Claims {
            iss: ISSUER.to_string(),
            sub: format!("system:serviceaccount:{namespace}:{}", sa.name),
            aud: audiences,
            exp: now + seconds,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: KubernetesClaim {
                namespace: namespace.to_string(),
                serviceaccount: sa,
                pod,
                secret: None,
            },
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: String,
    kid: String,
}

/// The cluster's token key.
pub struct Signer {
    key: Ed25519KeyPair,
    kid: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("service account key {path}: {message}")]
    Key { path: String, message: String },
}

impl Signer {
    /// Reads the key at `path` (PKCS#8, base64), making it on first use.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let err = |message: String| KeyError::Key {
            path: path.display().to_string(),
            message,
        };
        let der = match std::fs::read_to_string(path) {
            Ok(text) => base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| err(format!("not base64 PKCS#8: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let rng = ring::rand::SystemRandom::new();
                let der = Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| err("generating a key failed".into()))?;
                let text = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
                crate::pki::write_private(path, format!("{text}\n").as_bytes(), 0o600)
                    .map_err(|e| err(e.to_string()))?;
                der.as_ref().to_vec()
            }
            Err(e) => return Err(err(e.to_string())),
        };
        Self::from_pkcs8(&der).map_err(err)
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        let key =
            Ed25519KeyPair::from_pkcs8(der).map_err(|e| format!("not an Ed25519 key: {e}"))?;
        use sha2::Digest;
        let digest = sha2::Sha256::digest(key.public_key().as_ref());
        let kid = URL_SAFE_NO_PAD.encode(&digest[..16]);
        Ok(Self { key, kid })
    }

    /// A key of its own, for tests.
    #[cfg(test)]
    pub fn generate() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let der = Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
        Self::from_pkcs8(der.as_ref()).expect("key")
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let header = Header {
            alg: "EdDSA".into(),
            typ: "JWT".into(),
            kid: self.kid.clone(),
        };
        let encode = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
        // Both serialize from plain structs of strings and numbers: they cannot fail.
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let claims = serde_json::to_vec(claims).unwrap_or_default();
        let signed = format!("{}.{}", encode(&header), encode(&claims));
        let signature = self.key.sign(signed.as_bytes());
        format!("{signed}.{}", encode(signature.as_ref()))
    }

    /// Does `token` look like one of ours (three base64url parts, an EdDSA header)? Cheap: lets
    /// the authenticator try other token kinds first.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.starts_with("eyJ") && token.split('.').count() == 3
    }

    /// The claims of a token this key signed, for the API server's audience, valid at `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| TokenError::Malformed);
        let header: Header =
            serde_json::from_slice(&decode(h)?).map_err(|_| TokenError::Malformed)?;
        if header.alg != "EdDSA" {
            return Err(TokenError::Signature);
        }
        let signature = decode(s)?;
        let signed_len = h.len() + 1 + c.len();
        UnparsedPublicKey::new(&ED25519, self.key.public_key().as_ref())
            .verify(&token.as_bytes()[..signed_len], &signature)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims =
            serde_json::from_slice(&decode(c)?).map_err(|_| TokenError::Malformed)?;
        if claims.iss != ISSUER {
            return Err(TokenError::Issuer(claims.iss));
        }
        if !claims.aud.iter().any(|a| a == ISSUER) {
            return Err(TokenError::Audience(claims.aud));
        }
        if claims.exp + LEEWAY_SECONDS <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf - LEEWAY_SECONDS > now {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(aud: &str, now: i64, seconds: i64) -> Claims {
        Claims::new(
            "shop",
            Ref {
                name: "web".into(),
                uid: "sa-uid".into(),
            },
            Some(Ref {
                name: "web-1".into(),
                uid: "pod-uid".into(),
            }),
            vec![aud.into()],
            now,
            seconds,
        )
    }

    #[test]
    fn a_signed_token_round_trips() {
        let signer = Signer::generate();
        let token = signer.sign(&claims(ISSUER, 1000, 3600));
        assert!(Signer::looks_like_jwt(&token));
        let got = signer.verify(&token, 2000).unwrap();
        assert_eq!(got.sub, "system:serviceaccount:shop:web");
        assert_eq!(got.kubernetes.pod.unwrap().uid, "pod-uid");
    }

    #[test]
    fn forged_expired_and_foreign_tokens_are_refused() {
        let signer = Signer::generate();
        let token = signer.sign(&claims(ISSUER, 1000, 3600));
        assert_eq!(
            signer.verify(&token, 1000 + 3600 + 61),
            Err(TokenError::Expired)
        );
        assert_eq!(signer.verify(&token, 900), Err(TokenError::NotYetValid));
        // Another cluster's key.
        assert_eq!(
            Signer::generate().verify(&token, 2000),
            Err(TokenError::Signature)
        );
        // The claims changed after signing (a ServiceAccount swapped in).
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged = claims(ISSUER, 1000, 3600);
        forged.sub = "system:serviceaccount:kube-system:admin".into();
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let forged = format!("{}.{body}.{}", parts[0], parts[2]);
        assert_eq!(signer.verify(&forged, 2000), Err(TokenError::Signature));
        // A token for another audience (a vault, a pod's peer) is not an API credential.
        let vault = signer.sign(&claims("vault", 1000, 3600));
        assert_eq!(
            signer.verify(&vault, 2000),
            Err(TokenError::Audience(vec!["vault".into()]))
        );
        assert_eq!(signer.verify("a.b", 2000), Err(TokenError::Malformed));
        assert_eq!(signer.verify("eyJ.x.y", 2000), Err(TokenError::Malformed));
    }

    #[test]
    fn the_key_is_made_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sa.key");
        let first = Signer::load_or_create(&path).unwrap();
        let token = first.sign(&claims(ISSUER, 1000, 3600));
        let again = Signer::load_or_create(&path).unwrap();
        assert!(again.verify(&token, 2000).is_ok());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "garbage").unwrap();
        let e = Signer::load_or_create(&path).err().unwrap().to_string();
        assert!(e.contains("sa.key"), "{e}");
    }
}
