//! An OCI bundle on disk: `config.json` (the runtime spec) and the root filesystem it names.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use super::error::LinuxError;

/// A loaded and checked bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    /// The root filesystem, absolute.
    pub rootfs: PathBuf,
}

impl Bundle {
    pub fn load(dir: &Path) -> Result<Self, LinuxError> {
        let dir = std::fs::canonicalize(dir).map_err(|e| LinuxError::Bundle {
            bundle: dir.to_path_buf(),
            message: format!("cannot open: {e}"),
        })?;
        let bad = |message: String| LinuxError::Bundle {
            bundle: dir.clone(),
            message,
        };
        let config = dir.join("config.json");
        let spec = Spec::load(&config).map_err(|e| bad(format!("config.json: {e}")))?;
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| bad("config.json: root: required".into()))?;
        let rootfs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            dir.join(root.path())
        };
        if !rootfs.is_dir() {
            return Err(bad(format!(
                "config.json: root.path: {} is not a directory",
                rootfs.display()
            )));
        }
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| bad("config.json: process: required".into()))?;
        if process.args().as_ref().is_none_or(Vec::is_empty) {
            return Err(bad(
                "config.json: process.args: at least the program is required".into(),
            ));
        }
        if !process.cwd().is_absolute() {
            return Err(bad(format!(
                "config.json: process.cwd: {:?} must be absolute",
                process.cwd()
            )));
        }
        Ok(Self { dir, spec, rootfs })
    }
}
