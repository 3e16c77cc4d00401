//! One pool of numbered values (the addresses of the service CIDR, the ports of the node-port
//! range), kept in the store as one key per value taken: `/ipaddresses/10.96.0.10`,
//! `/nodeports/30080`, whose value is the [`Claim`] of the object holding it.
//!
//! Taking a value is creating its key: the store refuses a second create, so two API servers
//! sharing one store can never hand out one value twice, and nothing is held in memory between
//! calls. Giving a value back deletes the key, with a compare-and-swap on its revision and only
//! if the claim names the owner giving it back.
//!
//! A free value is found as Kubernetes' allocators find one: dynamic allocation prefers the
//! offsets above a small static band at the bottom of the range (left for values users ask for,
//! Kubernetes' `ServiceIPStaticSubrange` and `ServiceNodePortStaticSubrange`), probing a few
//! random offsets (one create each, cheap in a sparse range) before it lists the claims and picks
//! a random free one (a full or nearly full range).
//!
//! Must not: know Services or field paths (the service layer turns [`PoolError`]s into them), or
//! read anything but its own prefix.

use std::collections::HashSet;
use std::fmt::Display;
use std::hash::Hash;
use std::str::FromStr;

use bytes::Bytes;
use prost::Message;
use rand::Rng;

use crate::store::{KeyValue, Store, StoreError};

/// Who holds a value: the object (kind, namespace, name, uid) and since when.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Claim {
    /// The plural of the holder's kind: `services`.
    #[prost(string, tag = "1")]
    pub resource: String,
    #[prost(string, tag = "2")]
    pub namespace: String,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub uid: String,
    /// Unix seconds when taken: the repair loop leaves a claim with no holder alone for a grace
    /// period, as it may belong to a write still in flight.
    #[prost(int64, tag = "5")]
    pub created: i64,
}

impl Claim {
    /// `services/default/web`.
    pub fn holder(&self) -> String {
        format!("{}/{}/{}", self.resource, self.namespace, self.name)
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    skiff_api::time::now().seconds
}

/// A range of values, offsets `0..size`, each kept under `PREFIX` + value.
pub trait Pool: Send + Sync {
    type Value: Copy + Eq + Hash + Display + FromStr + Send + Sync;

    /// The store prefix of the claims: `/ipaddresses/`.
    const PREFIX: &'static str;

    /// How many offsets the range spans.
    fn size(&self) -> u64;

    /// The value at `offset` (< size).
    fn value(&self, offset: u64) -> Self::Value;

    /// The offset of `value`, if inside the range.
    fn offset(&self, value: Self::Value) -> Option<u64>;

    /// May a free value be handed out from this offset? (Not a network, broadcast or reserved
    /// address.)
    fn dynamic(&self, offset: u64) -> bool;

    /// Offsets below this are left to requested values first (Kubernetes' static sub-range).
    fn static_band(&self) -> u64;
}

/// The store key of the claim on `value`.
pub fn key<P: Pool>(value: P::Value) -> String {
    format!("{}{value}", P::PREFIX)
}

/// Why a value could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("already allocated to {0}")]
    Allocated(String),
    #[error("range is full")]
    Full,
    /// Every free value found was taken by someone else before this caller could take it.
    #[error("no free value could be taken after {0} attempts: too many concurrent allocations")]
    Busy(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Random probes before a list of the claims.
const PROBES: usize = 4;
/// Lists of the claims before giving up on a contended range.
const SCANS: usize = 16;

/// Takes, finds and gives back values of one pool.
pub struct Allocator<'a, P: Pool> {
    store: &'a dyn Store,
    pool: P,
}

impl<'a, P: Pool> Allocator<'a, P> {
    pub fn new(store: &'a dyn Store, pool: P) -> Self {
        Self { store, pool }
    }

    pub fn pool(&self) -> &P {
        &self.pool
    }

