//! What the router routes by, kept current: a list+watch of every Ingress and IngressClass (the
//! catalog's [`Reflector`]), a watch of each TLS Secret the served Ingresses name (one object
//! each, never a namespace's Secrets), and the [`Routing`] state rebuilt from them on every change.
//!
//! Must not: route requests or write anything.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use skiff_api::ResourceExt;
use skiff_api::client::{Api, ListParams, Transport};
use skiff_api::v1::{Ingress, IngressClass, Secret};
use skiff_api::validation::{INGRESS_CONTROLLER, served_by};
use tokio::sync::watch;
use tokio_stream::StreamExt;

use super::routes::RouteTable;
use super::tls::{CertNames, Certificates, SecretRef, certified_key};
use crate::catalog::Reflector;

/// Pause before a broken Secret watch lists again.
const RELIST: Duration = Duration::from_secs(1);

/// One routing state: the table and the certificates, swapped whole on every change.
#[derive(Debug, Default)]
pub struct Routing {
    pub table: RouteTable,
}

/// The Ingresses skiff's router serves, among `ingresses`.
pub fn served<'a>(
    ingresses: &'a [Arc<Ingress>],
    classes: &[Arc<IngressClass>],
) -> Vec<&'a Ingress> {
    ingresses
        .iter()
        .map(|i| &**i)
        .filter(|i| served_by(i, classes.iter().map(|c| &**c), INGRESS_CONTROLLER))
        .collect()
}

/// A watched Secret: its task and latest state (`None`: absent or not yet seen).
struct Followed {
    secret: watch::Receiver<Option<Secret>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Followed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps the routing state and the certificates current until aborted.
pub struct Sources {
    ingresses: Arc<Reflector<Ingress>>,
    classes: Arc<Reflector<IngressClass>>,
    changes: Arc<watch::Sender<u64>>,
    transport: Transport,
    secrets: HashMap<SecretRef, Followed>,
    /// Parsed keys by Secret, with the resourceVersion they were parsed from.
    parsed: HashMap<SecretRef, (String, Arc<rustls::sign::CertifiedKey>)>,
}

impl Sources {
    pub fn new(transport: Transport) -> Self {
        let changes = Arc::new(watch::channel(0).0);
        Self {
            ingresses: Arc::new(Reflector::new(changes.clone())),
            classes: Arc::new(Reflector::new(changes.clone())),
            changes,
            transport,
            secrets: HashMap::new(),
            parsed: HashMap::new(),
        }
    }

    /// Follows the API, publishing a new state into `routing` and `certificates` after every
    /// change (bursts coalesce: a rebuild reads the latest of everything).
    pub async fn run(
        mut self,
        routing: watch::Sender<Arc<Routing>>,
        certificates: watch::Sender<Arc<Certificates>>,
    ) {
        let mut changed = self.changes.subscribe();
        let ingresses = tokio::spawn(self.ingresses.clone().run(self.transport.clone()));
        let classes = tokio::spawn(self.classes.clone().run(self.transport.clone()));
        let _abort = AbortOnDrop(vec![ingresses, classes]);
        self.ingresses.synced().await;
        self.classes.synced().await;
        loop {
            changed.mark_unchanged();
            let (table, certs) = self.rebuild();
            routing.send_replace(Arc::new(Routing { table }));
            certificates.send_replace(Arc::new(certs));
            if changed.changed().await.is_err() {
                return;
            }
            // Let a burst (an apply of several objects) land before rebuilding.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn rebuild(&mut self) -> (RouteTable, Certificates) {
        let ingresses = self.ingresses.all();
        let classes = self.classes.all();
        let served = served(&ingresses, &classes);
        let table = RouteTable::build(served.iter().copied());
        let names = CertNames::build(served.iter().copied());
        let wanted = names.secrets();
        self.follow(&wanted);
        let mut keys = HashMap::new();
        for secret_ref in &wanted {
            let Some(secret) = self
                .secrets
                .get(secret_ref)
                .and_then(|f| f.secret.borrow().clone())
            else {
                continue;
            };
            let version = secret.meta().resource_version.clone();
            if let Some((v, key)) = self.parsed.get(secret_ref)
                && *v == version
            {
                keys.insert(secret_ref.clone(), key.clone());
                continue;
            }
            match certified_key(&secret) {
                Ok(key) => {
                    let key = Arc::new(key);
                    self.parsed
                        .insert(secret_ref.clone(), (version, key.clone()));
                    keys.insert(secret_ref.clone(), key);
                }
                Err(e) => {
                    self.parsed.remove(secret_ref);
                    tracing::warn!(
                        secret = %format!("{}/{}", secret_ref.0, secret_ref.1),
                        error = %e,
                        "an Ingress's TLS secret is unusable: its hosts get the default certificate"
                    );
                }
            }
        }
        self.parsed.retain(|k, _| wanted.contains(k));
        (table, Certificates { names, keys })
    }

    /// Watches exactly the Secrets in `wanted`.
    fn follow(&mut self, wanted: &BTreeSet<SecretRef>) {
        self.secrets.retain(|k, _| wanted.contains(k));
        for secret_ref in wanted {
            if self.secrets.contains_key(secret_ref) {
                continue;
            }
            let (tx, rx) = watch::channel(None);
            let api: Api<Secret> = Api::new(self.transport.clone(), &secret_ref.0);
            let task = tokio::spawn(follow_secret(
                api,
                secret_ref.1.clone(),
                tx,
                self.changes.clone(),
            ));
            self.secrets
                .insert(secret_ref.clone(), Followed { secret: rx, task });
        }
    }
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Lists the one Secret, then follows its watch, bumping `changes` whenever it changes; lists
/// again whenever the watch breaks.
async fn follow_secret(
    api: Api<Secret>,
    name: String,
    tx: watch::Sender<Option<Secret>>,
    changes: Arc<watch::Sender<u64>>,
) {
    let params = ListParams::default().fields(&format!("metadata.name={name}"));
    let publish = |now: Option<Secret>| {
        if tx.send_if_modified(|known| {
            let differs = *known != now;
            *known = now;
            differs
        }) {
            changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    };
    loop {
        match api.list(params.clone()).await {
            Ok((objects, meta)) => {
                publish(objects.into_iter().find(|s| s.name() == name));
                if let Ok(mut stream) = api.watch(params.clone(), &meta.resource_version).await {
                    while let Some(Ok(event)) = stream.next().await {
                        publish((event.kind != "DELETED").then_some(event.object));
                    }
                }
            }
            Err(status) => {
                tracing::debug!(secret = %name, %status, "listing an ingress TLS secret")
            }
        }
        tokio::time::sleep(RELIST).await;
    }
}
