//! The image store: pull from OCI registries, verify, cache; hand out a module file for a Wasm
//! image, or unpacked layers for a container image.
//!
//! Public API:
//!
//! - [`ImageStore::new`]`(root)` (or [`ImageStore::with_options`]`(root, `[`StoreOptions`]`)`):
//!   the store in its directory (layout in `cache.rs`). One store per directory and process.
//! - [`ImageStore::pull`]`(reference, `[`PullPolicy`]`, progress)` → [`PulledImage`]
//!   `{ digest, module_path, ... }` or a [`PullError`]. `digest` is the manifest digest the
//!   reference resolved to (a container's `imageID`); `module_path` is a file in the store,
//!   named by its own digest, that stays until the store is cleaned.
//! - [`PullPolicy::default_for`]`(reference)`: Kubernetes' defaults (`:latest` or no tag →
//!   Always, anything else → IfNotPresent). A digest reference never re-resolves.
//!
//! What is a Wasm image is in [`kind`]; how the `.wasm` entrypoint of an ordinary OCI image is
//! found in its layers is in [`extract`] (the pure part) and `oci_image.rs` (the downloads).
//! Which layer media types skiff reads, and how each is compressed, is one table ([`media`]),
//! used by the pull's checks and by both layer readers (the entrypoint search and unpack).
//! Every blob is checked against its digest and size before it is used or kept; downloads go to
//! temp files renamed into place when complete, so a pull that dies leaves nothing a later pull
//! would take as present. Registries are reached over https,
//! plain http for loopback ones and those in [`StoreOptions::insecure_registries`]; pulls use
//! the credentials a [`Keyring`] ([`auth`]) has for the registry (basic auth, or the Docker
//! bearer-token flow where a registry asks for it), anonymous without.
//!
//! [`push::push_wasm`] goes the other way: a module or component from a file to a registry, as a
//! Wasm OCI artifact in the CNCF layout (what `skiff push` does).
//!
//! Container images ([`ImageStore::pull_container`], in `container.rs`) go further: every layer
//! is unpacked, path-safe, into a [`unpack::Snapshots`] store the caller owns.
//!
//! Concurrent pulls of one reference are serialised: the second finds what the first stored.
//!
//! Must not: know about pods or containers, store credentials, or unpack anything of an image
//! pulled as a Wasm image but its module.

pub mod auth;
mod cache;
mod container;
mod error;
pub mod extract;
pub mod kind;
pub mod media;
mod oci_image;
mod progress;
#[cfg(test)]
mod pull_tests;
pub mod push;
mod registry;
pub mod unpack;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use oci_client::manifest::{OciDescriptor, OciImageManifest, OciManifest};
use oci_client::{Client, Reference};

pub use auth::{AuthError, Credential, Keyring};
pub use cache::ImageRecord;
pub use container::{ContainerRecord, ImageProcess, PulledContainer};
pub use error::PullError;
pub use progress::{INTERVAL as PROGRESS_INTERVAL, Progress, ProgressFn};

use cache::Cache;
use kind::Kind;
use progress::Throttle;
use registry::Registries;

/// Image configs bigger than this are refused.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// When to contact the registry (Kubernetes' `imagePullPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Resolve the reference every time; download only what is not in the store yet.
    Always,
    /// Use the store's copy if there is one.
    IfNotPresent,
    /// Only ever use the store's copy.
    Never,
}

impl PullPolicy {
    /// Kubernetes' default for `reference`: Always for `:latest` or no tag, else IfNotPresent.
    pub fn default_for(reference: &str) -> Self {
        match Reference::from_str(reference) {
            Ok(r) if r.digest().is_none() && r.tag() == Some("latest") => Self::Always,
            _ => Self::IfNotPresent,
        }
    }

    /// A policy as a pod spec spells it; empty means [`PullPolicy::default_for`].
    pub fn from_spec(policy: &str, reference: &str) -> Option<Self> {
        match policy {
            "" => Some(Self::default_for(reference)),
            "Always" => Some(Self::Always),
            "IfNotPresent" => Some(Self::IfNotPresent),
            "Never" => Some(Self::Never),
            _ => None,
        }
    }
}

/// How a store reaches registries and what it accepts.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Registries (`host[:port]`, as in references) reached over plain http. Loopback
    /// registries always are.
    pub insecure_registries: Vec<String>,
    /// The largest module accepted.
    pub max_module_bytes: u64,
    /// The largest OCI image layer downloaded to look for the module.
    pub max_layer_bytes: u64,
    pub connect_timeout: Duration,
    /// The longest wait for the next bytes of an answer.
    pub read_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            max_module_bytes: 512 << 20,
            max_layer_bytes: 4 << 30,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
        }
    }
}

