//! Test images as OCI image-layout tar archives, made here from local files (no registry, no network).
//!
//! Both writers produce the same on-disk shape, the one `ctr image import`, `skopeo` and `oras` read
//! (OCI image layout 1.0.0, as a tar):
//!
//! ```text
//! oci-layout                 {"imageLayoutVersion":"1.0.0"}
//! index.json                 an image index with one manifest descriptor, annotated with the image name
//! blobs/sha256/<hex>         the manifest, its config and its layers, each named by its own sha256
//! ```
//!
//! The index descriptor carries the name twice: `io.containerd.image.name` (which containerd's importer
//! takes as the image name as is) and `org.opencontainers.image.ref.name` (the OCI annotation; `ctr`
//! 1.6 keeps a full reference found there as the name too, and only prefixes bare tags). Names use the
//! host `skiff.test`, which is no real registry, so nothing ever tries to pull them.
//!
//! Archives are reproducible: fixed timestamps, owners and entry order, and a gzip header without a
//! time, so the same inputs give the same digests.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Name given to the image [`busybox_oci_archive`] writes.
pub const BUSYBOX_IMAGE: &str = "skiff.test/busybox:latest";

/// Where Debian's `busybox-static` installs its statically linked busybox.
pub const BUSYBOX_PATH: &str = "/bin/busybox";

/// Media type of an OCI image index (`index.json`).
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image manifest.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image config.
pub const MEDIA_TYPE_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzip-compressed tar layer.
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of a zstd-compressed tar layer.
pub const MEDIA_TYPE_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Config media type of a Wasm OCI artifact (CNCF TAG Runtime Wasm OCI artifact layout).
pub const MEDIA_TYPE_WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// Layer media type of a Wasm OCI artifact: the raw module or component bytes, not a tar.
pub const MEDIA_TYPE_WASM_LAYER: &str = "application/wasm";

/// Annotation containerd's importer reads as the image name.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI reference-name annotation.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Fixed creation time of every image written here (reproducible digests).
const CREATED: &str = "1970-01-01T00:00:00Z";

/// A blob of an OCI layout: its bytes and their descriptor fields.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
}

/// What an archive writer wrote.
#[derive(Debug, Clone)]
pub struct OciArchive {
    /// Image name, as `ctr image import` will list it.
    pub name: String,
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

/// The OCI `architecture` of this host (`amd64`, `arm64`, ...), as Go's `GOARCH` spells it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Writes an OCI image-layout tar of a tiny Linux image for this host's architecture, named
/// [`BUSYBOX_IMAGE`]: one gzip layer holding Debian's static `/bin/busybox` (package
/// `busybox-static`) at `/bin/busybox`, symlinks `/bin/sh`, `/bin/echo`, `/bin/true` to it, the
/// usual empty mount points (`/dev`, `/proc`, `/sys`, `/tmp`, `/etc`, `/root`) and a minimal
/// `/etc/passwd` and `/etc/group`. Config: `Cmd ["/bin/sh"]`, no `Entrypoint` (so `ctr run IMAGE ID
/// CMD...` runs `CMD...` as given, as with Docker's busybox), `PATH` set, working dir `/`.
///
/// Fails if `/bin/busybox` is missing or is not statically linked (the dynamic `busybox` package's
/// binary cannot run in an image without a libc): install `busybox-static`.
pub fn busybox_oci_archive(out: &Path) -> io::Result<OciArchive> {
    let layer = gzip_layer(&busybox_rootfs()?)?;

    let config = json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["/bin/sh"],
        "WorkingDir": "/",
    });
    write_linux_image(
        out,
        BUSYBOX_IMAGE,
        config,
        layer,
        "skiff-tests: busybox-static /bin/busybox",
    )
}

/// The root filesystem of the busybox image [`busybox_oci_archive`] writes, as an uncompressed
/// tar (for tests that build images of their own from it). Fails as that function does.
pub fn busybox_rootfs() -> io::Result<Vec<u8>> {
    let busybox = std::fs::read(BUSYBOX_PATH).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("reading {BUSYBOX_PATH}: {e} (install the Debian package busybox-static)"),
        )
    })?;
    if !is_static_elf(&busybox) {
        return Err(io::Error::other(format!(
            "{BUSYBOX_PATH} is not a statically linked ELF executable: install the Debian package \
             busybox-static (not busybox)"
        )));
    }
    busybox_rootfs_tar(&busybox)
}