    /// Takes `value` for `owner`, wherever it lies (range rules are the caller's).
    pub async fn take(&self, value: P::Value, owner: &Claim) -> Result<(), PoolError> {
        let key = key::<P>(value);
        match self
            .store
            .create(&key, Bytes::from(owner.encode_to_vec()))
            .await
        {
            Ok(_) => Ok(()),
            Err(StoreError::AlreadyExists(_)) => {
                let holder = self
                    .get(value)
                    .await?
                    .map_or_else(|| "another object".to_string(), |(c, _)| c.holder());
                Err(PoolError::Allocated(holder))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes a free value for `owner`: random probes above the static band, then a list of the
    /// claims and a random free value (above the band first).
    pub async fn take_next(&self, owner: &Claim) -> Result<P::Value, PoolError> {
        let size = self.pool.size();
        let band = self.pool.static_band().min(size);
        let value = Bytes::from(owner.encode_to_vec());
        if band < size {
            for _ in 0..PROBES {
                let offset = rand::rng().random_range(band..size);
                if !self.pool.dynamic(offset) {
                    continue;
                }
                let v = self.pool.value(offset);
                match self.store.create(&key::<P>(v), value.clone()).await {
                    Ok(_) => return Ok(v),
                    Err(StoreError::AlreadyExists(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        for _ in 0..SCANS {
            let taken: HashSet<u64> = self
                .claims()
                .await?
                .into_iter()
                .filter_map(|(v, _, _)| self.pool.offset(v))
                .collect();
            let free = |o: &u64| self.pool.dynamic(*o) && !taken.contains(o);
            let offset = random_free(band..size, &free).or_else(|| random_free(0..band, &free));
            let Some(offset) = offset else {
                return Err(PoolError::Full);
            };
            let v = self.pool.value(offset);
            match self.store.create(&key::<P>(v), value.clone()).await {
                Ok(_) => return Ok(v),
                Err(StoreError::AlreadyExists(_)) => {} // raced: look again
                Err(e) => return Err(e.into()),
            }
        }
        Err(PoolError::Busy(SCANS))
    }

    /// The claim on `value`, if taken.
    pub async fn get(&self, value: P::Value) -> Result<Option<(Claim, KeyValue)>, StoreError> {
        let Some(kv) = self.store.get(&key::<P>(value)).await? else {
            return Ok(None);
        };
        Ok(Some((decode(&kv)?, kv)))
    }

    /// Gives `value` back if the claim on it names `uid` (true if it did).
    pub async fn release(&self, value: P::Value, uid: &str) -> Result<bool, StoreError> {
        let Some((claim, kv)) = self.get(value).await? else {
            return Ok(false);
        };
        if claim.uid != uid {
            return Ok(false);
        }
        match self.store.delete(&kv.key, Some(kv.mod_revision)).await {
            Ok(_) => Ok(true),
            // Released or handed over meanwhile: not ours to delete any more.
            Err(StoreError::NotFound(_) | StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every claim under the pool's prefix (in or out of the current range), with its key-value
    /// for a compare-and-swap. Keys that do not parse as a value are skipped.
    pub async fn claims(&self) -> Result<Vec<(P::Value, Claim, KeyValue)>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let page = self.store.list(P::PREFIX, start.as_deref(), 1000).await?;
            for kv in &page.items {
                let Some(value) = kv
                    .key
                    .strip_prefix(P::PREFIX)
                    .and_then(|v| v.parse::<P::Value>().ok())
                else {
                    continue;
                };
                out.push((value, decode(kv)?, kv.clone()));
            }
            if !page.more {
                return Ok(out);
            }
            start = page.items.last().map(|kv| kv.key.clone());
        }
    }
}

fn decode(kv: &KeyValue) -> Result<Claim, StoreError> {
    Claim::decode(kv.value.as_ref())
        .map_err(|e| StoreError::Backend(format!("corrupt claim {}: {e}", kv.key)))
}

/// A random offset of `range` for which `free` holds.
fn random_free(range: std::ops::Range<u64>, free: &impl Fn(&u64) -> bool) -> Option<u64> {
    let count = range.clone().filter(free).count();
    if count == 0 {
        return None;
    }
    let pick = rand::rng().random_range(0..count);
    range.filter(free).nth(pick)
}

/// Kubernetes' static sub-range: `size / step`, at least `min` and at most `max`; none for a
/// range smaller than `min`.
pub fn static_band(size: u64, min: u64, max: u64, step: u64) -> u64 {
    if size < min {
        0
    } else {
        (size / step).clamp(min, max)
    }
}
