//! The join token: `skiff-join.<sha256 of the cluster CA certificate, hex>.<secret>`.
//!
//! The CA fingerprint lets a new agent trust the API server before it has the CA (it fetches the
//! certificate chain, keeps the CA whose fingerprint matches, and only then talks gRPC over
//! verified TLS), as `kubeadm join --discovery-token-ca-cert-hash` does. The whole string is the
//! bearer credential.

use base64::Engine as _;
use sha2::{Digest, Sha256};

const PREFIX: &str = "skiff-join";

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Lower-case hex SHA-256 of the CA certificate (DER).
    pub ca_sha256: String,
    pub secret: String,
}

/// Why a token or certificate is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JoinError {
    #[error(
        "join token: expected `skiff-join.<ca sha256>.<secret>` (the contents of the server's DIR/join-token)"
    )]
    Malformed,
    #[error("CA certificate: not PEM")]
    NotPem,
}

impl JoinToken {
    pub fn new(ca_pem: &str, secret: &str) -> Result<Self, JoinError> {
        Ok(Self {
            ca_sha256: ca_fingerprint(ca_pem)?,
            secret: secret.to_string(),
        })
    }

    pub fn parse(text: &str) -> Result<Self, JoinError> {
        let mut parts = text.trim().splitn(3, '.');
        let (Some(PREFIX), Some(hash), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(JoinError::Malformed);
        };
        let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
        if hash.len() != 64 || !hex(hash) || secret.len() < 32 {
            return Err(JoinError::Malformed);
        }
        Ok(Self {
            ca_sha256: hash.to_ascii_lowercase(),
            secret: secret.to_string(),
        })
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}.{}.{}", self.ca_sha256, self.secret)
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
    fn round_trip_and_refusals() {
        let t = JoinToken {
            ca_sha256: "ab".repeat(32),
            secret: "0123456789abcdef0123456789abcdef".into(),
        };
        assert_eq!(JoinToken::parse(&t.to_string()), Ok(t.clone()));
        for bad in [
            "",
            "abc",
            "skiff-join.abc.0123456789abcdef0123456789abcdef",
            &format!("other.{}.{}", t.ca_sha256, t.secret),
            &format!("skiff-join.{}.short", t.ca_sha256),
        ] {
            assert_eq!(JoinToken::parse(bad), Err(JoinError::Malformed), "{bad}");
        }
    }

    #[test]
    fn pem_der_round_trip() {
        let der: Vec<u8> = (0..200u8).collect();
        assert_eq!(pem_to_der(&der_to_pem(&der)).unwrap(), der);
        assert_eq!(pem_to_der("nope"), Err(JoinError::NotPem));
    }
}
