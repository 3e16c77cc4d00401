//! The join token: `skiff-join.<sha256 of the cluster CA certificate, hex>.<id>.<secret>`, where
//! `<id>.<secret>` is a Kubernetes bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`).
//!
//! The CA fingerprint lets a new agent trust the API server before it has the CA (it fetches the
//! certificate chain, keeps the CA whose fingerprint matches, and only then talks gRPC over
//! verified TLS), as `kubeadm join --discovery-token-ca-cert-hash` does. The bootstrap token is
//! the bearer credential; the server keeps it as a Secret `bootstrap-token-<id>` of type
//! `bootstrap.kubernetes.io/token` in `kube-system`, with its expiration, as Kubernetes does
//! ([`bootstrap_secret`], [`BootstrapToken::from_secret`]).

use std::collections::BTreeMap;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::v1::{ObjectMeta, Secret};

const PREFIX: &str = "skiff-join";

/// Where bootstrap token Secrets live.
pub const BOOTSTRAP_NAMESPACE: &str = "kube-system";
/// Their type.
pub const BOOTSTRAP_SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Their names: this prefix and the token id.
pub const BOOTSTRAP_NAME_PREFIX: &str = "bootstrap-token-";
/// The ConfigMap (in [`BOOTSTRAP_NAMESPACE`]) listing revoked node certificates: each key a node
/// name, each value the RFC 3339 time of its revocation (`skiff node revoke`). A node's
/// certificates signed up to that time are refused.
pub const REVOKED_NODES_CONFIG_MAP: &str = "skiff-revoked-node-certificates";
/// The ConfigMap (in [`BOOTSTRAP_NAMESPACE`]) listing revoked user client certificates: each key
/// a user name as [`revoked_user_key`] spells it, each value the RFC 3339 time of its revocation
/// (`skiff user revoke`). The user's certificates signed (`notBefore`) up to that time are refused.
pub const REVOKED_USERS_CONFIG_MAP: &str = "skiff-revoked-user-certificates";

/// A user name as a ConfigMap key (`[-.a-zA-Z0-9_]`): every other byte, and `_` itself, as `_`
/// and two lower-case hex digits (`jane@corp` is `jane_40corp`, `system:admin` `system_3aadmin`).
pub fn revoked_user_key(user: &str) -> String {
    let mut key = String::with_capacity(user.len());
    for b in user.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
            key.push(char::from(b));
        } else {
            key.push_str(&format!("_{b:02x}"));
        }
    }
    key
}

/// The user name a [`revoked_user_key`] spells; `None` if `key` is not one.
pub fn user_of_revoked_key(key: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(key.len());
    let mut rest = key.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'_' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            if !hex
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
            {
                return None;
            }
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Lower-case hex SHA-256 of the CA certificate (DER).
    pub ca_sha256: String,
    /// The bootstrap token's public id (6 of `[a-z0-9]`).
    pub id: String,
    /// Its secret (16 of `[a-z0-9]`).
    pub secret: String,
}

/// Why a token or certificate is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JoinError {
    #[error(
        "join token: expected `skiff-join.<ca sha256>.<id>.<secret>` (the contents of the server's DIR/join-token, or what `skiff token create` prints)"
    )]
    Malformed,
    #[error("CA certificate: not PEM")]
    NotPem,
}

