//! The etcd backend: the [`Store`] on an etcd v3 cluster, for several API servers sharing one
//! state (docs/ha.md).
//!
//! Each store key lives under a prefix (`/skiff` by default: `/pods/ns/web` is
//! `/skiff/pods/ns/web` in etcd), so one etcd can hold other data beside skiff's. etcd's global
//! revision is the store's revision, its `create_revision`/`mod_revision` are the key's, and
//! every conditional write is one etcd transaction: a create compares `create_revision == 0`, an
//! update or delete compares `mod_revision` (or `create_revision > 0` when unconditional), and the
//! else-branch reads the key so a failure names what was found.
//!
//! Fencing: [`EtcdStore::fenced`] gives a handle whose every write also compares a leader key's
//! `create_revision` with the one its holder got when it won the election
//! ([`crate::leader`]); once that key is gone (its lease expired) or belongs to another holder,
//! the write is refused with [`FENCED`] in the error and nothing is written. A fenced handle is an
//! ordinary [`Store`], so a wrapper (encryption) goes around it as around the plain one.
//!
//! Watches follow one etcd watch per call, resumed by revision when the connection drops (an
//! etcd member killed: the client's channel moves to another endpoint), so a consumer sees an
//! error only when its revision has been compacted.
//!
//! Compaction: after a write whose revision passes the last compaction by `history` + 1,000, the
//! store compacts etcd to `revision - history` (as the embedded store keeps its newest events);
//! each API server does so for its own writes, and a compaction another server already did is
//! ignored. `history: 0` leaves compaction to etcd's own `--auto-compaction-*` flags.
//!
//! Must not: know about kinds or encodings (values are opaque), or retry a write (a write whose
//! reply was lost may have happened: the caller decides).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, TxnResponse, WatchOptions,
};
use tokio::sync::mpsc;

use super::{Event, EventKind, EventStream, KeyValue, ListPage, Revision, Store, StoreError};

/// The text every refused fenced write's error carries.
pub const FENCED: &str = "not the leader";

/// How long one etcd call may take before the store gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The etcd key prefix of skiff's data unless configured.
pub const DEFAULT_PREFIX: &str = "/skiff";

/// TLS to etcd (`--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`), as PEM text.
#[derive(Debug, Clone, Default)]
pub struct EtcdTls {
    /// The CA that signed etcd's serving certificates (else the system's roots are not used:
    /// etcd clusters have their own CA, so this is required for https endpoints).
    pub ca: Option<Vec<u8>>,
    /// A client certificate and its key, for etcd's `--client-cert-auth`.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Options of the etcd store.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// `http://host:port` or `https://host:port` of each member.
    pub endpoints: Vec<String>,
    /// The key prefix of skiff's data, without a trailing `/`.
    pub prefix: String,
    pub tls: Option<EtcdTls>,
    /// Revisions kept for watch resume (0: never compact).
    pub history: u64,
}

impl EtcdOptions {
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            prefix: DEFAULT_PREFIX.to_string(),
            tls: None,
            history: 50_000,
        }
    }
}

/// What a fenced handle compares: the leader key and the revision that created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub key: String,
    pub create_revision: i64,
}

struct Inner {
    client: Client,
    prefix: String,
    history: u64,
    compacted: AtomicI64,
}

/// A store on etcd. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
    fence: Option<Arc<Fence>>,
}

pub(super) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("etcd: {e}"))
}

pub(super) async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => r.map_err(backend),
        Err(_) => Err(StoreError::Backend(format!(
            "etcd: no answer within {CALL_TIMEOUT:?}"
        ))),
    }
}

/// Whether a failed call never reached etcd (no connection could be made to the member the
/// client picked): safe to send again, even a write.
fn not_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::Unavailable && s.message().contains("connect")
        }
        _ => false,
    }
}

/// Whether etcd (or the member asked) could not serve the call now; a read may be sent again.
fn unavailable(e: &etcd_client::Error) -> bool {
    not_sent(e)
        || matches!(e, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::Unavailable)
}

/// Runs `call` (a fresh future per attempt), again after a short pause while it fails in a way
/// that is safe to retry: reads on any unavailability, writes only when they were never sent. A
/// killed member is then skipped (the client's channel moves to another) instead of failing the
/// API call.
pub(super) async fn retrying<T, F>(read: bool, mut call: impl FnMut() -> F) -> Result<T, StoreError>
where
    F: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let mut pause = Duration::from_millis(50);
    for _ in 0..6 {
        match tokio::time::timeout(CALL_TIMEOUT, call()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if (read && unavailable(&e)) || not_sent(&e) => {
                tracing::debug!(error = %e, "etcd call failed; trying again");
            }
            Ok(Err(e)) => return Err(backend(e)),
            Err(_) => {
                return Err(StoreError::Backend(format!(
                    "etcd: no answer within {CALL_TIMEOUT:?}"
                )));
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(800));
    }
    timed(call()).await
}