/// A pulled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// The reference as normalised (a bare `x` gets the default registry, `library/` and `:latest`).
    pub reference: String,
    /// The manifest digest the reference resolved to: the container's `imageID`.
    pub digest: String,
    /// The module, in the store.
    pub module_path: PathBuf,
    /// What the store knows of the image.
    pub record: ImageRecord,
    /// Whether this call downloaded anything (false: all from the store).
    pub downloaded: bool,
}

/// The image store.
pub struct ImageStore {
    cache: Arc<Cache>,
    registries: Registries,
    options: StoreOptions,
    /// One lock per reference: concurrent pulls of an image wait for the first.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.cache.root())
            .finish_non_exhaustive()
    }
}

/// What one pull is about, for messages and the registry calls.
struct Target<'a> {
    client: Client,
    /// How `client` authenticates (the credential the registry accepted, or anonymous).
    auth: oci_client::secrets::RegistryAuth,
    reference: &'a Reference,
    name: &'a str,
}

impl ImageStore {
    /// Opens the store at `root` (created if missing) with default options. Downloads a
    /// previous process left half-done are removed.
    pub fn new(root: impl AsRef<Path>) -> Result<Self, PullError> {
        Self::with_options(root, StoreOptions::default())
    }

    pub fn with_options(root: impl AsRef<Path>, options: StoreOptions) -> Result<Self, PullError> {
        Ok(Self {
            cache: Arc::new(Cache::open(root.as_ref())?),
            registries: Registries::new(
                options.insecure_registries.clone(),
                options.connect_timeout,
                options.read_timeout,
            ),
            options,
            locks: Mutex::new(HashMap::new()),
        })
    }

    pub fn root(&self) -> &Path {
        self.cache.root()
    }

    /// Whether the store reaches `registry` over plain http.
    pub fn uses_http(&self, registry: &str) -> bool {
        self.registries.uses_http(registry)
    }

    /// The image `reference` names, from the store or the registry as `policy` says (pulled
    /// anonymously). `progress` hears about each blob downloaded.
    pub async fn pull(
        &self,
        reference: &str,
        policy: PullPolicy,
        progress: &ProgressFn<'_>,
    ) -> Result<PulledImage, PullError> {
        self.pull_with(reference, policy, &Keyring::default(), progress)
            .await
    }

    /// [`ImageStore::pull`] with the credentials `keyring` has for the image's registry, tried
    /// in turn. An image already in the store is used without asking the registry (policy
    /// IfNotPresent), whoever pulled it: kubelet's behaviour, documented in
    /// docs/security/private-registries.md.
    pub async fn pull_with(
        &self,
        reference: &str,
        policy: PullPolicy,
        keyring: &Keyring,
        progress: &ProgressFn<'_>,
    ) -> Result<PulledImage, PullError> {
        let (parsed, name) = parse_reference(reference)?;
        let lock = self.lock_for(&name);
        let _guard = lock.lock().await;

        // What the store has: by digest, or by the tag's last resolution.
        let r = parsed.clone();
        let cached = self
            .files(move |c| {
                let known = r.digest().map(str::to_string).or_else(|| c.read_ref(&r));
                Ok(known.and_then(|d| c.record(&d)))
            })
            .await?;
        match (policy, cached) {
            (_, Some(record)) if parsed.digest().is_some() => return Ok(self.found(&name, record)),
            (PullPolicy::IfNotPresent | PullPolicy::Never, Some(record)) => {
                return Ok(self.found(&name, record));
            }
            (PullPolicy::Never, None) => return Err(PullError::NotPresent { reference: name }),
            _ => {}
        }

        let credentials = keyring.lookup(parsed.resolve_registry(), parsed.repository());
        let (client, auth, body, digest) =
            registry::open(&self.registries, &parsed, &name, &credentials).await?;
        let target = Target {
            client,
            auth,
            reference: &parsed,
            name: &name,
        };
        let (r, d) = (parsed.clone(), digest.clone());
        let present = self
            .files(move |c| {
                let record = c.record(&d);
                if record.is_some() {
                    // Always, and the tag still names what the store has: nothing to download.
                    c.write_ref(&r, &d)?;
                }
                Ok(record)
            })
            .await?;
        if let Some(record) = present {
            return Ok(self.found(&name, record));
        }
        let record = self.pull_manifest(&target, body, &digest, progress).await?;
        let (r, d, rec) = (parsed.clone(), digest.clone(), record.clone());
        self.files(move |c| {
            c.write_record(&rec)?;
            c.write_ref(&r, &d)
        })
        .await?;
        let mut pulled = self.found(&name, record);
        pulled.downloaded = true;
        Ok(pulled)
    }

