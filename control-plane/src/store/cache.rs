//! The watch cache: an API server's reads and watches served from memory, kept by one watch of
//! the store (Kubernetes' cacher, with its consistent reads from cache).
//!
//! [`WatchCache::start`] reads every key once at one revision ([`Feed::snapshot`]) and then
//! follows every change after it ([`Feed::follow`]): on etcd that is one watch per API server
//! (`cache_etcd.rs`), however many clients list and watch through it. The cache holds:
//! - every key's current value (a `BTreeMap`, so lists are key-ordered ranges and pages);
//! - a ring of the newest events ([`CacheOptions::events`]), from which watches are served and
//!   resumed; a watch from before the ring is handed to the store itself, which serves it from
//!   its own history or answers `Compacted` (410 Gone at the API);
//! - the revision it has reached.
//!
//! Reads are consistent, as Kubernetes' consistent reads from cache: a `get` or `list` first
//! learns the store's current revision (one quorum read, shared by every read that arrived
//! before it was sent: [`Quorum`]), waits until the cache has applied it, then answers from
//! memory. A write acknowledged by any API server is therefore seen by the next read on every
//! server. Should the cache not catch up within [`CacheOptions::catch_up`], the read goes to the
//! store instead (and says so in the log).
//!
//! One API request is one operation: inside [`session`] (the registry's create, update and
//! delete), only the first read asks for the store's revision; the reads after it wait for that
//! revision or the session's own writes', whichever is newer. Every write acknowledged before the
//! request began is still seen (the revision was read after it began), so the request stays
//! linearizable, and admission's reads cost one round trip instead of one each (Kubernetes'
//! admission reads informers, which may be stale; these may not). A refused write (a conflict)
//! forgets the revision, so that a retry in the same request reads the store's newest.
//!
//! A list that names a `resourceVersion` (Kubernetes' `0`, any, or `N` with
//! `resourceVersionMatch=NotOlderThan`) needs no quorum read: [`not_older_than`] waits only for
//! the cache to hold that revision, as Kubernetes' cacher serves such lists.
//!
//! Writes are not cached: they go to the store (the writer handle: on etcd a transaction, fenced
//! for the leader's controllers via [`WatchCache::writing_to`]) and come back through the feed.
//! When the feed's revision has been compacted away (the cache fell behind the store's
//! history), the cache reads everything again and the watches it can no longer continue are
//! handed to the store, which tells their clients to list again.
//!
//! Must not: write to the store on its own, answer a read before it has the store's current
//! revision, or skip or repeat an event in a watch.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::{Stream, StreamExt};

use super::{Event, EventKind, EventStream, KeyValue, ListPage, Revision, Store, StoreError};

tokio::task_local! {
    /// The revision the reads of the current request wait for (0: not read yet).
    static SESSION: Cell<Revision>;
}

/// Runs `request` (one API operation) as one read session: its reads through a watch cache
/// share the first one's revision (or newer). Without a watch cache it changes nothing.
pub async fn session<F: std::future::Future>(request: F) -> F::Output {
    SESSION.scope(Cell::new(0), request).await
}

/// Runs `reads` (a list with a `resourceVersion`, Kubernetes' semantics) as a read session that
/// already knows the revision it needs: through a watch cache its reads wait until the cache has
/// `revision` and answer from memory, without asking the store for its current revision (one
/// quorum read saved). `resourceVersion=0` ("any") is revision 1: whatever the cache holds.
/// Should the cache not reach `revision` within [`CacheOptions::catch_up`], the store answers
/// (at its newest revision, which the caller checks: the registry refuses a list still older than
/// asked, 504 `ResourceVersionTooLarge` as Kubernetes). Without a watch cache it changes nothing.
pub async fn not_older_than<F: std::future::Future>(revision: Revision, reads: F) -> F::Output {
    SESSION.scope(Cell::new(revision.max(1)), reads).await
}

/// Records what a write of the current session means for its later reads.
fn after_write<T>(result: &Result<T, StoreError>, revision: impl Fn(&T) -> Revision) {
    let _outside_a_session = SESSION.try_with(|known| match result {
        Ok(v) => known.set(known.get().max(revision(v))),
        Err(_) => known.set(0),
    });
}

