//! Pod volumes as directories on the node, and each container's mounts as preopens.
//!
//! Layout under the agent's data dir:
//! - `pods/<uid>/volumes/<name>/`: emptyDir (removed with the pod), and the files of ConfigMap and
//!   Secret volumes, kubelet-managed ([`atomic_writer`]): each version of the files in a
//!   timestamped `..<time>` dir, `..data` a link to the current one swapped atomically, each key a
//!   link `key -> ..data/key`; rewritten whenever the object changes ([`refresh`]), so that
//!   running containers see updates and never a half-written file. The volume dir itself is never
//!   removed or replaced while the pod lives (it is bind-mounted and preopened). Secret files
//!   0644 by default as in Kubernetes, so that a container's non-root user reads them (an
//!   item's `mode` or the volume's `defaultMode` otherwise); their dirs 0755; emptyDir 0777; all
//!   inside a 0700 pod tree that the host's other users cannot enter;
//! - `run/pods/<uid>/secrets/<name>/`: Secret volumes, as ConfigMap ones but on the agent's tmpfs
//!   (`run/`, see [`crate::containers`]): Secret values never reach a disk; `projected` volumes
//!   ([`projected`]: the ServiceAccount token volume) live there too;
//! - `volumes/pvc/<namespace>/<claim>-<claim uid>/`: persistentVolumeClaim data, kept across pod
//!   deletion and re-creation for as long as the claim exists;
//! - hostPath volumes are the host's own directories (`DirectoryOrCreate` creates them).
//!
//! The objects volumes are made from come through [`VolumeSources`]: the API server (a
//! [`Transport`]) or a cache of the objects the node's pods use.

mod atomic_writer;
mod ownership;
mod projected;

use std::collections::BTreeMap;
use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use skiff_api::client::{Api, Transport};
use skiff_api::v1::*;

use atomic_writer::{FileData, Payload};

/// Where the objects a pod's volumes are made from come from.
pub(crate) trait VolumeSources: Sync {
    /// A ConfigMap's `data` and `binaryData` ([`config_map_bytes`]); `None` if it does not exist.
    fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<BTreeMap<String, Vec<u8>>>, String>> + Send;
    /// A Secret's `data`; `None` if it does not exist.
    fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<BTreeMap<String, Vec<u8>>>, String>> + Send;
    /// A PersistentVolumeClaim's uid; `None` if it does not exist.
    fn claim_uid(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<String>, String>> + Send;
    /// A token of ServiceAccount `namespace/account` bound to the pod `pod`/`uid`, for
    /// `audience` (empty: the API server), asked to live `seconds`.
    fn service_account_token(
        &self,
        _namespace: &str,
        _account: &str,
        _pod: &str,
        _uid: &str,
        _audience: &str,
        _seconds: i32,
    ) -> impl Future<Output = Result<Vec<u8>, String>> + Send {
        async { Err("no token source".to_string()) }
    }
}

/// The API server, one GET per object.
impl VolumeSources for Transport {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        let api: Api<ConfigMap> = Api::new(self.clone(), namespace);
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| e.message().to_string())?;
        Ok(found.map(config_map_bytes))
    }

    async fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        let api: Api<Secret> = Api::new(self.clone(), namespace);
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| e.message().to_string())?;
        Ok(found.map(|s| s.data))
    }

    async fn claim_uid(&self, namespace: &str, name: &str) -> Result<Option<String>, String> {
        let api: Api<PersistentVolumeClaim> = Api::new(self.clone(), namespace);
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| e.message().to_string())?;
        Ok(found.map(|pvc| pvc.metadata.map(|m| m.uid).unwrap_or_default()))
    }

    async fn service_account_token(
        &self,
        namespace: &str,
        account: &str,
        pod: &str,
        uid: &str,
        audience: &str,
        seconds: i32,
    ) -> Result<Vec<u8>, String> {
        request_token(self, namespace, account, pod, uid, audience, seconds)
            .await
            .map(|(token, _)| token.into_bytes())
    }
}

