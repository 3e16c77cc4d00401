//! Container images: every layer of an ordinary OCI image, verified, unpacked into the snapshot
//! store, and the process the image config describes (entrypoint, cmd, env, working dir, user).
//!
//! A pull resolves the reference as a Wasm pull does (same refs, same manifests, same blob
//! checks), then downloads the config and each layer blob not already present, unpacks each
//! layer once into [`Snapshots`] (keyed by its diff_id, checked against the config's
//! `rootfs.diff_ids`, path-safe: see [`super::unpack`]), and writes one
//! [`ContainerRecord`] last. Layer blobs are deleted once unpacked: the snapshot is what a
//! container uses. A pull that fails part-way leaves complete snapshots (reused next time) and
//! nothing half-written.
//!
//! Must not: mount anything (the caller stacks the snapshots with overlayfs), or accept a layer
//! whose content does not hash to the diff_id the config names.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use oci_client::manifest::{OciImageManifest, OciManifest};
use serde::{Deserialize, Serialize};

use super::Keyring;
use super::cache::Cache;
use super::unpack::{Snapshots, UnpackError};
use super::{
    ImageStore, MAX_CONFIG_BYTES, ProgressFn, PullError, PullPolicy, Target, kind, parse_reference,
    registry,
};

/// What a container image runs, from its config (`config.Entrypoint`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageProcess {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value`, in order.
    pub env: Vec<String>,
    pub working_dir: String,
    /// `user`, `uid`, `user:group` or `uid:gid`, as in the config.
    pub user: String,
}

/// A pulled container image, kept as `containers/sha256/<manifest hex>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The manifest digest the reference resolved to (an index's own digest for an index).
    pub digest: String,
    pub manifest_digest: String,
    /// Layer diff_ids, bottom first; each is a snapshot.
    pub diff_ids: Vec<String>,
    pub process: ImageProcess,
}

/// A container image ready to be stacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledContainer {
    pub reference: String,
    /// The container's `imageID`.
    pub digest: String,
    /// The snapshot directories, bottom layer first (overlayfs takes them top first).
    pub layers: Vec<PathBuf>,
    pub process: ImageProcess,
    pub downloaded: bool,
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    config: Option<ConfigSection>,
    rootfs: RootfsSection,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ConfigSection {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
struct RootfsSection {
    diff_ids: Vec<String>,
}

fn record_path(c: &Cache, digest: &str) -> Option<PathBuf> {
    super::cache::sha256_hex(digest).map(|hex| {
        c.root()
            .join("containers/sha256")
            .join(format!("{hex}.json"))
    })
}

fn read_record(c: &Cache, digest: &str) -> Option<ContainerRecord> {
    let bytes = std::fs::read(record_path(c, digest)?).ok()?;
    let r: ContainerRecord = serde_json::from_slice(&bytes).ok()?;
    (r.digest == digest).then_some(r)
}

fn write_record(c: &Cache, r: &ContainerRecord) -> Result<(), PullError> {
    let path = record_path(c, &r.digest).ok_or_else(|| {
        PullError::io(
            c.root(),
            std::io::Error::other(format!("bad digest {}", r.digest)),
        )
    })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| PullError::io(dir, e))?;
    }
    let bytes = serde_json::to_vec_pretty(r).map_err(|e| PullError::io(&path, e.into()))?;
    c.replace_file(&path, &bytes)
}

impl ImageStore {
    /// The container image `reference` names, its layers unpacked into `snapshots` (pulled
    /// anonymously).
    pub async fn pull_container(
        &self,
        reference: &str,
        policy: PullPolicy,
        snapshots: &Arc<Snapshots>,
        progress: &ProgressFn<'_>,
    ) -> Result<PulledContainer, PullError> {
        self.pull_container_with(reference, policy, &Keyring::default(), snapshots, progress)
            .await
    }

