//! Merging repeated events the way client-go's EventCorrelator does, so that a crash-looping pod
//! makes one `BackOff` Event counted N times rather than N Events. Three steps, in client-go's
//! order, for every event a reporter records:
//!
//! 1. **Similar events** ([`Options::similar`], 10): when one object gets that many events from
//!    one source with the same reason and type but different messages within [`Options::window`],
//!    the next ones become one `(combined from similar events): <latest message>` event.
//! 2. **Repeats**: an event equal to one recorded before (same involved object, reason, message,
//!    type, source component and host) is written as an update of that Event: `count` + 1,
//!    `lastTimestamp` now, `firstTimestamp` and the name kept. The recent events are kept in an
//!    LRU cache of [`Options::cache_size`] (4096, as client-go) keys.
//! 3. **Spam filter**: a token bucket per source and object (burst [`Options::burst`] 25, one
//!    token back every [`Options::refill`] 5 min); an event finding the bucket empty is not
//!    written, though step 2 counted it, so the next one written carries the full count.
//!
//! Where skiff differs: a repeat more than [`Options::window`] (10 min) after the last one
//! starts a new Event rather than counting on an old one (client-go counts on as long as its
//! cache holds the key), so that `describe`'s `(x4 over 5m)` tells about the recent past; an
//! Event that was deleted meanwhile (the TTL sweep) is created again by the writer.
//!
//! Pure logic: the caller owns the I/O ([`record`] writes through a narrow [`EventSink`]) and
//! passes events with their own `lastTimestamp` as the time, so tests need no clock.
//!
//! Must not: write anything itself, or hold events other than the few fields a key needs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use pbjson_types::Timestamp;

use crate::ResourceExt;
use crate::v1::{Event, ObjectMeta};

/// client-go's `maxLruCacheEntries`.
pub const CACHE_SIZE: usize = 4096;
/// client-go's `defaultAggregateIntervalInSeconds` (10 minutes).
pub const WINDOW: Duration = Duration::from_secs(600);
/// client-go's `defaultSpamBurst`.
pub const SPAM_BURST: u32 = 25;
/// One token back every 5 minutes (client-go's `defaultSpamQPS`, 1/300).
pub const SPAM_REFILL: Duration = Duration::from_secs(300);
/// client-go's `defaultAggregateMaxEvents`.
pub const SIMILAR_MAX: usize = 10;
/// The message prefix of a combined event (client-go's `EventAggregatorByReasonMessageFunc`).
pub const COMBINED: &str = "(combined from similar events): ";

/// The correlator's limits; [`Default`] is client-go's.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub cache_size: usize,
    pub window: Duration,
    pub burst: u32,
    pub refill: Duration,
    pub similar: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cache_size: CACHE_SIZE,
            window: WINDOW,
            burst: SPAM_BURST,
            refill: SPAM_REFILL,
            similar: SIMILAR_MAX,
        }
    }
}

/// What to write for one recorded event.
#[derive(Debug, Clone)]
pub struct Write {
    /// The Event to write: new (count 1, `generateName`) or the existing one's next state.
    pub event: Event,
    /// An update of the Event named in `event.metadata.name`, else a create.
    pub update: bool,
    key: String,
}

/// Remembers recent events; see the module doc.
#[derive(Debug)]
pub struct Correlator {
    options: Options,
    similar: Lru<Similar>,
    seen: Lru<Seen>,
    spam: Lru<Bucket>,
}

#[derive(Debug)]
struct Similar {
    messages: HashSet<String>,
    last: i64,
}

#[derive(Debug)]
struct Seen {
    count: i32,
    first: Option<Timestamp>,
    last: i64,
    /// The stored Event's name, once written.
    name: String,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: i64,
}

impl Default for Correlator {
    fn default() -> Self {
        Self::new(Options::default())
    }
}

impl Correlator {
    pub fn new(options: Options) -> Self {
        let cap = options.cache_size.max(1);
        Self {
            options,
            similar: Lru::new(cap),
            seen: Lru::new(cap),
            spam: Lru::new(cap),
        }
    }

    /// What to write for `event` (a fresh one from [`super::object_event`]), or `None` when
    /// the spam filter holds it back. The event's `lastTimestamp` is taken as now.
    pub fn correlate(&mut self, event: Event) -> Option<Write> {
        let now = seconds(&event);
        let (event, key) = self.aggregate(event, now);
        let write = self.observe(event, key, now);
        self.allowed(&write.event, now).then_some(write)
    }

    /// Notes that `write` was stored as `stored` (its name, for the next repeat's update).
    pub fn written(&mut self, write: &Write, stored: &Event) {
        if let Some(seen) = self.seen.get_mut(&write.key) {
            seen.name = stored.meta().name.clone();
        }
    }

    /// Step 1: similar events with different messages.
    fn aggregate(&mut self, event: Event, now: i64) -> (Event, String) {
        let similar_key = similar_key(&event);
        let window = secs(self.options.window);
        let record = match self.similar.get_mut(&similar_key) {
            Some(r) if now - r.last <= window => r,
            _ => {
                self.similar.insert(
                    similar_key.clone(),
                    Similar {
                        messages: HashSet::new(),
                        last: now,
                    },
                );
                self.similar
                    .get_mut(&similar_key)
                    .expect("just inserted into a cache of at least one")
            }
        };
        record.last = now;
        record.messages.insert(event.message.clone());
        if record.messages.len() < self.options.similar {
            let key = full_key(&event);
            return (event, key);
        }
        // Keep the set below the limit, so that every further one is combined too.
        if let Some(any) = record.messages.iter().next().cloned() {
            record.messages.remove(&any);
        }
        let mut combined = event;
        combined.message = format!("{COMBINED}{}", combined.message);
        (combined, similar_key)
    }

