//! Every active namespace holds the ServiceAccount `default` (Kubernetes' ServiceAccounts
//! controller) and the ConfigMap `kube-root-ca.crt` with the cluster CA under `ca.crt`
//! (Kubernetes' root CA publisher), which pods' token volumes read. Deleted ones come back; a
//! ConfigMap whose CA is not the cluster's is put right.
//!
//! Must not: touch namespaces being deleted (the namespace controller empties them), or any
//! other ServiceAccount or ConfigMap.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use skiff_api::ResourceExt;
use skiff_api::v1::{ConfigMap, Namespace, ObjectMeta, ServiceAccount};

use super::informer::{self, Cache, Reconciler};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::registry::service_account::ROOT_CA_CONFIG_MAP;
use crate::registry::{Registry, parse_key, prefix};
use crate::store::{EventKind, KeyValue, Store};

/// The ServiceAccount every namespace has.
pub const DEFAULT_ACCOUNT: &str = "default";

/// Runs until aborted; `ca_pem` is the cluster CA certificate.
pub async fn run(store: Arc<dyn Store>, ca_pem: String) {
    let s = store.clone();
    informer::run_forever(
        "serviceaccounts",
        store,
        Duration::from_secs(60),
        move || Controller::new(s.clone(), ca_pem.clone()),
    )
    .await;
}

struct Controller {
    ca_pem: String,
    namespaces: Cache<Namespace>,
    /// Namespaces whose `default` ServiceAccount exists.
    accounts: BTreeSet<String>,
    /// Namespace → the CA its `kube-root-ca.crt` holds.
    roots: std::collections::BTreeMap<String, String>,
    sa_api: Registry<ServiceAccount>,
    cm_api: Registry<ConfigMap>,
}

impl Controller {
    fn new(store: Arc<dyn Store>, ca_pem: String) -> Self {
        Self {
            ca_pem,
            namespaces: Cache::default(),
            accounts: BTreeSet::new(),
            roots: Default::default(),
            sa_api: Registry::new(store.clone()),
            cm_api: Registry::new(store),
        }
    }

    fn meta(namespace: &str, name: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            name: name.into(),
            namespace: namespace.into(),
            ..Default::default()
        })
    }

    async fn ensure_account(&mut self, ns: &str) -> Result<(), ApiError> {
        if self.accounts.contains(ns) {
            return Ok(());
        }
        let sa = ServiceAccount {
            metadata: Self::meta(ns, DEFAULT_ACCOUNT),
            ..Default::default()
        };
        match self.sa_api.create(&Identity::Admin, sa).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {
                self.accounts.insert(ns.to_string());
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn ensure_root_ca(&mut self, ns: &str) -> Result<(), ApiError> {
        if self.roots.get(ns) == Some(&self.ca_pem) {
            return Ok(());
        }
        let data = [("ca.crt".to_string(), self.ca_pem.clone())].into();
        match self.cm_api.get(ns, ROOT_CA_CONFIG_MAP).await {
            Ok(mut cm) => {
                cm.data = data;
                self.cm_api.update(&Identity::Admin, cm).await?;
            }
            Err(ApiError::NotFound { .. }) => {
                let cm = ConfigMap {
                    metadata: Self::meta(ns, ROOT_CA_CONFIG_MAP),
                    data,
                    ..Default::default()
                };
                match self.cm_api.create(&Identity::Admin, cm).await {
                    Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        self.roots.insert(ns.to_string(), self.ca_pem.clone());
        Ok(())
    }
}

#[async_trait::async_trait]
impl Reconciler for Controller {
    fn prefixes(&self) -> Vec<String> {
        vec![
            prefix::<Namespace>(""),
            prefix::<ServiceAccount>(""),
            prefix::<ConfigMap>(""),
        ]
    }

    fn observe(&mut self, kind: EventKind, kv: &KeyValue, dirty: &mut BTreeSet<String>) {
        if Cache::<Namespace>::owns(&kv.key) {
            self.namespaces.apply(kind, kv);
            dirty.insert(kv.key.clone());
            return;
        }
        if let Some((ns, name)) = parse_key::<ServiceAccount>(&kv.key) {
            if name == DEFAULT_ACCOUNT {
                if kind == EventKind::Delete {
                    self.accounts.remove(&ns);
                } else {
                    self.accounts.insert(ns.clone());
                }
                dirty.insert(prefix::<Namespace>("") + &ns);
            }
            return;
        }
        if let Some((ns, name)) = parse_key::<ConfigMap>(&kv.key)
            && name == ROOT_CA_CONFIG_MAP
        {
            match (kind, crate::registry::decode::<ConfigMap>(kv)) {
                (EventKind::Put, Ok(cm)) => {
                    let ca = cm.data.get("ca.crt").cloned().unwrap_or_default();
                    self.roots.insert(ns.clone(), ca);
                }
                _ => {
                    self.roots.remove(&ns);
                }
            }
            dirty.insert(prefix::<Namespace>("") + &ns);
        }
    }

    fn all_keys(&self) -> Vec<String> {
        self.namespaces.keys().cloned().collect()
    }

    async fn reconcile(&mut self, key: &str) -> Result<Option<Duration>, ApiError> {
        let Some(ns) = self.namespaces.get_key(key).cloned() else {
            return Ok(None);
        };
        if ns.meta().deletion_timestamp.is_some() {
            return Ok(None);
        }
        let name = ns.name().to_string();
        self.ensure_account(&name).await?;
        self.ensure_root_ca(&name).await?;
        Ok(None)
    }
}