    /// The lock that serialises pulls of `name`.
    fn lock_for(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(name.to_string()).or_default().clone()
    }

    /// Runs `f` on the store's files on a blocking thread (writes end with an fsync).
    async fn files<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Cache) -> Result<T, PullError> + Send + 'static,
    ) -> Result<T, PullError> {
        let cache = self.cache.clone();
        tokio::task::spawn_blocking(move || f(&cache))
            .await
            .map_err(|e| PullError::io(self.cache.root(), std::io::Error::other(e.to_string())))?
    }

    fn found(&self, name: &str, record: ImageRecord) -> PulledImage {
        PulledImage {
            reference: name.to_string(),
            digest: record.digest.clone(),
            module_path: self
                .cache
                .blob_path(&record.module_digest)
                .unwrap_or_default(),
            record,
            downloaded: false,
        }
    }

    /// Everything after the top manifest: the index entry, the module. Returns the record to
    /// write once the module is in place.
    async fn pull_manifest(
        &self,
        t: &Target<'_>,
        body: Bytes,
        digest: &str,
        progress: &ProgressFn<'_>,
    ) -> Result<ImageRecord, PullError> {
        let invalid = |what: &'static str, detail: String| PullError::Invalid {
            reference: t.name.to_string(),
            what,
            detail,
        };
        let not_wasm = |detail: String| PullError::NotWasm {
            reference: t.name.to_string(),
            detail,
        };
        let parsed: OciManifest =
            serde_json::from_slice(&body).map_err(|e| invalid("manifest", e.to_string()))?;
        let d = digest.to_string();
        self.files(move |c| c.write_blob(&d, &body)).await?;
        let (manifest, manifest_digest) = match parsed {
            OciManifest::Image(m) => (m, digest.to_string()),
            OciManifest::ImageIndex(index) => {
                let entry = kind::select(&index).map_err(not_wasm)?;
                let by_digest = t.reference.clone_with_digest(entry.digest.clone());
                let (body, d) =
                    registry::fetch_manifest(&t.client, &by_digest, t.name, &t.auth).await?;
                let m = match serde_json::from_slice::<OciManifest>(&body) {
                    Ok(OciManifest::Image(m)) => m,
                    Ok(OciManifest::ImageIndex(_)) => {
                        return Err(invalid(
                            "image index",
                            format!("entry {} is an index, not an image manifest", entry.digest),
                        ));
                    }
                    Err(e) => return Err(invalid("manifest", e.to_string())),
                };
                let digest = d.clone();
                self.files(move |c| c.write_blob(&digest, &body)).await?;
                (m, d)
            }
        };
        let kind = kind::classify(&manifest).map_err(not_wasm)?;
        let (module_digest, module_size, entry) = match kind {
            Kind::WasmArtifact { layer } => {
                let (d, size) = self
                    .pull_artifact_module(t, &manifest, layer, progress)
                    .await?;
                (d, size, None)
            }
            Kind::OciImage => {
                let (d, size, entry) = self.pull_image_module(t, &manifest, progress).await?;
                (d, size, Some(entry))
            }
        };
        Ok(ImageRecord {
            digest: digest.to_string(),
            manifest_digest,
            config_media_type: manifest.config.media_type.clone(),
            layer_media_types: manifest
                .layers
                .iter()
                .map(|l| l.media_type.clone())
                .collect(),
            kind: kind.name().into(),
            entrypoint: entry
                .as_ref()
                .map(|e| e.entrypoint.clone())
                .unwrap_or_default(),
            cmd: entry.map(|e| e.cmd).unwrap_or_default(),
            module_digest,
            module_size,
        })
    }

    /// A Wasm artifact: the module is the layer's blob.
    async fn pull_artifact_module(
        &self,
        t: &Target<'_>,
        manifest: &OciImageManifest,
        layer: usize,
        progress: &ProgressFn<'_>,
    ) -> Result<(String, u64), PullError> {
        let desc = &manifest.layers[layer];
        let size = self.check_size(t, desc, "the module", self.options.max_module_bytes)?;
        if !self.cache.has_blob(&desc.digest, size) {
            let temp = self.cache.temp_path("module");
            self.download(t, desc, &temp, "module", (1, 1), progress)
                .await?;
            let not_wasm = PullError::NotWasm {
                reference: t.name.to_string(),
                detail: format!(
                    "layer {} ({}) is not a Wasm binary (no \\0asm header)",
                    desc.digest, desc.media_type
                ),
            };
            let digest = desc.digest.clone();
            self.files(move |c| {
                let magic = read_magic(&temp).map_err(|e| PullError::io(&temp, e))?;
                if magic != *b"\0asm" {
                    let _ = std::fs::remove_file(&temp);
                    return Err(not_wasm);
                }
                c.commit_blob(&temp, &digest)
            })
            .await?;
        }
        Ok((desc.digest.clone(), size))
    }

    /// The descriptor's size, if it is within `limit`.
    fn check_size(
        &self,
        t: &Target<'_>,
        desc: &OciDescriptor,
        what: &str,
        limit: u64,
    ) -> Result<u64, PullError> {
        let size = u64::try_from(desc.size).map_err(|_| PullError::Invalid {
            reference: t.name.to_string(),
            what: "manifest",
            detail: format!("blob {} has a negative size", desc.digest),
        })?;
        if size > limit {
            return Err(PullError::TooLarge {
                reference: t.name.to_string(),
                what: format!("{what} ({})", desc.digest),
                size,
                limit,
            });
        }
        Ok(size)
    }

    async fn download(
        &self,
        t: &Target<'_>,
        desc: &OciDescriptor,
        dest: &Path,
        what: &'static str,
        (index, count): (usize, usize),
        progress: &ProgressFn<'_>,
    ) -> Result<(), PullError> {
        let mut throttle = Throttle::new(
            progress,
            Progress {
                digest: desc.digest.clone(),
                what,
                index,
                count,
                done: 0,
                total: u64::try_from(desc.size).unwrap_or(0),
            },
        );
        registry::download_blob(&t.client, t.reference, t.name, desc, dest, &mut |done| {
            throttle.update(done)
        })
        .await
    }
}

