//! Pod volumes as directories on the node, and each container's mounts as preopens.
//!
//! Layout under the agent's data dir:
//! - `pods/<uid>/volumes/<name>/`: emptyDir (removed with the pod), and the files of ConfigMap and
//!   Secret volumes (written once per pod, before its first container starts: running containers
//!   hold them open; Secret files 0644 by default as in Kubernetes, so that a container's non-root user reads
//!   them; emptyDir 0777; all inside a 0700 pod tree that the host's other users cannot enter);
//! - `volumes/pvc/<namespace>/<claim>-<claim uid>/`: persistentVolumeClaim data, kept across pod
//!   deletion and re-creation for as long as the claim exists;
//! - hostPath volumes are the host's own directories (`DirectoryOrCreate` creates them).

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use skiff_api::client::{Api, Transport};
use skiff_api::v1::*;

/// A prepared volume: where it lives and whether it is read-only for every mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDir {
    pub path: PathBuf,
    pub read_only: bool,
}

/// A container mount: host dir → guest path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
    /// For a subPath: the volume's directory, beneath which `host` must be reached without a
    /// symlink when it is mounted (a container may swap a directory for a link meanwhile).
    pub beneath: Option<PathBuf>,
}

fn mkdir(path: &Path, mode: u32) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| format!("creating {}: {e}", path.display()))
}

/// A key's file name must stay inside the volume: no absolute paths, no `..`.
fn safe_relative(path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    let allowed = |c: Component<'_>| matches!(c, Component::Normal(_) | Component::CurDir);
    if path.is_empty() || !p.components().all(allowed) {
        return Err(format!(
            "item path {path:?} must be relative and must not contain '..'"
        ));
    }
    Ok(p.to_path_buf())
}

/// Writes `files` into a fresh `dir` (old files removed), each with `mode`.
fn write_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>, mode: u32) -> Result<(), String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("clearing {}: {e}", dir.display()))?;
    }
    // Readable by a container's non-root user; the 0700 pod tree keeps the host's users out.
    mkdir(dir, 0o755)?;
    for (name, data) in files {
        let path = dir.join(safe_relative(name)?);
        if let Some(parent) = path.parent() {
            mkdir(parent, 0o755)?;
        }
        std::fs::write(&path, data).map_err(|e| format!("writing {}: {e}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Selects `items` (all keys when empty) from `data`.
fn project(
    data: BTreeMap<String, Vec<u8>>,
    items: &[KeyToPath],
    what: &str,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    if items.is_empty() {
        return Ok(data);
    }
    let mut out = BTreeMap::new();
    for item in items {
        let value = data
            .get(&item.key)
            .ok_or_else(|| format!("{what}: no key {:?}", item.key))?;
        out.insert(item.path.clone(), value.clone());
    }
    Ok(out)
}

/// A ConfigMap's `data` and `binaryData` as bytes (also the env resolver's view of it).
pub fn config_map_bytes(cm: ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    data.extend(cm.binary_data);
    data
}

/// The files of a ConfigMap or Secret volume.
struct Projected<'a> {
    /// `configmap "x"`, for messages.
    what: String,
    /// None: the object does not exist.
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: &'a [KeyToPath],
    optional: bool,
    mode: u32,
}

impl Projected<'_> {
    fn write(self, dir: &Path) -> Result<(), String> {
        let files = match self.data {
            Some(data) => project(data, self.items, &self.what)?,
            None if self.optional => BTreeMap::new(),
            None => return Err(format!("{} not found", self.what)),
        };
        write_files(dir, &files, self.mode)
    }
}

/// Prepares every volume of `pod`. Errors name the volume and the cause, for the container's
/// waiting message.
pub async fn prepare(
    transport: &Transport,
    data_dir: &Path,
    pod: &Pod,
) -> Result<BTreeMap<String, VolumeDir>, String> {
    let meta = pod.metadata.clone().unwrap_or_default();
    let pod_dir = data_dir.join("pods").join(&meta.uid).join("volumes");
    // The pod's tree is the agent's and the runtime host's (same user) only: it holds secrets.
    mkdir(&pod_dir, 0o700)?;
    if let Some(parent) = pod_dir.parent() {
        let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700));
    }
    let mut out = BTreeMap::new();
    for volume in pod.spec.iter().flat_map(|s| &s.volumes) {
        let at = |e: String| format!("volume {:?}: {e}", volume.name);
        let dir = if volume.empty_dir.is_some() {
            let path = pod_dir.join(&volume.name);
            // Kubernetes' emptyDir is world-writable, for containers that run as any user;
            // the pod tree above it is 0700.
            mkdir(&path, 0o777).map_err(at)?;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777));
            VolumeDir {
                path,
                read_only: false,
            }
        } else if let Some(host) = &volume.host_path {
            let path = PathBuf::from(&host.path);
            match host.r#type.as_str() {
                "DirectoryOrCreate" => mkdir(&path, 0o755).map_err(at)?,
                "" | "Directory" if !path.is_dir() => {
                    return Err(at(format!(
                        "hostPath {} is not a directory",
                        path.display()
                    )));
                }
                _ => {}
            }
            VolumeDir {
                path,
                read_only: false,
            }
        } else if let Some(cm) = &volume.config_map {
            let path = pod_dir.join(&volume.name);
            // Written once per pod: running containers hold it open as a preopen.
            if !path.is_dir() {
                let api: Api<ConfigMap> = Api::new(transport.clone(), &meta.namespace);
                let found = api
                    .get_opt(&cm.name)
                    .await
                    .map_err(|e| at(e.message().to_string()))?;
                let source = Projected {
                    what: format!("configmap {:?}", cm.name),
                    data: found.map(config_map_bytes),
                    items: &cm.items,
                    optional: cm.optional == Some(true),
                    mode: cm.default_mode.map_or(0o644, |m| m as u32 & 0o777),
                };
                source.write(&path).map_err(at)?;
            }
            VolumeDir {
                path,
                read_only: true,
            }
        } else if let Some(secret) = &volume.secret {
            let path = pod_dir.join(&volume.name);
            if !path.is_dir() {
                let api: Api<Secret> = Api::new(transport.clone(), &meta.namespace);
                let found = api
                    .get_opt(&secret.secret_name)
                    .await
                    .map_err(|e| at(e.message().to_string()))?;
                let source = Projected {
                    what: format!("secret {:?}", secret.secret_name),
                    data: found.map(|s| s.data),
                    items: &secret.items,
                    optional: secret.optional == Some(true),
                    mode: secret.default_mode.map_or(0o644, |m| m as u32 & 0o777),
                };
                source.write(&path).map_err(at)?;
            }
            VolumeDir {
                path,
                read_only: true,
            }
        } else if let Some(claim) = &volume.persistent_volume_claim {
            let api: Api<PersistentVolumeClaim> = Api::new(transport.clone(), &meta.namespace);
            let pvc = api
                .get_opt(&claim.claim_name)
                .await
                .map_err(|e| at(e.message().to_string()))?
                .ok_or_else(|| {
                    at(format!(
                        "persistentvolumeclaim {:?} not found",
                        claim.claim_name
                    ))
                })?;
            let uid = pvc.metadata.map(|m| m.uid).unwrap_or_default();
            let path = data_dir
                .join("volumes/pvc")
                .join(&meta.namespace)
                .join(format!("{}-{uid}", claim.claim_name));
            mkdir(&path, 0o755).map_err(at)?;
            VolumeDir {
                path,
                read_only: claim.read_only,
            }
        } else {
            return Err(at("no volume source given".into()));
        };
        out.insert(volume.name.clone(), dir);
    }
    Ok(out)
}

