//! `wasi:keyvalue` buckets in the store: the one writer of their keys, as the registry is of
//! objects'.
//!
//! A bucket `B` of namespace `NS` is the meta key `/keyvaluebuckets/NS/B` (its entry count and
//! byte size, as text) and one store key per entry, `/keyvalue/NS/B/KEY`, whose value is the entry's
//! bytes. Every operation is on one key at a time, each a compare-and-swap on the key's revision
//! (the store's, etcd's `mod_revision`), so each key is linearizable: `set` and `delete` take
//! effect at their store write; `increment` reads the decimal number a key holds and writes the
//! sum only if the key is still at the revision it read, retrying otherwise (no lost update
//! between replicas). The meta counts are updated after each write, so concurrent writers may
//! overshoot a limit by what they write at once; a refusal recounts the bucket first (a count
//! left wrong by a crash mends itself there). Only `open` makes a bucket: every write to a
//! bucket whose meta key is missing (never opened, or its namespace deleted) fails with
//! [`ApiError::NotFound`] (`error.no-such-store` for the guest), so the bucket cap holds.
//!
//! Limits ([`Limits::default`]): bucket names of 1-63 characters of `[A-Za-z0-9._-]` (empty is
//! `default`); keys of 1-1024 bytes; values of at most 1 MiB; 10,000 entries and 64 MiB per
//! bucket; 100 buckets per namespace, and 64 MiB across a namespace's buckets (summed from the
//! buckets' meta keys, at most 100 small values read at once, before any write that grows).
//!
//! Must not: authorize (the API server checks the caller and the pod before calling in).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::ApiError;
use crate::store::{KeyValue, Store, StoreError};

/// Size limits of buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub key_bytes: usize,
    pub value_bytes: usize,
    pub entries: u64,
    pub bucket_bytes: u64,
    pub buckets: usize,
    /// Bytes (keys + values) across all buckets of a namespace.
    pub namespace_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            key_bytes: 1024,
            value_bytes: 1 << 20,
            entries: 10_000,
            bucket_bytes: 64 << 20,
            buckets: 100,
            namespace_bytes: 64 << 20,
        }
    }
}

/// Keys returned per `list_keys` page.
pub const PAGE: usize = 1000;
/// Compare-and-swap attempts before giving up under contention.
const ATTEMPTS: usize = 100;

/// What a bucket holds, by the meta key's count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Meta {
    entries: u64,
    bytes: u64,
}

/// One page of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    /// Where the next page starts; `None`: this is the last.
    pub cursor: Option<u64>,
}

/// The buckets of every namespace.
#[derive(Clone)]
pub struct Buckets {
    store: Arc<dyn Store>,
    limits: Limits,
}

fn store_error(e: StoreError) -> ApiError {
    ApiError::Internal(format!("keyvalue store: {e}"))
}

/// The bucket's name in the store (`default` for the empty identifier), checked.
pub fn bucket_name(identifier: &str) -> Result<&str, ApiError> {
    let name = if identifier.is_empty() {
        "default"
    } else {
        identifier
    };
    let ok = name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != "..";
    if ok {
        Ok(name)
    } else {
        Err(ApiError::BadRequest(format!(
            "bucket {identifier:?}: a bucket name has 1-63 characters of A-Z, a-z, 0-9, '.', '_', '-'"
        )))
    }
}