/// The cache's sizes and patience.
#[derive(Debug, Clone, Copy)]
pub struct CacheOptions {
    /// How many of the newest events the ring keeps for watches (older ones: the store's own).
    pub events: usize,
    /// How long a read waits for the cache to reach the store's revision before reading the
    /// store itself.
    pub catch_up: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            events: 10_000,
            catch_up: Duration::from_secs(3),
        }
    }
}

/// One step of a feed: the events it brings, in revision order, and the revision the store has
/// reached with them (past the events when revisions went to keys outside the store's data).
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub events: Vec<Event>,
    pub revision: Revision,
}

pub type ChangeStream = Pin<Box<dyn Stream<Item = Result<Change, StoreError>> + Send>>;

/// Where a cache's contents come from.
#[async_trait::async_trait]
pub trait Feed: Send + Sync + 'static {
    /// Every key of the store, read at one revision (`revision` of the page).
    async fn snapshot(&self) -> Result<ListPage, StoreError>;

    /// Every change after revision `after`, in order, each once, and every revision the store
    /// reaches; `Compacted` (at once or on the stream) when `after` is older than its history.
    async fn follow(&self, after: Revision) -> Result<ChangeStream, StoreError>;
}

/// Any store as the feed of its own keys: right for a store whose every revision is a write to
/// one of its keys (the embedded store; not etcd, where other keys share the revision counter).
pub struct StoreFeed(pub Arc<dyn Store>);

#[async_trait::async_trait]
impl Feed for StoreFeed {
    async fn snapshot(&self) -> Result<ListPage, StoreError> {
        self.0.list("/", None, 0).await
    }

    async fn follow(&self, after: Revision) -> Result<ChangeStream, StoreError> {
        let events = self.0.watch("/", after).await?;
        Ok(Box::pin(events.map(|e| {
            e.map(|event| Change {
                revision: event.revision(),
                events: vec![event],
            })
        })))
    }
}

/// What the cache holds, under one lock so that a read sees one revision.
struct State {
    objects: BTreeMap<String, KeyValue>,
    /// Every change up to here is applied.
    revision: Revision,
    /// The newest events, oldest first.
    events: VecDeque<Arc<Event>>,
    /// The ring holds every event after this revision.
    floor: Revision,
}

impl State {
    fn new(page: ListPage) -> Self {
        Self {
            objects: page
                .items
                .into_iter()
                .map(|kv| (kv.key.clone(), kv))
                .collect(),
            revision: page.revision,
            events: VecDeque::new(),
            floor: page.revision,
        }
    }

    fn apply(&mut self, change: Change, capacity: usize) {
        for event in change.events {
            if event.revision() <= self.revision {
                continue; // already applied (a resumed feed may repeat its last revision)
            }
            match event.kind {
                EventKind::Put => {
                    self.objects.insert(event.kv.key.clone(), event.kv.clone());
                }
                EventKind::Delete => {
                    self.objects.remove(&event.kv.key);
                }
            }
            self.events.push_back(Arc::new(event));
            while self.events.len() > capacity.max(1) {
                if let Some(old) = self.events.pop_front() {
                    self.floor = old.revision();
                }
            }
        }
        let last = self.events.back().map_or(0, |e| e.revision());
        self.revision = self.revision.max(change.revision).max(last);
    }

    fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> ListPage {
        let start = match start_after {
            Some(after) => Bound::Excluded(after.to_string()),
            None => Bound::Included(prefix.to_string()),
        };
        let mut matching = self
            .objects
            .range::<String, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv);
        let items: Vec<KeyValue> = match limit {
            0 => matching.by_ref().cloned().collect(),
            n => matching.by_ref().take(n).cloned().collect(),
        };
        ListPage {
            items,
            revision: self.revision,
            more: matching.next().is_some(),
        }
    }

    /// The events under `prefix` after `last` (at most about `max`, whole revisions), and the
    /// revision the caller has then seen; None when some are no longer in the ring.
    fn events_after(
        &self,
        prefix: &str,
        last: Revision,
        max: usize,
    ) -> Option<(Vec<Arc<Event>>, Revision)> {
        if last < self.floor {
            return None;
        }
        let start = self.events.partition_point(|e| e.revision() <= last);
        let mut out = Vec::new();
        let mut seen = last.max(self.revision);
        for e in self.events.range(start..) {
            if out.len() >= max
                && out
                    .last()
                    .is_some_and(|p: &Arc<Event>| p.revision() < e.revision())
            {
                seen = out.last().map_or(last, |p| p.revision());
                break;
            }
            if e.kv.key.starts_with(prefix) {
                out.push(e.clone());
            }
        }
        Some((out, seen))
    }
}

