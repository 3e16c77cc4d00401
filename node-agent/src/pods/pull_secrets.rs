//! A pod's image pull credentials: the `kubernetes.io/dockerconfigjson` (or legacy
//! `kubernetes.io/dockercfg`) Secrets its `spec.imagePullSecrets` name, read through the node's
//! watched Secrets (so the node asks only for Secrets its own pods name), as one keyring in the
//! order the pod lists them.
//!
//! As kubelet does, a Secret that is missing, of another type, or unreadable is left out with a
//! `FailedToRetrieveImagePullSecret` warning event and the pull goes on with the rest (and the
//! node's own credentials): the registry's answer then says what is wrong.
//!
//! Must not: log, or put in an event, anything of a Secret's data.

use skiff_api::ResourceExt;
use skiff_api::v1::Pod;
use skiff_api::validation::pull_secret::{
    DOCKER_CONFIG_JSON, DOCKER_CONFIG_JSON_KEY, DOCKERCFG, DOCKERCFG_KEY,
};
use skiff_runtime::image::Keyring;

use super::NodeContext;

/// The pod's credentials; problems come back as messages for warning events.
pub(super) async fn keyring(ctx: &NodeContext, pod: &Pod) -> (Keyring, Vec<String>) {
    let meta = pod.meta();
    let names = pod
        .spec
        .as_ref()
        .map(|s| s.image_pull_secrets.as_slice())
        .unwrap_or_default();
    let mut keyring = Keyring::default();
    let mut problems = Vec::new();
    for reference in names {
        let name = reference.name.as_str();
        let found = ctx
            .sources
            .secrets
            .get(&meta.namespace, name, &meta.uid)
            .await;
        let secret = match found {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                problems.push(format!(
                    "Unable to retrieve some image pull secrets ({name}); attempting to pull the image may not succeed."
                ));
                continue;
            }
            Err(e) => {
                problems.push(format!(
                    "Unable to retrieve image pull secret {name}: {e}; attempting to pull the image may not succeed."
                ));
                continue;
            }
        };
        let (key, legacy) = match secret.r#type.as_str() {
            DOCKER_CONFIG_JSON => (DOCKER_CONFIG_JSON_KEY, false),
            DOCKERCFG => (DOCKERCFG_KEY, true),
            other => {
                problems.push(format!(
                    "image pull secret {name} is of type {other:?}, not {DOCKER_CONFIG_JSON}: left out"
                ));
                continue;
            }
        };
        let Some(bytes) = secret.data.get(key) else {
            problems.push(format!(
                "image pull secret {name} has no {key} key: left out"
            ));
            continue;
        };
        match Keyring::parse(bytes, legacy, &format!("image pull secret {name}")) {
            Ok(more) => keyring = keyring.merge(&more),
            Err(e) => problems.push(format!("{e}: left out")),
        }
    }
    (keyring, problems)
}
