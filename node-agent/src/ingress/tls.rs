//! TLS for the router: which certificate a handshake gets, chosen by SNI among the
//! `kubernetes.io/tls` Secrets the served Ingresses name in `spec.tls`.
//!
//! A `spec.tls` entry serves its `hosts` (its Ingress's rule hosts when it lists none); an exact
//! host beats a `*.` wildcard entry, and among Ingresses the oldest entry wins. A handshake with
//! no SNI, for a host no entry names, or whose Secret is missing or unusable, gets the router's
//! **default certificate**: a self-signed one made when the agent starts (subject
//! `skiff-ingress-default`), as ingress-nginx serves its "fake certificate", so a client that
//! checks certificates fails visibly instead of being handed another site's.
//!
//! Must not: read the API (the router's sources hand Secrets in), or log key material.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use skiff_api::ResourceExt;
use skiff_api::v1::{Ingress, Secret};
use tokio::sync::watch;

use super::routes::{by_age, normalize_host};

/// `(namespace, name)` of a Secret.
pub type SecretRef = (String, String);

/// The Secret type that holds a certificate and its key.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// Which Secret serves which host name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CertNames {
    exact: HashMap<String, SecretRef>,
    /// By the part after `*.`.
    wildcards: HashMap<String, SecretRef>,
}

impl CertNames {
    pub fn build<'a>(ingresses: impl IntoIterator<Item = &'a Ingress>) -> Self {
        let mut names = Self::default();
        for ingress in by_age(ingresses) {
            let Some(spec) = &ingress.spec else {
                continue;
            };
            for tls in &spec.tls {
                if tls.secret_name.is_empty() {
                    continue;
                }
                let secret = (ingress.namespace().to_string(), tls.secret_name.clone());
                let hosts: Vec<&str> = if tls.hosts.is_empty() {
                    spec.rules.iter().map(|r| r.host.as_str()).collect()
                } else {
                    tls.hosts.iter().map(String::as_str).collect()
                };
                for host in hosts.into_iter().map(normalize_host) {
                    if host.is_empty() {
                        continue;
                    }
                    let map = match host.strip_prefix("*.") {
                        Some(suffix) => names.wildcards.entry(suffix.to_string()),
                        None => names.exact.entry(host),
                    };
                    map.or_insert_with(|| secret.clone());
                }
            }
        }
        names
    }

    /// The Secret that serves `host` (an SNI name), if any entry names it.
    pub fn lookup(&self, host: &str) -> Option<&SecretRef> {
        let host = normalize_host(host);
        self.exact.get(&host).or_else(|| {
            host.split_once('.')
                .and_then(|(_, rest)| self.wildcards.get(rest))
        })
    }

    /// Every Secret named.
    pub fn secrets(&self) -> BTreeSet<SecretRef> {
        self.exact
            .values()
            .chain(self.wildcards.values())
            .cloned()
            .collect()
    }
}

/// Why a Secret cannot serve TLS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("secret type is {0:?}, not {TLS_SECRET_TYPE:?}")]
    Type(String),
    #[error("no {0} in the secret")]
    Missing(&'static str),
    #[error("tls.crt holds no PEM certificate")]
    NoCertificate,
    #[error("tls.key: {0}")]
    Key(String),
    #[error("the default certificate: {0}")]
    Generate(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate chain and key of a `kubernetes.io/tls` Secret.
pub fn certified_key(secret: &Secret) -> Result<CertifiedKey, CertError> {
    if secret.r#type != TLS_SECRET_TYPE {
        return Err(CertError::Type(secret.r#type.clone()));
    }
    let crt = secret
        .data
        .get("tls.crt")
        .ok_or(CertError::Missing("tls.crt"))?;
    let key = secret
        .data
        .get("tls.key")
        .ok_or(CertError::Missing("tls.key"))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(crt)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| CertError::Key(e.to_string()))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| CertError::Key(e.to_string()))
}

/// The self-signed certificate of handshakes no Secret serves.
pub fn default_certificate() -> Result<CertifiedKey, CertError> {
    let generated = rcgen::generate_simple_self_signed(vec!["skiff-ingress-default".to_string()])
        .map_err(|e| CertError::Generate(e.to_string()))?;
    let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der())
        .map_err(|e| CertError::Generate(e.to_string()))?;
    CertifiedKey::from_der(vec![generated.cert.der().clone()], key, &provider())
        .map_err(|e| CertError::Generate(e.to_string()))
}