/// The store's current revision, one request for every read that arrived before it was sent.
struct Quorum {
    demand: Notify,
    /// Requests sent so far.
    sent: AtomicU64,
    /// The number of the last request answered and its answer.
    answered: watch::Sender<(u64, Result<Revision, StoreError>)>,
}

impl Quorum {
    fn new() -> Self {
        Self {
            demand: Notify::new(),
            sent: AtomicU64::new(0),
            answered: watch::Sender::new((0, Ok(0))),
        }
    }

    /// The store's revision as read by a request sent after this call began.
    async fn revision(&self) -> Result<Revision, StoreError> {
        let mut answers = self.answered.subscribe();
        let before = self.sent.load(Ordering::SeqCst);
        self.demand.notify_one();
        loop {
            {
                let answer = answers.borrow_and_update();
                if answer.0 > before {
                    return answer.1.clone();
                }
            }
            if answers.changed().await.is_err() {
                return Err(StoreError::Backend("the watch cache has stopped".into()));
            }
        }
    }

    /// Sends one request at a time while reads wait for one.
    async fn serve(&self, source: &dyn Store) {
        loop {
            self.demand.notified().await;
            let n = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
            let answer = source.revision().await;
            let _previous = self.answered.send_replace((n, answer));
        }
    }
}

struct Shared {
    state: RwLock<State>,
    /// The revision the cache has reached, for reads and watches waiting on it.
    reached: watch::Sender<Revision>,
    /// The store: current revisions, reads the cache cannot serve in time, old watches.
    source: Arc<dyn Store>,
    quorum: Quorum,
    options: CacheOptions,
    /// Reads that went to the store because the cache was behind.
    fallbacks: AtomicU64,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while the lock was held left a consistent map (each step is one insert or
        // remove), so a poisoned lock is still read.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, change: Change) {
        let revision = {
            let mut state = self.write();
            state.apply(change, self.options.events);
            state.revision
        };
        self.reached.send_replace(revision);
    }

    fn replace(&self, page: ListPage) {
        let revision = page.revision;
        *self.write() = State::new(page);
        self.reached.send_replace(revision);
    }

    /// Whether the cache has the store's current revision (waiting for it a while).
    async fn consistent(&self) -> Result<bool, StoreError> {
        let known = SESSION.try_with(Cell::get).unwrap_or(0);
        let target = match known {
            0 => {
                let target = self.quorum.revision().await?;
                let _outside_a_session = SESSION.try_with(|s| s.set(target));
                target
            }
            known => known,
        };
        let mut reached = self.reached.subscribe();
        let caught_up =
            tokio::time::timeout(self.options.catch_up, reached.wait_for(|r| *r >= target)).await;
        if matches!(caught_up, Ok(Ok(_))) {
            return Ok(true);
        }
        if self
            .fallbacks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(100)
        {
            tracing::warn!(
                target_revision = target,
                cached = *self.reached.borrow(),
                "watch cache behind the store: reading the store"
            );
        }
        Ok(false)
    }

