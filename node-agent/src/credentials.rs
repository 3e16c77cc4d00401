//! The agent's credentials: its node client certificate (`system:node:NAME` in `system:nodes`),
//! kept in `DATA_DIR/pki` (`node.key` 0600, `node.crt`, and the pinned `ca.crt`).
//!
//! First start: the bootstrap token (from `--token-file` or `$SKIFF_TOKEN`) pins the CA
//! ([`crate::join`]) and asks for a certificate for a fresh key; every later call presents the
//! certificate (mutual TLS), and a restart with a good certificate needs no token. The
//! certificate is renewed at [`RENEW_AT_PERCENT`] of its lifetime over the connection it authenticates,
//! and the channel takes the new one for new connections: pods and open streams are left alone.
//!
//! Must not: keep the bootstrap token anywhere, or send the key off the node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{CertificateParams, DnType, KeyPair};
use skiff_api::client::{ClientConfig, ClientIdentity, Renewer, Transport};
use skiff_api::v1::{NodeCertificateRequest, certificate_api_client::CertificateApiClient};

use crate::AgentError;

/// The share of a certificate's lifetime, in percent, after which it is renewed (kubelet renews
/// at 70-90 %).
pub const RENEW_AT_PERCENT: i64 = 70;
/// A certificate closer than this to its end is not used at start: the agent joins again.
const MIN_LEFT: i64 = 60;
/// Pause between failed renewals.
const RETRY: Duration = Duration::from_secs(5);

/// The node certificate files under `data_dir`.
#[derive(Debug, Clone)]
pub struct Files {
    dir: PathBuf,
}

/// A certificate in use: the identity and its validity (unix seconds).
#[derive(Clone)]
pub struct Held {
    pub identity: ClientIdentity,
    pub not_before: i64,
    pub not_after: i64,
}

impl Files {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("pki"),
        }
    }

    fn io(&self, path: &Path) -> impl Fn(std::io::Error) -> AgentError {
        let path = path.to_path_buf();
        move |source| AgentError::Io {
            path: path.clone(),
            source,
        }
    }

    /// The stored CA and certificate, if both are there and readable.
    pub fn load(&self) -> Option<(String, Held)> {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).ok();
        let ca = read("ca.crt")?;
        let identity = ClientIdentity {
            certificate_pem: read("node.crt")?,
            key_pem: read("node.key")?,
        };
        let (not_before, not_after) = validity(&identity.certificate_pem)?;
        // Signers backdate certificates for clock skew; the lifetime counts from when it was got.
        let stored_at = std::fs::metadata(self.dir.join("node.crt"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(not_before, |d| d.as_secs() as i64);
        let not_before = not_before.max(stored_at.min(not_after));
        Some((
            ca,
            Held {
                identity,
                not_before,
                not_after,
            },
        ))
    }

    /// Stores the CA and a certificate: the key 0600, each file replaced whole.
    pub fn store(&self, ca_pem: &str, held: &Held) -> Result<(), AgentError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(self.io(&self.dir))?;
        for (name, contents, mode) in [
            ("node.key", held.identity.key_pem.as_str(), 0o600),
            ("node.crt", held.identity.certificate_pem.as_str(), 0o644),
            ("ca.crt", ca_pem, 0o644),
        ] {
            write_file(&self.dir.join(name), contents.as_bytes(), mode)
                .map_err(self.io(&self.dir.join(name)))?;
        }
        Ok(())
    }
}

/// Writes `contents` to `path` with `mode` through a temporary file and a rename.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// (subject CN, not before, not after in unix seconds) of a PEM certificate.
fn read_certificate(pem: &str) -> Option<(String, i64, i64)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_string();
    let validity = cert.validity();
    Some((
        cn,
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

/// (not before, not after) of a PEM certificate, unix seconds.
fn validity(pem: &str) -> Option<(i64, i64)> {
    read_certificate(pem).map(|(_, from, to)| (from, to))
}

/// When a certificate valid from `not_before` to `not_after` is renewed.
pub fn renew_at(not_before: i64, not_after: i64) -> i64 {
    not_before + (not_after - not_before).max(0) * RENEW_AT_PERCENT / 100
}

fn now() -> i64 {
    skiff_api::time::now().seconds
}

/// Asks the server, over `transport`, to sign a certificate for a new key for `node`.
async fn request(transport: &Transport, node: &str) -> Result<Held, AgentError> {
    let failed = |m: String| AgentError::Join(format!("node certificate for {node:?}: {m}"));
    let key = KeyPair::generate().map_err(|e| failed(e.to_string()))?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| failed(e.to_string()))?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("system:node:{node}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:nodes");
    let csr = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| failed(e.to_string()))?;
    let signed = CertificateApiClient::new(transport.clone())
        .sign_node_certificate(NodeCertificateRequest { csr })
        .await
        .map_err(|s| failed(format!("{}: {}", s.code(), s.message())))?
        .into_inner();
    let (not_before, not_after) = validity(&signed.certificate)
        .ok_or_else(|| failed("the server's answer is not a certificate".into()))?;
    // Signers backdate certificates for clock skew; the lifetime counts from now.
    let not_before = not_before.max(now().min(not_after));
    Ok(Held {
        identity: ClientIdentity {
            certificate_pem: signed.certificate,
            key_pem: key.serialize_pem(),
        },
        not_before,
        not_after,
    })
}