/// The first key after every key starting with `prefix` (etcd's range end of a prefix).
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

pub(super) fn revision_of(r: i64) -> Revision {
    u64::try_from(r).unwrap_or(0)
}

pub(super) fn signed(r: Revision) -> i64 {
    i64::try_from(r).unwrap_or(i64::MAX)
}

impl EtcdStore {
    /// Connects to the cluster (one member answering is enough) and checks it answers.
    pub async fn connect(options: EtcdOptions) -> Result<Self, StoreError> {
        if options.endpoints.is_empty() {
            return Err(StoreError::Backend("etcd: no endpoints given".into()));
        }
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true)
            // A member cut off from its cluster's leader refuses instead of serving stale data.
            .with_require_leader(true);
        if let Some(tls) = &options.tls {
            let mut config = etcd_client::TlsOptions::new();
            if let Some(ca) = &tls.ca {
                config = config.ca_certificate(etcd_client::Certificate::from_pem(ca));
            }
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(etcd_client::Identity::from_pem(cert, key));
            }
            connect = connect.with_tls(config);
        }
        let client = timed(Client::connect(&options.endpoints, Some(connect))).await?;
        let store = Self {
            inner: Arc::new(Inner {
                client,
                prefix: options.prefix.trim_end_matches('/').to_string(),
                history: options.history,
                compacted: AtomicI64::new(0),
            }),
            fence: None,
        };
        store.revision().await?;
        Ok(store)
    }

    /// The etcd client, for the leader election on the same connection.
    pub fn client(&self) -> Client {
        self.inner.client.clone()
    }

    /// The etcd key of leader election `name` (beside the data prefix, never under it).
    pub fn election_key(&self, name: &str) -> String {
        format!("{}-leader/{name}", self.inner.prefix)
    }

    /// A handle on the same store whose writes succeed only while `fence` holds.
    pub fn fenced(&self, fence: Fence) -> Self {
        Self {
            inner: self.inner.clone(),
            fence: Some(Arc::new(fence)),
        }
    }

    pub(super) fn full(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    fn store_key(&self, full: &[u8]) -> Result<String, StoreError> {
        let rest = full
            .strip_prefix(self.inner.prefix.as_bytes())
            .ok_or_else(|| backend("a key outside the prefix"))?;
        String::from_utf8(rest.to_vec()).map_err(|_| backend("a key that is not UTF-8"))
    }

    pub(super) fn key_value(&self, kv: etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
        let create_revision = revision_of(kv.create_revision());
        let mod_revision = revision_of(kv.mod_revision());
        let (key, value) = kv.into_key_value();
        Ok(KeyValue {
            key: self.store_key(&key)?,
            value: Bytes::from(value),
            create_revision,
            mod_revision,
        })
    }

    /// Runs a write transaction: `compares` (plus the fence) guard `then`; the else-branch reads
    /// the key (and the fence key).
    async fn write(
        &self,
        key: &str,
        mut compares: Vec<Compare>,
        then: TxnOp,
    ) -> Result<TxnResponse, StoreError> {
        let full = self.full(key);
        let mut otherwise = vec![TxnOp::get(full.as_str(), None)];
        if let Some(fence) = &self.fence {
            compares.push(Compare::create_revision(
                fence.key.as_str(),
                CompareOp::Equal,
                fence.create_revision,
            ));
            otherwise.push(TxnOp::get(fence.key.as_str(), None));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([then])
            .or_else(otherwise);
        let kv = self.inner.client.kv_client();
        let resp = retrying(false, || {
            let mut kv = kv.clone();
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await?;
        if !resp.succeeded()
            && let Some(fence) = &self.fence
        {
            let holder = match resp.op_responses().get(1) {
                Some(TxnOpResponse::Get(g)) => g.kvs().first().map(|kv| kv.create_revision()),
                _ => None,
            };
            if holder != Some(fence.create_revision) {
                return Err(StoreError::Backend(format!(
                    "{FENCED}: leadership {} (revision {}) was lost; the write to {key} is refused",
                    fence.key, fence.create_revision
                )));
            }
        }
        Ok(resp)
    }

    /// The key as the else-branch of a failed write read it.
    fn found(&self, resp: &TxnResponse) -> Result<Option<KeyValue>, StoreError> {
        match resp.op_responses().into_iter().next() {
            Some(TxnOpResponse::Get(mut g)) => g
                .take_kvs()
                .into_iter()
                .next()
                .map(|kv| self.key_value(kv))
                .transpose(),
            _ => Err(backend("a transaction without its read")),
        }
    }

    fn txn_revision(resp: &TxnResponse) -> Result<Revision, StoreError> {
        resp.header()
            .map(|h| revision_of(h.revision()))
            .ok_or_else(|| backend("a reply without a header"))
    }

    /// A failed update or delete: the key is gone, or at another revision.
    fn refused(&self, key: &str, expected: Option<Revision>, resp: &TxnResponse) -> StoreError {
        match self.found(resp) {
            Err(e) => e,
            Ok(None) => StoreError::NotFound(key.to_string()),
            Ok(Some(current)) => StoreError::Conflict {
                key: key.to_string(),
                expected: expected.unwrap_or(0),
                actual: current.mod_revision,
            },
        }
    }

    fn guard(&self, key: &str, expected: Option<Revision>) -> Compare {
        let full = self.full(key);
        match expected {
            Some(rev) => Compare::mod_revision(full, CompareOp::Equal, signed(rev)),
            None => Compare::create_revision(full, CompareOp::Greater, 0),
        }
    }

    /// Compacts history older than `history` revisions once it has grown 1,000 past that.
    async fn maybe_compact(&self, revision: Revision) {
        let history = self.inner.history;
        if history == 0 {
            return;
        }
        let revision = signed(revision);
        let keep = signed(history);
        let compacted = self.inner.compacted.load(Ordering::Acquire);
        if revision <= compacted + keep + 1000 {
            return;
        }
        let upto = revision - keep;
        if self
            .inner
            .compacted
            .compare_exchange(compacted, upto, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return; // another write of this store is compacting
        }
        let mut kv = self.inner.client.kv_client();
        if let Err(e) = timed(kv.compact(upto, None)).await {
            // Most often another API server compacted past this revision already.
            tracing::debug!(error = %e, revision = upto, "etcd compaction");
        }
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let kv = self.inner.client.kv_client();
        let full = self.full(key);
        let mut resp = retrying(true, || {
            let mut kv = kv.clone();
            let full = full.clone();
            async move { kv.get(full, None).await }
        })
        .await?;
        resp.take_kvs()
            .into_iter()
            .next()
            .map(|kv| self.key_value(kv))
            .transpose()
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, StoreError> {
        let full = self.full(prefix);
        let start = match start_after {
            Some(after) => {
                let mut k = self.full(after).into_bytes();
                k.push(0);
                k
            }
            None => full.clone().into_bytes(),
        };
        let mut options = GetOptions::new().with_range(prefix_end(full.as_bytes()));
        if limit > 0 {
            options = options.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let kv = self.inner.client.kv_client();
        let mut resp = retrying(true, || {
            let mut kv = kv.clone();
            let (start, options) = (start.clone(), options.clone());
            async move { kv.get(start, Some(options)).await }
        })
        .await?;
        let revision = resp
            .header()
            .map(|h| revision_of(h.revision()))
            .ok_or_else(|| backend("a reply without a header"))?;
        let more = resp.more();
        let items = resp
            .take_kvs()
            .into_iter()
            .map(|kv| self.key_value(kv))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ListPage {
            items,
            revision,
            more,
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        let full = self.full(key);
        let resp = self
            .write(
                key,
                vec![Compare::create_revision(full.as_str(), CompareOp::Equal, 0)],
                TxnOp::put(full.as_str(), value.to_vec(), None),
            )
            .await?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists(key.to_string()));
        }
        let revision = Self::txn_revision(&resp)?;
        self.maybe_compact(revision).await;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        let resp = self
            .write(
                key,
                vec![self.guard(key, expected)],
                TxnOp::put(
                    self.full(key),
                    value.to_vec(),
                    Some(PutOptions::new().with_prev_key()),
                ),
            )
            .await?;
        if !resp.succeeded() {
            return Err(self.refused(key, expected, &resp));
        }
        let revision = Self::txn_revision(&resp)?;
        let create_revision = match resp.op_responses().into_iter().next() {
            Some(TxnOpResponse::Put(p)) => p.prev_key().map(|kv| revision_of(kv.create_revision())),
            _ => None,
        }
        .ok_or_else(|| backend("an update without the value it replaced"))?;
        self.maybe_compact(revision).await;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let resp = self
            .write(
                key,
                vec![self.guard(key, expected)],
                TxnOp::delete(self.full(key), Some(DeleteOptions::new().with_prev_key())),
            )
            .await?;
        if !resp.succeeded() {
            return Err(self.refused(key, expected, &resp));
        }
        let revision = Self::txn_revision(&resp)?;
        let old = match resp.op_responses().into_iter().next() {
            Some(TxnOpResponse::Delete(mut d)) => d.take_prev_kvs().into_iter().next(),
            _ => None,
        }
        .ok_or_else(|| backend("a delete without the value it removed"))?;
        let mut old = self.key_value(old)?;
        old.mod_revision = revision;
        self.maybe_compact(revision).await;
        Ok(old)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream, StoreError> {
        let (tx, rx) = mpsc::channel::<Result<Event, StoreError>>(256);
        let store = self.clone();
        let prefix = prefix.to_string();
        tokio::spawn(async move { store.follow(&prefix, after, tx).await });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        // Any read carries the cluster's revision; the prefix itself is one key, never a range.
        let kv = self.inner.client.kv_client();
        let prefix = self.inner.prefix.clone();
        let resp = retrying(true, || {
            let mut kv = kv.clone();
            let prefix = prefix.clone();
            async move {
                kv.get(prefix, Some(GetOptions::new().with_keys_only()))
                    .await
            }
        })
        .await?;
        resp.header()
            .map(|h| revision_of(h.revision()))
            .ok_or_else(|| backend("a reply without a header"))
    }
}

/// What one etcd watch ended with.
pub(super) enum WatchEnd {
    /// The consumer went away.
    Closed,
    /// The connection failed: resume from the last revision delivered.
    Broken(String),
}

/// The next answer of an etcd watch resumed after `last`, or why the watch ends: its consumer
/// (`tx`) went away or the stream broke (`Ok(Err)`: resume), or etcd compacted past `last`
/// (`Err`). Shared by the per-prefix watches and the watch cache's feed.
pub(super) async fn next_answer<T>(
    stream: &mut etcd_client::WatchStream,
    tx: &mpsc::Sender<T>,
    last: Revision,
) -> Result<Result<etcd_client::WatchResponse, WatchEnd>, StoreError> {
    let resp = tokio::select! {
        r = stream.message() => r,
        _ = tx.closed() => return Ok(Err(WatchEnd::Closed)),
    };
    let resp = match resp {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(Err(WatchEnd::Broken("the watch stream ended".into()))),
        Err(e) => return Ok(Err(WatchEnd::Broken(e.to_string()))),
    };
    if resp.compact_revision() > 0 {
        return Err(StoreError::Compacted {
            requested: last,
            oldest: revision_of(resp.compact_revision()),
        });
    }
    if resp.canceled() {
        return Ok(Err(WatchEnd::Broken(format!(
            "canceled by etcd: {}",
            resp.cancel_reason()
        ))));
    }
    Ok(Ok(resp))
}

impl EtcdStore {
    /// Feeds `tx` with every change under `prefix` after `after`, re-opening the etcd watch from
    /// the last delivered revision whenever it breaks.
    async fn follow(
        &self,
        prefix: &str,
        after: Revision,
        tx: mpsc::Sender<Result<Event, StoreError>>,
    ) {
        let mut last = after;
        let mut failures = 0u32;
        loop {
            match self.watch_once(prefix, &mut last, &tx).await {
                Ok(WatchEnd::Closed) => return,
                Ok(WatchEnd::Broken(why)) => {
                    failures += 1;
                    if failures % 50 == 1 {
                        tracing::warn!(prefix, revision = last, error = %why, "etcd watch broken: resuming");
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn watch_once(
        &self,
        prefix: &str,
        last: &mut Revision,
        tx: &mpsc::Sender<Result<Event, StoreError>>,
    ) -> Result<WatchEnd, StoreError> {
        let full = self.full(prefix);
        let options = WatchOptions::new()
            .with_range(prefix_end(full.as_bytes()))
            .with_start_revision(signed(*last + 1))
            .with_prev_key();
        let mut client = self.inner.client.watch_client();
        let mut stream = match timed(client.watch(full.as_str(), Some(options))).await {
            Ok(s) => s,
            Err(e) => return Ok(WatchEnd::Broken(e.to_string())),
        };
        loop {
            let resp = match next_answer(&mut stream, tx, *last).await? {
                Ok(r) => r,
                Err(end) => return Ok(end),
            };
            for e in resp.events() {
                let event = self.event(e)?;
                if event.revision() <= *last {
                    continue;
                }
                *last = event.revision();
                if tx.send(Ok(event)).await.is_err() {
                    return Ok(WatchEnd::Closed);
                }
            }
        }
    }

    pub(super) fn event(&self, e: &etcd_client::Event) -> Result<Event, StoreError> {
        let kv = e.kv().ok_or_else(|| backend("an event without its key"))?;
        let prev = e.prev_kv().map(|p| self.key_value(p.clone())).transpose()?;
        match e.event_type() {
            etcd_client::EventType::Put => Ok(Event {
                kind: EventKind::Put,
                kv: self.key_value(kv.clone())?,
                prev,
            }),
            etcd_client::EventType::Delete => {
                let gone = self.key_value(kv.clone())?;
                let last = match &prev {
                    Some(p) => KeyValue {
                        mod_revision: gone.mod_revision,
                        ..p.clone()
                    },
                    None => gone,
                };
                Ok(Event {
                    kind: EventKind::Delete,
                    kv: last,
                    prev,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"/skiff/pods/"), b"/skiff/pods0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
