//! Client certificates as identities (Kubernetes' x509 authenticator): the subject's CN is the
//! user, its Os the groups; `system:node:NAME` in `system:nodes` is the node NAME.
//!
//! The TLS handshake has verified the chain against the cluster CA by the time a request gets
//! here; this reads the verified leaf, and refuses it past its expiry (a connection may outlive
//! its certificate). Must not: verify chains itself, or decide what an identity may do.

use super::{Identity, NODE_PREFIX, NODES};

/// What the server reads of a client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    pub common_name: String,
    pub organizations: Vec<String>,
    /// Unix seconds.
    pub not_after: i64,
    /// Unix seconds.
    pub not_before: i64,
}

impl ClientCertificate {
    /// Parses a DER certificate.
    pub fn parse(der: &[u8]) -> Result<Self, String> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| format!("certificate: {e}"))?;
        let subject = cert.subject();
        let common_name = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or("certificate: no common name")?
            .to_string();
        let organizations = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect();
        Ok(Self {
            common_name,
            organizations,
            not_after: cert.validity().not_after.timestamp(),
            not_before: cert.validity().not_before.timestamp(),
        })
    }

    /// When it was signed (unix seconds), for revocation: the cluster CA backdates `notBefore`.
    pub fn issued(&self) -> i64 {
        self.not_before
            .saturating_add(crate::pki::CLIENT_BACKDATE_SECONDS)
    }

    /// The identity it names, if it has not expired at `now` (unix seconds).
    pub fn identity(&self, now: i64) -> Result<Identity, String> {
        if now > self.not_after {
            return Err("client certificate has expired".into());
        }
        let is_node = self.organizations.iter().any(|o| o == NODES);
        match self.common_name.strip_prefix(NODE_PREFIX) {
            Some(node) if is_node && !node.is_empty() => Ok(Identity::Node(node.to_string())),
            _ => Ok(Identity::User {
                name: self.common_name.clone(),
                groups: self.organizations.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, os: &[&str]) -> ClientCertificate {
        ClientCertificate {
            common_name: cn.into(),
            organizations: os.iter().map(|s| s.to_string()).collect(),
            not_after: 100,
            not_before: 0,
        }
    }

    #[test]
    fn subjects_map_to_identities() {
        assert_eq!(
            cert("system:node:n1", &["system:nodes"]).identity(0),
            Ok(Identity::Node("n1".into()))
        );
        // A node's name outside system:nodes is only a user's.
        assert_eq!(
            cert("system:node:n1", &["dev"]).identity(0),
            Ok(Identity::User {
                name: "system:node:n1".into(),
                groups: vec!["dev".into()]
            })
        );
        assert_eq!(
            cert("jane", &["dev", "ops"]).identity(100),
            Ok(Identity::User {
                name: "jane".into(),
                groups: vec!["dev".into(), "ops".into()]
            })
        );
        assert!(cert("jane", &[]).identity(101).is_err());
        assert!(ClientCertificate::parse(b"not der").is_err());
    }
}