/// A layer (uncompressed tar) holding host executables and every shared library `ldd` names for
/// them (the dynamic loader included), each at its host path, with the directories above them:
/// for test images of dynamically linked host tools (e.g. `/usr/bin/curl`, a TLS client that
/// speaks as client libraries do) laid over [`busybox_rootfs`]. Run it with
/// `LD_LIBRARY_PATH` naming the libraries' directories (the image has no `ld.so.cache`).
pub fn host_binaries_layer(binaries: &[&Path]) -> io::Result<Vec<u8>> {
    let mut files = std::collections::BTreeSet::new();
    for binary in binaries {
        files.insert(binary.to_path_buf());
        let out = std::process::Command::new("ldd").arg(binary).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "ldd {}: {}",
                binary.display(),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        // `libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)` and `/lib64/ld-linux-x86-64.so.2 (0x...)`.
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(path) = path.filter(|p| p.starts_with('/')) {
                files.insert(std::path::PathBuf::from(path));
            }
        }
    }
    let mut dirs = std::collections::BTreeSet::new();
    for file in &files {
        let mut dir = file.parent();
        while let Some(d) = dir.filter(|d| d.parent().is_some()) {
            dirs.insert(d.to_path_buf());
            dir = d.parent();
        }
    }
    let mut b = tar::Builder::new(Vec::new());
    for dir in &dirs {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        let name = format!("{}/", dir.display());
        b.append_data(&mut h, name.trim_start_matches('/'), io::empty())?;
    }
    for file in &files {
        let bytes = std::fs::read(file)
            .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", file.display())))?;
        let mut h = header(tar::EntryType::Regular, 0o755, bytes.len() as u64);
        let name = file.display().to_string();
        b.append_data(&mut h, name.trim_start_matches('/'), &bytes[..])?;
    }
    b.into_inner()
}

/// Writes a one-layer `linux/<arch>` image: `config` is the image config's `config` object.
fn write_linux_image(
    out: &Path,
    name: &str,
    config: Value,
    (layer, diff_id): (Vec<u8>, String),
    created_by: &str,
) -> io::Result<OciArchive> {
    let config = json!({
        "created": CREATED,
        "architecture": host_arch(),
        "os": "linux",
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": CREATED, "created_by": created_by }],
    });
    let platform = json!({ "architecture": host_arch(), "os": "linux" });
    write_layout(
        out,
        name,
        MEDIA_TYPE_IMAGE_CONFIG,
        &to_json_bytes(&config)?,
        &[(MEDIA_TYPE_LAYER_GZIP, layer)],
        Some(platform),
    )
}

/// Writes an OCI image-layout tar of a *Wasm OCI artifact* named `name` (a full reference such as
/// `skiff.test/hello:latest`) holding the module or component at `wasm`, in the layout of the CNCF
/// TAG Runtime "Wasm OCI artifact" spec that runwasi, wasmCloud, `wkg` and `oras` use:
///
/// - manifest `application/vnd.oci.image.manifest.v1+json`;
/// - config media type `application/vnd.wasm.config.v0+json`, content
///   `{"created", "architecture": "wasm", "os": "wasip1"|"wasip2", "layerDigests": [...]}` — `wasip2`
///   when the bytes are a component (binary version `0x0d`, layer 1), else `wasip1`;
/// - exactly one layer, media type `application/wasm`, whose blob is the raw `.wasm` bytes (no tar,
///   no compression).
///
/// The index descriptor has no `platform` (a Wasm artifact is not a `linux/<arch>` image). Import it
/// with `ctr image import --no-unpack` ([`crate::containerd::Containerd::import_artifact`]): containerd
/// cannot unpack an `application/wasm` layer into a snapshot (`mismatched image rootfs and manifest
/// layers`); the module stays in the content store under its layer digest, where a Wasm shim reads it.
pub fn wasm_oci_archive(wasm: &Path, out: &Path, name: &str) -> io::Result<OciArchive> {
    let bytes = std::fs::read(wasm)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", wasm.display())))?;
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a Wasm binary (no \\0asm header)", wasm.display()),
        ));
    }
    let os = if is_component(&bytes) {
        "wasip2"
    } else {
        "wasip1"
    };
    let config = json!({
        "created": CREATED,
        "architecture": "wasm",
        "os": os,
        "layerDigests": [sha256_digest(&bytes)],
    });
    write_layout(
        out,
        name,
        MEDIA_TYPE_WASM_CONFIG,
        &to_json_bytes(&config)?,
        &[(MEDIA_TYPE_WASM_LAYER, bytes)],
        None,
    )
}

