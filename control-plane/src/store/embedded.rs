//! The embedded backend: one redb file, group-committed writes, watch from history.
//!
//! Writes go through one writer thread, behind a bounded queue (a writer past it waits), that
//! drains whatever is queued into a single redb transaction and commits it once (fsync'd,
//! `Durability::Immediate`): an acknowledged write has reached the disk, and concurrent clients
//! share the cost of the fsync. Each write still gets its own revision and sees the writes before
//! it in the batch, so conflicts are exact.
//!
//! Every change is also appended to an `events` table (keyed by revision) that watches replay
//! from; the newest `history` events are kept, older ones compacted. Live watchers are fed from a
//! broadcast channel published after commit; a watcher that falls behind re-reads the table.
//!
//! Reads: a `get` runs on the calling task. It is one B-tree lookup, almost always in pages redb
//! (or the kernel) has cached, a few microseconds; handing it to the blocking pool cost two
//! thread switches, and those wake-ups were 7% of the API server's CPU in the scheduler bench
//! (a read per create, per Lease renewal, per Node read). Lists and history replays, which scan
//! any number of keys, still go to the blocking pool.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::codec::{decode_event, decode_object, encode_event, encode_object};
use super::{Event, EventKind, EventStream, KeyValue, ListPage, Revision, Store, StoreError};

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// Largest number of writes committed in one transaction.
const MAX_BATCH: usize = 1024;

/// Writes waiting for the writer thread. Beyond it a writer waits for room (backpressure onto
/// the API handlers and, through them, the clients) instead of the queue growing without end.
const WRITE_QUEUE: usize = 4 * MAX_BATCH;

/// Options of the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Events kept for watch resume.
    pub history: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self { history: 50_000 }
    }
}

enum Op {
    Create(String, Bytes),
    Update(String, Bytes, Option<Revision>),
    Delete(String, Option<Revision>),
}

struct Write {
    op: Op,
    reply: oneshot::Sender<Result<KeyValue, StoreError>>,
}

/// A store in one redb file.
pub struct EmbeddedStore {
    db: Arc<Database>,
    writes: mpsc::Sender<Write>,
    events: broadcast::Sender<Arc<Event>>,
    revision: Arc<AtomicU64>,
    compacted: Arc<AtomicU64>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for EmbeddedStore {
    /// Stops the writer after the queued writes and waits for it, so the file can be reopened.
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.writes, closed));
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path, options: EmbeddedOptions) -> Result<Self, StoreError> {
        let db = Database::create(path)
            .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
        let (revision, compacted) = {
            let txn = db.begin_write().map_err(backend)?;
            let read = |name| -> Result<u64, StoreError> {
                let meta = txn.open_table(META).map_err(backend)?;
                Ok(meta
                    .get(name)
                    .map_err(backend)?
                    .map(|v| v.value())
                    .unwrap_or(0))
            };
            let r = (read(META_REVISION)?, read(META_COMPACTED)?);
            txn.open_table(OBJECTS).map_err(backend)?;
            txn.open_table(EVENTS).map_err(backend)?;
            txn.commit().map_err(backend)?;
            r
        };
        let db = Arc::new(db);
        let (writes, rx) = mpsc::channel(WRITE_QUEUE);
        let (events, _) = broadcast::channel(16 * 1024);
        let revision = Arc::new(AtomicU64::new(revision));
        let compacted = Arc::new(AtomicU64::new(compacted));
        let writer = Writer {
            db: db.clone(),
            events: events.clone(),
            revision: revision.clone(),
            compacted: compacted.clone(),
            history: options.history.max(1),
        };
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(backend)?;
        Ok(Self {
            db,
            writes,
            events,
            revision,
            compacted,
            writer: Some(writer),
        })
    }

    async fn write(&self, op: Op) -> Result<KeyValue, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writes
            .send(Write { op, reply })
            .await
            .map_err(|_| StoreError::Backend("store writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("store writer stopped".into()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(backend)?
    }
}