/// A connection presenting the node's certificate, and what renews it.
pub struct Established {
    pub transport: Transport,
    pub config: ClientConfig,
    pub renewal: Renewal,
}

/// Keeps the certificate fresh ([`Renewal::run`]).
pub struct Renewal {
    files: Files,
    node: String,
    ca_pem: String,
    renewer: Renewer,
    held: Held,
}

/// Connects as `node`: with the stored certificate if it is good, else by joining with `token`.
pub async fn establish(
    servers: &str,
    token: &str,
    data_dir: &Path,
    node: &str,
) -> Result<Established, AgentError> {
    let files = Files::new(data_dir);
    let server = crate::join::server_urls(servers)?.join(",");
    let stored = files
        .load()
        .filter(|(_, held)| held.not_after - now() > MIN_LEFT && held_for(held, node));
    let (ca_pem, held) = match stored {
        Some(stored) => {
            tracing::info!(%node, not_after = stored.1.not_after, "using the node certificate in {}", files.dir.display());
            stored
        }
        None => {
            if token.trim().is_empty() {
                return Err(AgentError::Usage(format!(
                    "no node certificate in {} and no bootstrap token: give one with --token-file FILE or $SKIFF_TOKEN (the server's DIR/join-token, or `skiff token create`)",
                    files.dir.display()
                )));
            }
            let bootstrap = crate::join::join(servers, token).await?;
            let held = request(&bootstrap.connect()?, node).await?;
            files.store(&bootstrap.certificate_authority_data, &held)?;
            tracing::info!(%node, not_after = held.not_after, "joined: node certificate issued");
            (bootstrap.certificate_authority_data, held)
        }
    };
    let config = ClientConfig {
        server,
        certificate_authority_data: ca_pem.clone(),
        token: String::new(),
    };
    let (transport, renewer) = config.connect_renewable(&held.identity)?;
    Ok(Established {
        transport,
        config,
        renewal: Renewal {
            files,
            node: node.to_string(),
            ca_pem,
            renewer,
            held,
        },
    })
}

/// Whether the stored certificate is this node's (a data dir reused under another `--name`
/// joins again).
fn held_for(held: &Held, node: &str) -> bool {
    read_certificate(&held.identity.certificate_pem)
        .is_some_and(|(cn, _, _)| cn == format!("system:node:{node}"))
}

impl Renewal {
    /// Renews the certificate at [`RENEW_AT_PERCENT`] of each lifetime, forever (until aborted); a
    /// failed renewal is tried again every [`RETRY`].
    pub async fn run(mut self, transport: Transport) {
        loop {
            // Never more often than every RETRY, whatever the certificates say.
            let wait = (renew_at(self.held.not_before, self.held.not_after) - now())
                .max(RETRY.as_secs() as i64);
            tokio::time::sleep(Duration::from_secs(wait as u64)).await;
            match self.renew_once(&transport).await {
                Ok(()) => {
                    tracing::info!(node = %self.node, not_after = self.held.not_after, "node certificate renewed")
                }
                Err(e) => {
                    tracing::warn!(node = %self.node, error = %e, "renewing the node certificate");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    async fn renew_once(&mut self, transport: &Transport) -> Result<(), AgentError> {
        let held = request(transport, &self.node).await?;
        self.files.store(&self.ca_pem, &held)?;
        self.renewer.renew(&held.identity)?;
        self.held = held;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_at_seventy_percent() {
        assert_eq!(renew_at(1000, 2000), 1700);
        assert_eq!(renew_at(0, 86_400), 60_480);
        assert_eq!(renew_at(5, 5), 5);
    }

    #[test]
    fn files_round_trip_with_a_private_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path());
        assert!(files.load().is_none());
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "system:node:n1");
        let cert = params.self_signed(&key).unwrap();
        let (not_before, not_after) = validity(&cert.pem()).unwrap();
        let held = Held {
            identity: ClientIdentity {
                certificate_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            },
            not_before,
            not_after,
        };
        files.store("CA PEM", &held).unwrap();
        let (ca, back) = files.load().unwrap();
        assert_eq!(ca, "CA PEM");
        assert!(back.identity == held.identity);
        assert!(held_for(&back, "n1"));
        assert!(!held_for(&back, "n2"));
        let mode = |name: &str| {
            std::fs::metadata(dir.path().join("pki").join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("node.key"), 0o600);
        assert_eq!(mode("node.crt"), 0o644);
        assert!(!format!("{:?}", held.identity).contains("PRIVATE"));
    }
}
