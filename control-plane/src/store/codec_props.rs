//! Property tests (proptest) of the embedded store's byte layouts: any bytes decode to a value or
//! to nothing (a corrupt record), never a panic; what is encoded decodes back unchanged.

use bytes::Bytes;
use proptest::prelude::*;

use super::codec::{decode_event, decode_object, encode_event, encode_object};
use super::{Event, EventKind, KeyValue};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn kv(key: String, value: Vec<u8>, create: u64, modified: u64) -> KeyValue {
    KeyValue {
        key,
        value: Bytes::from(value),
        create_revision: create,
        mod_revision: modified,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_decode_or_are_refused(raw in prop::collection::vec(any::<u8>(), 0..96), revision in any::<u64>()) {
        let _ = decode_object("/pods/default/x", &raw);
        let _ = decode_event(revision, &raw);
    }

    #[test]
    fn objects_round_trip(create in any::<u64>(), modified in any::<u64>(), payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let raw = encode_object(create, modified, &payload);
        let back = decode_object("/k", &raw);
        prop_assert_eq!(back, Some(kv("/k".into(), payload, create, modified)));
    }

    #[test]
    fn events_round_trip(
        delete in any::<bool>(),
        key in "/[a-z]{1,8}/[a-z0-9.-]{0,12}",
        value in prop::collection::vec(any::<u8>(), 0..48),
        prev in proptest::option::of((any::<u64>(), any::<u64>(), prop::collection::vec(any::<u8>(), 0..48))),
        create in any::<u64>(),
        revision in any::<u64>(),
    ) {
        let event = Event {
            kind: if delete { EventKind::Delete } else { EventKind::Put },
            kv: kv(key.clone(), value, create, revision),
            prev: prev.map(|(c, m, v)| kv(key.clone(), v, c, m)),
        };
        let raw = encode_event(&event);
        prop_assert_eq!(decode_event(revision, &raw), Some(event.clone()));
        // Every strict prefix is a corrupt record, never a panic or a different event.
        for cut in 0..raw.len() {
            prop_assert_ne!(decode_event(revision, &raw[..cut]), Some(event.clone()));
        }
    }
}