/// Asks the API server for a token bound to the pod: the token and its lifetime in seconds.
pub(crate) async fn request_token(
    transport: &Transport,
    namespace: &str,
    account: &str,
    pod: &str,
    uid: &str,
    audience: &str,
    seconds: i32,
) -> Result<(String, i64), String> {
    use skiff_api::v1::service_account_token_api_client::ServiceAccountTokenApiClient;
    let request = CreateTokenRequest {
        namespace: namespace.to_string(),
        name: account.to_string(),
        request: Some(TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: if audience.is_empty() {
                    vec![]
                } else {
                    vec![audience.to_string()]
                },
                expiration_seconds: Some(seconds),
                bound_object_ref: Some(BoundObjectReference {
                    kind: "Pod".into(),
                    api_version: "v1".into(),
                    name: pod.to_string(),
                    uid: uid.to_string(),
                }),
            }),
            ..Default::default()
        }),
    };
    let answer = ServiceAccountTokenApiClient::new(transport.clone())
        .create(request)
        .await
        .map_err(|e| e.message().to_string())?
        .into_inner();
    let granted = answer
        .spec
        .and_then(|s| s.expiration_seconds)
        .unwrap_or(seconds);
    let token = answer.status.map(|s| s.token).unwrap_or_default();
    if token.is_empty() {
        return Err("the server returned no token".into());
    }
    Ok((token, i64::from(granted)))
}

/// A prepared volume: where it lives and whether it is read-only for every mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDir {
    pub path: PathBuf,
    pub read_only: bool,
}

pub use crate::containers::Mount;

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