impl Buckets {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_limits(store, Limits::default())
    }

    pub fn with_limits(store: Arc<dyn Store>, limits: Limits) -> Self {
        Buckets { store, limits }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn meta_key(namespace: &str, bucket: &str) -> String {
        format!("/keyvaluebuckets/{namespace}/{bucket}")
    }

    fn prefix(namespace: &str, bucket: &str) -> String {
        format!("/keyvalue/{namespace}/{bucket}/")
    }

    fn check_key(&self, key: &str) -> Result<(), ApiError> {
        if key.is_empty() || key.len() > self.limits.key_bytes {
            return Err(ApiError::BadRequest(format!(
                "key of {} bytes: a key has 1-{} bytes",
                key.len(),
                self.limits.key_bytes
            )));
        }
        Ok(())
    }

    fn check_value(&self, key: &str, value: &[u8]) -> Result<(), ApiError> {
        if value.len() > self.limits.value_bytes {
            return Err(ApiError::BadRequest(format!(
                "key {key:?}: a value of {} bytes is over the limit of {} bytes",
                value.len(),
                self.limits.value_bytes
            )));
        }
        Ok(())
    }

    /// Makes the bucket if it does not exist (100 per namespace at most).
    pub async fn open(&self, namespace: &str, identifier: &str) -> Result<(), ApiError> {
        let bucket = bucket_name(identifier)?;
        let key = Self::meta_key(namespace, bucket);
        if self.store.get(&key).await.map_err(store_error)?.is_some() {
            return Ok(());
        }
        let existing = self
            .store
            .list(
                &format!("/keyvaluebuckets/{namespace}/"),
                None,
                self.limits.buckets + 1,
            )
            .await
            .map_err(store_error)?;
        if existing.items.len() >= self.limits.buckets {
            return Err(ApiError::Exhausted(format!(
                "namespace {namespace} has {} keyvalue buckets, the most it may have",
                self.limits.buckets
            )));
        }
        match self.store.create(&key, encode_meta(Meta::default())).await {
            Ok(_) | Err(StoreError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn entry(
        &self,
        namespace: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Option<KeyValue>, ApiError> {
        let bucket = bucket_name(bucket)?;
        self.check_key(key)?;
        let store_key = format!("{}{key}", Self::prefix(namespace, bucket));
        self.store.get(&store_key).await.map_err(store_error)
    }

    pub async fn get(
        &self,
        namespace: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Option<Bytes>, ApiError> {
        Ok(self.entry(namespace, bucket, key).await?.map(|kv| kv.value))
    }

    pub async fn exists(&self, namespace: &str, bucket: &str, key: &str) -> Result<bool, ApiError> {
        Ok(self.entry(namespace, bucket, key).await?.is_some())
    }

    pub async fn set(
        &self,
        namespace: &str,
        bucket: &str,
        key: &str,
        value: Bytes,
    ) -> Result<(), ApiError> {
        self.check_value(key, &value)?;
        self.write(namespace, bucket, key, |_| Ok(value.clone()))
            .await
            .map(|_| ())
    }

    /// Adds `delta` to the decimal number `key` holds (absent: 0); the sum.
    pub async fn increment(
        &self,
        namespace: &str,
        bucket: &str,
        key: &str,
        delta: u64,
    ) -> Result<u64, ApiError> {
        let mut sum = 0;
        self.write(namespace, bucket, key, |current| {
            let now = match current {
                None => 0,
                Some(bytes) => std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "key {key:?}: its value is not a decimal number, so it cannot be incremented"
                        ))
                    })?,
            };
            sum = now.checked_add(delta).ok_or_else(|| {
                ApiError::BadRequest(format!("key {key:?}: {now} + {delta} overflows a u64"))
            })?;
            Ok(Bytes::from(sum.to_string()))
        })
        .await?;
        Ok(sum)
    }

    /// Writes what `next` makes of the key's current value, by compare-and-swap on its revision.
    async fn write(
        &self,
        namespace: &str,
        bucket: &str,
        key: &str,
        mut next: impl FnMut(Option<&Bytes>) -> Result<Bytes, ApiError>,
    ) -> Result<Bytes, ApiError> {
        let name = bucket_name(bucket)?;
        self.check_key(key)?;
        self.check_opened(namespace, name).await?;
        let store_key = format!("{}{key}", Self::prefix(namespace, name));
        for attempt in 0..ATTEMPTS {
            let current = self.store.get(&store_key).await.map_err(store_error)?;
            let value = next(current.as_ref().map(|kv| &kv.value))?;
            let written = match &current {
                Some(kv) => {
                    let grows = value.len() as i64 - kv.value.len() as i64;
                    self.check_room(namespace, name, 0, grows).await?;
                    self.store
                        .update(&store_key, value.clone(), Some(kv.mod_revision))
                        .await
                        .map(|_| (0, grows))
                }
                None => {
                    let grows = (key.len() + value.len()) as i64;
                    self.check_room(namespace, name, 1, grows).await?;
                    self.store
                        .create(&store_key, value.clone())
                        .await
                        .map(|_| (1, grows))
                }
            };
            match written {
                Ok((entries, bytes)) => {
                    // Most overwrites (a counter's) change neither count: no second write.
                    if entries != 0 || bytes != 0 {
                        self.count(namespace, name, entries, bytes).await?;
                    }
                    return Ok(value);
                }
                Err(
                    StoreError::Conflict { .. }
                    | StoreError::NotFound(_)
                    | StoreError::AlreadyExists(_),
                ) => backoff(attempt).await,
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(contended(key))
    }

    pub async fn delete(&self, namespace: &str, bucket: &str, key: &str) -> Result<(), ApiError> {
        let name = bucket_name(bucket)?;
        self.check_key(key)?;
        self.check_opened(namespace, name).await?;
        let store_key = format!("{}{key}", Self::prefix(namespace, name));
        for attempt in 0..ATTEMPTS {
            let Some(current) = self.store.get(&store_key).await.map_err(store_error)? else {
                return Ok(());
            };
            match self
                .store
                .delete(&store_key, Some(current.mod_revision))
                .await
            {
                Ok(_) => {
                    let freed = (key.len() + current.value.len()) as i64;
                    return self.count(namespace, name, -1, -freed).await;
                }
                Err(StoreError::NotFound(_)) => return Ok(()),
                Err(StoreError::Conflict { .. }) => backoff(attempt).await,
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(contended(key))
    }

    /// A page of the bucket's keys in key order, from `cursor` (keys already returned).
    pub async fn list_keys(
        &self,
        namespace: &str,
        bucket: &str,
        cursor: Option<u64>,
    ) -> Result<KeyPage, ApiError> {
        let name = bucket_name(bucket)?;
        let prefix = Self::prefix(namespace, name);
        let skip = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
        let mut keys = Vec::new();
        let mut seen = 0usize;
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .list(&prefix, after.as_deref(), PAGE)
                .await
                .map_err(store_error)?;
            for kv in &page.items {
                if seen >= skip {
                    if keys.len() == PAGE {
                        return Ok(KeyPage {
                            keys,
                            cursor: Some((skip + PAGE) as u64),
                        });
                    }
                    keys.push(kv.key[prefix.len()..].to_string());
                }
                seen += 1;
            }
            match (page.more, page.items.last()) {
                (true, Some(last)) => after = Some(last.key.clone()),
                _ => return Ok(KeyPage { keys, cursor: None }),
            }
        }
    }

    /// Deletes every bucket of `namespace` (the namespace is being deleted: a namespace made
    /// again under the same name starts empty).
    pub async fn delete_namespace(&self, namespace: &str) -> Result<(), ApiError> {
        for prefix in [
            format!("/keyvalue/{namespace}/"),
            format!("/keyvaluebuckets/{namespace}/"),
        ] {
            loop {
                let page = self
                    .store
                    .list(&prefix, None, PAGE)
                    .await
                    .map_err(store_error)?;
                if page.items.is_empty() {
                    break;
                }
                for kv in &page.items {
                    match self.store.delete(&kv.key, None).await {
                        Ok(_) | Err(StoreError::NotFound(_)) => {}
                        Err(e) => return Err(store_error(e)),
                    }
                }
            }
        }
        Ok(())
    }

    /// Refuses a write to a bucket that was never opened (or was deleted with its namespace).
    async fn check_opened(&self, namespace: &str, bucket: &str) -> Result<(), ApiError> {
        let key = Self::meta_key(namespace, bucket);
        match self.store.get(&key).await.map_err(store_error)? {
            Some(_) => Ok(()),
            None => Err(no_such_store(bucket)),
        }
    }

    /// Refuses a write that would add `entries` and `bytes` to a full bucket (after a recount).
    async fn check_room(
        &self,
        namespace: &str,
        bucket: &str,
        entries: u64,
        bytes: i64,
    ) -> Result<(), ApiError> {
        if entries == 0 && bytes <= 0 {
            return Ok(());
        }
        let fits = |m: Meta| {
            m.entries + entries <= self.limits.entries
                && (bytes <= 0 || m.bytes.saturating_add(bytes as u64) <= self.limits.bucket_bytes)
        };
        if fits(self.meta(namespace, bucket).await?)
            && self
                .check_namespace_room(namespace, bucket, bytes, None)
                .await
                .is_ok()
        {
            return Ok(());
        }
        let actual = self.recount(namespace, bucket).await?;
        if !fits(actual) {
            return Err(ApiError::Exhausted(format!(
                "bucket {bucket:?} of namespace {namespace} is full: {} entries, {} bytes (limits {} entries, {} bytes)",
                actual.entries, actual.bytes, self.limits.entries, self.limits.bucket_bytes
            )));
        }
        self.check_namespace_room(namespace, bucket, bytes, Some(actual))
            .await
    }

    /// Refuses a write that would grow the namespace's buckets past [`Limits::namespace_bytes`],
    /// by the sum of their meta counts (`bucket`'s taken as `recounted` when given).
    async fn check_namespace_room(
        &self,
        namespace: &str,
        bucket: &str,
        bytes: i64,
        recounted: Option<Meta>,
    ) -> Result<(), ApiError> {
        if bytes <= 0 {
            return Ok(());
        }
        let prefix = format!("/keyvaluebuckets/{namespace}/");
        let metas = self
            .store
            .list(&prefix, None, self.limits.buckets.max(1) * 2)
            .await
            .map_err(store_error)?;
        let total: u64 = metas
            .items
            .iter()
            .map(|kv| match recounted {
                Some(m) if kv.key[prefix.len()..] == *bucket => m.bytes,
                _ => decode_meta(&kv.value).bytes,
            })
            .fold(0u64, u64::saturating_add);
        if total.saturating_add(bytes as u64) <= self.limits.namespace_bytes {
            return Ok(());
        }
        Err(ApiError::Exhausted(format!(
            "namespace {namespace}'s keyvalue buckets hold {total} bytes: {bytes} more would pass its limit of {} bytes",
            self.limits.namespace_bytes
        )))
    }

    async fn meta(&self, namespace: &str, bucket: &str) -> Result<Meta, ApiError> {
        let kv = self
            .store
            .get(&Self::meta_key(namespace, bucket))
            .await
            .map_err(store_error)?;
        Ok(kv.map(|kv| decode_meta(&kv.value)).unwrap_or_default())
    }

    /// Counts the bucket's entries and bytes and writes the count.
    async fn recount(&self, namespace: &str, bucket: &str) -> Result<Meta, ApiError> {
        let prefix = Self::prefix(namespace, bucket);
        let mut actual = Meta::default();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .list(&prefix, after.as_deref(), PAGE)
                .await
                .map_err(store_error)?;
            for kv in &page.items {
                actual.entries += 1;
                actual.bytes += (kv.key.len() - prefix.len() + kv.value.len()) as u64;
            }
            match (page.more, page.items.last()) {
                (true, Some(last)) => after = Some(last.key.clone()),
                _ => break,
            }
        }
        self.update_meta(namespace, bucket, |_| actual).await?;
        Ok(actual)
    }

    /// Adds to the bucket's count.
    async fn count(
        &self,
        namespace: &str,
        bucket: &str,
        entries: i64,
        bytes: i64,
    ) -> Result<(), ApiError> {
        self.update_meta(namespace, bucket, |m| Meta {
            entries: m.entries.saturating_add_signed(entries),
            bytes: m.bytes.saturating_add_signed(bytes),
        })
        .await
    }

    async fn update_meta(
        &self,
        namespace: &str,
        bucket: &str,
        change: impl Fn(Meta) -> Meta,
    ) -> Result<(), ApiError> {
        let key = Self::meta_key(namespace, bucket);
        for attempt in 0..ATTEMPTS {
            let current = self.store.get(&key).await.map_err(store_error)?;
            let written = match &current {
                Some(kv) => {
                    let next = change(decode_meta(&kv.value));
                    self.store
                        .update(&key, encode_meta(next), Some(kv.mod_revision))
                        .await
                }
                // Deleted since the write checked it (its namespace is going): never made here.
                None => return Err(no_such_store(bucket)),
            };
            match written {
                Ok(_) => return Ok(()),
                Err(
                    StoreError::Conflict { .. }
                    | StoreError::NotFound(_)
                    | StoreError::AlreadyExists(_),
                ) => backoff(attempt).await,
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(contended(&key))
    }
}

/// `ENTRIES BYTES`, as text.
fn encode_meta(meta: Meta) -> Bytes {
    Bytes::from(format!("{} {}", meta.entries, meta.bytes))
}

/// A meta value that does not decode counts as empty (a recount mends it).
fn decode_meta(bytes: &[u8]) -> Meta {
    let text = std::str::from_utf8(bytes).unwrap_or_default();
    let mut parts = text.split(' ').map(|p| p.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(entries), Some(bytes)) => Meta { entries, bytes },
        _ => Meta::default(),
    }
}

/// The bucket has no meta key: it was never opened.
fn no_such_store(bucket: &str) -> ApiError {
    ApiError::NotFound {
        plural: "keyvalue buckets",
        name: bucket.to_string(),
    }
}

fn contended(key: &str) -> ApiError {
    ApiError::Exhausted(format!(
        "key {key:?} kept changing: gave up after {ATTEMPTS} compare-and-swap attempts"
    ))
}

/// A short, growing pause between compare-and-swap attempts.
async fn backoff(attempt: usize) {
    if attempt > 2 {
        let micros = 100u64 << attempt.min(10);
        tokio::time::sleep(Duration::from_micros(micros)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};

    fn buckets(limits: Limits) -> (tempfile::TempDir, Buckets) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(&dir.path().join("s.redb"), EmbeddedOptions::default()).unwrap();
        (dir, Buckets::with_limits(Arc::new(store), limits))
    }

    #[tokio::test]
    async fn set_get_delete_and_list_in_a_namespace() {
        let (_d, b) = buckets(Limits::default());
        b.open("a", "").await.unwrap();
        b.set("a", "", "k1", Bytes::from("v1")).await.unwrap();
        b.set("a", "default", "k2/x", Bytes::from("v2"))
            .await
            .unwrap();
        assert_eq!(b.get("a", "", "k1").await.unwrap().unwrap(), "v1");
        // Another namespace's bucket of the same name is another bucket.
        assert_eq!(b.get("b", "", "k1").await.unwrap(), None);
        assert!(b.exists("a", "", "k2/x").await.unwrap());
        let page = b.list_keys("a", "", None).await.unwrap();
        assert_eq!(page.keys, ["k1", "k2/x"]);
        assert_eq!(page.cursor, None);
        assert_eq!(b.list_keys("a", "", Some(1)).await.unwrap().keys, ["k2/x"]);
        b.delete("a", "", "k1").await.unwrap();
        b.delete("a", "", "k1").await.unwrap();
        assert!(!b.exists("a", "", "k1").await.unwrap());
        assert_eq!(b.meta("a", "default").await.unwrap().entries, 1);
        // A deleted namespace takes its buckets along, and no other namespace's.
        b.open("b", "x").await.unwrap();
        b.set("b", "x", "k", Bytes::from("v")).await.unwrap();
        b.delete_namespace("a").await.unwrap();
        assert_eq!(b.get("a", "", "k2/x").await.unwrap(), None);
        assert_eq!(b.meta("a", "default").await.unwrap(), Meta::default());
        assert_eq!(b.get("b", "x", "k").await.unwrap().unwrap(), "v");
    }

    #[tokio::test]
    async fn increments_are_not_lost_between_concurrent_writers() {
        let (_d, b) = buckets(Limits::default());
        b.open("ns", "c").await.unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let b = b.clone();
                tokio::spawn(async move {
                    for _ in 0..25 {
                        b.increment("ns", "c", "n", 2).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(b.get("ns", "c", "n").await.unwrap().unwrap(), "400");
        assert_eq!(b.increment("ns", "c", "n", 1).await.unwrap(), 401);
        b.set("ns", "c", "text", Bytes::from("abc")).await.unwrap();
        let e = b.increment("ns", "c", "text", 1).await.unwrap_err();
        assert!(e.to_string().contains("not a decimal number"), "{e}");
    }

    #[tokio::test]
    async fn limits_are_enforced_and_named() {
        let limits = Limits {
            key_bytes: 8,
            value_bytes: 16,
            entries: 3,
            bucket_bytes: 1000,
            buckets: 2,
            namespace_bytes: 1 << 20,
        };
        let (_d, b) = buckets(limits);
        b.open("ns", "one").await.unwrap();
        b.open("ns", "two").await.unwrap();
        let e = b.open("ns", "three").await.unwrap_err();
        assert!(e.to_string().contains("2 keyvalue buckets"), "{e}");
        let e = b.open("ns", "a/b").await.unwrap_err();
        assert!(e.to_string().contains("bucket name"), "{e}");
        let e = b.set("ns", "one", "longer-than-8", Bytes::new()).await;
        assert!(e.unwrap_err().to_string().contains("1-8 bytes"));
        let e = b.set("ns", "one", "k", Bytes::from(vec![0; 17])).await;
        assert!(e.unwrap_err().to_string().contains("over the limit of 16"));
        for k in ["a", "b", "c"] {
            b.set("ns", "one", k, Bytes::from("x")).await.unwrap();
        }
        let e = b.set("ns", "one", "d", Bytes::from("x")).await.unwrap_err();
        assert!(e.to_string().contains("is full"), "{e}");
        // Overwriting an existing key needs no new entry.
        b.set("ns", "one", "a", Bytes::from("y")).await.unwrap();
        // A count left wrong (a crash between the write and the count) mends at a refusal.
        b.update_meta("ns", "one", |_| Meta {
            entries: 3,
            bytes: 0,
        })
        .await
        .unwrap();
        b.delete("ns", "one", "c").await.unwrap();
        b.update_meta("ns", "one", |_| Meta {
            entries: 99,
            bytes: 0,
        })
        .await
        .unwrap();
        b.set("ns", "one", "d", Bytes::from("x")).await.unwrap();
        assert_eq!(b.meta("ns", "one").await.unwrap().entries, 3);
    }

    #[tokio::test]
    async fn a_namespace_has_one_byte_budget_across_its_buckets() {
        let limits = Limits {
            bucket_bytes: 100,
            namespace_bytes: 150,
            ..Limits::default()
        };
        let (_d, b) = buckets(limits);
        for bucket in ["one", "two"] {
            b.open("ns", bucket).await.unwrap();
            b.open("other", bucket).await.unwrap();
        }
        // 1 + 79 = 80 bytes in each bucket's count.
        let value = || Bytes::from(vec![b'x'; 79]);
        b.set("ns", "one", "a", value()).await.unwrap();
        let e = b.set("ns", "two", "a", value()).await.unwrap_err();
        assert!(matches!(e, ApiError::Exhausted(_)), "{e}");
        assert!(e.to_string().contains("limit of 150 bytes"), "{e}");
        assert_eq!(b.get("ns", "two", "a").await.unwrap(), None);
        // Within the budget is fine, and so is another namespace.
        b.set("ns", "two", "a", Bytes::from(vec![b'x'; 69]))
            .await
            .unwrap();
        b.set("other", "one", "a", value()).await.unwrap();
        b.set("other", "two", "a", Bytes::from(vec![b'x'; 69]))
            .await
            .unwrap();
        // Shrinking is always allowed; freed bytes can be written again.
        b.set("ns", "one", "a", Bytes::from("x")).await.unwrap();
        b.set("ns", "two", "a", value()).await.unwrap();
        // A count left too high (a crash) is mended at a refusal's recount of the bucket.
        b.update_meta("ns", "one", |m| Meta { bytes: 100, ..m })
            .await
            .unwrap();
        b.set("ns", "one", "b", Bytes::from(vec![b'x'; 9]))
            .await
            .unwrap();
        b.update_meta("ns", "one", |m| Meta { bytes: 70, ..m })
            .await
            .unwrap();
        b.set("ns", "one", "c", Bytes::from(vec![b'x'; 9]))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn writes_to_a_bucket_never_opened_are_refused_and_make_nothing() {
        let limits = Limits {
            buckets: 1,
            ..Limits::default()
        };
        let (_d, b) = buckets(limits);
        b.open("ns", "one").await.unwrap();
        let no_such = |e: ApiError| {
            assert!(matches!(e, ApiError::NotFound { .. }), "{e}");
            assert!(e.to_string().starts_with("keyvalue buckets \""), "{e}");
        };
        no_such(b.set("ns", "two", "k", Bytes::from("v")).await.unwrap_err());
        no_such(b.increment("ns", "two", "n", 1).await.unwrap_err());
        no_such(b.delete("ns", "two", "k").await.unwrap_err());
        // No meta key was made behind the cap's back, and no entry.
        assert!(
            b.store
                .get("/keyvaluebuckets/ns/two")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(b.get("ns", "two", "n").await.unwrap(), None);
        let e = b.open("ns", "two").await.unwrap_err();
        assert!(e.to_string().contains("1 keyvalue buckets"), "{e}");
        // A deleted namespace's buckets are gone for writers too.
        b.set("ns", "one", "k", Bytes::from("v")).await.unwrap();
        b.delete_namespace("ns").await.unwrap();
        no_such(b.set("ns", "one", "k", Bytes::from("v")).await.unwrap_err());
    }
}
