//! The one table of layer media types: which layers skiff reads, and how each is compressed.
//!
//! Every reader of a layer goes through [`layer_kind`]: the classification of a pulled manifest
//! ([`super::kind`]), the search for a `.wasm` entrypoint in an OCI image's layers
//! ([`super::extract`], `oci_image.rs`) and the unpacking of a container image's layers
//! ([`super::unpack`]). A media type listed here is accepted at pull and read at unpack; one not
//! listed is refused by both, by name. (Two tables that disagreed once refused every zstd layer at
//! pull that unpack could read.)
//!
//! gzip is read as a multi-member stream, as Go's reader (and so containerd and Docker) does;
//! zstd reads every frame (the `zstd` crate: bindings to the reference C library).
//!
//! Must not: write anything, or trust a media type it does not list.

use std::io::{self, BufReader, Read};

/// Layer media type of a Wasm OCI artifact: the module's bytes, no tar. What the CNCF layout
/// specifies and what `wkg` (through the `oci-wasm` crate), `skiff push` and `oras` write.
pub const MEDIA_TYPE_WASM_LAYER: &str = "application/wasm";
/// The older `wasm-to-oci` layer media type (also Spin's per-component layers), still found in
/// registries.
pub const MEDIA_TYPE_WASM_LAYER_LEGACY: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// The Bytecode Alliance's component layer type: what earlier `wkg`/warg releases and runwasi's
/// OCI tar builder write (beside an ordinary image config).
pub const MEDIA_TYPE_WASM_COMPONENT_LAYER: &str =
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm";
/// The `module.wasm.image` layer type (solo.io's Wasm image spec; older wasmCloud artifacts).
pub const MEDIA_TYPE_WASM_MODULE_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";

/// Config media type of a Wasm OCI artifact in the CNCF layout (`architecture: wasm`,
/// `os: wasip1|wasip2`, `layerDigests`, the component's imports and exports).
pub const MEDIA_TYPE_WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";

/// Every config media type that marks a manifest as a Wasm artifact, whatever its layers: the
/// CNCF one, `wasm-to-oci`'s and the `module.wasm.image` one. (An artifact whose config is an
/// ordinary image config counts by its Wasm layer instead, as runwasi's images do.)
pub const WASM_CONFIG_MEDIA_TYPES: &[&str] = &[
    MEDIA_TYPE_WASM_CONFIG,
    "application/vnd.wasm.config.v1+json",
    "application/vnd.module.wasm.config.v1+json",
];

/// Whether `media_type` is the config of a Wasm artifact.
pub fn is_wasm_config(media_type: &str) -> bool {
    WASM_CONFIG_MEDIA_TYPES.contains(&media_type)
}

/// How a tar layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

/// What a layer's blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// A tar of a filesystem change set (OCI, OCI non-distributable, Docker, Docker foreign).
    Tar(LayerCompression),
    /// A Wasm module or component, as is (a Wasm OCI artifact's layer).
    Wasm,
}

/// Every layer media type skiff reads.
pub const LAYER_MEDIA_TYPES: &[(&str, LayerKind)] = {
    use LayerCompression::{Gzip, None, Zstd};
    use LayerKind::{Tar, Wasm};
    &[
        ("application/vnd.oci.image.layer.v1.tar", Tar(None)),
        ("application/vnd.oci.image.layer.v1.tar+gzip", Tar(Gzip)),
        ("application/vnd.oci.image.layer.v1.tar+zstd", Tar(Zstd)),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            Tar(None),
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            Tar(Gzip),
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
            Tar(Zstd),
        ),
        ("application/vnd.docker.image.rootfs.diff.tar", Tar(None)),
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Tar(Gzip),
        ),
        (
            "application/vnd.docker.image.rootfs.foreign.diff.tar",
            Tar(None),
        ),
        (
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            Tar(Gzip),
        ),
        (MEDIA_TYPE_WASM_LAYER, Wasm),
        (MEDIA_TYPE_WASM_LAYER_LEGACY, Wasm),
        (MEDIA_TYPE_WASM_COMPONENT_LAYER, Wasm),
        (MEDIA_TYPE_WASM_MODULE_LAYER, Wasm),
    ]
};

