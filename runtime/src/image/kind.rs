//! Which images are Wasm images, and which entry of an image index to use.
//!
//! A Wasm OCI artifact (CNCF TAG Runtime layout, as runwasi, wasmCloud, `wkg`, `oras` and
//! `skiff push` write it) has config media type `application/vnd.wasm.config.v0+json` and exactly
//! one `application/wasm` layer, whose blob is the module. Other tools' variants count too: a
//! manifest with a Wasm config of another name, or with exactly one Wasm layer of another type
//! (`wkg`'s and runwasi's `application/vnd.bytecodealliance.wasm.component.layer.v0+wasm`, even
//! beside an ordinary image config). An ordinary OCI (or Docker) image counts
//! when its tar layers hold the `.wasm` file its entrypoint names ([`super::extract`]). Which
//! layer media types are Wasm or tar layers (and how compressed), and which configs are Wasm
//! configs, is [`super::media`]'s one table, the one
//! unpack reads by. Anything else is refused with the media types found.
//!
//! From an image index, an entry for a Wasm platform (`os` wasip1/wasip2/wasi or `architecture`
//! wasm) is preferred, then one for this machine's linux architecture, then a lone entry.
//!
//! Must not: fetch anything; pure functions of manifests.

use oci_client::manifest::{
    IMAGE_CONFIG_MEDIA_TYPE, IMAGE_DOCKER_CONFIG_MEDIA_TYPE, ImageIndexEntry, OciImageIndex,
    OciImageManifest,
};

use super::media::{LayerKind, is_wasm_config, layer_kind};
pub use super::media::{MEDIA_TYPE_WASM_CONFIG, MEDIA_TYPE_WASM_LAYER};

/// What kind of Wasm image a manifest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A Wasm OCI artifact; the module is layer `layer`.
    WasmArtifact { layer: usize },
    /// An OCI image: the module is the entrypoint file, found in the tar layers.
    OciImage,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::WasmArtifact { .. } => "wasm-artifact",
            Self::OciImage => "oci-image",
        }
    }
}

fn is_wasm_layer(media_type: &str) -> bool {
    layer_kind(media_type) == Some(LayerKind::Wasm)
}

/// "config X, layers [A, B]" for messages.
pub fn describe(manifest: &OciImageManifest) -> String {
    let layers: Vec<&str> = manifest
        .layers
        .iter()
        .map(|l| l.media_type.as_str())
        .collect();
    format!(
        "config media type {}, layer media types [{}]",
        manifest.config.media_type,
        layers.join(", ")
    )
}

/// Sorts a manifest; the error is the `NotWasm` detail.
pub fn classify(manifest: &OciImageManifest) -> Result<Kind, String> {
    let wasm_layers: Vec<usize> = manifest
        .layers
        .iter()
        .enumerate()
        .filter(|(_, l)| is_wasm_layer(&l.media_type))
        .map(|(i, _)| i)
        .collect();
    let config = manifest.config.media_type.as_str();
    if is_wasm_config(config) || !wasm_layers.is_empty() {
        return match wasm_layers.as_slice() {
            [layer] => Ok(Kind::WasmArtifact { layer: *layer }),
            [] => Err(format!(
                "a Wasm artifact without an {MEDIA_TYPE_WASM_LAYER} layer ({})",
                describe(manifest)
            )),
            many => Err(format!(
                "{} {MEDIA_TYPE_WASM_LAYER} layers, skiff runs an artifact with exactly one ({})",
                many.len(),
                describe(manifest)
            )),
        };
    }
    let image_config =
        config == IMAGE_CONFIG_MEDIA_TYPE || config == IMAGE_DOCKER_CONFIG_MEDIA_TYPE;
    let tar_layers = manifest
        .layers
        .iter()
        .all(|l| matches!(layer_kind(&l.media_type), Some(LayerKind::Tar(_))));
    if image_config && tar_layers && !manifest.layers.is_empty() {
        return Ok(Kind::OciImage);
    }
    Err(format!(
        "{}; expected a Wasm OCI artifact ({MEDIA_TYPE_WASM_CONFIG} with one {MEDIA_TYPE_WASM_LAYER} \
         layer) or an OCI image with tar layers whose entrypoint is a .wasm file",
        describe(manifest)
    ))
}

fn platform(e: &ImageIndexEntry) -> Option<(String, String)> {
    e.platform
        .as_ref()
        .map(|p| (p.os.to_string(), p.architecture.to_string()))
}

