//! Image references → a module file on this node.
//!
//! `file:PATH` names a module (or WAT text) on the node; a relative path is taken from the
//! agent's working directory. OCI registry references are resolved by the image store (pull,
//! verify by digest, cache) — not yet wired: such pods wait with `ErrImagePull` naming why.

use std::path::{Path, PathBuf};

/// Why an image cannot be used; `reason` is the container's waiting/terminated reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageError {
    pub reason: &'static str,
    pub message: String,
    /// A pull that may work later (registry down): retried with back-off. Otherwise the
    /// container fails to start.
    pub retry: bool,
}

/// The local file for `image`.
pub fn resolve(image: &str) -> Result<PathBuf, ImageError> {
    if let Some(path) = image.strip_prefix("file:") {
        let path = Path::new(path.trim_start_matches("//"));
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map(|d| d.join(path))
                .unwrap_or_else(|_| path.to_path_buf())
        };
        return match std::fs::metadata(&absolute) {
            Ok(m) if m.is_file() => Ok(absolute),
            Ok(_) => Err(ImageError {
                reason: "StartError",
                message: format!("image {image}: {} is not a file", absolute.display()),
                retry: false,
            }),
            Err(e) => Err(ImageError {
                reason: "StartError",
                message: format!("image {image}: {}: {e}", absolute.display()),
                retry: false,
            }),
        };
    }
    Err(ImageError {
        reason: "ErrImagePull",
        message: format!(
            "image {image:?}: pulling from OCI registries is not available on this node yet; use file:PATH"
        ),
        retry: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_images() {
        let dir = std::env::temp_dir();
        let f = dir.join(format!("skiff-image-test-{}.wasm", std::process::id()));
        std::fs::write(&f, b"\0asm").ok();
        assert_eq!(resolve(&format!("file:{}", f.display())), Ok(f.clone()));
        std::fs::remove_file(&f).ok();
        let missing = resolve(&format!("file:{}", f.display())).unwrap_err();
        assert_eq!(missing.reason, "StartError");
        assert!(
            missing.message.contains("No such file"),
            "{}",
            missing.message
        );
        assert!(resolve("registry.invalid/app:1").unwrap_err().retry);
    }
}
