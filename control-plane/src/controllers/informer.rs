//! What every controller stands on: typed caches fed by list + watch, and a driver that turns
//! changes into keys to reconcile (the informer and work-queue habit of Kubernetes).
//!
//! A controller implements [`Reconciler`]: `observe` takes each stored change into its caches and
//! names the keys it affects; `reconcile` brings one key to its desired state. [`drive`] lists
//! every prefix, observes the items, reconciles every key, then follows the merged watches:
//! bursts are coalesced, a failed key is retried after a short delay, a key may ask to be looked at
//! again later (`Ok(Some(after))`), and everything is reconciled again every `resync`. Nothing
//! depends on having seen an event: a restarted controller converges from the lists alone.
//!
//! Must not: write to the store (controllers do, in `reconcile`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use skiff_api::{Resource, ResourceExt};
use tokio::time::Instant;
use tokio_stream::StreamExt;

use crate::error::ApiError;
use crate::registry::{decode, key};
use crate::store::{EventKind, KeyValue, Store, StoreError};

/// How long a key whose reconcile failed waits before the next try.
const RETRY: Duration = Duration::from_millis(250);

/// How long a burst of events may gather before keys are reconciled (an event less than this after
/// the last round is taken as part of a burst).
const COALESCE: Duration = Duration::from_millis(5);

/// Objects of one kind by store key. Each is kept behind an `Arc`, so that [`Cache::apply`] hands
/// the new version to its caller without copying it (a Pod is some thirty allocations).
#[derive(Debug)]
pub struct Cache<K> {
    objects: HashMap<String, Arc<K>>,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Self {
            objects: HashMap::new(),
        }
    }
}

impl<K: Resource> Cache<K> {
    /// Does this store key hold an object of this kind?
    pub fn owns(kv_key: &str) -> bool {
        crate::registry::owns::<K>(kv_key)
    }

    /// Takes a change in; returns (what was there, what is there now).
    pub fn apply(&mut self, kind: EventKind, kv: &KeyValue) -> (Option<Arc<K>>, Option<Arc<K>>) {
        match kind {
            // Our own write already put a newer version here.
            EventKind::Put if self.newer_than(&kv.key, kv.mod_revision) => (None, None),
            EventKind::Put => match decode::<K>(kv) {
                Ok(obj) => {
                    let obj = Arc::new(obj);
                    let old = self.objects.insert(kv.key.clone(), obj.clone());
                    (old, Some(obj))
                }
                Err(e) => {
                    tracing::warn!(key = %kv.key, error = %e, "skipping undecodable object");
                    (self.objects.remove(&kv.key), None)
                }
            },
            EventKind::Delete => (self.objects.remove(&kv.key), None),
        }
    }

