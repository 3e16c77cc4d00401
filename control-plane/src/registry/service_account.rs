//! ServiceAccount admission (Kubernetes' `ServiceAccount` plugin), a mutating link for new pods:
//!
//! - a pod that names no ServiceAccount runs as `default`;
//! - a pod naming another ServiceAccount is refused unless it exists (`default` is made by the
//!   controller with each namespace, so it is not waited for here);
//! - unless `automountServiceAccountToken` is false (the pod's, else the ServiceAccount's), the
//!   pod gets Kubernetes' `kube-api-access-<suffix>` projected volume — a token bound to the pod
//!   (`token`, 3607 s, refreshed by the node), the cluster CA (`ca.crt`, from the
//!   `kube-root-ca.crt` ConfigMap) and `namespace` — mounted read-only at
//!   [`MOUNT_PATH`] in every container that does not mount something there already.
//!
//! [`keep_injected`] carries that volume over an update that leaves it out (an `apply` of the
//! pod's manifest). Must not: write to the store.

use std::sync::Arc;

use skiff_api::v1::*;
use skiff_api::{Resource, ResourceExt};

use super::admission::{Attributes, Mutating, ObjectMut, Operation};
use super::{decode, key};
use crate::error::ApiError;
use crate::store::Store;

/// Where the token, CA and namespace appear in containers.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The prefix of the injected volume's name.
pub const VOLUME_PREFIX: &str = "kube-api-access-";
/// The ConfigMap holding the cluster CA in every namespace.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// The token lifetime the volume asks for (Kubernetes' 3607: an hour and a bit, so that a
/// token's age can tell it came from a projected volume).
pub const TOKEN_SECONDS: i32 = 3607;

pub struct ServiceAccountAdmission {
    pub store: Arc<dyn Store>,
}

/// The injected volume (`suffix` makes its name unique, as Kubernetes' random one).
pub fn api_access_volume(suffix: &str) -> Volume {
    Volume {
        name: format!("{VOLUME_PREFIX}{suffix}"),
        projected: Some(ProjectedVolumeSource {
            sources: vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: String::new(),
                        expiration_seconds: Some(TOKEN_SECONDS),
                        path: "token".into(),
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: ROOT_CA_CONFIG_MAP.into(),
                        items: vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            mode: None,
                        }],
                        optional: None,
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardApiProjection {
                        items: vec![DownwardApiVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector {
                                api_version: "v1".into(),
                                field_path: "metadata.namespace".into(),
                            }),
                            mode: None,
                        }],
                    }),
                    ..Default::default()
                },
            ],
            default_mode: Some(0o644),
        }),
        ..Default::default()
    }
}

fn injected(spec: &PodSpec) -> Option<&Volume> {
    spec.volumes
        .iter()
        .find(|v| v.name.starts_with(VOLUME_PREFIX) && v.projected.is_some())
}

/// Adds the volume and its mounts to `spec` (containers already mounting [`MOUNT_PATH`] keep
/// their own).
fn inject(spec: &mut PodSpec, suffix: &str) {
    let volume = api_access_volume(suffix);
    let mount = VolumeMount {
        name: volume.name.clone(),
        mount_path: MOUNT_PATH.into(),
        read_only: true,
        ..Default::default()
    };
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut())
    {
        if !c.volume_mounts.iter().any(|m| m.mount_path == MOUNT_PATH) {
            c.volume_mounts.push(mount.clone());
        }
    }
    spec.volumes.push(volume);
}

/// An update that leaves the injected volume out keeps it (and its mounts).
pub fn keep_injected(new: &mut Pod, old: &Pod) {
    let Some(old_spec) = old.spec.as_ref() else {
        return;
    };
    let Some(volume) = injected(old_spec) else {
        return;
    };
    let Some(spec) = new.spec.as_mut() else {
        return;
    };
    if spec.service_account_name.is_empty() {
        spec.service_account_name = old_spec.service_account_name.clone();
    }
    if spec.volumes.iter().any(|v| v.name == volume.name) {
        return;
    }
    let mounted = |c: &Container| {
        c.volume_mounts
            .iter()
            .find(|m| m.name == volume.name)
            .cloned()
    };
    let old_mounts: Vec<(String, VolumeMount)> = old_spec
        .containers
        .iter()
        .chain(&old_spec.init_containers)
        .filter_map(|c| mounted(c).map(|m| (c.name.clone(), m)))
        .collect();
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut())
    {
        if let Some((_, m)) = old_mounts.iter().find(|(name, _)| *name == c.name)
            && !c.volume_mounts.iter().any(|x| x.mount_path == m.mount_path)
        {
            c.volume_mounts.push(m.clone());
        }
    }
    spec.volumes.push(volume.clone());
}

