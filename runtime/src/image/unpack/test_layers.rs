//! Test layers built entry by entry. Names and link targets are written into the header bytes
//! directly, so that `..`, absolute paths and other hostile spellings get through (`tar`'s own
//! setters refuse them). Plus the scene the hostile tests run in: a destination with a sentinel
//! directory next to it that must stay untouched.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

pub const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// One entry's header fields.
#[derive(Debug, Clone)]
pub struct Spec {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
        }
    }
}

/// A tar layer under construction.
pub struct Layer {
    b: tar::Builder<Vec<u8>>,
}

impl Layer {
    pub fn new() -> Self {
        Self {
            b: tar::Builder::new(Vec::new()),
        }
    }

    /// Appends one entry, name and link written raw.
    #[allow(clippy::too_many_arguments)]
    pub fn raw(
        &mut self,
        name: &str,
        kind: EntryType,
        data: &[u8],
        link: Option<&str>,
        spec: &Spec,
        device: Option<(u32, u32)>,
    ) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(spec.mode);
        h.set_uid(spec.uid);
        h.set_gid(spec.gid);
        h.set_mtime(spec.mtime);
        if let Some((major, minor)) = device {
            h.set_device_major(major).expect("gnu header");
            h.set_device_minor(minor).expect("gnu header");
        }
        let old = h.as_old_mut();
        assert!(name.len() <= old.name.len(), "test name too long: {name}");
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            assert!(link.len() <= old.linkname.len(), "test link too long");
            old.linkname = [0; 100];
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        self.b.append(&h, data).expect("append");
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.file_with(name, data, &Spec::default())
    }

    pub fn file_with(&mut self, name: &str, data: &[u8], spec: &Spec) -> &mut Self {
        self.raw(name, EntryType::Regular, data, None, spec, None)
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.dir_with(
            name,
            &Spec {
                mode: 0o755,
                ..Spec::default()
            },
        )
    }

    pub fn dir_with(&mut self, name: &str, spec: &Spec) -> &mut Self {
        self.raw(name, EntryType::Directory, b"", None, spec, None)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let spec = Spec {
            mode: 0o777,
            ..Spec::default()
        };
        self.raw(name, EntryType::Symlink, b"", Some(target), &spec, None)
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            name,
            EntryType::Link,
            b"",
            Some(target),
            &Spec::default(),
            None,
        )
    }

    pub fn fifo(&mut self, name: &str, mode: u32) -> &mut Self {
        let spec = Spec {
            mode,
            ..Spec::default()
        };
        self.raw(name, EntryType::Fifo, b"", None, &spec, None)
    }

    pub fn device(&mut self, name: &str, kind: EntryType, major: u32, minor: u32) -> &mut Self {
        let spec = Spec {
            mode: 0o666,
            ..Spec::default()
        };
        self.raw(name, kind, b"", None, &spec, Some((major, minor)))
    }

    /// PAX records for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.b
            .append_pax_extensions(records.iter().copied())
            .expect("pax");
        self
    }

    /// The tar (with its end-of-archive blocks).
    pub fn tar(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().expect("finish tar")
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, 3).expect("zstd")
}

/// `sha256:<hex>` of `bytes`, computed independently of the unpacker.
pub fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A temp dir holding `layer/` (the destination) and `outside/` (a sentinel directory with two
/// files) side by side.
pub struct Scene {
    pub top: tempfile::TempDir,
    pub layer: PathBuf,
    pub outside: PathBuf,
    before: BTreeMap<String, (Vec<u8>, i64, i64)>,
    outside_mtime: (i64, i64),
}

impl Scene {
    pub fn new() -> Self {
        let top = tempfile::tempdir().expect("tempdir");
        let layer = top.path().join("layer");
        let outside = top.path().join("outside");
        std::fs::create_dir(&layer).expect("layer dir");
        std::fs::create_dir(&outside).expect("outside dir");
        std::fs::write(outside.join("sentinel"), b"sentinel").expect("sentinel");
        std::fs::write(outside.join("victim"), b"victim").expect("victim");
        // Distinctive times, so that any touch shows.
        for (i, p) in [
            outside.join("sentinel"),
            outside.join("victim"),
            outside.clone(),
        ]
        .iter()
        .enumerate()
        {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + i as u64);
            let f = std::fs::File::open(p).expect("open");
            f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
                .expect("times");
        }
        let before = snapshot(&outside);
        let m = std::fs::metadata(&outside).expect("stat");
        Self {
            top,
            layer,
            outside_mtime: (m.mtime(), m.mtime_nsec()),
            before,
            outside,
        }
    }

    /// The sentinel directory as a string, for absolute names and link targets.
    pub fn outside_str(&self) -> &str {
        self.outside.to_str().expect("utf-8 temp path")
    }

    /// Asserts that nothing but `layer/` changed: the sentinel directory has the same files, with
    /// the same contents, link counts and times, no opaque marker, and the top holds nothing new.
    pub fn assert_untouched(&self, case: &str) {
        let mut names: Vec<String> = std::fs::read_dir(self.top.path())
            .expect("ls top")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["layer", "outside"], "{case}: next to the layer");
        assert_eq!(
            snapshot(&self.outside),
            self.before,
            "{case}: the sentinel dir"
        );
        let m = std::fs::metadata(&self.outside).expect("stat");
        assert_eq!(
            (m.mtime(), m.mtime_nsec()),
            self.outside_mtime,
            "{case}: the sentinel dir's mtime"
        );
        let mut buf = [0u8; 8];
        assert!(
            rustix::fs::getxattr(&self.outside, "trusted.overlay.opaque", &mut buf[..]).is_err(),
            "{case}: the sentinel dir was marked opaque"
        );
    }
}

/// `name → (contents, nlink, mtime)` of the files in `dir`.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, i64, i64)> {
    std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| {
            let e = e.expect("entry");
            let m = std::fs::symlink_metadata(e.path()).expect("stat");
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            (
                e.file_name().to_string_lossy().into_owned(),
                (bytes, m.nlink() as i64, m.mtime()),
            )
        })
        .collect()
}