/// The files of a ConfigMap or Secret volume: `items` selected from `data` (all keys when
/// empty), each with its item's `mode` or `default_mode`. A missing object or key is an error
/// unless the volume is optional (then it is skipped, as in Kubernetes).
fn payload(
    what: &str,
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: &[KeyToPath],
    optional: bool,
    default_mode: Option<i32>,
) -> Result<Payload, String> {
    let mode = |m: Option<i32>| m.or(default_mode).map_or(0o644, |m| m as u32 & 0o777);
    let Some(data) = data else {
        return if optional {
            Ok(Payload::new())
        } else {
            Err(format!("{what} not found"))
        };
    };
    if items.is_empty() {
        let file = |bytes| FileData {
            bytes,
            mode: mode(None),
        };
        return Ok(data.into_iter().map(|(k, v)| (k, file(v))).collect());
    }
    let mut out = Payload::new();
    for item in items {
        let bytes = match data.get(&item.key) {
            Some(bytes) => bytes.clone(),
            None if optional => continue,
            None => return Err(format!("{what}: no key {:?}", item.key)),
        };
        out.insert(
            item.path.clone(),
            FileData {
                bytes,
                mode: mode(item.mode),
            },
        );
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

/// A kubelet-managed volume: the object its files come from.
enum Managed<'a> {
    ConfigMap(&'a ConfigMapVolumeSource),
    Secret(&'a SecretVolumeSource),
    /// Secret and ConfigMap keys, the pod's metadata and a ServiceAccount token.
    Projected(&'a ProjectedVolumeSource),
}

impl Managed<'_> {
    fn of(volume: &Volume) -> Option<Managed<'_>> {
        match (&volume.config_map, &volume.secret, &volume.projected) {
            (Some(cm), _, _) => Some(Managed::ConfigMap(cm)),
            (None, Some(secret), _) => Some(Managed::Secret(secret)),
            (None, None, Some(projected)) => Some(Managed::Projected(projected)),
            (None, None, None) => None,
        }
    }

    /// The files the volume should hold now.
    async fn payload(&self, sources: &impl VolumeSources, pod: &Pod) -> Result<Payload, String> {
        let namespace = pod.metadata.as_ref().map_or("", |m| m.namespace.as_str());
        match self {
            Managed::ConfigMap(cm) => {
                let data = sources.config_map(namespace, &cm.name).await?;
                let what = format!("configmap {:?}", cm.name);
                let optional = cm.optional == Some(true);
                payload(&what, data, &cm.items, optional, cm.default_mode)
            }
            Managed::Secret(secret) => {
                let data = sources.secret(namespace, &secret.secret_name).await?;
                let what = format!("secret {:?}", secret.secret_name);
                let optional = secret.optional == Some(true);
                payload(&what, data, &secret.items, optional, secret.default_mode)
            }
            Managed::Projected(source) => projected::files(source, sources, pod).await,
        }
    }
}

/// Writes `payload` into the existing volume dir `dir` (on a blocking thread: it fsyncs);
/// whether the files changed.
async fn write_payload(dir: PathBuf, payload: Payload) -> Result<bool, String> {
    tokio::task::spawn_blocking(move || atomic_writer::write(&dir, &payload))
        .await
        .map_err(|e| format!("writing files: {e}"))?
        .map_err(|e| e.to_string())
}

/// `data_dir/pods/<uid>/volumes`.
fn volumes_dir(data_dir: &Path, pod: &Pod) -> PathBuf {
    let uid = pod.metadata.as_ref().map_or("", |m| m.uid.as_str());
    data_dir.join("pods").join(uid).join("volumes")
}

/// `data_dir/run/pods/<uid>/secrets`: Secret volumes, on the agent's tmpfs (never on disk).
fn secrets_dir(data_dir: &Path, uid: &str) -> PathBuf {
    data_dir.join("run").join("pods").join(uid).join("secrets")
}

/// Where a ConfigMap or Secret volume's files live.
fn managed_dir(data_dir: &Path, pod: &Pod, volume: &Volume, managed: &Managed<'_>) -> PathBuf {
    match managed {
        // A projected volume may hold Secret keys and a token.
        Managed::Secret(_) | Managed::Projected(_) => {
            let uid = pod.metadata.as_ref().map_or("", |m| m.uid.as_str());
            secrets_dir(data_dir, uid).join(&volume.name)
        }
        _ => volumes_dir(data_dir, pod).join(&volume.name),
    }
}

/// Prepares every volume of `pod`. Errors name the volume and the cause, for the container's
/// waiting message. Safe to call again while the pod runs: directories are kept, ConfigMap and
/// Secret files are rewritten only when the object changed (atomically), so a call also
/// refreshes them; each call reads every object the pod's volumes name (ConfigMaps, Secrets and
/// claims) from `sources`.
pub(crate) async fn prepare(
    sources: &impl VolumeSources,
    data_dir: &Path,
    pod: &Pod,
) -> Result<BTreeMap<String, VolumeDir>, String> {
    let namespace = pod.metadata.as_ref().map_or("", |m| m.namespace.as_str());
    let pod_dir = volumes_dir(data_dir, pod);
    // The pod's tree is the agent's and its shims' (same user) only: it holds secrets.
    mkdir(&pod_dir, 0o700)?;
    if let Some(parent) = pod_dir.parent() {
        let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700));
    }
    let mut out = BTreeMap::new();
    let fs_group = ownership::FsGroup::of(pod);
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
        } else if let Some(managed) = Managed::of(volume) {
            let path = managed_dir(data_dir, pod, volume, &managed);
            if let Some(parent) = path.parent() {
                mkdir(parent, 0o700).map_err(at)?;
            }
            let payload = managed.payload(sources, pod).await.map_err(at)?;
            // Readable by a container's non-root user; the 0700 pod tree keeps the host's
            // users out. Made once, never replaced: containers hold it open.
            mkdir(&path, 0o755).map_err(at)?;
            write_payload(path.clone(), payload).await.map_err(at)?;
            VolumeDir {
                path,
                read_only: true,
            }
        } else if let Some(claim) = &volume.persistent_volume_claim {
            let uid = sources
                .claim_uid(namespace, &claim.claim_name)
                .await
                .map_err(at)?
                .ok_or_else(|| {
                    at(format!(
                        "persistentvolumeclaim {:?} not found",
                        claim.claim_name
                    ))
                })?;
            let path = data_dir
                .join("volumes/pvc")
                .join(namespace)
                .join(format!("{}-{uid}", claim.claim_name));
            mkdir(&path, 0o755).map_err(at)?;
            VolumeDir {
                path,
                read_only: claim.read_only,
            }
        } else {
            return Err(at("no volume source given".into()));
        };
        // fsGroup: every volume but the host's own directories.
        if let Some(fs) = fs_group
            && volume.host_path.is_none()
        {
            ownership::apply_async(dir.path.clone(), fs, Managed::of(volume).is_some())
                .await
                .map_err(at)?;
        }
        out.insert(volume.name.clone(), dir);
    }
    Ok(out)
}

