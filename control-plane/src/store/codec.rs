//! Byte layouts of the embedded store's tables (little-endian, length-prefixed).
//!
//! object value: create_revision u64 | mod_revision u64 | payload
//! event value:  kind u8 | key_len u32 | key | create u64 | value_len u32 | value
//!               | has_prev u8 [| prev_create u64 | prev_mod u64 | prev_len u32 | prev]

use bytes::Bytes;

use super::{Event, EventKind, KeyValue, Revision};

pub fn encode_object(create: Revision, modified: Revision, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + payload.len());
    out.extend_from_slice(&create.to_le_bytes());
    out.extend_from_slice(&modified.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn decode_object(key: &str, raw: &[u8]) -> Option<KeyValue> {
    let mut r = Reader(raw);
    let create_revision = r.u64()?;
    let mod_revision = r.u64()?;
    Some(KeyValue {
        key: key.to_string(),
        value: Bytes::copy_from_slice(r.0),
        create_revision,
        mod_revision,
    })
}

pub fn encode_event(e: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + e.kv.key.len() + e.kv.value.len());
    out.push(match e.kind {
        EventKind::Put => 0,
        EventKind::Delete => 1,
    });
    put_bytes(&mut out, e.kv.key.as_bytes());
    out.extend_from_slice(&e.kv.create_revision.to_le_bytes());
    put_bytes(&mut out, &e.kv.value);
    match &e.prev {
        None => out.push(0),
        Some(p) => {
            out.push(1);
            out.extend_from_slice(&p.create_revision.to_le_bytes());
            out.extend_from_slice(&p.mod_revision.to_le_bytes());
            put_bytes(&mut out, &p.value);
        }
    }
    out
}

pub fn decode_event(revision: Revision, raw: &[u8]) -> Option<Event> {
    let mut r = Reader(raw);
    let kind = match r.u8()? {
        0 => EventKind::Put,
        1 => EventKind::Delete,
        _ => return None,
    };
    let key = String::from_utf8(r.bytes()?.to_vec()).ok()?;
    let create_revision = r.u64()?;
    let value = Bytes::copy_from_slice(r.bytes()?);
    let prev = match r.u8()? {
        0 => None,
        _ => {
            let create_revision = r.u64()?;
            let mod_revision = r.u64()?;
            let value = Bytes::copy_from_slice(r.bytes()?);
            Some(KeyValue {
                key: key.clone(),
                value,
                create_revision,
                mod_revision,
            })
        }
    };
    Some(Event {
        kind,
        kv: KeyValue {
            key,
            value,
            create_revision,
            mod_revision: revision,
        },
        prev,
    })
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self
            .take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)?;
        self.take(usize::try_from(len).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_roundtrip() {
        let kv = |v: &'static [u8], c, m| KeyValue {
            key: "/pods/a".into(),
            value: Bytes::from_static(v),
            create_revision: c,
            mod_revision: m,
        };
        for e in [
            Event {
                kind: EventKind::Put,
                kv: kv(b"new", 3, 7),
                prev: Some(kv(b"old", 3, 5)),
            },
            Event {
                kind: EventKind::Delete,
                kv: kv(b"", 1, 9),
                prev: None,
            },
        ] {
            let raw = encode_event(&e);
            assert_eq!(decode_event(e.revision(), &raw), Some(e));
            assert_eq!(
                decode_event(1, &raw[..raw.len() - 1]),
                None,
                "truncated input is refused"
            );
        }
        let o = decode_object("/k", &encode_object(2, 4, b"xyz")).unwrap();
        assert_eq!(
            (o.create_revision, o.mod_revision, &o.value[..]),
            (2, 4, &b"xyz"[..])
        );
    }
}