    /// Step 2: a repeat of a recent event updates it.
    fn observe(&mut self, mut event: Event, key: String, now: i64) -> Write {
        let window = secs(self.options.window);
        let repeat = self
            .seen
            .get_mut(&key)
            .filter(|seen| now - seen.last <= window);
        let update = match repeat {
            Some(seen) => {
                seen.count = seen.count.saturating_add(1);
                seen.last = now;
                event.count = seen.count;
                event.first_timestamp = seen.first;
                if seen.name.is_empty() {
                    // Its first write failed (or is not known): a new object, counting on.
                    false
                } else {
                    let meta = event.metadata.get_or_insert_with(ObjectMeta::default);
                    meta.name = seen.name.clone();
                    meta.generate_name.clear();
                    meta.resource_version.clear();
                    true
                }
            }
            None => {
                event.count = 1;
                self.seen.insert(
                    key.clone(),
                    Seen {
                        count: 1,
                        first: event.first_timestamp,
                        last: now,
                        name: String::new(),
                    },
                );
                false
            }
        };
        Write { event, update, key }
    }

    /// Step 3: the token bucket of the event's source and object.
    fn allowed(&mut self, event: &Event, now: i64) -> bool {
        let key = spam_key(event);
        let burst = f64::from(self.options.burst);
        let refill = self.options.refill.as_secs_f64().max(f64::MIN_POSITIVE);
        if self.spam.get_mut(&key).is_none() {
            self.spam.insert(
                key.clone(),
                Bucket {
                    tokens: burst,
                    at: now,
                },
            );
        }
        let Some(bucket) = self.spam.get_mut(&key) else {
            return true;
        };
        let elapsed = (now - bucket.at).max(0) as f64;
        bucket.tokens = (bucket.tokens + elapsed / refill).min(burst);
        bucket.at = bucket.at.max(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Where a recorder writes Events: the agent's API client or the server's registry.
pub trait EventSink {
    type Error: std::fmt::Display;
    fn create(&self, event: Event) -> impl Future<Output = Result<Event, Self::Error>> + Send;
    fn update(&self, event: Event) -> impl Future<Output = Result<Event, Self::Error>> + Send;
    fn is_not_found(error: &Self::Error) -> bool;
}

/// Correlates `event` and writes the outcome: a create, or an update of the Event it repeats
/// (created again if that Event is gone, as client-go does when its patch finds nothing).
/// A held-back event writes nothing.
pub async fn record<S: EventSink>(
    correlator: &mut Correlator,
    sink: &S,
    event: Event,
) -> Result<(), S::Error> {
    let Some(write) = correlator.correlate(event) else {
        return Ok(());
    };
    let stored = if write.update {
        match sink.update(write.event.clone()).await {
            Err(e) if S::is_not_found(&e) => sink.create(as_new(write.event.clone())).await,
            other => other,
        }
    } else {
        sink.create(write.event.clone()).await
    }?;
    correlator.written(&write, &stored);
    Ok(())
}

/// `event` as a new object (`generateName: <object>.`), keeping its count and timestamps.
fn as_new(mut event: Event) -> Event {
    let object = event
        .involved_object
        .as_ref()
        .map(|o| o.name.clone())
        .unwrap_or_default();
    let meta = event.metadata.get_or_insert_with(ObjectMeta::default);
    meta.name.clear();
    meta.resource_version.clear();
    meta.generate_name = format!("{object}.");
    event
}

fn seconds(event: &Event) -> i64 {
    event
        .last_timestamp
        .or(event.first_timestamp)
        .map_or(0, |t| t.seconds)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Source and object: the spam filter's key (client-go's `getSpamKey`).
fn spam_key(e: &Event) -> String {
    let source = e.source.clone().unwrap_or_default();
    let o = e.involved_object.clone().unwrap_or_default();
    [
        source.component.as_str(),
        &source.host,
        &o.kind,
        &o.namespace,
        &o.name,
        &o.uid,
        &o.api_version,
    ]
    .join("\u{0}")
}

/// Source, object, type and reason: the key of similar events.
fn similar_key(e: &Event) -> String {
    format!("{}\u{0}{}\u{0}{}", spam_key(e), e.r#type, e.reason)
}

/// Everything that makes two events the same one: similar, plus the container and message.
fn full_key(e: &Event) -> String {
    let field_path = e
        .involved_object
        .as_ref()
        .map(|o| o.field_path.as_str())
        .unwrap_or_default();
    format!("{}\u{0}{field_path}\u{0}{}", similar_key(e), e.message)
}

/// A map that forgets its least recently used key beyond `cap` keys.
#[derive(Debug)]
struct Lru<V> {
    cap: usize,
    tick: u64,
    map: HashMap<String, (u64, V)>,
    order: BTreeMap<u64, String>,
}

impl<V> Lru<V> {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            tick: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.tick += 1;
        let tick = self.tick;
        let (used, value) = self.map.get_mut(key)?;
        self.order.remove(used);
        self.order.insert(tick, key.to_string());
        *used = tick;
        Some(value)
    }

    fn insert(&mut self, key: String, value: V) {
        self.tick += 1;
        if let Some((used, _)) = self.map.remove(&key) {
            self.order.remove(&used);
        }
        while self.map.len() >= self.cap {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&oldest);
        }
        self.order.insert(self.tick, key.clone());
        self.map.insert(key, (self.tick, value));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
#[path = "correlator_tests.rs"]
mod tests;