fn suffix() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

#[async_trait::async_trait]
impl Mutating for ServiceAccountAdmission {
    fn name(&self) -> &'static str {
        "ServiceAccount"
    }

    async fn admit(&self, attrs: &Attributes<'_>, obj: ObjectMut<'_>) -> Result<(), ApiError> {
        if attrs.operation != Operation::Create {
            return Ok(());
        }
        let ObjectMut::Pod(pod) = obj else {
            return Ok(());
        };
        let namespace = attrs.namespace;
        let pod_name = pod.name().to_string();
        let Some(spec) = pod.spec.as_mut() else {
            return Ok(());
        };
        if spec.service_account_name.is_empty() {
            spec.service_account_name = "default".into();
        }
        let name = spec.service_account_name.clone();
        let account = match self
            .store
            .get(&key::<ServiceAccount>(namespace, &name))
            .await
            .map_err(|e| ApiError::from_store(e, ServiceAccount::PLURAL, &name))?
        {
            Some(kv) => Some(decode::<ServiceAccount>(&kv)?),
            None if name == "default" => None,
            None => {
                return Err(ApiError::Forbidden(format!(
                    "pods {pod_name:?} is forbidden: error looking up service account {namespace}/{name}: serviceaccount {name:?} not found"
                )));
            }
        };
        let automount = spec
            .automount_service_account_token
            .or(account.and_then(|a| a.automount_service_account_token))
            .unwrap_or(true);
        if automount && injected(spec).is_none() {
            inject(spec, &suffix());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: "web".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![
                    Container {
                        name: "app".into(),
                        image: "file:/app.wasm".into(),
                        ..Default::default()
                    },
                    Container {
                        name: "own".into(),
                        image: "file:/app.wasm".into(),
                        volume_mounts: vec![VolumeMount {
                            name: "mine".into(),
                            mount_path: MOUNT_PATH.into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn the_volume_is_valid_and_mounted_where_nothing_else_is() {
        let mut p = pod();
        inject(p.spec.as_mut().unwrap(), "x2b4d");
        let spec = p.spec.as_ref().unwrap();
        let volume = injected(spec).unwrap();
        assert_eq!(volume.name, "kube-api-access-x2b4d");
        let mut errors = skiff_api::validation::FieldErrors::default();
        skiff_api::validation::validate_projected(
            volume.projected.as_ref().unwrap(),
            "v",
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors}");
        let app = &spec.containers[0].volume_mounts;
        assert_eq!(app.len(), 1);
        assert!(app[0].read_only && app[0].mount_path == MOUNT_PATH);
        // A container with its own mount there keeps it.
        assert_eq!(spec.containers[1].volume_mounts.len(), 1);
        assert_eq!(spec.containers[1].volume_mounts[0].name, "mine");
    }

    #[test]
    fn an_update_without_the_volume_keeps_it() {
        let mut old = pod();
        old.spec.as_mut().unwrap().service_account_name = "default".into();
        inject(old.spec.as_mut().unwrap(), "abcde");
        let mut new = pod();
        keep_injected(&mut new, &old);
        assert_eq!(new.spec, old.spec);
        // Applied again: nothing doubles.
        let again = new.clone();
        keep_injected(&mut new, &again);
        assert_eq!(new.spec, old.spec);
    }

    #[test]
    fn suffixes_are_five_safe_characters() {
        let s = suffix();
        assert_eq!(s.len(), 5);
        assert!(skiff_api::validation::is_dns1123_label(&format!(
            "{VOLUME_PREFIX}{s}"
        )));
    }
}
