//! Pushing a Wasm module or component to an OCI registry as a Wasm OCI artifact in the CNCF TAG
//! Runtime layout: one `application/wasm` layer (the file's bytes, as they are) and a config of
//! media type `application/vnd.wasm.config.v0+json` whose fields say what the layer is:
//! `architecture: wasm`, `os: wasip1` for a core module or `wasip2` for a component,
//! `layerDigests`, and for a component its top-level `imports` and `exports` (interface names
//! such as `wasi:http/incoming-handler@0.2.10`). `wkg` writes the same layout, so either tool's
//! artifacts run on skiff and elsewhere.
//!
//! The file is read and validated (wasmparser, every proposal allowed) on a blocking thread
//! before anything is sent; WAT text is compiled first. Registries are reached as pulls reach
//! them ([`super::registry`]): plain http for loopback ones and those the caller lists as
//! insecure, https otherwise; anonymous, with the Docker bearer-token flow where a registry asks
//! for it. Blobs the registry already has are not sent again. The manifest is written here, so
//! its digest (what a pod may pin with `@sha256:...`) is known without asking the registry.
//!
//! Must not: keep credentials, or write anything but to the registry.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use oci_client::errors::OciDistributionError;
use oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde_json::json;

use super::PullError;
use super::media::{MEDIA_TYPE_WASM_CONFIG, MEDIA_TYPE_WASM_LAYER};
use super::registry::{self, Fetching, Registries, sha256};

/// What a Wasm binary is, for the config's `os`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A core module (WASI preview 1): `os: wasip1`.
    Module,
    /// A component (WASI preview 2): `os: wasip2`.
    Component,
}

impl WasmKind {
    /// The config's `os`.
    pub fn os(self) -> &'static str {
        match self {
            Self::Module => "wasip1",
            Self::Component => "wasip2",
        }
    }
}

/// A Wasm binary ready to push: its bytes, kind, and (for a component) its world's top-level
/// imports and exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmFile {
    pub bytes: Vec<u8>,
    pub kind: WasmKind,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// What a push made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The reference as normalised (`127.0.0.1:5000/hello:v1`).
    pub reference: String,
    /// `sha256:...` of the manifest.
    pub digest: String,
    pub kind: WasmKind,
    /// The layer's size in bytes.
    pub size: u64,
}

/// A failed push. Every message names the file or the reference.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not a Wasm binary (or WAT text), or an invalid one.
    #[error("{}: not a Wasm module or component: {detail}", path.display())]
    NotWasm { path: PathBuf, detail: String },
    /// The reference does not parse, or names a digest (a push needs a tag).
    #[error("{reference}: invalid image reference: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// What the registry said (unreachable, unauthorized, refused).
    #[error(transparent)]
    Registry(#[from] PullError),
}

impl PushError {
    /// Whether the caller's input is at fault (a CLI's exit code 2) rather than the registry.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::Read { .. } | Self::NotWasm { .. } | Self::InvalidReference { .. }
        )
    }
}

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Registries (`host[:port]`) reached over plain http; loopback ones always are.
    pub insecure_registries: Vec<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Credentials: the first the keyring has for the target's registry and repository is
    /// used (basic auth, or the token flow with it); anonymous without.
    pub keyring: super::Keyring,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            keyring: super::Keyring::default(),
            insecure_registries: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// Parses a push target: a reference with a tag (or none: `latest`), not a digest.
pub fn parse_target(reference: &str) -> Result<Reference, PushError> {
    let invalid = |reason: String| PushError::InvalidReference {
        reference: reference.to_string(),
        reason,
    };
    let parsed = Reference::from_str(reference).map_err(|e| invalid(e.to_string()))?;
    if parsed.digest().is_some() {
        return Err(invalid(
            "a push names a tag (REGISTRY/NAME:TAG), not a digest".into(),
        ));
    }
    Ok(parsed)
}

