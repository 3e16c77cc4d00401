//! Talking to OCI registries through `oci-client`: one client per registry host (keeping its
//! connections and bearer tokens), https except for loopback and configured insecure registries,
//! manifests fetched and checked against their digest, blobs streamed to a temp file on a
//! blocking thread that hashes and counts them, and registry failures sorted into [`PullError`]s.
//!
//! A pull tries the credentials it is given for the image's registry in turn (anonymous when
//! there are none); a registry that answers 401 with a bearer challenge gets oci-client's Docker
//! token flow (a token from the realm it names, asked for with the credential), one with a
//! basic challenge gets HTTP basic auth.
//!
//! Must not: write outside the temp path it is given, or keep bytes it has not verified.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE, OciDescriptor,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

use super::PullError;
use super::auth::Credential;

/// Manifests (and image indexes) bigger than this are refused, as containerd does.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

const ACCEPT: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

const USER_AGENT: &str = concat!("skiff/", env!("CARGO_PKG_VERSION"));

/// The registry clients of a store.
pub(super) struct Registries {
    clients: Mutex<HashMap<String, Client>>,
    insecure: Vec<String>,
    connect_timeout: Duration,
    read_timeout: Duration,
}

/// `sha256:<hex>` of `bytes`.
pub(super) fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Whether `registry` (`host[:port]`) is this machine: `localhost`, 127.0.0.0/8 or `::1`.
pub(super) fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match registry.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => registry,
        }
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Registries {
    pub fn new(insecure: Vec<String>, connect_timeout: Duration, read_timeout: Duration) -> Self {
        // reqwest is built without a bundled crypto provider: use ring, as the rest of skiff
        // does. An error only means a provider is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            clients: Mutex::new(HashMap::new()),
            insecure,
            connect_timeout,
            read_timeout,
        }
    }

    /// Plain http for loopback registries and the configured insecure ones.
    pub fn uses_http(&self, registry: &str) -> bool {
        is_loopback(registry) || self.insecure.iter().any(|r| r == registry)
    }

    /// The client for `reference`'s registry as `credential` (anonymous: `None`). A client
    /// keeps the credential it first authenticated with (and its tokens), so each credential has
    /// a client of its own: a pull without credentials never rides on another's login.
    pub fn client(
        &self,
        reference: &Reference,
        name: &str,
        credential: Option<&Credential>,
    ) -> Result<Client, PullError> {
        let registry = reference.resolve_registry().to_string();
        let key = match credential {
            Some(c) => format!("{registry}\0{}", c.fingerprint()),
            None => registry.clone(),
        };
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        if clients.len() >= MAX_CLIENTS {
            // Credentials come and go with pods' Secrets: start over rather than grow.
            clients.clear();
        }
        let config = ClientConfig {
            protocol: if self.uses_http(&registry) {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(self.connect_timeout),
            read_timeout: Some(self.read_timeout),
            user_agent: USER_AGENT,
            platform_resolver: None,
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| PullError::Registry {
            reference: name.to_string(),
            detail: format!("creating the registry client: {e}"),
            retryable: false,
        })?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// Registry clients kept at most (one per registry and credential).
const MAX_CLIENTS: usize = 256;

/// A client for `reference` and the manifest it names, trying each of `credentials` in turn
/// (kubelet's habit; anonymous when there are none): the first the registry accepts serves the
/// whole pull. When every one is refused, the error says which were tried (never a secret).
pub(super) async fn open(
    registries: &Registries,
    reference: &Reference,
    name: &str,
    credentials: &[Credential],
) -> Result<(Client, RegistryAuth, Bytes, String), PullError> {
    if credentials.is_empty() {
        let client = registries.client(reference, name, None)?;
        let auth = RegistryAuth::Anonymous;
        let (body, digest) = fetch_manifest(&client, reference, name, &auth).await?;
        return Ok((client, auth, body, digest));
    }
    let mut refused = Vec::new();
    for credential in credentials {
        let client = registries.client(reference, name, Some(credential))?;
        let auth = credential.registry_auth();
        match fetch_manifest(&client, reference, name, &auth).await {
            Ok((body, digest)) => return Ok((client, auth, body, digest)),
            Err(PullError::Unauthorized { detail, .. }) => {
                refused.push(format!("{}: {detail}", credential.describe()))
            }
            Err(e) => return Err(e),
        }
    }
    Err(PullError::Unauthorized {
        reference: name.to_string(),
        detail: format!(
            "every credential for registry {} was refused ({})",
            reference.resolve_registry(),
            refused.join("; ")
        ),
    })
}

/// Fetches the manifest (or index) `reference` names; returns its bytes and their digest,
/// checked against the digest the reference or the registry gave.
pub(super) async fn fetch_manifest(
    client: &Client,
    reference: &Reference,
    name: &str,
    auth: &RegistryAuth,
) -> Result<(Bytes, String), PullError> {
    let (body, registry_digest) = client
        .pull_manifest_raw(reference, auth, ACCEPT)
        .await
        .map_err(|e| classify(e, reference, name, Fetching::Manifest))?;
    if body.len() > MAX_MANIFEST_BYTES {
        return Err(PullError::TooLarge {
            reference: name.to_string(),
            what: "the manifest".into(),
            size: body.len() as u64,
            limit: MAX_MANIFEST_BYTES as u64,
        });
    }
    let actual = sha256(&body);
    for expected in [reference.digest(), Some(registry_digest.as_str())]
        .into_iter()
        .flatten()
    {
        if expected.starts_with("sha256:") && expected != actual {
            return Err(PullError::DigestMismatch {
                reference: name.to_string(),
                what: "manifest",
                digest: expected.to_string(),
                detail: format!("its content hashes to {actual}"),
            });
        }
    }
    Ok((body, actual))
}

/// Downloads the blob `desc` to `dest`, hashing and counting on a blocking thread; fails (and
/// removes `dest`) unless the bytes match the descriptor's digest and size exactly.
/// `progress` hears the bytes received so far.
pub(super) async fn download_blob(
    client: &Client,
    reference: &Reference,
    name: &str,
    desc: &OciDescriptor,
    dest: &Path,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<(), PullError> {
    let result = download(client, reference, name, desc, dest, progress).await;
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

async fn download(
    client: &Client,
    reference: &Reference,
    name: &str,
    desc: &OciDescriptor,
    dest: &Path,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<(), PullError> {
    let size = u64::try_from(desc.size).map_err(|_| PullError::Invalid {
        reference: name.to_string(),
        what: "manifest",
        detail: format!("blob {} has a negative size", desc.digest),
    })?;
    let mismatch = |detail: String| PullError::DigestMismatch {
        reference: name.to_string(),
        what: "blob",
        digest: desc.digest.clone(),
        detail,
    };
    let mut stream = client
        .pull_blob_stream(reference, desc)
        .await
        .map_err(|e| classify(e, reference, name, Fetching::Blob(&desc.digest)))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let path = dest.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || write_and_hash(rx, &path));
    let mut done = 0u64;
    let mut failure = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                done += bytes.len() as u64;
                if done > size {
                    failure = Some(mismatch(format!(
                        "the registry sent more than the {size} bytes the manifest declares"
                    )));
                    break;
                }
                if tx.send(bytes).await.is_err() {
                    // The writer stopped: its error says why.
                    break;
                }
                progress(done);
            }
            Err(e) => {
                failure = Some(stream_error(e, reference, name, &desc.digest));
                break;
            }
        }
    }
    drop(tx);
    let written = writer.await.map_err(|e| {
        PullError::io(
            dest,
            std::io::Error::other(format!("blob writer panicked: {e}")),
        )
    })?;
    if let Some(f) = failure {
        return Err(f);
    }
    let (digest, written) = written.map_err(|e| PullError::io(dest, e))?;
    if written != size {
        return Err(mismatch(format!(
            "the registry sent {written} bytes, the manifest declares {size}"
        )));
    }
    if digest != desc.digest {
        return Err(mismatch(format!("its content hashes to {digest}")));
    }
    Ok(())
}

/// The blocking half of a download: writes what arrives to `path` and hashes it.
fn write_and_hash(
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    path: &PathBuf,
) -> std::io::Result<(String, u64)> {
    let file = std::fs::File::create(path)?;
    let mut out = BufWriter::with_capacity(256 << 10, file);
    let mut hasher = Sha256::new();
    let mut n = 0u64;
    while let Some(bytes) = rx.blocking_recv() {
        hasher.update(&bytes);
        out.write_all(&bytes)?;
        n += bytes.len() as u64;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok((format!("sha256:{:x}", hasher.finalize()), n))
}

/// What was being fetched (or sent), for messages.
#[derive(Clone, Copy)]
pub(super) enum Fetching<'a> {
    Manifest,
    Blob(&'a str),
    /// A push's upload of this (a blob's digest, "the manifest").
    Upload(&'a str),
}

/// An error in the middle of a blob's body: oci-client's own digest check, or the transfer.
fn stream_error(e: std::io::Error, reference: &Reference, name: &str, digest: &str) -> PullError {
    if let Some(DigestError::VerificationError { actual, .. }) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<DigestError>())
    {
        return PullError::DigestMismatch {
            reference: name.to_string(),
            what: "blob",
            digest: digest.to_string(),
            detail: format!("its content hashes to {actual}"),
        };
    }
    PullError::Unreachable {
        reference: name.to_string(),
        registry: reference.resolve_registry().to_string(),
        reason: format!(
            "the transfer of blob {digest} broke off: {}",
            root_cause(&e)
        ),
    }
}

/// The innermost cause of an error ("Connection refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Sorts an oci-client error into the cases callers act on.
pub(super) fn classify(
    e: OciDistributionError,
    reference: &Reference,
    name: &str,
    fetching: Fetching<'_>,
) -> PullError {
    let name = name.to_string();
    let registry = reference.resolve_registry().to_string();
    let not_found = |name: String| {
        let detail = match fetching {
            Fetching::Manifest if reference.digest().is_some() => {
                "manifest unknown (no manifest has this digest)".to_string()
            }
            Fetching::Manifest => "manifest unknown (the tag does not exist)".to_string(),
            Fetching::Blob(d) => format!("blob {d} unknown to the registry"),
            Fetching::Upload(what) => format!("uploading {what}: not found"),
        };
        PullError::NotFound {
            reference: name,
            detail,
        }
    };
    match e {
        OciDistributionError::RequestError(e) if e.is_builder() => PullError::Registry {
            reference: name,
            detail: root_cause(&e),
            retryable: false,
        },
        // A registry answering 401 or 403 where oci-client checks the status itself (a blob's
        // HEAD or GET): refused, not unreachable.
        OciDistributionError::RequestError(e)
            if e.status()
                .is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403) =>
        {
            PullError::Unauthorized {
                reference: name,
                detail: root_cause(&e),
            }
        }
        OciDistributionError::RequestError(e) => PullError::Unreachable {
            reference: name,
            registry,
            reason: root_cause(&e),
        },
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let text = envelope
                .errors
                .iter()
                .map(|e| e.message.as_str())
                .filter(|m| !m.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                )
            }) {
                not_found(name)
            } else if codes.contains(&&OciErrorCode::NameUnknown) {
                PullError::NotFound {
                    reference: name,
                    detail: format!(
                        "repository {} not known to registry {registry} (the repository does not exist)",
                        reference.repository()
                    ),
                }
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                PullError::Unauthorized {
                    reference: name,
                    detail: text,
                }
            } else {
                PullError::Registry {
                    reference: name,
                    retryable: codes.contains(&&OciErrorCode::Toomanyrequests),
                    detail: text,
                }
            }
        }
        OciDistributionError::ServerError { code, message, .. } => match code {
            404 => not_found(name),
            401 | 403 => PullError::Unauthorized {
                reference: name,
                detail: format!("HTTP {code} {}", message.trim()),
            },
            _ => PullError::Registry {
                reference: name,
                detail: format!("HTTP {code} {}", message.trim()),
                retryable: code == 429 || code >= 500,
            },
        },
        OciDistributionError::UnauthorizedError { url } => PullError::Unauthorized {
            reference: name,
            detail: format!("anonymous access to {url} refused"),
        },
        OciDistributionError::AuthenticationFailure(detail) => PullError::Unauthorized {
            reference: name,
            detail: format!("token service: {}", detail.trim()),
        },
        OciDistributionError::ImageManifestNotFoundError(_) => not_found(name),
        OciDistributionError::DigestError(DigestError::VerificationError { expected, actual }) => {
            PullError::DigestMismatch {
                reference: name,
                what: match fetching {
                    Fetching::Manifest => "manifest",
                    Fetching::Blob(_) | Fetching::Upload(_) => "blob",
                },
                digest: expected,
                detail: format!("its content hashes to {actual}"),
            }
        }
        OciDistributionError::UnsupportedMediaTypeError(media_type) => PullError::NotWasm {
            reference: name,
            detail: format!("unsupported manifest media type {media_type}"),
        },
        OciDistributionError::UnsupportedSchemaVersionError(v) => PullError::NotWasm {
            reference: name,
            detail: format!("unsupported manifest schema version {v}"),
        },
        OciDistributionError::IoError(e) => stream_error(e, reference, &name, "?"),
        other => PullError::Registry {
            reference: name,
            detail: other.to_string(),
            retryable: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_use_http() {
        for r in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost",
            "LOCALHOST:80",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "10.0.0.1:5000",
            "example.com",
            "localhost.example.com:5000",
            "[::2]:1",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
        let regs = Registries::new(
            vec!["registry.lan:5000".into()],
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        assert!(regs.uses_http("registry.lan:5000"));
        assert!(!regs.uses_http("registry.lan"));
        assert!(!regs.uses_http("registry.invalid"));
    }

    #[test]
    fn not_found_messages_name_what_is_missing() {
        let r: Reference = "127.0.0.1:5000/probe:nope".parse().unwrap();
        let e = OciDistributionError::RegistryError {
            envelope: serde_json::from_str(
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}"#,
            )
            .unwrap(),
            url: "http://127.0.0.1:5000/v2/probe/manifests/nope".into(),
        };
        let e = classify(e, &r, &r.whole(), Fetching::Manifest);
        assert_eq!(
            e.to_string(),
            "127.0.0.1:5000/probe:nope: manifest unknown (the tag does not exist)"
        );
        assert!(!e.retryable());
        let e = OciDistributionError::RegistryError {
            envelope: serde_json::from_str(
                r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#,
            )
            .unwrap(),
            url: String::new(),
        };
        let e = classify(e, &r, &r.whole(), Fetching::Manifest);
        assert!(e.to_string().contains("repository probe not known"), "{e}");
        let e = OciDistributionError::ServerError {
            code: 503,
            url: String::new(),
            message: "busy".into(),
        };
        assert!(classify(e, &r, &r.whole(), Fetching::Manifest).retryable());
    }
}
