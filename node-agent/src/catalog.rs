//! The node's view of every Service and Endpoints in the cluster (kube-proxy's and CoreDNS'
//! informers): one list+watch per kind, shared by the service proxy, the DNS server, the ingress
//! router and the service env vars of containers.
//!
//! A [`Reflector`] keeps one kind's objects in a concurrent map, replaced wholesale by a list and
//! then kept by the watch that follows it; a broken watch lists again after a pause. Every change
//! bumps a counter that consumers [`Catalog::subscribe`] to, so each of them re-reads what it
//! needs and coalesces bursts as it likes (level-triggered: a consumer that missed a bump reads
//! the same latest state).
//!
//! Must not: write anything, or interpret the objects (which endpoint is ready, which port a
//! name means): that is each consumer's business.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use skiff_api::ResourceExt;
use skiff_api::client::{Api, ListParams, ResourceClient, Transport};
use skiff_api::v1::{Endpoints, Service};
use tokio::sync::watch;
use tokio_stream::StreamExt;

/// Pause before a broken watch lists again.
const RELIST: Duration = Duration::from_secs(1);
/// Objects per page of a list.
const PAGE: i32 = 500;

/// `(namespace, name)`.
type Key = (String, String);

/// One kind's objects across all namespaces, kept by list+watch.
pub struct Reflector<K> {
    objects: DashMap<Key, Arc<K>>,
    /// Bumped on every change; shared with the other reflectors of a [`Catalog`].
    changes: Arc<watch::Sender<u64>>,
    /// Whether the first list is in.
    synced: watch::Sender<bool>,
}

impl<K> Reflector<K>
where
    K: ResourceClient + Clone + PartialEq + Send + Sync + 'static,
{
    /// A reflector that bumps `changes` on every change; empty and unsynced until [`Self::run`]
    /// (or [`Self::fill`]) puts objects in it.
    pub fn new(changes: Arc<watch::Sender<u64>>) -> Self {
        Self {
            objects: DashMap::new(),
            changes,
            synced: watch::channel(false).0,
        }
    }

    /// Lists every object of the kind, then follows the watch; lists again whenever it breaks.
    /// Runs until the task is aborted.
    pub async fn run(self: Arc<Self>, transport: Transport) {
        let api: Api<K> = Api::new(transport, "");
        loop {
            match api.list_paged(ListParams::default(), PAGE).await {
                Ok((objects, meta)) => {
                    self.fill(objects);
                    match api
                        .watch(ListParams::default(), &meta.resource_version)
                        .await
                    {
                        Ok(mut stream) => {
                            while let Some(Ok(event)) = stream.next().await {
                                self.apply(&event.kind, event.object);
                            }
                        }
                        Err(status) => {
                            tracing::debug!(kind = K::KIND, %status, "catalog watch refused")
                        }
                    }
                }
                Err(status) => tracing::warn!(kind = K::KIND, %status, "catalog list failed"),
            }
            tokio::time::sleep(RELIST).await;
        }
    }

    /// Replaces every object with `objects` (a list's answer) and marks the kind synced.
    pub fn fill(&self, objects: Vec<K>) {
        let mut changed = false;
        let listed: std::collections::HashSet<Key> = objects.iter().map(key_of).collect();
        self.objects.retain(|key, _| {
            let keep = listed.contains(key);
            changed |= !keep;
            keep
        });
        for object in objects {
            changed |= self.put(object);
        }
        self.synced.send_replace(true);
        if changed {
            self.bump();
        }
    }

    /// One watch event: `ADDED`, `MODIFIED` or `DELETED`.
    fn apply(&self, kind: &str, object: K) {
        let changed = if kind == "DELETED" {
            self.objects.remove(&key_of(&object)).is_some()
        } else {
            self.put(object)
        };
        if changed {
            self.bump();
        }
    }

    /// Stores `object`; whether it differs from what was there.
    fn put(&self, object: K) -> bool {
        let key = key_of(&object);
        if self.objects.get(&key).is_some_and(|old| **old == object) {
            return false;
        }
        self.objects.insert(key, Arc::new(object));
        true
    }

    fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The object `namespace/name`, if it exists.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.objects
            .get(&(namespace.to_string(), name.to_string()))
            .map(|o| o.clone())
    }

    /// Every object, in no particular order.
    pub fn all(&self) -> Vec<Arc<K>> {
        self.objects.iter().map(|o| o.value().clone()).collect()
    }

    /// Returns once the first list is in.
    pub async fn synced(&self) {
        let mut synced = self.synced.subscribe();
        // The sender lives as long as `self`: the wait ends only by becoming true.
        let _ = synced.wait_for(|s| *s).await;
    }
}

fn key_of<K: ResourceExt>(object: &K) -> Key {
    (object.namespace().to_string(), object.name().to_string())
}