/// Writes an OCI image-layout tar of an ordinary `linux/<arch>` image named `name` whose one gzip
/// layer holds the module or component at `wasm` as `/<file name>` and whose config has
/// `Entrypoint ["/<file name>"]` (the "image whose entrypoint is a `.wasm` file" that skiff and
/// Wasm shims run; containerd unpacks it like any image). Import with `ctr image import`.
pub fn wasm_entrypoint_archive(wasm: &Path, out: &Path, name: &str) -> io::Result<OciArchive> {
    let bytes = std::fs::read(wasm)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", wasm.display())))?;
    let file = wasm
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wasm"))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: the file name must end in .wasm", wasm.display()),
            )
        })?;
    let mut b = tar::Builder::new(Vec::new());
    for (dir, mode) in [("tmp/", 0o1777), ("data/", 0o755)] {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        b.append_data(&mut h, dir, io::empty())?;
    }
    let mut h = header(tar::EntryType::Regular, 0o755, bytes.len() as u64);
    b.append_data(&mut h, &file, &bytes[..])?;
    write_linux_image(
        out,
        name,
        json!({ "Entrypoint": [format!("/{file}")], "WorkingDir": "/" }),
        gzip_layer(&b.into_inner()?)?,
        &format!("skiff-tests: /{file}"),
    )
}

/// Whether `bytes` (a Wasm binary) is a component rather than a core module: components have
/// version `0x0d` and layer `1` where modules have version `1`, layer `0`.
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[4..8] == [0x0d, 0x00, 0x01, 0x00]
}

fn to_json_bytes(v: &Value) -> io::Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(io::Error::other)
}

/// Whether `elf` is a 64-bit little-endian ELF with no `PT_INTERP` program header (no dynamic loader).
fn is_static_elf(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let Ok(phoff) = <[u8; 8]>::try_from(&elf[0x20..0x28]) else {
        return false;
    };
    let phoff = u64::from_le_bytes(phoff) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        match elf.get(o..o + 4) {
            Some(t) => u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != PT_INTERP,
            None => false,
        }
    })
}

/// The busybox image's root filesystem as an (uncompressed) tar.
fn busybox_rootfs_tar(busybox: &[u8]) -> io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (dir, mode) in [
        ("bin/", 0o755),
        ("dev/", 0o755),
        ("etc/", 0o755),
        ("proc/", 0o555),
        ("root/", 0o700),
        ("sys/", 0o555),
        ("tmp/", 0o1777),
    ] {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        b.append_data(&mut h, dir, io::empty())?;
    }
    let mut h = header(tar::EntryType::Regular, 0o755, busybox.len() as u64);
    b.append_data(&mut h, "bin/busybox", busybox)?;
    for link in ["bin/echo", "bin/sh", "bin/true"] {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, link, "busybox")?;
    }
    for (path, text) in [
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
    ] {
        let mut h = header(tar::EntryType::Regular, 0o644, text.len() as u64);
        b.append_data(&mut h, path, text.as_bytes())?;
    }
    b.into_inner()
}

/// A layer tar gzipped (reproducibly: no time in the header), with its diff_id.
fn gzip_layer(tar: &[u8]) -> io::Result<(Vec<u8>, String)> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(tar)?;
    Ok((gz.finish()?, sha256_digest(tar)))
}

/// A tar header with fixed owner and time.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// Writes the layout tar: config, layers, manifest, index naming it `name`.
fn write_layout(
    out: &Path,
    name: &str,
    config_media_type: &str,
    config: &[u8],
    layers: &[(&str, Vec<u8>)],
    platform: Option<Value>,
) -> io::Result<OciArchive> {
    let mut blobs: BTreeMap<String, &[u8]> = BTreeMap::new();
    let config_blob = blob(config_media_type, config);
    blobs.insert(config_blob.digest.clone(), config);
    let mut layer_blobs = Vec::new();
    for (media_type, bytes) in layers {
        let b = blob(media_type, bytes);
        blobs.insert(b.digest.clone(), bytes);
        layer_blobs.push(b);
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": descriptor(&config_blob),
        "layers": layer_blobs.iter().map(descriptor).collect::<Vec<_>>(),
    });
    let manifest = to_json_bytes(&manifest)?;
    let manifest_blob = blob(MEDIA_TYPE_MANIFEST, &manifest);
    blobs.insert(manifest_blob.digest.clone(), &manifest);

    let mut index_entry = descriptor(&manifest_blob);
    if let Some(p) = platform {
        index_entry["platform"] = p;
    }
    index_entry["annotations"] = json!({
        ANNOTATION_CONTAINERD_NAME: name,
        ANNOTATION_REF_NAME: name,
    });
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": [index_entry],
    });
    let index = to_json_bytes(&index)?;

    let file = File::create(out)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", out.display())))?;
    let mut t = tar::Builder::new(BufWriter::new(file));
    let oci_layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let mut h = header(tar::EntryType::Regular, 0o644, oci_layout.len() as u64);
    t.append_data(&mut h, "oci-layout", &oci_layout[..])?;
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        t.append_data(&mut h, dir, io::empty())?;
    }
    for (digest, bytes) in &blobs {
        let hex = digest.trim_start_matches("sha256:");
        let mut h = header(tar::EntryType::Regular, 0o644, bytes.len() as u64);
        t.append_data(&mut h, format!("blobs/sha256/{hex}"), *bytes)?;
    }
    let mut h = header(tar::EntryType::Regular, 0o644, index.len() as u64);
    t.append_data(&mut h, "index.json", &index[..])?;
    t.into_inner()?.flush()?;

    Ok(OciArchive {
        name: name.to_string(),
        manifest: manifest_blob,
        config: config_blob,
        layers: layer_blobs,
    })
}

