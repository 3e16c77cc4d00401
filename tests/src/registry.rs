//! A private OCI registry for tests: Debian's `docker-registry` (CNCF distribution 2.8) on a free
//! loopback port, storage in a temp dir, ended (exactly its own process) when dropped.
//!
//! Images are pushed over the registry's HTTP API directly (a monolithic blob upload per blob,
//! then the manifest), independently of the client skiff pulls with. [`Registry::push_wasm_artifact`]
//! pushes the bytes [`crate::images::wasm_oci_archive`] writes; [`Registry::push_image`] builds an
//! ordinary OCI image (gzip tar layers, an image config with an entrypoint) with the same media
//! types as [`crate::images`]; [`Registry::push_layer_tars_as`] takes the config and the layers'
//! compression ([`Compress`]: gzip or zstd).
//!
//! The registry's access log (its stdout and stderr, in `<dir>/registry.log`) shows every request,
//! so tests can count pulls with [`Registry::requests`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Value, json};

use crate::images::{
    MEDIA_TYPE_IMAGE_CONFIG, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_ZSTD, MEDIA_TYPE_MANIFEST,
    host_arch, sha256_digest, wasm_oci_archive,
};

/// Where Debian's `docker-registry` package installs the registry.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A running (or stopped) test registry.
pub struct Registry {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    child: Option<Child>,
    /// `user:password` when the registry asks for HTTP basic auth (htpasswd).
    login: Option<(String, String)>,
}

/// What a push made: the full reference and the manifest digest.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `127.0.0.1:PORT/NAME:TAG`.
    pub reference: String,
    /// `sha256:...` of the manifest.
    pub digest: String,
}

/// How pushed tar layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    /// `application/vnd.oci.image.layer.v1.tar+gzip`.
    Gzip,
    /// `application/vnd.oci.image.layer.v1.tar+zstd` (two frames, as a multi-threaded or
    /// streaming encoder may write: readers must read every frame).
    Zstd,
}

impl Compress {
    /// The layer media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Gzip => MEDIA_TYPE_LAYER_GZIP,
            Self::Zstd => MEDIA_TYPE_LAYER_ZSTD,
        }
    }

    /// `tar`, compressed.
    pub fn compress(self, tar: &[u8]) -> Vec<u8> {
        match self {
            Self::Gzip => {
                let mut gz = GzEncoder::new(Vec::new(), Compression::default());
                gz.write_all(tar).expect("gzip");
                gz.finish().expect("gzip")
            }
            Self::Zstd => {
                let (a, b) = tar.split_at(tar.len() / 2);
                let mut out = zstd::encode_all(a, 3).expect("zstd");
                out.extend(zstd::encode_all(b, 3).expect("zstd"));
                out
            }
        }
    }
}