/// What the layer of `media_type` is; `None` for a media type skiff does not read.
pub fn layer_kind(media_type: &str) -> Option<LayerKind> {
    LAYER_MEDIA_TYPES
        .iter()
        .find(|(m, _)| *m == media_type)
        .map(|(_, kind)| *kind)
}

impl LayerCompression {
    /// How a tar layer of `media_type` is compressed; `None` for anything that is not a tar
    /// layer skiff reads.
    pub fn of_media_type(media_type: &str) -> Option<Self> {
        match layer_kind(media_type)? {
            LayerKind::Tar(compression) => Some(compression),
            LayerKind::Wasm => None,
        }
    }

    /// The uncompressed stream of `compressed`.
    pub fn decoder<'a>(self, compressed: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Self::None => Box::new(compressed),
            Self::Gzip => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
            Self::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(BufReader::new(
                compressed,
            ))?),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn media_types() {
        use LayerCompression::{Gzip, None, Zstd};
        for (media_type, want) in [
            ("application/vnd.oci.image.layer.v1.tar", Some(None)),
            ("application/vnd.oci.image.layer.v1.tar+gzip", Some(Gzip)),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Some(Zstd)),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                Some(Zstd),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar",
                Some(None),
            ),
            ("application/vnd.oci.image.layer.v1.tar+bzip2", Option::None),
            ("application/vnd.oci.image.layer.v1.tar+lz4", Option::None),
            (MEDIA_TYPE_WASM_LAYER, Option::None),
            ("", Option::None),
        ] {
            assert_eq!(
                LayerCompression::of_media_type(media_type),
                want,
                "{media_type}"
            );
        }
        assert_eq!(layer_kind(MEDIA_TYPE_WASM_LAYER), Some(LayerKind::Wasm));
        for wasm in [
            MEDIA_TYPE_WASM_LAYER_LEGACY,
            MEDIA_TYPE_WASM_COMPONENT_LAYER,
            MEDIA_TYPE_WASM_MODULE_LAYER,
        ] {
            assert_eq!(layer_kind(wasm), Some(LayerKind::Wasm), "{wasm}");
            assert_eq!(LayerCompression::of_media_type(wasm), Option::None);
        }
        assert_eq!(layer_kind("application/json"), Option::None);
        assert!(is_wasm_config(MEDIA_TYPE_WASM_CONFIG));
        assert!(is_wasm_config(oci_client::manifest::WASM_CONFIG_MEDIA_TYPE));
        assert!(!is_wasm_config("application/vnd.oci.image.config.v1+json"));
    }

    #[test]
    fn the_table_lists_each_media_type_once() {
        let mut seen = std::collections::BTreeSet::new();
        for (m, _) in LAYER_MEDIA_TYPES {
            assert!(seen.insert(*m), "{m} listed twice");
        }
    }

    #[test]
    fn every_compression_decodes_every_frame_or_member() {
        let plain = b"hello, layer".repeat(100);
        let (a, b) = plain.split_at(500);
        let mut gzip = Vec::new();
        let mut zstd = Vec::new();
        for part in [a, b] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(part).expect("gzip");
            gzip.extend(gz.finish().expect("gzip"));
            zstd.extend(zstd::encode_all(part, 3).expect("zstd"));
        }
        for (compression, blob) in [
            (LayerCompression::None, plain.clone()),
            (LayerCompression::Gzip, gzip),
            (LayerCompression::Zstd, zstd),
        ] {
            let mut out = Vec::new();
            compression
                .decoder(&blob[..])
                .and_then(|mut r| r.read_to_end(&mut out))
                .expect("decode");
            assert_eq!(out, plain, "{compression:?}");
        }
    }
}
