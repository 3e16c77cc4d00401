//! A function's counters: [`Counters`], updated per request without locks, and
//! [`FunctionStats`], a reading of them, with its wire form.
//!
//! The wire form ([`FunctionStats::encode`]/[`FunctionStats::decode`]) is a protobuf message
//! (field numbers below, all `uint64`, plus `repeated uint64 duration_buckets = 9` packed): the
//! shim puts it in its task API's `Stats` reply as field [`FunctionStats::METRICS_FIELD`] of the
//! `io.containerd.cgroups.v2.Metrics` it sends, a field containerd does not know and so skips,
//! and a skiff agent reads. Must not: decide anything from the figures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the duration histogram's buckets (the last bucket is everything above).
pub const DURATION_BUCKETS: [Duration; 7] = [
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_millis(2500),
    Duration::from_secs(10),
];

/// A function's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionStats {
    /// Requests received (every outcome, rejections included).
    pub requests_total: u64,
    /// Requests being served now (admitted, guest not yet done).
    pub in_flight: u64,
    /// Rejected with 503: past the concurrency cap, or no free instance slot.
    pub rejected_busy: u64,
    /// Ended 504: past the timeout before a response began.
    pub timed_out: u64,
    /// Rejected with 413: body past the limit.
    pub rejected_too_large: u64,
    /// Ended 500: a trap, or the guest returned no response.
    pub errors: u64,
    /// Instances made (one per admitted request: every one is a cold start).
    pub instantiations: u64,
    /// Sum of the durations of admitted requests that ended.
    pub duration_sum: Duration,
    /// Counts of those durations per [`DURATION_BUCKETS`] bound, then one for the rest.
    pub duration_buckets: [u64; DURATION_BUCKETS.len() + 1],
}

/// The live counters of one function instance.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests_total: AtomicU64,
    pub in_flight: AtomicU64,
    pub rejected_busy: AtomicU64,
    pub timed_out: AtomicU64,
    pub rejected_too_large: AtomicU64,
    pub errors: AtomicU64,
    pub instantiations: AtomicU64,
    duration_nanos: AtomicU64,
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// An admitted request ended after `d`.
    pub(crate) fn observe(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.duration_nanos.fetch_add(nanos, Ordering::Relaxed);
        let i = DURATION_BUCKETS
            .iter()
            .position(|b| d <= *b)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) -> FunctionStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FunctionStats {
            requests_total: get(&self.requests_total),
            in_flight: get(&self.in_flight),
            rejected_busy: get(&self.rejected_busy),
            timed_out: get(&self.timed_out),
            rejected_too_large: get(&self.rejected_too_large),
            errors: get(&self.errors),
            instantiations: get(&self.instantiations),
            duration_sum: Duration::from_nanos(get(&self.duration_nanos)),
            duration_buckets: std::array::from_fn(|i| get(&self.buckets[i])),
        }
    }
}

impl FunctionStats {
    /// The field of `io.containerd.cgroups.v2.Metrics` the shim's Stats carries these in.
    pub const METRICS_FIELD: u32 = 5021;

    /// The protobuf encoding (see the module doc).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        let fields = [
            self.requests_total,
            self.in_flight,
            self.rejected_busy,
            self.timed_out,
            self.rejected_too_large,
            self.errors,
            self.instantiations,
            u64::try_from(self.duration_sum.as_nanos()).unwrap_or(u64::MAX),
        ];
        for (i, v) in fields.into_iter().enumerate() {
            if v != 0 {
                varint(&mut out, (i as u64 + 1) << 3);
                varint(&mut out, v);
            }
        }
        let mut packed = Vec::new();
        for b in self.duration_buckets {
            varint(&mut packed, b);
        }
        varint(&mut out, (9 << 3) | 2);
        varint(&mut out, packed.len() as u64);
        out.extend_from_slice(&packed);
        out
    }

    /// Reads [`FunctionStats::encode`]'s form; unknown fields are skipped.
    pub fn decode(mut bytes: &[u8]) -> Option<Self> {
        let mut s = FunctionStats::default();
        while !bytes.is_empty() {
            let key = read_varint(&mut bytes)?;
            let (field, wire) = (key >> 3, key & 7);
            match wire {
                0 => {
                    let v = read_varint(&mut bytes)?;
                    match field {
                        1 => s.requests_total = v,
                        2 => s.in_flight = v,
                        3 => s.rejected_busy = v,
                        4 => s.timed_out = v,
                        5 => s.rejected_too_large = v,
                        6 => s.errors = v,
                        7 => s.instantiations = v,
                        8 => s.duration_sum = Duration::from_nanos(v),
                        _ => {}
                    }
                }
                2 => {
                    let len = usize::try_from(read_varint(&mut bytes)?).ok()?;
                    let (mut value, rest) = (bytes.get(..len)?, bytes.get(len..)?);
                    bytes = rest;
                    if field == 9 {
                        let mut i = 0;
                        while !value.is_empty() {
                            let v = read_varint(&mut value)?;
                            if let Some(slot) = s.duration_buckets.get_mut(i) {
                                *slot = v;
                            }
                            i += 1;
                        }
                    }
                }
                1 => bytes = bytes.get(8..)?,
                5 => bytes = bytes.get(4..)?,
                _ => return None,
            }
        }
        Some(s)
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_read_and_round_trip() {
        let c = Counters::default();
        Counters::bump(&c.requests_total);
        Counters::bump(&c.requests_total);
        Counters::bump(&c.timed_out);
        Counters::bump(&c.instantiations);
        c.observe(Duration::from_millis(3));
        c.observe(Duration::from_millis(300));
        c.observe(Duration::from_secs(60));
        let s = c.read();
        assert_eq!((s.requests_total, s.timed_out, s.instantiations), (2, 1, 1));
        assert_eq!(s.duration_sum, Duration::from_millis(60_303));
        assert_eq!(s.duration_buckets, [1, 0, 0, 0, 1, 0, 0, 1]);
        assert_eq!(FunctionStats::decode(&s.encode()), Some(s));
        let empty = FunctionStats::default();
        assert_eq!(FunctionStats::decode(&empty.encode()), Some(empty));
        assert_eq!(FunctionStats::decode(&[0x08]), None);
    }
}
