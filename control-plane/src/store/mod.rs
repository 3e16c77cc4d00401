//! The store: a revisioned key-value map with watch, the only place cluster state lives.
//!
//! [`Store`] is what the API server needs, nothing more, so that the embedded backend
//! ([`embedded::EmbeddedStore`], one redb file) and an etcd backend can both implement it and both
//! pass [`conformance`]. Semantics follow etcd's: one global revision counter, bumped by every
//! write; each key remembers the revision that created it and the one that last changed it;
//! a watch from revision R delivers every change after R, in order, exactly once.
//!
//! On etcd, each API server reads and watches through a [`cache::WatchCache`] fed by one etcd
//! watch (`cache_etcd.rs`); it is itself a [`Store`], so everything above it is unchanged.
//!
//! Must not: know about kinds, encodings or validation — values are opaque bytes.

pub mod cache;
mod cache_etcd;
#[cfg(test)]
mod cache_tests;
mod codec;
#[cfg(test)]
mod codec_props;
pub mod conformance;
pub mod embedded;
pub mod encrypt;
pub mod etcd;
pub mod keyring;
pub mod migrate;

use std::pin::Pin;

use bytes::Bytes;
use tokio_stream::Stream;

/// A store revision. 0 is "before anything was written".
pub type Revision = u64;

/// A key, its value and its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change. For a delete, `kv` is the last value with `mod_revision` set to the delete's revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The value before this change (None for a create).
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A page of a list, read at one revision.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub items: Vec<KeyValue>,
    /// The store's revision when the page was read: watch from here to miss nothing.
    pub revision: Revision,
    /// More keys follow the last item.
    pub more: bool,
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event, StoreError>> + Send>>;

/// Store failures. `Backend` is the only one that is not the caller's doing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("key {0} not found")]
    NotFound(String),
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {key} was modified at revision {actual}, not {expected}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    #[error("revision {requested} has been compacted; the oldest available is {oldest}")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    #[error("store backend: {0}")]
    Backend(String),
}

/// The storage interface of the control plane.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Keys starting with `prefix`, in key order, after `start_after` (exclusive) if given;
    /// at most `limit` items when `limit > 0`.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, StoreError>;

    /// Fails with `AlreadyExists` if the key exists.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError>;

    /// Fails with `NotFound` if the key is absent, `Conflict` if `expected` is given and differs
    /// from the key's `mod_revision`.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError>;

    /// Returns the deleted value, its `mod_revision` set to the delete's revision.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError>;

    /// Every change to keys under `prefix` after revision `after`, in revision order, each once.
    /// `Compacted` if `after` is older than the retained history.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream, StoreError>;

    /// The revision of the last write.
    async fn revision(&self) -> Result<Revision, StoreError>;
}
