//! The settings of the cluster that node agents need and cannot be given by flag without
//! repeating the server's: published in the ConfigMap `skiff-system/kubelet-config`, as kubeadm
//! publishes the kubelet's and kube-proxy's configuration in ConfigMaps of `kube-system`.
//!
//! Keys written at every start, from the server's flags: `serviceCIDR` and `clusterCIDR` (the node
//! proxy's: service rules and the routes that keep both ranges on the node). Other keys of the
//! ConfigMap (`clusterDomain`, the DNS server's) are left as they are: [`publish`] merges.
//!
//! Must not: read the ConfigMap back for the server's own use (the flags are the truth here).

use std::collections::BTreeMap;
use std::sync::Arc;

use skiff_api::cluster_dns::{CONFIG_NAME, CONFIG_NAMESPACE};
use skiff_api::v1::{ConfigMap, ObjectMeta};

use super::ServerError;
use super::handler::Handler;
use crate::auth::Identity;
use crate::error::ApiError;
use crate::store::Store;

/// The key holding `--service-cidr`.
pub const SERVICE_CIDR_KEY: &str = "serviceCIDR";
/// The key holding `--cluster-cidr`.
pub const CLUSTER_CIDR_KEY: &str = "clusterCIDR";

/// Sets `keys` in `skiff-system/kubelet-config` (made if missing), keeping its other keys.
pub async fn publish(
    store: &Arc<dyn Store>,
    keys: BTreeMap<String, String>,
) -> Result<(), ServerError> {
    let handler = Handler::<ConfigMap>::new(store.clone());
    let bootstrap = |e: ApiError| {
        ServerError::Bootstrap(format!(
            "publishing ConfigMap {CONFIG_NAMESPACE}/{CONFIG_NAME}: {e}"
        ))
    };
    // A concurrent writer (another server on the store) makes an update conflict: read again.
    for _ in 0..5 {
        match handler
            .get(&Identity::Admin, CONFIG_NAMESPACE, CONFIG_NAME)
            .await
        {
            Ok(mut config) => {
                if keys.iter().all(|(k, v)| config.data.get(k) == Some(v)) {
                    return Ok(());
                }
                config.data.extend(keys.clone());
                match handler.update(&Identity::Admin, config).await {
                    Ok(_) => return Ok(()),
                    Err(ApiError::Conflict { .. }) => continue,
                    Err(e) => return Err(bootstrap(e)),
                }
            }
            Err(ApiError::NotFound { .. }) => {
                let config = ConfigMap {
                    metadata: Some(ObjectMeta {
                        namespace: CONFIG_NAMESPACE.to_string(),
                        name: CONFIG_NAME.to_string(),
                        ..Default::default()
                    }),
                    data: keys.clone().into_iter().collect(),
                    ..Default::default()
                };
                match handler.create(&Identity::Admin, config).await {
                    Ok(_) => return Ok(()),
                    Err(ApiError::AlreadyExists { .. }) => continue,
                    Err(e) => return Err(bootstrap(e)),
                }
            }
            Err(e) => return Err(bootstrap(e)),
        }
    }
    Err(ServerError::Bootstrap(format!(
        "publishing ConfigMap {CONFIG_NAMESPACE}/{CONFIG_NAME}: it kept changing while being written"
    )))
}