/// The parsed reference and its normalised name.
fn parse_reference(reference: &str) -> Result<(Reference, String), PullError> {
    let parsed = Reference::from_str(reference).map_err(|e| PullError::InvalidReference {
        reference: reference.to_string(),
        reason: e.to_string(),
    })?;
    let name = parsed.whole();
    Ok((parsed, name))
}

fn read_magic(path: &Path) -> std::io::Result<[u8; 4]> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path)?;
    match f.read_exact(&mut magic) {
        Ok(()) => Ok(magic),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok([0; 4]),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policies() {
        for (r, p) in [
            ("127.0.0.1:5000/probe:v1", PullPolicy::IfNotPresent),
            ("127.0.0.1:5000/probe:latest", PullPolicy::Always),
            ("127.0.0.1:5000/probe", PullPolicy::Always),
            ("busybox", PullPolicy::Always),
            (
                "127.0.0.1:5000/probe@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                PullPolicy::IfNotPresent,
            ),
            (
                "probe:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                PullPolicy::IfNotPresent,
            ),
        ] {
            assert_eq!(PullPolicy::default_for(r), p, "{r}");
        }
        assert_eq!(
            PullPolicy::from_spec("Never", "x:latest"),
            Some(PullPolicy::Never)
        );
        assert_eq!(
            PullPolicy::from_spec("", "x:latest"),
            Some(PullPolicy::Always)
        );
        assert_eq!(PullPolicy::from_spec("Sometimes", "x"), None);
    }

    #[tokio::test]
    async fn never_and_bad_references_fail_without_a_registry() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path()).unwrap();
        let e = store
            .pull("127.0.0.1:1/none:v1", PullPolicy::Never, &|_| {})
            .await
            .unwrap_err();
        assert!(matches!(e, PullError::NotPresent { .. }), "{e}");
        assert_eq!(e.reason(), "ErrImageNeverPull");
        let e = store
            .pull("Bad Reference!", PullPolicy::IfNotPresent, &|_| {})
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "InvalidImageName");
        assert!(
            e.to_string()
                .starts_with("Bad Reference!: invalid image reference"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_and_retryable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path()).unwrap();
        let reference = format!("127.0.0.1:{port}/probe:v1");
        let e = store
            .pull(&reference, PullPolicy::IfNotPresent, &|_| {})
            .await
            .unwrap_err();
        assert!(matches!(e, PullError::Unreachable { .. }), "{e}");
        assert!(e.retryable());
        assert!(
            e.to_string().starts_with(&format!(
                "{reference}: registry 127.0.0.1:{port} unreachable"
            )),
            "{e}"
        );
        assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
        // Nothing was left in the store.
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }
}