/// Every Service and Endpoints of the cluster, as this node last saw them.
pub struct Catalog {
    services: Arc<Reflector<Service>>,
    endpoints: Arc<Reflector<Endpoints>>,
    changes: Arc<watch::Sender<u64>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Catalog {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Catalog {
    /// Starts the list+watch of Services and Endpoints over `transport`.
    pub fn start(transport: Transport) -> Arc<Self> {
        let mut catalog = Self::empty();
        catalog.tasks = vec![
            tokio::spawn(catalog.services.clone().run(transport.clone())),
            tokio::spawn(catalog.endpoints.clone().run(transport)),
        ];
        Arc::new(catalog)
    }

    /// A catalog holding these objects and nothing else, synced (for tests of its consumers).
    pub fn from_objects(services: Vec<Service>, endpoints: Vec<Endpoints>) -> Arc<Self> {
        let catalog = Self::empty();
        catalog.services.fill(services);
        catalog.endpoints.fill(endpoints);
        Arc::new(catalog)
    }

    fn empty() -> Self {
        let changes = Arc::new(watch::channel(0).0);
        Self {
            services: Arc::new(Reflector::new(changes.clone())),
            endpoints: Arc::new(Reflector::new(changes.clone())),
            changes,
            tasks: Vec::new(),
        }
    }

    /// Returns once both kinds were listed once.
    pub async fn synced(&self) {
        self.services.synced().await;
        self.endpoints.synced().await;
    }

    /// Every Service, all namespaces.
    pub fn services(&self) -> Vec<Arc<Service>> {
        self.services.all()
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services.get(namespace, name)
    }

    pub fn endpoints(&self, namespace: &str, name: &str) -> Option<Arc<Endpoints>> {
        self.endpoints.get(namespace, name)
    }

    /// Every Endpoints, all namespaces.
    pub fn all_endpoints(&self) -> Vec<Arc<Endpoints>> {
        self.endpoints.all()
    }

    /// Replaces every Endpoints (as a relist would), for tests of consumers.
    #[cfg(test)]
    pub(crate) fn replace_endpoints(&self, endpoints: Vec<Endpoints>) {
        self.endpoints.fill(endpoints);
    }

    /// A receiver whose value changes whenever a Service or an Endpoints does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// Services for the unit tests of the catalog's consumers.
#[cfg(test)]
pub(crate) mod fixtures {
    use skiff_api::v1::{ObjectMeta, Service, ServicePort, ServiceSpec};

    /// Service `ns/name` with cluster IP `ip` and `ports` as (name, port, protocol).
    pub fn service(ns: &str, name: &str, ip: &str, ports: &[(&str, i32, &str)]) -> Service {
        Service {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: ns.into(),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                cluster_ip: ip.into(),
                cluster_ips: vec![ip.into()],
                ports: ports
                    .iter()
                    .map(|(n, p, proto)| ServicePort {
                        name: n.to_string(),
                        port: *p,
                        protocol: proto.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(namespace: &str, name: &str, ip: &str) -> Service {
        fixtures::service(namespace, name, ip, &[])
    }

    #[tokio::test]
    async fn a_list_replaces_what_was_known_and_only_changes_bump() {
        let catalog = Catalog::from_objects(
            vec![
                service("default", "web", "10.96.0.10"),
                service("prod", "db", "10.96.0.11"),
            ],
            vec![],
        );
        catalog.synced().await;
        let mut changes = catalog.subscribe();
        changes.mark_unchanged();
        assert_eq!(catalog.services().len(), 2);
        assert_eq!(
            catalog
                .service("prod", "db")
                .unwrap()
                .spec
                .as_ref()
                .unwrap()
                .cluster_ip,
            "10.96.0.11"
        );

        // The same objects again: nothing changed.
        catalog.services.fill(vec![
            service("default", "web", "10.96.0.10"),
            service("prod", "db", "10.96.0.11"),
        ]);
        assert!(!changes.has_changed().unwrap());

        // A relist without `db` and with a new `web`: both seen, one bump to read them by.
        catalog
            .services
            .fill(vec![service("default", "web", "10.96.0.12")]);
        assert!(changes.has_changed().unwrap());
        assert!(catalog.service("prod", "db").is_none());
        assert_eq!(catalog.services().len(), 1);
    }

    #[tokio::test]
    async fn watch_events_add_modify_and_delete() {
        let catalog = Catalog::from_objects(vec![], vec![]);
        let mut changes = catalog.subscribe();
        changes.mark_unchanged();
        catalog
            .services
            .apply("ADDED", service("default", "web", "10.96.0.10"));
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        catalog
            .services
            .apply("MODIFIED", service("default", "web", "10.96.0.10"));
        assert!(
            !changes.has_changed().unwrap(),
            "an identical object is no change"
        );
        catalog
            .services
            .apply("DELETED", service("default", "web", "10.96.0.10"));
        assert!(changes.has_changed().unwrap());
        assert!(catalog.services().is_empty());
    }
}