/// One HTTP answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Registry {
    /// Starts a registry on a free loopback port and waits until `GET /v2/` answers 200.
    pub fn start() -> Self {
        Self::start_on(std::net::IpAddr::from([127, 0, 0, 1]))
    }

    /// Starts a registry on a free port of `ip` (an address agents in other network namespaces
    /// reach; not loopback, so they must be told it is plain http:
    /// `SKIFF_INSECURE_REGISTRIES`).
    pub fn start_on(ip: std::net::IpAddr) -> Self {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} not found: install the Debian package docker-registry"
        );
        let dir = tempfile::tempdir().expect("registry dir");
        let port = TcpListener::bind(SocketAddr::new(ip, 0))
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut r = Registry {
            dir,
            addr: SocketAddr::new(ip, port),
            child: None,
            login: None,
        };
        r.spawn();
        r
    }

    /// Starts a loopback registry that serves only `user` with `password` (HTTP basic auth from
    /// an htpasswd file, bcrypt, made by apache2-utils' `htpasswd`); the harness's own pushes
    /// log in.
    pub fn start_with_login(user: &str, password: &str) -> Self {
        let dir = tempfile::tempdir().expect("registry dir");
        let out = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .expect("htpasswd (Debian package apache2-utils)");
        assert!(out.status.success(), "htpasswd: {out:?}");
        std::fs::write(dir.path().join("htpasswd"), &out.stdout).expect("htpasswd file");
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let port = TcpListener::bind(SocketAddr::new(ip, 0))
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut r = Registry {
            dir,
            addr: SocketAddr::new(ip, port),
            child: None,
            login: Some((user.to_string(), password.to_string())),
        };
        r.spawn();
        r
    }

    /// A Docker config (`{"auths": ...}`) logging in to this registry as `user`/`password`.
    pub fn docker_config(&self, user: &str, password: &str) -> String {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        json!({ "auths": { self.host(): { "auth": auth } } }).to_string()
    }

    /// `127.0.0.1:PORT`, as image references spell the registry.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `127.0.0.1:PORT/NAME`.
    pub fn reference(&self, name_and_tag: &str) -> String {
        format!("{}/{name_and_tag}", self.host())
    }

    /// Where the registry keeps blob `digest` (to corrupt it in tests).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2.min(hex.len())])
            .join(hex)
            .join("data")
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// How many `method` requests for a path starting with `path` the registry's access log
    /// shows (for example `("GET", "/v2/probe/manifests/")`).
    pub fn requests(&self, method: &str, path: &str) -> usize {
        let needle = format!("\"{method} {path}");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// Ends the registry (its storage stays): pulls now find nothing listening.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the registry again on the same port with the same storage.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    fn spawn(&mut self) {
        let config = self.dir.path().join("config.yml");
        let storage = self.dir.path().join("storage");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {}\n{}",
                storage.display(),
                self.addr,
                match self.login {
                    Some(_) => format!(
                        "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                        self.dir.path().join("htpasswd").display()
                    ),
                    None => String::new(),
                }
            ),
        )
        .expect("registry config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("registry log");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(a) = self.request("GET", "/v2/", &[], &[])
                && a.status == 200
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("docker-registry exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on {}: {}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One HTTP/1.1 request on a fresh connection; the answer's body is not kept.
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Answer> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        if let Some((user, password)) = &self.login {
            use base64::Engine;
            let basic =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            head.push_str(&format!("Authorization: Basic {basic}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)?;
        let text = String::from_utf8_lossy(&answer);
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad HTTP answer: {text}")))?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        Ok(Answer { status, headers })
    }

    /// Uploads one blob (monolithic upload); returns its digest.
    pub fn push_blob(&self, name: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let start = self
            .request("POST", &format!("/v2/{name}/blobs/uploads/"), &[], &[])
            .expect("start upload");
        assert_eq!(start.status, 202, "starting an upload of {name}");
        let location = start.header("Location").expect("upload location");
        // The location may be absolute; keep its path and query.
        let path = match location.find("/v2/") {
            Some(i) => &location[i..],
            None => location,
        };
        let sep = if path.contains('?') { '&' } else { '?' };
        let put = self
            .request(
                "PUT",
                &format!("{path}{sep}digest={digest}"),
                &[("Content-Type", "application/octet-stream")],
                bytes,
            )
            .expect("upload blob");
        assert_eq!(put.status, 201, "uploading blob {digest} of {name}");
        digest
    }

    /// Uploads a manifest under `tag`; returns its digest.
    pub fn push_manifest(&self, name: &str, tag: &str, media_type: &str, bytes: &[u8]) -> String {
        let put = self
            .request(
                "PUT",
                &format!("/v2/{name}/manifests/{tag}"),
                &[("Content-Type", media_type)],
                bytes,
            )
            .expect("upload manifest");
        assert_eq!(
            put.status,
            201,
            "uploading the manifest {name}:{tag}: {}",
            self.log()
        );
        sha256_digest(bytes)
    }

    /// Builds the test busybox image and pushes it as `busybox:v1`; its reference.
    pub fn push_busybox(&self) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join("busybox.tar");
        crate::images::busybox_oci_archive(&archive).expect("busybox image");
        self.push_layout(&archive, "busybox", "v1").reference
    }

    /// Pushes the one image of an OCI image-layout tar (as [`crate::images`] writes them) as
    /// `name:tag`.
    pub fn push_layout(&self, archive: &Path, name: &str, tag: &str) -> Pushed {
        let mut files = std::collections::HashMap::new();
        let mut ar = tar::Archive::new(std::fs::File::open(archive).expect("open layout"));
        for entry in ar.entries().expect("layout entries") {
            let mut entry = entry.expect("layout entry");
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("read layout entry");
            files.insert(path, bytes);
        }
        let blob = |digest: &str| -> &Vec<u8> {
            let hex = digest.trim_start_matches("sha256:");
            files
                .get(&format!("blobs/sha256/{hex}"))
                .unwrap_or_else(|| panic!("blob {digest} missing from {}", archive.display()))
        };
        let index: Value = serde_json::from_slice(&files["index.json"]).expect("index.json");
        let desc = &index["manifests"][0];
        let manifest_bytes = blob(desc["digest"].as_str().expect("manifest digest"));
        let manifest: Value = serde_json::from_slice(manifest_bytes).expect("manifest");
        let mut digests = vec![manifest["config"]["digest"].clone()];
        digests.extend(
            manifest["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| l["digest"].clone()),
        );
        for d in digests {
            self.push_blob(name, blob(d.as_str().expect("digest")));
        }
        let media_type = desc["mediaType"].as_str().unwrap_or(MEDIA_TYPE_MANIFEST);
        let digest = self.push_manifest(name, tag, media_type, manifest_bytes);
        Pushed {
            reference: self.reference(&format!("{name}:{tag}")),
            digest,
        }
    }

    /// Pushes the module or component at `wasm` as a Wasm OCI artifact `name:tag`.
    pub fn push_wasm_artifact(&self, name: &str, tag: &str, wasm: &Path) -> Pushed {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = dir.path().join("artifact.tar");
        wasm_oci_archive(wasm, &archive, &format!("skiff.test/{name}:{tag}"))
            .expect("wasm artifact layout");
        self.push_layout(&archive, name, tag)
    }

    /// Pushes an ordinary Linux OCI image `name:tag` whose config has `Entrypoint`
    /// `entrypoint`: each of `layers` (bottom first) is a gzip tar of `(path, bytes)` regular
    /// files; a path ending in `/` is a directory, one whose name starts with `.wh.` a whiteout.
    pub fn push_image(
        &self,
        name: &str,
        tag: &str,
        layers: &[Vec<(&str, Vec<u8>)>],
        entrypoint: &[&str],
    ) -> Pushed {
        self.push_image_as(name, tag, layers, entrypoint, Compress::Gzip)
    }

    /// As [`Registry::push_image`], with each layer given as its (uncompressed) tar bytes, as
    /// they are: for layers no well-behaved tar writer makes.
    pub fn push_layer_tars(
        &self,
        name: &str,
        tag: &str,
        tars: &[Vec<u8>],
        entrypoint: &[&str],
    ) -> Pushed {
        let config = json!({ "Entrypoint": entrypoint, "WorkingDir": "/" });
        self.push_layer_tars_as(name, tag, tars, config, Compress::Gzip)
    }

    /// Pushes a Linux OCI image `name:tag` of `tars` (uncompressed layer tars, bottom first),
    /// each compressed as `compress` says; `config` is the image config's `config` object
    /// (`Entrypoint`, `Cmd`, `Env`, `WorkingDir`, ...).
    pub fn push_layer_tars_as(
        &self,
        name: &str,
        tag: &str,
        tars: &[Vec<u8>],
        config: Value,
        compress: Compress,
    ) -> Pushed {
        let mut diff_ids = Vec::new();
        let mut descriptors = Vec::new();
        for tar in tars {
            diff_ids.push(sha256_digest(tar));
            let blob = compress.compress(tar);
            let digest = self.push_blob(name, &blob);
            descriptors.push(json!({
                "mediaType": compress.media_type(), "digest": digest, "size": blob.len(),
            }));
        }
        let config = json!({
            "created": "1970-01-01T00:00:00Z",
            "architecture": host_arch(),
            "os": "linux",
            "config": config,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        let config = serde_json::to_vec(&config).expect("config json");
        let config_digest = self.push_blob(name, &config);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": {
                "mediaType": MEDIA_TYPE_IMAGE_CONFIG, "digest": config_digest, "size": config.len(),
            },
            "layers": descriptors,
        });
        let manifest = serde_json::to_vec(&manifest).expect("manifest json");
        let digest = self.push_manifest(name, tag, MEDIA_TYPE_MANIFEST, &manifest);
        Pushed {
            reference: self.reference(&format!("{name}:{tag}")),
            digest,
        }
    }

    /// As [`Registry::push_image`], each layer compressed as `compress` says.
    pub fn push_image_as(
        &self,
        name: &str,
        tag: &str,
        layers: &[Vec<(&str, Vec<u8>)>],
        entrypoint: &[&str],
        compress: Compress,
    ) -> Pushed {
        let tars: Vec<Vec<u8>> = layers
            .iter()
            .map(|files| layer_tar(files).expect("layer tar"))
            .collect();
        let config = json!({ "Entrypoint": entrypoint, "WorkingDir": "/" });
        self.push_layer_tars_as(name, tag, &tars, config, compress)
    }
}

/// A layer's tar: fixed owners and times.
fn layer_tar(files: &[(&str, Vec<u8>)]) -> io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut h = tar::Header::new_ustar();
        let dir = path.ends_with('/');
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_size(if dir { 0 } else { bytes.len() as u64 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let data: &[u8] = if dir { &[] } else { bytes };
        b.append_data(&mut h, path, data)?;
    }
    b.into_inner()
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