/// Reads events after `after` (exclusive) for keys under `prefix`, up to `limit`.
fn read_history(
    db: &Database,
    prefix: &str,
    after: Revision,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let compacted = txn
        .open_table(META)
        .map_err(backend)?
        .get(META_COMPACTED)
        .map_err(backend)?
        .map_or(0, |v| v.value());
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            oldest: compacted + 1,
        });
    }
    let table = txn.open_table(EVENTS).map_err(backend)?;
    let mut out = Vec::new();
    for entry in table.range(after + 1..).map_err(backend)? {
        let (rev, raw) = entry.map_err(backend)?;
        let event = decode_event(rev.value(), raw.value()).ok_or_else(|| {
            StoreError::Backend(format!("corrupt event at revision {}", rev.value()))
        })?;
        if event.kv.key.starts_with(prefix) {
            out.push(event);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    /// On the calling task: see the module doc.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(OBJECTS).map_err(backend)?;
        let found = table.get(key).map_err(backend)?;
        Ok(found.and_then(|raw| decode_object(key, raw.value())))
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, StoreError> {
        let prefix = prefix.to_string();
        let start = start_after.map(str::to_string);
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let meta = txn.open_table(META).map_err(backend)?;
            let revision = meta
                .get(META_REVISION)
                .map_err(backend)?
                .map(|v| v.value())
                .unwrap_or(0);
            let table = txn.open_table(OBJECTS).map_err(backend)?;
            let from = start.as_deref().unwrap_or(prefix.as_str());
            let mut page = ListPage {
                items: Vec::new(),
                revision,
                more: false,
            };
            for entry in table.range(from..).map_err(backend)? {
                let (k, raw) = entry.map_err(backend)?;
                let key = k.value();
                if !key.starts_with(prefix.as_str()) {
                    break;
                }
                if start.as_deref() == Some(key) {
                    continue;
                }
                if limit > 0 && page.items.len() == limit {
                    page.more = true;
                    break;
                }
                let kv = decode_object(key, raw.value())
                    .ok_or_else(|| StoreError::Backend(format!("corrupt object {key}")))?;
                page.items.push(kv);
            }
            Ok(page)
        })
        .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        self.write(Op::Create(key.to_string(), value)).await
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        self.write(Op::Update(key.to_string(), value, expected))
            .await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        self.write(Op::Delete(key.to_string(), expected)).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream, StoreError> {
        // Subscribe before reading history: an event is then in the history, on the channel, or
        // both (removed by the revision check) — never in neither.
        let mut live = self.events.subscribe();
        let oldest = self.compacted.load(Ordering::Acquire);
        if after < oldest {
            return Err(StoreError::Compacted {
                requested: after,
                oldest: oldest + 1,
            });
        }
        let db = self.db.clone();
        let prefix = prefix.to_string();
        let (tx, rx) = mpsc::channel::<Result<Event, StoreError>>(256);
        tokio::spawn(async move {
            let mut last = after;
            // Replay history, then follow the live channel; on lag, replay again from `last`.
            'replay: loop {
                loop {
                    let db2 = db.clone();
                    let p = prefix.clone();
                    let batch = match tokio::task::spawn_blocking(move || {
                        read_history(&db2, &p, last, 1024)
                    })
                    .await
                    {
                        Ok(Ok(b)) => b,
                        Ok(Err(e)) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(backend(e))).await;
                            return;
                        }
                    };
                    let full = batch.len() == 1024;
                    for e in batch {
                        last = e.revision();
                        if tx.send(Ok(e)).await.is_err() {
                            return;
                        }
                    }
                    if !full {
                        break;
                    }
                }
                loop {
                    match live.recv().await {
                        Ok(e) => {
                            if e.revision() <= last || !e.kv.key.starts_with(prefix.as_str()) {
                                continue;
                            }
                            last = e.revision();
                            if tx.send(Ok((*e).clone())).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue 'replay,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.revision.load(Ordering::Acquire))
    }
}

/// The current value of `key`, which must exist and, if `expected` is given, be at that revision.
fn existing(
    current: Option<KeyValue>,
    key: &str,
    expected: Option<Revision>,
) -> Result<KeyValue, StoreError> {
    let old = current.ok_or_else(|| StoreError::NotFound(key.to_string()))?;
    match expected {
        Some(e) if e != old.mod_revision => Err(StoreError::Conflict {
            key: key.to_string(),
            expected: e,
            actual: old.mod_revision,
        }),
        _ => Ok(old),
    }
}

struct Writer {
    db: Arc<Database>,
    events: broadcast::Sender<Arc<Event>>,
    revision: Arc<AtomicU64>,
    compacted: Arc<AtomicU64>,
    history: u64,
}

impl Writer {
    fn run(self, mut rx: mpsc::Receiver<Write>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(w) => batch.push(w),
                    Err(_) => break,
                }
            }
            crate::metrics::store::write_batch(batch.len());
            match self.commit(&batch) {
                Ok((results, events)) => {
                    for e in events {
                        let _ = self.events.send(Arc::new(e));
                    }
                    for (w, r) in batch.into_iter().zip(results) {
                        let _ = w.reply.send(r);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "store commit failed");
                    for w in batch {
                        let _ = w.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn commit(
        &self,
        batch: &[Write],
    ) -> Result<(Vec<Result<KeyValue, StoreError>>, Vec<Event>), StoreError> {
        let txn = self.db.begin_write().map_err(backend)?;
        let mut revision = self.revision.load(Ordering::Acquire);
        let mut compacted = self.compacted.load(Ordering::Acquire);
        let mut results = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        {
            let mut objects = txn.open_table(OBJECTS).map_err(backend)?;
            let mut log = txn.open_table(EVENTS).map_err(backend)?;
            for w in batch {
                let current = |key: &str| -> Result<Option<KeyValue>, StoreError> {
                    Ok(objects
                        .get(key)
                        .map_err(backend)?
                        .and_then(|raw| decode_object(key, raw.value())))
                };
                let outcome = match &w.op {
                    Op::Create(key, value) => match current(key)? {
                        Some(_) => Err(StoreError::AlreadyExists(key.clone())),
                        None => {
                            let rev = revision + 1;
                            let kv = KeyValue {
                                key: key.clone(),
                                value: value.clone(),
                                create_revision: rev,
                                mod_revision: rev,
                            };
                            Ok((
                                Event {
                                    kind: EventKind::Put,
                                    kv,
                                    prev: None,
                                },
                                true,
                            ))
                        }
                    },
                    Op::Update(key, value, expected) => {
                        match existing(current(key)?, key, *expected) {
                            Err(e) => Err(e),
                            Ok(old) => {
                                let kv = KeyValue {
                                    key: key.clone(),
                                    value: value.clone(),
                                    create_revision: old.create_revision,
                                    mod_revision: revision + 1,
                                };
                                Ok((
                                    Event {
                                        kind: EventKind::Put,
                                        kv,
                                        prev: Some(old),
                                    },
                                    true,
                                ))
                            }
                        }
                    }
                    Op::Delete(key, expected) => match existing(current(key)?, key, *expected) {
                        Err(e) => Err(e),
                        Ok(old) => {
                            let kv = KeyValue {
                                mod_revision: revision + 1,
                                ..old.clone()
                            };
                            Ok((
                                Event {
                                    kind: EventKind::Delete,
                                    kv,
                                    prev: Some(old),
                                },
                                false,
                            ))
                        }
                    },
                };
                match outcome {
                    Ok((event, present)) => {
                        revision += 1;
                        if present {
                            let raw =
                                encode_object(event.kv.create_revision, revision, &event.kv.value);
                            objects
                                .insert(event.kv.key.as_str(), raw.as_slice())
                                .map_err(backend)?;
                        } else {
                            objects.remove(event.kv.key.as_str()).map_err(backend)?;
                        }
                        log.insert(revision, encode_event(&event).as_slice())
                            .map_err(backend)?;
                        results.push(Ok(event.kv.clone()));
                        events.push(event);
                    }
                    Err(e) => results.push(Err(e)),
                }
            }
            // Compact in steps of at least 1,000 so that most commits do not touch old history.
            if revision > compacted + self.history + 1000 {
                let upto = revision - self.history;
                log.retain_in(..=upto, |_, _| false).map_err(backend)?;
                compacted = upto;
            }
            let mut meta = txn.open_table(META).map_err(backend)?;
            meta.insert(META_REVISION, revision).map_err(backend)?;
            meta.insert(META_COMPACTED, compacted).map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        self.compacted.store(compacted, Ordering::Release);
        self.revision.store(revision, Ordering::Release);
        Ok((results, events))
    }
}