/// The certificates of one routing state: names, and the keys of the Secrets that parsed.
#[derive(Debug, Default)]
pub struct Certificates {
    pub names: CertNames,
    pub keys: HashMap<SecretRef, Arc<CertifiedKey>>,
}

/// Picks a handshake's certificate from the latest [`Certificates`].
#[derive(Debug)]
pub struct Resolver {
    pub current: watch::Receiver<Arc<Certificates>>,
    pub fallback: Arc<CertifiedKey>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self.current.borrow().clone();
        let chosen = hello
            .server_name()
            .and_then(|name| current.names.lookup(name))
            .and_then(|secret| current.keys.get(secret));
        Some(chosen.cloned().unwrap_or_else(|| self.fallback.clone()))
    }
}

/// A TLS server configuration over `resolver`, HTTP/1.1 only.
pub fn server_config(resolver: Resolver) -> Result<rustls::ServerConfig, CertError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| CertError::Generate(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{IngressRule, IngressSpec, IngressTls, ObjectMeta};

    fn ingress(name: &str, age: i64, tls: &[(&[&str], &str)], rule_hosts: &[&str]) -> Ingress {
        Ingress {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "web".into(),
                creation_timestamp: Some(skiff_api::Timestamp {
                    seconds: age,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            spec: Some(IngressSpec {
                tls: tls
                    .iter()
                    .map(|(hosts, secret)| IngressTls {
                        hosts: hosts.iter().map(|h| h.to_string()).collect(),
                        secret_name: secret.to_string(),
                    })
                    .collect(),
                rules: rule_hosts
                    .iter()
                    .map(|h| IngressRule {
                        host: h.to_string(),
                        http: None,
                    })
                    .collect(),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn secret_of<'a>(names: &'a CertNames, host: &str) -> Option<&'a str> {
        names.lookup(host).map(|(_, name)| name.as_str())
    }

    #[test]
    fn sni_picks_exact_hosts_then_wildcards_and_the_oldest_entry() {
        let names = CertNames::build(&[
            ingress("new", 2, &[(&["a.example.com"], "new-a")], &[]),
            ingress(
                "old",
                1,
                &[(&["a.example.com"], "old-a"), (&["*.example.com"], "wild")],
                &[],
            ),
            ingress("rules", 3, &[(&[], "from-rules")], &["r.test", ""]),
        ]);
        assert_eq!(secret_of(&names, "a.example.com"), Some("old-a"));
        assert_eq!(secret_of(&names, "A.EXAMPLE.com"), Some("old-a"));
        assert_eq!(secret_of(&names, "b.example.com"), Some("wild"));
        assert_eq!(secret_of(&names, "c.b.example.com"), None);
        assert_eq!(secret_of(&names, "r.test"), Some("from-rules"));
        assert_eq!(secret_of(&names, "other.test"), None);
        let all: Vec<String> = names.secrets().into_iter().map(|(_, n)| n).collect();
        assert_eq!(all, ["from-rules", "old-a", "wild"]);
    }

    #[test]
    fn a_tls_secret_parses_and_other_secrets_are_refused() {
        let made = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
        let mut secret = Secret {
            r#type: TLS_SECRET_TYPE.into(),
            data: [
                ("tls.crt".to_string(), made.cert.pem().into_bytes()),
                (
                    "tls.key".to_string(),
                    made.signing_key.serialize_pem().into_bytes(),
                ),
            ]
            .into(),
            ..Default::default()
        };
        assert!(certified_key(&secret).is_ok());
        secret.data.insert("tls.key".into(), b"garbage".to_vec());
        assert!(matches!(certified_key(&secret), Err(CertError::Key(_))));
        secret.data.remove("tls.crt");
        assert_eq!(
            certified_key(&secret).unwrap_err(),
            CertError::Missing("tls.crt")
        );
        secret.r#type = "Opaque".into();
        assert_eq!(
            certified_key(&secret).unwrap_err(),
            CertError::Type("Opaque".into())
        );
        assert!(default_certificate().is_ok());
    }
}