    fn newer_than(&self, store_key: &str, revision: u64) -> bool {
        self.objects.get(store_key).is_some_and(|o| {
            o.meta()
                .resource_version
                .parse::<u64>()
                .is_ok_and(|r| r > revision)
        })
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<&K> {
        self.objects.get(&key::<K>(namespace, name)).map(|o| &**o)
    }

    pub fn get_key(&self, store_key: &str) -> Option<&K> {
        self.objects.get(store_key).map(|o| &**o)
    }

    /// Records the result of this controller's own write, so that a reconcile before its watch
    /// event arrives sees it (no second create of the same pod).
    pub fn remember(&mut self, obj: K) {
        self.objects
            .insert(key::<K>(obj.namespace(), obj.name()), Arc::new(obj));
    }

    pub fn forget(&mut self, namespace: &str, name: &str) {
        self.objects.remove(&key::<K>(namespace, name));
    }

    pub fn values(&self) -> impl Iterator<Item = &K> {
        self.objects.values().map(|o| &**o)
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.objects.keys()
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// The uid of an object's managing controller (the ownerReference with `controller: true`) of
/// the given kind.
pub fn controller_of<'a, K: Resource>(obj: &'a K, owner_kind: &str) -> Option<&'a str> {
    obj.meta()
        .owner_references
        .iter()
        .find(|o| o.kind == owner_kind && o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

/// One controller over the driver.
#[async_trait::async_trait]
pub trait Reconciler: Send {
    /// The store prefixes it follows (`/pods/`, ...).
    fn prefixes(&self) -> Vec<String>;

    /// Takes one change into the caches and adds the keys it affects to `dirty`.
    fn observe(&mut self, kind: EventKind, kv: &KeyValue, dirty: &mut BTreeSet<String>);

    /// Every key a resync reconciles.
    fn all_keys(&self) -> Vec<String>;

    /// Brings one key to its desired state. `Ok(Some(d))` asks to be reconciled again after `d`
    /// (a pod that becomes available once minReadySeconds pass, a heartbeat that may expire).
    async fn reconcile(&mut self, key: &str) -> Result<Option<Duration>, ApiError>;
}

/// Lists, then follows the watches until one fails; the caller relists (with fresh caches).
pub async fn drive<R: Reconciler>(
    store: &Arc<dyn Store>,
    r: &mut R,
    resync: Duration,
) -> Result<(), StoreError> {
    drive_named("unnamed", store, r, resync).await
}

/// [`drive`], its work queue's metrics under `name` (`crate::metrics::workqueue`).
pub async fn drive_named<R: Reconciler>(
    name: &'static str,
    store: &Arc<dyn Store>,
    r: &mut R,
    resync: Duration,
) -> Result<(), StoreError> {
    let queue = crate::metrics::workqueue::Queue::named(name);
    let mut streams = Vec::new();
    let mut dirty = BTreeSet::new();
    for prefix in r.prefixes() {
        let mut after: Option<String> = None;
        let revision = loop {
            let page = store.list(&prefix, after.as_deref(), 1000).await?;
            for kv in &page.items {
                r.observe(EventKind::Put, kv, &mut dirty);
            }
            after = page.items.last().map(|kv| kv.key.clone());
            if !page.more {
                break page.revision;
            }
        };
        streams.push(store.watch(&prefix, revision).await?);
    }
    let mut events = futures::stream::select_all(streams);
    dirty.extend(r.all_keys());
    // Keys due again at a time: retries and requested requeues.
    let mut later: BTreeMap<Instant, BTreeSet<String>> = BTreeMap::new();
    let mut next_resync = Instant::now() + resync;
    loop {
        let now = Instant::now();
        while let Some(entry) = later.first_entry() {
            if *entry.key() > now {
                break;
            }
            dirty.extend(entry.remove());
        }
        if now >= next_resync {
            dirty.extend(r.all_keys());
            next_resync = now + resync;
        }
        let round = std::mem::take(&mut dirty);
        let mut waiting = round.len();
        queue.added(waiting);
        for key in round {
            queue.depth(waiting);
            let started = std::time::Instant::now();
            let result = r.reconcile(&key).await;
            queue.done(started.elapsed(), result.is_err());
            waiting -= 1;
            match result {
                Ok(None) => {}
                Ok(Some(after)) => {
                    later.entry(now + after).or_default().insert(key);
                }
                Err(e) => {
                    tracing::debug!(%key, error = %e, "reconcile failed; retrying");
                    later.entry(now + RETRY).or_default().insert(key);
                }
            }
        }
        queue.depth(0);
        let last_round = Instant::now();
        let wake = later
            .first_key_value()
            .map_or(next_resync, |(at, _)| (*at).min(next_resync));
        let event = tokio::select! {
            e = events.next() => e,
            _ = tokio::time::sleep_until(wake) => continue,
        };
        let Some(event) = event else {
            return Ok(());
        };
        let event = event?;
        r.observe(event.kind, &event.kv, &mut dirty);
        // An event after a quiet spell is reconciled at once (a scale from zero waits on three
        // controllers in a row); one that follows the last round closely is part of a burst, and
        // gathering the rest of it first turns a thousand rounds into a few.
        if last_round.elapsed() < COALESCE {
            tokio::time::sleep(COALESCE).await;
        }
        while let Some(Some(next)) = events.next().now_or_never() {
            let event = next?;
            r.observe(event.kind, &event.kv, &mut dirty);
        }
    }
}

/// Runs a controller forever: a fresh reconciler and a relist after any store error.
pub async fn run_forever<R: Reconciler>(
    name: &'static str,
    store: Arc<dyn Store>,
    resync: Duration,
    make: impl Fn() -> R + Send,
) {
    loop {
        let mut r = make();
        if let Err(e) = drive_named(name, &store, &mut r, resync).await {
            tracing::warn!(controller = name, error = %e, "relisting");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
