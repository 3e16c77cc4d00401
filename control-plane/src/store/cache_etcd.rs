//! The etcd feed of the watch cache ([`super::cache`]): one etcd watch per API server.
//!
//! The snapshot reads every key under the data prefix in pages of 500, all at the revision of
//! the first page, so it is one consistent view however large. The watch covers all of etcd's
//! keys, not only skiff's: etcd has one revision counter for every key (the leader election's
//! key beside the data, or another user's data), and a read waits until the cache has reached
//! etcd's current revision, so the cache must see every revision go by. Events of keys outside
//! the data prefix only move the revision on. An etcd whose access control keeps skiff to its
//! prefix refuses that watch: run with `--watch-cache=false` there (docs/ha.md).
//!
//! Like the store's own watches, the feed resumes from the last revision it delivered when the
//! connection drops (a member killed), and ends with `Compacted` only when etcd says so.
//!
//! Must not: deliver an event twice, or a revision it has not seen every event of.

use std::time::Duration;

use etcd_client::{GetOptions, WatchOptions};
use tokio::sync::mpsc;

use super::cache::{Change, ChangeStream, Feed};
use super::etcd::{
    EtcdStore, WatchEnd, backend, next_answer, prefix_end, retrying, revision_of, signed, timed,
};
use super::{ListPage, Revision, StoreError};

/// Keys read per request of a snapshot.
const PAGE: i64 = 500;

/// The largest reply the cache takes from etcd (etcd-client's default is 4 MiB: 500 ConfigMaps
/// of 10 KiB would pass it; etcd itself limits a value to 1.5 MiB).
const MAX_REPLY: usize = 256 << 20;

#[async_trait::async_trait]
impl Feed for EtcdStore {
    async fn snapshot(&self) -> Result<ListPage, StoreError> {
        let data = self.full("/").into_bytes();
        let end = prefix_end(&data);
        let kv = self
            .client()
            .kv_client()
            .max_decoding_message_size(MAX_REPLY);
        let mut items = Vec::new();
        let mut start = data;
        let mut revision: Option<i64> = None;
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if let Some(r) = revision {
                options = options.with_revision(r);
            }
            let mut resp = retrying(true, || {
                let mut kv = kv.clone();
                let (start, options) = (start.clone(), options.clone());
                async move { kv.get(start, Some(options)).await }
            })
            .await?;
            let at = resp
                .header()
                .map(|h| h.revision())
                .ok_or_else(|| backend("a reply without a header"))?;
            let at = *revision.get_or_insert(at);
            let more = resp.more();
            let kvs = resp.take_kvs();
            if let Some(last) = kvs.last() {
                start = last.key().to_vec();
                start.push(0);
            }
            for kv in kvs {
                items.push(self.key_value(kv)?);
            }
            if !more {
                return Ok(ListPage {
                    items,
                    revision: revision_of(at),
                    more: false,
                });
            }
        }
    }

    async fn follow(&self, after: Revision) -> Result<ChangeStream, StoreError> {
        let (tx, rx) = mpsc::channel(64);
        let store = self.clone();
        tokio::spawn(async move { follow_all(&store, after, tx).await });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

/// Feeds `tx` with every change after `after`, re-opening the watch from the last revision
/// delivered whenever it breaks.
async fn follow_all(
    store: &EtcdStore,
    after: Revision,
    tx: mpsc::Sender<Result<Change, StoreError>>,
) {
    let mut last = after;
    let mut failures = 0u32;
    loop {
        match watch_all_once(store, &mut last, &tx).await {
            Ok(WatchEnd::Closed) => return,
            Ok(WatchEnd::Broken(why)) => {
                failures += 1;
                if failures % 50 == 1 {
                    tracing::warn!(revision = last, error = %why, "etcd watch of the watch cache broken: resuming");
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

async fn watch_all_once(
    store: &EtcdStore,
    last: &mut Revision,
    tx: &mpsc::Sender<Result<Change, StoreError>>,
) -> Result<WatchEnd, StoreError> {
    let data = store.full("/").into_bytes();
    // From the smallest key to the end: every key of etcd.
    let options = WatchOptions::new()
        .with_range(vec![0u8])
        .with_start_revision(signed(*last + 1))
        .with_prev_key();
    let mut client = store
        .client()
        .watch_client()
        .max_decoding_message_size(MAX_REPLY);
    let mut stream = match timed(client.watch(vec![0u8], Some(options))).await {
        Ok(s) => s,
        Err(e) => return Ok(WatchEnd::Broken(e.to_string())),
    };
    loop {
        let resp = match next_answer(&mut stream, tx, *last).await? {
            Ok(r) => r,
            Err(end) => return Ok(end),
        };
        let mut change = Change {
            events: Vec::new(),
            revision: *last,
        };
        for e in resp.events() {
            let Some(kv) = e.kv() else {
                return Err(backend("an event without its key"));
            };
            let revision = revision_of(kv.mod_revision());
            if revision <= *last {
                continue;
            }
            if kv.key().starts_with(&data) {
                change.events.push(store.event(e)?);
            }
            change.revision = change.revision.max(revision);
        }
        if change.revision > *last {
            *last = change.revision;
            if tx.send(Ok(change)).await.is_err() {
                return Ok(WatchEnd::Closed);
            }
        }
    }
}