fn blob(media_type: &str, bytes: &[u8]) -> Blob {
    Blob {
        media_type: media_type.to_string(),
        digest: sha256_digest(bytes),
        size: bytes.len() as u64,
    }
}

fn descriptor(b: &Blob) -> Value {
    json!({ "mediaType": b.media_type, "digest": b.digest, "size": b.size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Every file of a layout tar, by path.
    fn read_tar(path: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        let mut ar = tar::Archive::new(File::open(path).expect("open archive"));
        for entry in ar.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let name = entry.path().expect("path").to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("read entry");
            files.insert(name, bytes);
        }
        files
    }

    fn json_of(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("valid JSON")
    }

    /// Looks up a descriptor's blob and checks that its name, digest and size agree.
    fn fetch<'a>(files: &'a BTreeMap<String, Vec<u8>>, desc: &Value) -> &'a [u8] {
        let digest = desc["digest"].as_str().expect("digest");
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        let bytes = files
            .get(&format!("blobs/sha256/{hex}"))
            .unwrap_or_else(|| panic!("blob {digest} missing"));
        assert_eq!(
            sha256_digest(bytes),
            digest,
            "blob content does not match its digest"
        );
        assert_eq!(
            desc["size"].as_u64(),
            Some(bytes.len() as u64),
            "size of {digest}"
        );
        bytes
    }

    /// Checks the layout and returns (index entry, manifest, config bytes, layer bytes).
    fn check_layout(path: &Path) -> (Value, Value, Vec<u8>, Vec<Vec<u8>>) {
        let files = read_tar(path);
        assert_eq!(
            json_of(&files["oci-layout"]),
            json!({"imageLayoutVersion": "1.0.0"})
        );
        // Every blob is named by its own digest.
        for (name, bytes) in &files {
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                assert_eq!(sha256_digest(bytes), format!("sha256:{hex}"), "{name}");
            }
        }
        let index = json_of(&files["index.json"]);
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["mediaType"], MEDIA_TYPE_INDEX);
        let entries = index["manifests"].as_array().expect("manifests");
        assert_eq!(entries.len(), 1);
        let entry = entries[0].clone();
        assert_eq!(entry["mediaType"], MEDIA_TYPE_MANIFEST);
        let manifest = json_of(fetch(&files, &entry));
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["mediaType"], MEDIA_TYPE_MANIFEST);
        let config = fetch(&files, &manifest["config"]).to_vec();
        let layers = manifest["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|d| fetch(&files, d).to_vec())
            .collect();
        // Nothing else than the three kinds of blobs, the index and the layout marker.
        assert_eq!(
            files.len(),
            2 + 2 + manifest["layers"].as_array().map_or(0, Vec::len)
        );
        (entry, manifest, config, layers)
    }

    #[test]
    fn busybox_archive_is_consistent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("busybox.tar");
        let written = busybox_oci_archive(&out).expect("busybox archive");
        let (entry, manifest, config, layers) = check_layout(&out);

        assert_eq!(written.name, BUSYBOX_IMAGE);
        assert_eq!(entry["annotations"][ANNOTATION_REF_NAME], BUSYBOX_IMAGE);
        assert_eq!(
            entry["annotations"][ANNOTATION_CONTAINERD_NAME],
            BUSYBOX_IMAGE
        );
        assert_eq!(entry["digest"], written.manifest.digest.as_str());
        assert_eq!(
            entry["platform"],
            json!({"architecture": host_arch(), "os": "linux"})
        );
        assert_eq!(manifest["config"]["mediaType"], MEDIA_TYPE_IMAGE_CONFIG);
        assert_eq!(manifest["layers"][0]["mediaType"], MEDIA_TYPE_LAYER_GZIP);
        assert_eq!(written.config.digest, sha256_digest(&config));

        let config = json_of(&config);
        assert_eq!(config["os"], "linux");
        assert_eq!(config["architecture"], host_arch());
        assert_eq!(config["config"]["Cmd"], json!(["/bin/sh"]));
        assert_eq!(layers.len(), 1);
        let mut rootfs = Vec::new();
        flate2::read::GzDecoder::new(&layers[0][..])
            .read_to_end(&mut rootfs)
            .expect("gunzip layer");
        assert_eq!(
            config["rootfs"]["diff_ids"],
            json!([sha256_digest(&rootfs)])
        );

        let mut seen = BTreeMap::new();
        let mut ar = tar::Archive::new(&rootfs[..]);
        for entry in ar.entries().expect("layer entries") {
            let mut entry = entry.expect("layer entry");
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let link = entry
                .link_name()
                .expect("link name")
                .map(|l| l.to_string_lossy().into_owned());
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("read");
            seen.insert(path, (link, bytes));
        }
        let busybox = std::fs::read(BUSYBOX_PATH).expect("read /bin/busybox");
        assert_eq!(seen["bin/busybox"].1, busybox);
        for l in ["bin/sh", "bin/echo", "bin/true"] {
            assert_eq!(seen[l].0.as_deref(), Some("busybox"), "{l}");
        }
        for d in ["dev/", "proc/", "sys/", "tmp/", "etc/"] {
            assert!(seen.contains_key(d), "{d} missing from {:?}", seen.keys());
        }

        // Reproducible: the same input gives the same bytes.
        let again = dir.path().join("again.tar");
        busybox_oci_archive(&again).expect("busybox archive");
        assert_eq!(
            std::fs::read(&out).expect("read"),
            std::fs::read(&again).expect("read")
        );
    }

    #[test]
    fn wasm_archives_are_consistent() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (src, os) in [
            (r#"(module (func (export "_start")))"#, "wasip1"),
            ("(component)", "wasip2"),
        ] {
            let wasm = wat::parse_str(src).expect("wat");
            assert_eq!(is_component(&wasm), os == "wasip2");
            let module = dir.path().join(format!("{os}.wasm"));
            std::fs::write(&module, &wasm).expect("write wasm");
            let out = dir.path().join(format!("{os}.tar"));
            let name = format!("skiff.test/{os}:v1");
            let written = wasm_oci_archive(&module, &out, &name).expect("wasm archive");
            let (entry, manifest, config, layers) = check_layout(&out);

            assert_eq!(written.name, name);
            assert_eq!(entry["annotations"][ANNOTATION_REF_NAME], name.as_str());
            assert!(entry.get("platform").is_none());
            assert_eq!(manifest["config"]["mediaType"], MEDIA_TYPE_WASM_CONFIG);
            assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(1));
            assert_eq!(manifest["layers"][0]["mediaType"], MEDIA_TYPE_WASM_LAYER);
            assert_eq!(layers, vec![wasm.clone()]);
            assert_eq!(written.layers[0].digest, sha256_digest(&wasm));
            let config = json_of(&config);
            assert_eq!(config["architecture"], "wasm");
            assert_eq!(config["os"], os);
            assert_eq!(config["layerDigests"], json!([sha256_digest(&wasm)]));
        }
    }

    #[test]
    fn not_wasm_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("x.wasm");
        std::fs::write(&f, b"not wasm").expect("write");
        let err = wasm_oci_archive(&f, &dir.path().join("x.tar"), "skiff.test/x:1")
            .expect_err("must refuse");
        assert!(err.to_string().contains("not a Wasm binary"), "{err}");
    }

    #[test]
    fn static_elf_detection() {
        // /bin/ls is dynamically linked on every Debian.
        let ls = std::fs::read("/bin/ls").expect("read /bin/ls");
        assert!(!is_static_elf(&ls));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        if let Ok(busybox) = std::fs::read(BUSYBOX_PATH) {
            assert!(
                is_static_elf(&busybox),
                "{BUSYBOX_PATH} should be busybox-static's"
            );
        }
    }
}