    /// [`ImageStore::pull_container`] with the credentials `keyring` has for the image.
    pub async fn pull_container_with(
        &self,
        reference: &str,
        policy: PullPolicy,
        keyring: &Keyring,
        snapshots: &Arc<Snapshots>,
        progress: &ProgressFn<'_>,
    ) -> Result<PulledContainer, PullError> {
        let (parsed, name) = parse_reference(reference)?;
        let lock = self.lock_for(&name);
        let _guard = lock.lock().await;

        let found = |record: ContainerRecord, downloaded| {
            let layers = record
                .diff_ids
                .iter()
                .map(|d| snapshots.fs_dir(d))
                .collect::<Option<Vec<_>>>();
            layers.map(|layers| PulledContainer {
                reference: name.clone(),
                digest: record.digest.clone(),
                layers,
                process: record.process.clone(),
                downloaded,
            })
        };
        let r = parsed.clone();
        let cached = self
            .files(move |c| {
                let known = r.digest().map(str::to_string).or_else(|| c.read_ref(&r));
                Ok(known.and_then(|d| read_record(c, &d)))
            })
            .await?;
        let use_cached = parsed.digest().is_some() || policy != PullPolicy::Always;
        if let Some(record) = cached.filter(|_| use_cached)
            && let Some(pulled) = found(record, false)
        {
            return Ok(pulled);
        }
        if policy == PullPolicy::Never {
            return Err(PullError::NotPresent { reference: name });
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
        let d = digest.clone();
        if let Some(record) = self.files(move |c| Ok(read_record(c, &d))).await?
            && let Some(pulled) = found(record, false)
        {
            let (r, d) = (parsed.clone(), digest.clone());
            self.files(move |c| c.write_ref(&r, &d)).await?;
            return Ok(pulled);
        }
        let record = self
            .pull_container_manifest(&target, body, &digest, snapshots, progress)
            .await?;
        let (r, rec) = (parsed.clone(), record.clone());
        self.files(move |c| {
            write_record(c, &rec)?;
            c.write_ref(&r, &rec.digest)
        })
        .await?;
        found(record, true).ok_or_else(|| PullError::Invalid {
            reference: name.clone(),
            what: "layer",
            detail: "a snapshot vanished during the pull".into(),
        })
    }

    async fn pull_container_manifest(
        &self,
        t: &Target<'_>,
        body: Bytes,
        digest: &str,
        snapshots: &Arc<Snapshots>,
        progress: &ProgressFn<'_>,
    ) -> Result<ContainerRecord, PullError> {
        let invalid = |what: &'static str, detail: String| PullError::Invalid {
            reference: t.name.to_string(),
            what,
            detail,
        };
        let parsed: OciManifest =
            serde_json::from_slice(&body).map_err(|e| invalid("manifest", e.to_string()))?;
        let (manifest, manifest_digest) = match parsed {
            OciManifest::Image(m) => (m, digest.to_string()),
            OciManifest::ImageIndex(index) => {
                let entry =
                    kind::select_container(&index).map_err(|e| invalid("image index", e))?;
                let by_digest = t.reference.clone_with_digest(entry.digest.clone());
                let (body, d) =
                    registry::fetch_manifest(&t.client, &by_digest, t.name, &t.auth).await?;
                match serde_json::from_slice::<OciManifest>(&body) {
                    Ok(OciManifest::Image(m)) => (m, d),
                    Ok(OciManifest::ImageIndex(_)) => {
                        return Err(invalid(
                            "image index",
                            format!("entry {} is an index, not an image manifest", entry.digest),
                        ));
                    }
                    Err(e) => return Err(invalid("manifest", e.to_string())),
                }
            }
        };
        kind::check_container(&manifest).map_err(|e| invalid("manifest", e))?;
        let config = self.container_config(t, &manifest, progress).await?;
        let parsed: ConfigJson =
            serde_json::from_slice(&config).map_err(|e| invalid("image config", e.to_string()))?;
        if parsed.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(invalid(
                "image config",
                format!(
                    "{} rootfs.diff_ids for {} layers",
                    parsed.rootfs.diff_ids.len(),
                    manifest.layers.len()
                ),
            ));
        }
        let count = manifest.layers.len() + 1;
        for (i, (desc, diff_id)) in manifest
            .layers
            .iter()
            .zip(&parsed.rootfs.diff_ids)
            .enumerate()
        {
            if snapshots.fs_dir(diff_id).is_some() {
                continue;
            }
            let size = self.check_size(t, desc, "a layer", self.options.max_layer_bytes)?;
            let temp = self.cache.temp_path("layer");
            if !self.cache.has_blob(&desc.digest, size) {
                self.download(t, desc, &temp, "layer", (i + 2, count), progress)
                    .await?;
            }
            let blob = if temp.exists() {
                temp.clone()
            } else {
                self.cache.blob_path(&desc.digest).unwrap_or_default()
            };
            let (snaps, diff, media) =
                (snapshots.clone(), diff_id.clone(), desc.media_type.clone());
            let unpacked = tokio::task::spawn_blocking(move || {
                snaps.ensure(&diff, &media, || std::fs::File::open(&blob))
            })
            .await
            .map_err(|e| invalid("layer", e.to_string()))?;
            let _ = std::fs::remove_file(&temp);
            unpacked.map_err(|e: UnpackError| invalid("layer", e.to_string()))?;
        }
        let c = parsed.config.unwrap_or_default();
        Ok(ContainerRecord {
            digest: digest.to_string(),
            manifest_digest,
            diff_ids: parsed.rootfs.diff_ids,
            process: ImageProcess {
                entrypoint: c.entrypoint.unwrap_or_default(),
                cmd: c.cmd.unwrap_or_default(),
                env: c.env.unwrap_or_default(),
                working_dir: c.working_dir.unwrap_or_default(),
                user: c.user.unwrap_or_default(),
            },
        })
    }

    /// The image config's bytes, downloaded into the blob store unless present.
    async fn container_config(
        &self,
        t: &Target<'_>,
        manifest: &OciImageManifest,
        progress: &ProgressFn<'_>,
    ) -> Result<Vec<u8>, PullError> {
        let desc = &manifest.config;
        let size = self.check_size(t, desc, "the image config", MAX_CONFIG_BYTES)?;
        let temp = if self.cache.has_blob(&desc.digest, size) {
            None
        } else {
            let temp = self.cache.temp_path("config");
            let count = manifest.layers.len() + 1;
            self.download(t, desc, &temp, "config", (1, count), progress)
                .await?;
            Some(temp)
        };
        let digest = desc.digest.clone();
        self.files(move |c| {
            let path = match temp {
                Some(temp) => c.commit_blob(&temp, &digest)?,
                None => c.blob_path(&digest).unwrap_or_default(),
            };
            std::fs::read(&path).map_err(|e| PullError::io(&path, e))
        })
        .await
    }
}