fn token_chars(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Whether `text` has a bootstrap token's shape, `<id>.<secret>`: (id, secret).
pub fn split_bootstrap_token(text: &str) -> Option<(&str, &str)> {
    let (id, secret) = text.split_once('.')?;
    (token_chars(id, 6) && token_chars(secret, 16)).then_some((id, secret))
}

impl JoinToken {
    /// A new token for the CA in `ca_pem`, its id and secret drawn from `random` (bytes from a
    /// CSPRNG; those of 252 and above are skipped so that every character is equally likely).
    pub fn generate(ca_pem: &str, random: impl IntoIterator<Item = u8>) -> Result<Self, JoinError> {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let chars: String = random
            .into_iter()
            .filter(|b| *b < 252)
            .map(|b| ALPHABET[usize::from(b % 36)] as char)
            .take(22)
            .collect();
        if chars.len() != 22 {
            return Err(JoinError::Malformed);
        }
        Ok(Self {
            ca_sha256: ca_fingerprint(ca_pem)?,
            id: chars[..6].to_string(),
            secret: chars[6..].to_string(),
        })
    }

    pub fn parse(text: &str) -> Result<Self, JoinError> {
        let mut parts = text.trim().splitn(4, '.');
        let (Some(PREFIX), Some(hash), Some(id), Some(secret)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JoinError::Malformed);
        };
        let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
        if hash.len() != 64 || !hex(hash) || !token_chars(id, 6) || !token_chars(secret, 16) {
            return Err(JoinError::Malformed);
        }
        Ok(Self {
            ca_sha256: hash.to_ascii_lowercase(),
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// What the agent sends as its bearer token: `<id>.<secret>`.
    pub fn bearer(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}.{}.{}.{}", self.ca_sha256, self.id, self.secret)
    }
}

/// A bootstrap token as its Secret holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    pub secret: String,
    /// Unix seconds after which it is refused; `None`: never expires.
    pub expiration: Option<i64>,
    pub description: String,
    /// `usage-bootstrap-authentication: "true"`: it may be used as a bearer token.
    pub authentication: bool,
}

/// RFC 3339 (UTC) of unix seconds.
pub fn rfc3339(seconds: i64) -> String {
    let ts = pbjson_types::Timestamp { seconds, nanos: 0 };
    serde_json::to_value(ts)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Unix seconds of an RFC 3339 time.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    serde_json::from_value::<pbjson_types::Timestamp>(serde_json::Value::String(text.into()))
        .ok()
        .map(|ts| ts.seconds)
}

/// The Secret that keeps `token` (Kubernetes' bootstrap token Secret).
pub fn bootstrap_secret(token: &JoinToken, expiration: Option<i64>, description: &str) -> Secret {
    let mut data: BTreeMap<String, Vec<u8>> = [
        ("token-id", token.id.clone()),
        ("token-secret", token.secret.clone()),
        ("usage-bootstrap-authentication", "true".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_bytes()))
    .collect();
    if let Some(at) = expiration {
        data.insert("expiration".into(), rfc3339(at).into_bytes());
    }
    if !description.is_empty() {
        data.insert("description".into(), description.as_bytes().to_vec());
    }
    Secret {
        metadata: Some(ObjectMeta {
            name: format!("{BOOTSTRAP_NAME_PREFIX}{}", token.id),
            namespace: BOOTSTRAP_NAMESPACE.to_string(),
            ..Default::default()
        }),
        data,
        r#type: BOOTSTRAP_SECRET_TYPE.to_string(),
        ..Default::default()
    }
}

impl BootstrapToken {
    /// The token a Secret keeps, if it is a well-formed bootstrap token Secret (its name, type,
    /// namespace and id agree; an unreadable expiration makes it unusable, never eternal).
    pub fn from_secret(secret: &Secret) -> Option<Self> {
        let meta = secret.metadata.as_ref()?;
        if secret.r#type != BOOTSTRAP_SECRET_TYPE || meta.namespace != BOOTSTRAP_NAMESPACE {
            return None;
        }
        let text = |key: &str| {
            secret
                .data
                .get(key)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_string)
        };
        let id = text("token-id")?;
        let token_secret = text("token-secret")?;
        if !token_chars(&id, 6)
            || !token_chars(&token_secret, 16)
            || meta.name != format!("{BOOTSTRAP_NAME_PREFIX}{id}")
        {
            return None;
        }
        let expiration = match text("expiration") {
            Some(at) => Some(parse_rfc3339(&at)?),
            None => None,
        };
        Some(Self {
            id,
            secret: token_secret,
            expiration,
            description: text("description").unwrap_or_default(),
            authentication: text("usage-bootstrap-authentication").as_deref() == Some("true"),
        })
    }

    /// Whether it is past its expiration at `now` (unix seconds).
    pub fn expired(&self, now: i64) -> bool {
        self.expiration.is_some_and(|at| now >= at)
    }
}

/// DER bytes of the first certificate in `pem`.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>, JoinError> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .map(str::trim)
        .collect();
    if body.is_empty() {
        return Err(JoinError::NotPem);
    }
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| JoinError::NotPem)
}