/// The preopens of one container, from its volumeMounts.
pub fn mounts(
    container: &Container,
    volumes: &BTreeMap<String, VolumeDir>,
) -> Result<Vec<Mount>, String> {
    let mut out = Vec::new();
    for m in &container.volume_mounts {
        let volume = volumes.get(&m.name).ok_or_else(|| {
            format!(
                "volumeMount {:?}: the pod has no volume of that name",
                m.name
            )
        })?;
        let mut host = volume.path.clone();
        if !m.sub_path.is_empty() {
            let at = |e: String| format!("volumeMount {:?}: subPath {:?}: {e}", m.name, m.sub_path);
            let relative = safe_relative(&m.sub_path).map_err(at)?;
            // No component may be a symlink (a guest may have planted one), checked before
            // anything is created; the resolved path is checked again below.
            for component in relative.components() {
                host.push(component);
                if std::fs::symlink_metadata(&host).is_ok_and(|md| md.file_type().is_symlink()) {
                    return Err(at("a path component is a symlink".into()));
                }
            }
            mkdir(&host, 0o700).map_err(at)?;
            // A guest may have planted a symlink in the volume: the resolved path must stay
            // inside it (the CVE-2017-1002101 class).
            let inside = std::fs::canonicalize(&volume.path)
                .and_then(|root| Ok((root, std::fs::canonicalize(&host)?)))
                .map(|(root, real)| real.starts_with(root))
                .map_err(|e| at(e.to_string()))?;
            if !inside {
                return Err(at("resolves outside its volume (through a symlink)".into()));
            }
        }
        out.push(Mount {
            host,
            guest: m.mount_path.clone(),
            read_only: m.read_only || volume.read_only,
            beneath: (!m.sub_path.is_empty()).then(|| volume.path.clone()),
        });
    }
    Ok(out)
}

/// Removes the pod's own directory (emptyDirs, config files, logs). PVC data stays.
pub fn remove_pod_dir(data_dir: &Path, uid: &str) {
    if uid.is_empty() {
        return;
    }
    let dir = data_dir.join("pods").join(uid);
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "removing pod dir");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_paths_stay_inside() {
        assert!(safe_relative("a/b.txt").is_ok());
        assert!(safe_relative("./a").is_ok());
        for bad in ["", "/etc/passwd", "../x", "a/../../x"] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
    }
}
