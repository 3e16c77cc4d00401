//! The module of an ordinary OCI image: its config names the `.wasm` entrypoint, its tar layers
//! are downloaded from the top down until one decides ([`super::extract`]), and the file found
//! is kept as a blob named by its own digest. Layers are deleted once scanned; nothing else of
//! the image is unpacked.
//!
//! Must not: keep a layer, or write any file of the image but the module.

use std::path::Path;

use oci_client::manifest::OciImageManifest;

use super::extract::{self, LayerOutcome};
use super::media::LayerCompression;
use super::{ImageStore, MAX_CONFIG_BYTES, ProgressFn, PullError, Target, kind, read_magic};

impl ImageStore {
    /// An OCI image: read the config for the entrypoint, then layers from the top down until
    /// one decides; the file found becomes a blob named by its own digest.
    pub(super) async fn pull_image_module(
        &self,
        t: &Target<'_>,
        manifest: &OciImageManifest,
        progress: &ProgressFn<'_>,
    ) -> Result<(String, u64, extract::Entrypoint), PullError> {
        let count = manifest.layers.len() + 1;
        let config_desc = &manifest.config;
        let config_size = self.check_size(t, config_desc, "the image config", MAX_CONFIG_BYTES)?;
        let downloaded = if self.cache.has_blob(&config_desc.digest, config_size) {
            None
        } else {
            let temp = self.cache.temp_path("config");
            self.download(t, config_desc, &temp, "config", (1, count), progress)
                .await?;
            Some(temp)
        };
        let digest = config_desc.digest.clone();
        let config = self
            .files(move |c| {
                let path = match downloaded {
                    Some(temp) => c.commit_blob(&temp, &digest)?,
                    None => c.blob_path(&digest).unwrap_or_default(),
                };
                std::fs::read(&path).map_err(|e| PullError::io(&path, e))
            })
            .await?;
        let entry = extract::entrypoint(&config).map_err(|e| PullError::NotWasm {
            reference: t.name.to_string(),
            detail: format!("{e} ({})", kind::describe(manifest)),
        })?;
        let limit = self.options.max_module_bytes;
        let module_temp = self.cache.temp_path("module");
        for (i, desc) in manifest.layers.iter().enumerate().rev() {
            let compression =
                LayerCompression::of_media_type(&desc.media_type).ok_or_else(|| {
                    PullError::NotWasm {
                        reference: t.name.to_string(),
                        detail: format!("unsupported layer media type {}", desc.media_type),
                    }
                })?;
            self.check_size(t, desc, "a layer", self.options.max_layer_bytes)?;
            let layer_temp = self.cache.temp_path("layer");
            self.download(t, desc, &layer_temp, "layer", (i + 2, count), progress)
                .await?;
            let (target, out, layer) = (
                entry.components.clone(),
                module_temp.clone(),
                layer_temp.clone(),
            );
            let scanned = tokio::task::spawn_blocking(move || {
                let file = std::fs::File::open(&layer)?;
                let reader = std::io::BufReader::new(file);
                extract::scan_layer(reader, compression, &target, &out, limit)
            })
            .await;
            let _ = std::fs::remove_file(&layer_temp);
            let scanned = scanned
                .map_err(|e| PullError::io(&layer_temp, std::io::Error::other(e.to_string())))?;
            let outcome = match scanned {
                Ok(o) => o,
                Err(extract::ExtractError::TooLarge { size, limit, .. }) => {
                    return Err(PullError::TooLarge {
                        reference: t.name.to_string(),
                        what: format!("the entrypoint {}", entry.path),
                        size,
                        limit,
                    });
                }
                Err(extract::ExtractError::Io(e)) => {
                    let _ = std::fs::remove_file(&module_temp);
                    return Err(PullError::Invalid {
                        reference: t.name.to_string(),
                        what: "layer",
                        detail: format!("{}: {e}", desc.digest),
                    });
                }
            };
            match outcome {
                LayerOutcome::Absent => continue,
                LayerOutcome::Found { .. } => {
                    let (digest, size) = self.commit_module(t, &module_temp, &entry.path).await?;
                    return Ok((digest, size, entry));
                }
                LayerOutcome::Deleted => break,
                LayerOutcome::NotRegular { what } => {
                    return Err(PullError::NotWasm {
                        reference: t.name.to_string(),
                        detail: format!("the image's entrypoint {} is {what}", entry.path),
                    });
                }
            }
        }
        Err(PullError::NotWasm {
            reference: t.name.to_string(),
            detail: format!(
                "the image's entrypoint {} is not a file in its layers",
                entry.path
            ),
        })
    }

    /// Hashes an extracted module (on a blocking thread), checks it is Wasm, stores it.
    async fn commit_module(
        &self,
        t: &Target<'_>,
        temp: &Path,
        path_in_image: &str,
    ) -> Result<(String, u64), PullError> {
        let not_wasm = PullError::NotWasm {
            reference: t.name.to_string(),
            detail: format!(
                "the image's entrypoint {path_in_image} is not a Wasm binary (no \\0asm header)"
            ),
        };
        let temp = temp.to_path_buf();
        self.files(move |c| {
            let (digest, size, magic) = hash_file(&temp).map_err(|e| PullError::io(&temp, e))?;
            if magic != *b"\0asm" {
                let _ = std::fs::remove_file(&temp);
                return Err(not_wasm);
            }
            if c.has_blob(&digest, size) {
                let _ = std::fs::remove_file(&temp);
            } else {
                c.commit_blob(&temp, &digest)?;
            }
            Ok((digest, size))
        })
        .await
    }
}

/// `sha256:<hex>`, size and first four bytes of a file.
fn hash_file(path: &Path) -> std::io::Result<(String, u64, [u8; 4])> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let size = std::io::copy(&mut f, &mut hasher)?;
    Ok((
        format!("sha256:{:x}", hasher.finalize()),
        size,
        read_magic(path)?,
    ))
}