/// PEM of one DER certificate.
pub fn der_to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Hex SHA-256 of a DER certificate.
pub fn der_fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Hex SHA-256 of the (first) certificate in `pem`.
pub fn ca_fingerprint(pem: &str) -> Result<String, JoinError> {
    Ok(der_fingerprint(&pem_to_der(pem)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_user_keys_round_trip() {
        for (user, key) in [
            ("jane", "jane"),
            ("jane@corp.example", "jane_40corp.example"),
            ("system:admin", "system_3aadmin"),
            ("a_b", "a_5fb"),
            ("ünï", "_c3_bcn_c3_af"),
        ] {
            assert_eq!(revoked_user_key(user), key);
            assert_eq!(user_of_revoked_key(key).as_deref(), Some(user));
            assert!(crate::validation::names::is_config_key(key), "{key}");
        }
        for bad in ["a_", "a_4", "a_4G", "a_+f", "a_4A", "_ff"] {
            assert_eq!(user_of_revoked_key(bad), None, "{bad}");
        }
    }

    const CA: &str = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";

    #[test]
    fn round_trip_and_refusals() {
        let t = JoinToken::generate(CA, (0..=255u8).cycle().step_by(7).take(100)).unwrap();
        assert_eq!(t.id.len(), 6);
        assert_eq!(t.secret.len(), 16);
        assert_eq!(JoinToken::parse(&t.to_string()), Ok(t.clone()));
        assert_eq!(
            split_bootstrap_token(&t.bearer()),
            Some((&*t.id, &*t.secret))
        );
        for bad in [
            "",
            "abc",
            &format!("skiff-join.abc.{}.{}", t.id, t.secret),
            &format!("other.{}.{}.{}", t.ca_sha256, t.id, t.secret),
            &format!("skiff-join.{}.{}.short", t.ca_sha256, t.id),
            &format!("skiff-join.{}.ABCDEF.{}", t.ca_sha256, t.secret),
            // The old format: one long hex secret.
            &format!("skiff-join.{}.{}", t.ca_sha256, "ab".repeat(32)),
        ] {
            assert_eq!(JoinToken::parse(bad), Err(JoinError::Malformed), "{bad}");
        }
        assert_eq!(split_bootstrap_token("abcdef.0123456789abcdeF"), None);
        assert_eq!(split_bootstrap_token("admintoken"), None);
    }

    #[test]
    fn a_bootstrap_secret_round_trips_and_expires() {
        let t = JoinToken::parse(&format!(
            "skiff-join.{}.abcdef.0123456789abcdef",
            "ab".repeat(32)
        ))
        .unwrap();
        let secret = bootstrap_secret(&t, Some(1_900_000_000), "for n3");
        assert_eq!(
            secret.metadata.as_ref().unwrap().name,
            "bootstrap-token-abcdef"
        );
        assert_eq!(
            std::str::from_utf8(&secret.data["expiration"]).unwrap(),
            "2030-03-17T17:46:40+00:00"
        );
        let back = BootstrapToken::from_secret(&secret).unwrap();
        assert_eq!(back.id, "abcdef");
        assert_eq!(back.secret, "0123456789abcdef");
        assert_eq!(back.expiration, Some(1_900_000_000));
        assert_eq!(back.description, "for n3");
        assert!(back.authentication);
        assert!(!back.expired(1_899_999_999));
        assert!(back.expired(1_900_000_000));
        // Another namespace, a name that disagrees with the id, an unreadable expiration.
        let mut other = secret.clone();
        other.metadata.as_mut().unwrap().namespace = "default".into();
        assert_eq!(BootstrapToken::from_secret(&other), None);
        let mut renamed = secret.clone();
        renamed.metadata.as_mut().unwrap().name = "bootstrap-token-zzzzzz".into();
        assert_eq!(BootstrapToken::from_secret(&renamed), None);
        let mut garbled = secret;
        garbled
            .data
            .insert("expiration".into(), b"tomorrow".to_vec());
        assert_eq!(BootstrapToken::from_secret(&garbled), None);
        assert_eq!(parse_rfc3339("2030-03-17T17:46:40Z"), Some(1_900_000_000));
    }

    #[test]
    fn pem_der_round_trip() {
        let der: Vec<u8> = (0..200u8).collect();
        assert_eq!(pem_to_der(&der_to_pem(&der)).unwrap(), der);
        assert_eq!(pem_to_der("nope"), Err(JoinError::NotPem));
    }
}