/// Rewrites the files of the pod's ConfigMap and Secret volumes whose object changed, each
/// atomically; returns the names of the volumes whose files changed. Only volumes [`prepare`]
/// made are touched: nothing is created (a pod whose directory is gone stays gone). A volume
/// whose object cannot be read, or is gone and not optional, keeps its files (as Kubernetes
/// does); the error names it, and the other volumes are still refreshed. Unchanged objects cost
/// one read of each from `sources` and of the files, and write nothing.
pub(crate) async fn refresh(
    sources: &impl VolumeSources,
    data_dir: &Path,
    pod: &Pod,
) -> Result<Vec<String>, String> {
    let mut updated = Vec::new();
    let mut errors = Vec::new();
    for volume in pod.spec.iter().flat_map(|s| &s.volumes) {
        let Some(managed) = Managed::of(volume) else {
            continue;
        };
        let path = managed_dir(data_dir, pod, volume, &managed);
        if !path.is_dir() {
            continue;
        }
        let written = match managed.payload(sources, pod).await {
            Ok(payload) => write_payload(path.clone(), payload).await,
            Err(e) => Err(e),
        };
        // New files of the volume's group too.
        let written = match (written, ownership::FsGroup::of(pod)) {
            (Ok(true), Some(fs)) => ownership::apply_async(path, fs, true).await.map(|()| true),
            (other, _) => other,
        };
        match written {
            Ok(true) => updated.push(volume.name.clone()),
            Ok(false) => {}
            Err(e) => errors.push(format!("volume {:?}: {e}", volume.name)),
        }
    }
    if errors.is_empty() {
        Ok(updated)
    } else {
        Err(errors.join("; "))
    }
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
            // In a kubelet-managed volume the user-visible names are the writer's links: a
            // subPath is taken from the current version, as Kubernetes does (and, as there,
            // it does not see later updates).
            let version = atomic_writer::current_version(&volume.path);
            if let Some(version) = &version {
                host.push(version);
            }
            // No component may be a symlink (a guest may have planted one), checked before
            // anything is created; the resolved path is checked again below.
            for component in relative.components() {
                host.push(component);
                if std::fs::symlink_metadata(&host).is_ok_and(|md| md.file_type().is_symlink()) {
                    return Err(at("a path component is a symlink".into()));
                }
            }
            if version.is_none() {
                mkdir(&host, 0o700).map_err(at)?;
            } else if !host.exists() {
                return Err(at("not in the volume's files".into()));
            }
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

/// Removes the pod's own directories (emptyDirs, config and secret files, logs). PVC data
/// stays.
pub fn remove_pod_dir(data_dir: &Path, uid: &str) {
    if uid.is_empty() {
        return;
    }
    let secrets = secrets_dir(data_dir, uid);
    for dir in [
        data_dir.join("pods").join(uid),
        secrets.parent().map_or(secrets.clone(), Path::to_path_buf),
    ] {
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "removing pod dir");
        }
    }
}

#[cfg(test)]
mod tests;