/// The linux `GOARCH` of this machine.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The entry of `index` to pull; the error is the `NotWasm` detail.
pub fn select(index: &OciImageIndex) -> Result<&ImageIndexEntry, String> {
    let wasm = index.manifests.iter().find(|e| {
        platform(e).is_some_and(|(os, arch)| {
            matches!(os.as_str(), "wasip1" | "wasip2" | "wasi") || arch == "wasm"
        })
    });
    let host = || {
        index
            .manifests
            .iter()
            .find(|e| platform(e).is_some_and(|(os, arch)| os == "linux" && arch == host_arch()))
    };
    let lone = || match index.manifests.as_slice() {
        [one] => Some(one),
        _ => None,
    };
    wasm.or_else(host).or_else(lone).ok_or_else(|| {
        let platforms: Vec<String> = index
            .manifests
            .iter()
            .map(|e| platform(e).map_or_else(|| "unknown".into(), |(os, arch)| format!("{os}/{arch}")))
            .collect();
        format!(
            "the image index has no entry for a Wasm platform (wasi/wasm, wasip1, wasip2) or linux/{} \
             (platforms: {})",
            host_arch(),
            platforms.join(", ")
        )
    })
}

/// The entry of `index` a Linux container runs: this machine's linux platform, or a lone entry.
pub fn select_container(index: &OciImageIndex) -> Result<&ImageIndexEntry, String> {
    let host = index
        .manifests
        .iter()
        .find(|e| platform(e).is_some_and(|(os, arch)| os == "linux" && arch == host_arch()));
    let lone = match index.manifests.as_slice() {
        [one] => Some(one),
        _ => None,
    };
    host.or(lone).ok_or_else(|| {
        format!(
            "the image index has no entry for linux/{} ({})",
            host_arch(),
            index
                .manifests
                .iter()
                .map(|e| platform(e).map_or_else(|| "unknown".into(), |(o, a)| format!("{o}/{a}")))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Whether `manifest` is a container image (an image config and tar layers only).
pub fn check_container(manifest: &OciImageManifest) -> Result<(), String> {
    match classify(manifest) {
        Ok(Kind::OciImage) => Ok(()),
        Ok(Kind::WasmArtifact { .. }) => Err(format!(
            "a Wasm artifact, not a container image: run it with runtimeClassName: wasm ({})",
            describe(manifest)
        )),
        Err(_) => Err(format!(
            "not a container image: expected an image config and tar layers ({})",
            describe(manifest)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(config: &str, layers: &[&str]) -> OciImageManifest {
        let layers: Vec<String> = layers
            .iter()
            .map(|m| format!(r#"{{"mediaType":"{m}","digest":"sha256:00","size":1}}"#))
            .collect();
        serde_json::from_str(&format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
                "config":{{"mediaType":"{config}","digest":"sha256:00","size":1}},
                "layers":[{}]}}"#,
            layers.join(",")
        ))
        .unwrap()
    }

    #[test]
    fn wasm_artifacts_and_wasm_images() {
        assert_eq!(
            classify(&manifest(MEDIA_TYPE_WASM_CONFIG, &[MEDIA_TYPE_WASM_LAYER])),
            Ok(Kind::WasmArtifact { layer: 0 })
        );
        // The older wasm-to-oci layer type, and an artifact with an extra non-Wasm layer.
        assert_eq!(
            classify(&manifest(
                oci_client::manifest::WASM_CONFIG_MEDIA_TYPE,
                &[
                    "application/json",
                    super::super::media::MEDIA_TYPE_WASM_LAYER_LEGACY
                ]
            )),
            Ok(Kind::WasmArtifact { layer: 1 })
        );
        assert_eq!(
            classify(&manifest(
                IMAGE_CONFIG_MEDIA_TYPE,
                &[
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                    "application/vnd.oci.image.layer.v1.tar"
                ]
            )),
            Ok(Kind::OciImage)
        );
        assert_eq!(
            classify(&manifest(
                IMAGE_DOCKER_CONFIG_MEDIA_TYPE,
                &["application/vnd.docker.image.rootfs.diff.tar.gzip"]
            )),
            Ok(Kind::OciImage)
        );
    }

    /// Artifacts other tools push: `wkg` (the CNCF layout), earlier `wkg`/warg releases and
    /// runwasi's OCI tar builder (the Bytecode Alliance component layer, with a CNCF or an
    /// ordinary image config), `wasm-to-oci`, and `module.wasm.image` artifacts.
    #[test]
    fn other_tools_artifacts() {
        use super::super::media::{
            MEDIA_TYPE_WASM_COMPONENT_LAYER, MEDIA_TYPE_WASM_LAYER_LEGACY,
            MEDIA_TYPE_WASM_MODULE_LAYER,
        };
        for (config, layer) in [
            (MEDIA_TYPE_WASM_CONFIG, MEDIA_TYPE_WASM_LAYER),
            (MEDIA_TYPE_WASM_CONFIG, MEDIA_TYPE_WASM_COMPONENT_LAYER),
            (IMAGE_CONFIG_MEDIA_TYPE, MEDIA_TYPE_WASM_COMPONENT_LAYER),
            (
                "application/vnd.wasm.config.v1+json",
                MEDIA_TYPE_WASM_LAYER_LEGACY,
            ),
            (
                "application/vnd.module.wasm.config.v1+json",
                MEDIA_TYPE_WASM_MODULE_LAYER,
            ),
        ] {
            assert_eq!(
                classify(&manifest(config, &[layer])),
                Ok(Kind::WasmArtifact { layer: 0 }),
                "{config} {layer}"
            );
        }
        // A Wasm config names the artifact even when its one layer is of a type skiff does
        // not read: refused, naming what was found.
        let err = classify(&manifest(
            "application/vnd.module.wasm.config.v1+json",
            &["application/octet-stream"],
        ))
        .unwrap_err();
        assert!(err.contains("application/octet-stream"), "{err}");
    }

    /// Every tar layer the unpacker reads passes the pull's classification (one table).
    #[test]
    fn every_layer_unpack_reads_is_a_container_layer() {
        for &(media_type, kind) in super::super::media::LAYER_MEDIA_TYPES {
            let m = manifest(IMAGE_CONFIG_MEDIA_TYPE, &[media_type]);
            match kind {
                LayerKind::Tar(_) => {
                    assert_eq!(check_container(&m), Ok(()), "{media_type}");
                    assert_eq!(classify(&m), Ok(Kind::OciImage), "{media_type}");
                }
                LayerKind::Wasm => {
                    assert!(check_container(&m).is_err(), "{media_type}");
                    assert_eq!(
                        classify(&m),
                        Ok(Kind::WasmArtifact { layer: 0 }),
                        "{media_type}"
                    );
                }
            }
        }
    }

    #[test]
    fn everything_else_is_refused_naming_its_media_types() {
        for (config, layers, needle) in [
            (
                MEDIA_TYPE_WASM_CONFIG,
                vec![],
                "without an application/wasm layer",
            ),
            (
                MEDIA_TYPE_WASM_CONFIG,
                vec![MEDIA_TYPE_WASM_LAYER, MEDIA_TYPE_WASM_LAYER],
                "2 application/wasm layers",
            ),
            (
                "application/vnd.cncf.helm.config.v1+json",
                vec!["application/vnd.cncf.helm.chart.content.v1.tar+gzip"],
                "config media type application/vnd.cncf.helm.config.v1+json, layer media types \
                 [application/vnd.cncf.helm.chart.content.v1.tar+gzip]",
            ),
            (
                IMAGE_CONFIG_MEDIA_TYPE,
                vec![
                    "application/vnd.oci.image.layer.v1.tar+zstd",
                    "application/vnd.oci.image.layer.v1.tar+lz4",
                ],
                "tar+lz4",
            ),
        ] {
            let err = classify(&manifest(config, &layers)).unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
    }

    fn index(platforms: &[Option<(&str, &str)>]) -> OciImageIndex {
        let entries: Vec<String> = platforms
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let platform = p.map_or(String::new(), |(os, arch)| {
                    format!(r#","platform":{{"os":"{os}","architecture":"{arch}"}}"#)
                });
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{i}","size":1{platform}}}"#
                )
            })
            .collect();
        serde_json::from_str(&format!(
            r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
            entries.join(",")
        ))
        .unwrap()
    }

    #[test]
    fn index_entries() {
        let pick = |p: &[Option<(&str, &str)>]| select(&index(p)).map(|e| e.digest.clone());
        let host = Some(("linux", host_arch()));
        assert_eq!(
            pick(&[Some(("linux", "s390x")), host, Some(("wasip1", "wasm"))]),
            Ok("sha256:2".into())
        );
        assert_eq!(pick(&[Some(("wasi", "wasm"))]), Ok("sha256:0".into()));
        assert_eq!(
            pick(&[Some(("linux", "s390x")), host]),
            Ok("sha256:1".into())
        );
        assert_eq!(pick(&[None]), Ok("sha256:0".into()));
        let err = pick(&[Some(("windows", "s390x")), None]).unwrap_err();
        assert!(err.contains("windows/s390x, unknown"), "{err}");
    }
}