/// Reads and validates the Wasm binary (or WAT text) at `path`. Blocking.
pub fn read_wasm(path: &Path) -> Result<WasmFile, PushError> {
    let raw = std::fs::read(path).map_err(|source| PushError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let not_wasm = |detail: String| PushError::NotWasm {
        path: path.to_path_buf(),
        detail,
    };
    let bytes = if raw.starts_with(b"\0asm") {
        raw
    } else if path.extension().is_some_and(|e| e == "wat") {
        wat::parse_bytes(&raw)
            .map_err(|e| not_wasm(format!("WAT text: {e}")))?
            .into_owned()
    } else {
        return Err(not_wasm(
            "no \\0asm header (and not a .wat text file)".into(),
        ));
    };
    describe_wasm(bytes).map_err(not_wasm)
}

/// Validates `bytes` and reads its kind and (for a component) its top-level imports and
/// exports; the error is a message for [`PushError::NotWasm`].
pub fn describe_wasm(bytes: Vec<u8>) -> Result<WasmFile, String> {
    use wasmparser::{Encoding, Parser, Payload, Validator, WasmFeatures};
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(&bytes)
        .map_err(|e| e.to_string())?;
    let mut kind = None;
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    // Depth 1 is the outermost module or component; nested ones are skipped.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(&bytes) {
        match payload.map_err(|e| e.to_string())? {
            Payload::Version { encoding, .. } => {
                depth += 1;
                if depth == 1 {
                    kind = Some(match encoding {
                        Encoding::Module => WasmKind::Module,
                        Encoding::Component => WasmKind::Component,
                    });
                }
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    imports.push(import.map_err(|e| e.to_string())?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(section) if depth == 1 => {
                for export in section {
                    exports.push(export.map_err(|e| e.to_string())?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    let kind = kind.ok_or_else(|| "no module or component header".to_string())?;
    Ok(WasmFile {
        bytes,
        kind,
        imports,
        exports,
    })
}

/// The config blob of the CNCF layout for `wasm`, whose layer has digest `layer_digest`.
pub fn config_json(wasm: &WasmFile, layer_digest: &str) -> Vec<u8> {
    let mut config = json!({
        "created": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        "architecture": "wasm",
        "os": wasm.kind.os(),
        "layerDigests": [layer_digest],
    });
    if wasm.kind == WasmKind::Component {
        config["component"] = json!({
            "imports": wasm.imports,
            "exports": wasm.exports,
        });
    }
    serde_json::to_vec(&config).unwrap_or_default()
}

/// The manifest of the artifact: the config and the one layer.
fn manifest_json(config: &[u8], layer: &[u8]) -> Vec<u8> {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_MEDIA_TYPE,
        "config": {
            "mediaType": MEDIA_TYPE_WASM_CONFIG,
            "digest": sha256(config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": MEDIA_TYPE_WASM_LAYER,
            "digest": sha256(layer),
            "size": layer.len(),
        }],
    });
    serde_json::to_vec(&manifest).unwrap_or_default()
}

/// Pushes the Wasm file at `path` to `reference` as a Wasm OCI artifact.
pub async fn push_wasm(
    path: &Path,
    reference: &str,
    options: &PushOptions,
) -> Result<Pushed, PushError> {
    let target = parse_target(reference)?;
    let name = target.whole();
    let file = path.to_path_buf();
    let wasm = tokio::task::spawn_blocking(move || read_wasm(&file))
        .await
        .map_err(|e| PushError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })??;
    let registries = Registries::new(
        options.insecure_registries.clone(),
        options.connect_timeout,
        options.read_timeout,
    );
    let credential = options
        .keyring
        .lookup(target.resolve_registry(), target.repository())
        .into_iter()
        .next();
    let client = registries.client(&target, &name, credential.as_ref())?;
    let auth = credential
        .as_ref()
        .map_or(RegistryAuth::Anonymous, |c| c.registry_auth());
    let fail = |e: OciDistributionError, what: &str| {
        PushError::Registry(registry::classify(
            e,
            &target,
            &name,
            Fetching::Upload(what),
        ))
    };
    client
        .auth(&target, &auth, RegistryOperation::Push)
        .await
        .map_err(|e| fail(e, "access"))?;
    let layer_digest = sha256(&wasm.bytes);
    let config = config_json(&wasm, &layer_digest);
    let size = wasm.bytes.len() as u64;
    upload(&client, &target, &name, wasm.bytes.clone(), &layer_digest).await?;
    upload(&client, &target, &name, config.clone(), &sha256(&config)).await?;
    let manifest = manifest_json(&config, &wasm.bytes);
    let digest = sha256(&manifest);
    client
        .push_manifest_raw(&target, manifest, http_header(OCI_IMAGE_MEDIA_TYPE))
        .await
        .map_err(|e| fail(e, "the manifest"))?;
    Ok(Pushed {
        reference: name,
        digest,
        kind: wasm.kind,
        size,
    })
}

/// Uploads a blob unless the registry has it already.
async fn upload(
    client: &Client,
    target: &Reference,
    name: &str,
    bytes: Vec<u8>,
    digest: &str,
) -> Result<(), PushError> {
    let fail = |e: OciDistributionError| {
        PushError::Registry(registry::classify(
            e,
            target,
            name,
            Fetching::Upload(digest),
        ))
    };
    if client.blob_exists(target, digest).await.map_err(fail)? {
        return Ok(());
    }
    client
        .push_blob(target, bytes, digest)
        .await
        .map_err(fail)?;
    Ok(())
}

fn http_header(value: &'static str) -> http::HeaderValue {
    http::HeaderValue::from_static(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_need_a_tag_not_a_digest() {
        assert_eq!(
            parse_target("127.0.0.1:5000/hello:v1").unwrap().whole(),
            "127.0.0.1:5000/hello:v1"
        );
        let e = parse_target("127.0.0.1:5000/hello@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
            .unwrap_err();
        assert!(e.to_string().contains("not a digest"), "{e}");
        assert!(e.is_bad_input());
        let e = parse_target("Bad Reference!").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Bad Reference!: invalid image reference"),
            "{e}"
        );
    }

    #[test]
    fn modules_and_components_are_told_apart() {
        let module = wat::parse_str(r#"(module (func (export "_start")))"#).unwrap();
        let m = describe_wasm(module).unwrap();
        assert_eq!(m.kind, WasmKind::Module);
        assert!(m.imports.is_empty() && m.exports.is_empty());
        let component = wat::parse_str(
            r#"(component
                (import "wasi:cli/environment@0.2.0" (instance))
                (core module $m (func (export "f")))
                (component $inner (import "nested" (instance)))
                (instance $i (instantiate $inner (with "nested" (instance))))
                (export "wasi:cli/run@0.2.0" (instance $i)))"#,
        )
        .unwrap();
        let c = describe_wasm(component).unwrap();
        assert_eq!(c.kind, WasmKind::Component);
        assert_eq!(c.imports, ["wasi:cli/environment@0.2.0"]);
        assert_eq!(c.exports, ["wasi:cli/run@0.2.0"]);
        let config: serde_json::Value =
            serde_json::from_slice(&config_json(&c, "sha256:ab")).unwrap();
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["os"], "wasip2");
        assert_eq!(config["layerDigests"], json!(["sha256:ab"]));
        assert_eq!(
            config["component"]["exports"],
            json!(["wasi:cli/run@0.2.0"])
        );
        let config: serde_json::Value =
            serde_json::from_slice(&config_json(&m, "sha256:ab")).unwrap();
        assert_eq!(config["os"], "wasip1");
        assert!(config.get("component").is_none());
    }

    #[test]
    fn files_that_are_not_wasm_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.wasm");
        std::fs::write(&text, "hello").unwrap();
        let e = read_wasm(&text).unwrap_err();
        assert!(e.is_bad_input());
        assert!(
            e.to_string().starts_with(&format!(
                "{}: not a Wasm module or component: no \\0asm header",
                text.display()
            )),
            "{e}"
        );
        let broken = dir.path().join("broken.wasm");
        std::fs::write(&broken, b"\0asm\x01\0\0\0\x01\xff").unwrap();
        let e = read_wasm(&broken).unwrap_err();
        assert!(
            e.to_string().contains("broken.wasm: not a Wasm module"),
            "{e}"
        );
        let wat = dir.path().join("ok.wat");
        std::fs::write(&wat, "(module)").unwrap();
        assert_eq!(read_wasm(&wat).unwrap().kind, WasmKind::Module);
        let missing = dir.path().join("missing.wasm");
        let e = read_wasm(&missing).unwrap_err();
        assert!(e.to_string().contains("missing.wasm: No such file"), "{e}");
    }

    #[test]
    fn the_manifest_names_the_config_and_the_layer() {
        let manifest: serde_json::Value =
            serde_json::from_slice(&manifest_json(b"{}", b"\0asm")).unwrap();
        assert_eq!(manifest["config"]["mediaType"], MEDIA_TYPE_WASM_CONFIG);
        assert_eq!(manifest["config"]["digest"], sha256(b"{}"));
        assert_eq!(manifest["layers"][0]["mediaType"], MEDIA_TYPE_WASM_LAYER);
        assert_eq!(manifest["layers"][0]["size"], 4);
        let parsed: oci_client::manifest::OciImageManifest =
            serde_json::from_value(manifest).unwrap();
        assert_eq!(
            super::super::kind::classify(&parsed),
            Ok(super::super::kind::Kind::WasmArtifact { layer: 0 })
        );
    }
}