    /// Keeps the cache in step with the feed, reading everything again when it must.
    async fn follow(&self, feed: &dyn Feed) {
        let mut failures = 0u32;
        loop {
            let after = self.read().revision;
            let outcome = match feed.follow(after).await {
                Ok(mut changes) => loop {
                    match changes.next().await {
                        Some(Ok(change)) => {
                            failures = 0;
                            self.apply(change);
                        }
                        Some(Err(e)) => break Err(e),
                        None => break Ok(()),
                    }
                },
                Err(e) => Err(e),
            };
            match outcome {
                Err(StoreError::Compacted { requested, oldest }) => {
                    tracing::warn!(
                        requested,
                        oldest,
                        "watch cache fell behind the store's history: reading it again"
                    );
                    self.relist(feed).await;
                }
                Err(e) => {
                    failures += 1;
                    if failures % 50 == 1 {
                        tracing::warn!(error = %e, revision = after, "watch cache feed failed: resuming");
                    }
                }
                Ok(()) => {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn relist(&self, feed: &dyn Feed) {
        loop {
            match feed.snapshot().await {
                Ok(page) => return self.replace(page),
                Err(e) => {
                    tracing::warn!(error = %e, "watch cache: reading the store again failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Feeds `tx` with the events under `prefix` after `last`, from the ring while it has them,
    /// then from the store.
    async fn serve_watch(
        self: Arc<Self>,
        prefix: String,
        mut last: Revision,
        tx: mpsc::Sender<Result<Event, StoreError>>,
    ) {
        let mut reached = self.reached.subscribe();
        loop {
            reached.borrow_and_update();
            let step = self.read().events_after(&prefix, last, 256);
            let Some((events, seen)) = step else {
                return self.hand_over(&prefix, last, tx).await;
            };
            for e in &events {
                if tx.send(Ok(Event::clone(e))).await.is_err() {
                    return;
                }
            }
            last = seen;
            if !events.is_empty() {
                continue;
            }
            tokio::select! {
                changed = reached.changed() => if changed.is_err() { return },
                _ = tx.closed() => return,
            }
        }
    }

    /// A watch the ring can no longer serve continues on the store's own watch.
    async fn hand_over(
        &self,
        prefix: &str,
        last: Revision,
        tx: mpsc::Sender<Result<Event, StoreError>>,
    ) {
        let mut events = match self.source.watch(prefix, last).await {
            Ok(events) => events,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        loop {
            let next = tokio::select! {
                next = events.next() => next,
                _ = tx.closed() => return,
            };
            let Some(item) = next else { return };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return;
            }
        }
    }
}

/// Aborts the cache's tasks when the last handle goes.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// A [`Store`] whose reads and watches come from the cache and whose writes go to the store.
/// Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct WatchCache {
    shared: Arc<Shared>,
    writer: Arc<dyn Store>,
    _tasks: Arc<Tasks>,
}

impl WatchCache {
    /// Reads the whole store through `feed` and starts following it; `source` is the store
    /// itself (writes, current revisions, reads and watches the cache cannot serve).
    pub async fn start(
        source: Arc<dyn Store>,
        feed: Arc<dyn Feed>,
        options: CacheOptions,
    ) -> Result<Self, StoreError> {
        let page = feed.snapshot().await?;
        let revision = page.revision;
        let shared = Arc::new(Shared {
            state: RwLock::new(State::new(page)),
            reached: watch::Sender::new(revision),
            source: source.clone(),
            quorum: Quorum::new(),
            options,
            fallbacks: AtomicU64::new(0),
        });
        let following = {
            let shared = shared.clone();
            tokio::spawn(async move { shared.follow(feed.as_ref()).await })
        };
        let quorum = {
            let shared = shared.clone();
            tokio::spawn(async move { shared.quorum.serve(shared.source.as_ref()).await })
        };
        Ok(Self {
            shared,
            writer: source,
            _tasks: Arc::new(Tasks(vec![following, quorum])),
        })
    }

    /// A handle reading this cache and writing to `writer` (the leader's fenced etcd handle).
    pub fn writing_to(&self, writer: Arc<dyn Store>) -> Self {
        Self {
            shared: self.shared.clone(),
            writer,
            _tasks: self._tasks.clone(),
        }
    }

    /// The revision the cache has reached.
    pub fn cached_revision(&self) -> Revision {
        *self.shared.reached.borrow()
    }

    /// How many reads went to the store because the cache was behind.
    pub fn fallbacks(&self) -> u64 {
        self.shared.fallbacks.load(Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl Store for WatchCache {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        if !self.shared.consistent().await? {
            return self.shared.source.get(key).await;
        }
        Ok(self.shared.read().objects.get(key).cloned())
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, StoreError> {
        if !self.shared.consistent().await? {
            return self.shared.source.list(prefix, start_after, limit).await;
        }
        Ok(self.shared.read().list(prefix, start_after, limit))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        let result = self.writer.create(key, value).await;
        after_write(&result, |kv| kv.mod_revision);
        result
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        let result = self.writer.update(key, value, expected).await;
        after_write(&result, |kv| kv.mod_revision);
        result
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let result = self.writer.delete(key, expected).await;
        after_write(&result, |kv| kv.mod_revision);
        result
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream, StoreError> {
        if after < self.shared.read().floor {
            // Older than the ring: the store's own history, or its Compacted.
            return self.shared.source.watch(prefix, after).await;
        }
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(
            self.shared
                .clone()
                .serve_watch(prefix.to_string(), after, tx),
        );
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.shared.quorum.revision().await
    }
}
