use std::cell::RefCell;

use super::*;
use crate::v1::{ObjectReference, Pod};

fn pod(name: &str) -> Pod {
    Pod {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `reason: message` about pod `name`'s container `app`, recorded at `at` (Unix seconds).
fn event(name: &str, reason: &str, message: &str, at: i64) -> Event {
    let reporter = crate::events::Reporter {
        component: "skiff-agent",
        host: "node-1",
    };
    let mut e = crate::events::pod_event(
        reporter,
        &pod(name),
        Some("app"),
        true,
        reason,
        message.into(),
    );
    let ts = Timestamp {
        seconds: at,
        nanos: 0,
    };
    e.first_timestamp = Some(ts);
    e.last_timestamp = Some(ts);
    e
}

/// A store of Events in memory: names them `<object>.<n>` as the server's generateName does.
#[derive(Default)]
struct Store {
    events: RefCell<Vec<Event>>,
}

impl Store {
    fn put(&self, mut e: Event) -> Event {
        let mut events = self.events.borrow_mut();
        let meta = e.metadata.get_or_insert_with(Default::default);
        if meta.name.is_empty() {
            meta.name = format!("{}{}", meta.generate_name, events.len());
        }
        events.retain(|x| x.meta().name != e.meta().name);
        events.push(e.clone());
        e
    }

    fn only(&self) -> Event {
        let events = self.events.borrow();
        assert_eq!(events.len(), 1, "{events:#?}");
        events[0].clone()
    }
}

/// Writes what the correlator says into `store`, as [`record`] does (without the futures).
fn record_into(c: &mut Correlator, store: &Store, e: Event) -> Option<Write> {
    let write = c.correlate(e)?;
    if write.update {
        assert!(
            store
                .events
                .borrow()
                .iter()
                .any(|x| x.meta().name == write.event.meta().name),
            "an update of an Event never written: {write:?}"
        );
    }
    let stored = store.put(write.event.clone());
    c.written(&write, &stored);
    Some(write)
}

#[test]
fn a_repeat_within_the_window_counts_on_the_same_event() {
    let mut c = Correlator::default();
    let store = Store::default();
    let msg = "Back-off restarting failed container app in pod web_default(uid-web)";
    let first = record_into(&mut c, &store, event("web", "BackOff", msg, 1000)).unwrap();
    assert!(!first.update);
    assert_eq!(first.event.count, 1);
    for (i, at) in [1010, 1030, 1600].into_iter().enumerate() {
        let w = record_into(&mut c, &store, event("web", "BackOff", msg, at)).unwrap();
        assert!(w.update, "repeat {i}");
        assert_eq!(w.event.count, i as i32 + 2);
    }
    let stored = store.only();
    assert_eq!(stored.count, 4);
    assert_eq!(stored.first_timestamp.map(|t| t.seconds), Some(1000));
    assert_eq!(stored.last_timestamp.map(|t| t.seconds), Some(1600));
    assert_eq!(stored.meta().name, "web.0");
    assert_eq!(stored.message, msg);
}

#[test]
fn a_repeat_after_the_window_is_a_new_event() {
    let mut c = Correlator::default();
    let store = Store::default();
    record_into(&mut c, &store, event("web", "BackOff", "m", 1000)).unwrap();
    let later = record_into(&mut c, &store, event("web", "BackOff", "m", 1000 + 601)).unwrap();
    assert!(!later.update);
    assert_eq!(later.event.count, 1);
    assert_eq!(later.event.first_timestamp.map(|t| t.seconds), Some(1601));
    assert_eq!(store.events.borrow().len(), 2);
}

#[test]
fn another_message_reason_or_object_is_another_event() {
    let mut c = Correlator::default();
    let store = Store::default();
    for e in [
        event("web", "Failed", "Error: ErrImagePull", 10),
        event("web", "Failed", "Error: ImagePullBackOff", 11),
        event("web", "BackOff", "Error: ErrImagePull", 12),
        event("db", "Failed", "Error: ErrImagePull", 13),
    ] {
        let w = record_into(&mut c, &store, e).unwrap();
        assert!(!w.update, "{w:?}");
    }
    assert_eq!(store.events.borrow().len(), 4);
    // And each counts on by itself.
    let w = record_into(
        &mut c,
        &store,
        event("web", "Failed", "Error: ErrImagePull", 14),
    )
    .unwrap();
    assert!(w.update);
    assert_eq!(w.event.meta().name, "web.0");
    assert_eq!(w.event.count, 2);
}

#[test]
fn another_container_is_another_event() {
    let mut c = Correlator::default();
    let a = event("web", "BackOff", "m", 10);
    let mut b = event("web", "BackOff", "m", 10);
    if let Some(io) = b.involved_object.as_mut() {
        io.field_path = "spec.containers{sidecar}".into();
    }
    assert!(!c.correlate(a).unwrap().update);
    assert_eq!(c.correlate(b).unwrap().event.count, 1);
}

#[test]
fn the_cache_forgets_the_least_recently_used_beyond_its_size() {
    let options = Options {
        cache_size: 3,
        ..Options::default()
    };
    let mut c = Correlator::new(options);
    let store = Store::default();
    for name in ["a", "b", "c"] {
        record_into(&mut c, &store, event(name, "BackOff", "m", 10)).unwrap();
    }
    // `a` used again: `b` is now the least recently used, and goes when `d` comes.
    assert!(
        record_into(&mut c, &store, event("a", "BackOff", "m", 11))
            .unwrap()
            .update
    );
    record_into(&mut c, &store, event("d", "BackOff", "m", 12)).unwrap();
    assert_eq!(c.seen.len(), 3);
    assert!(
        !record_into(&mut c, &store, event("b", "BackOff", "m", 13))
            .unwrap()
            .update,
        "b was forgotten"
    );
    assert!(
        record_into(&mut c, &store, event("a", "BackOff", "m", 14))
            .unwrap()
            .update
    );
    // The default bound is client-go's.
    let mut big = Correlator::default();
    for i in 0..CACHE_SIZE + 10 {
        big.correlate(event(&format!("p{i}"), "BackOff", "m", 10));
    }
    assert_eq!(big.seen.len(), CACHE_SIZE);
    assert_eq!(big.spam.len(), CACHE_SIZE);
}

#[test]
fn the_spam_filter_lets_a_burst_through_then_one_per_refill() {
    let mut c = Correlator::default();
    let mut written = 0;
    for i in 0..40 {
        // Different reasons, so that nothing is merged: only the bucket holds them back.
        if c.correlate(event("web", &format!("R{i}"), "m", 100))
            .is_some()
        {
            written += 1;
        }
    }
    assert_eq!(written, SPAM_BURST);
    assert!(c.correlate(event("web", "R100", "m", 100 + 299)).is_none());
    assert!(c.correlate(event("web", "R101", "m", 100 + 300)).is_some());
    assert!(c.correlate(event("web", "R102", "m", 100 + 301)).is_none());
    // Another object has its own bucket.
    assert!(c.correlate(event("db", "R0", "m", 401)).is_some());
}

#[test]
fn a_held_back_repeat_is_still_counted() {
    let options = Options {
        burst: 1,
        ..Options::default()
    };
    let mut c = Correlator::new(options);
    let store = Store::default();
    record_into(&mut c, &store, event("web", "BackOff", "m", 0)).unwrap();
    assert!(record_into(&mut c, &store, event("web", "BackOff", "m", 10)).is_none());
    let w = record_into(&mut c, &store, event("web", "BackOff", "m", 300)).unwrap();
    assert!(w.update);
    assert_eq!(w.event.count, 3);
    assert_eq!(store.only().count, 3);
}

#[test]
fn ten_similar_events_become_one_combined_event() {
    let mut c = Correlator::default();
    let store = Store::default();
    for i in 0..SIMILAR_MAX - 1 {
        let w = record_into(
            &mut c,
            &store,
            event("web", "Failed", &format!("pull {i}"), 10),
        )
        .unwrap();
        assert!(!w.event.message.starts_with(COMBINED));
    }
    let tenth = record_into(&mut c, &store, event("web", "Failed", "pull 9", 11)).unwrap();
    assert!(!tenth.update);
    assert_eq!(tenth.event.message, format!("{COMBINED}pull 9"));
    let eleventh = record_into(&mut c, &store, event("web", "Failed", "pull 10", 12)).unwrap();
    assert!(eleventh.update);
    assert_eq!(eleventh.event.count, 2);
    assert_eq!(eleventh.event.message, format!("{COMBINED}pull 10"));
    assert_eq!(store.events.borrow().len(), SIMILAR_MAX);
    // A quiet window later, messages stand alone again.
    let later = record_into(&mut c, &store, event("web", "Failed", "pull 11", 12 + 601)).unwrap();
    assert_eq!(later.event.message, "pull 11");
}

#[test]
fn an_update_keeps_the_object_and_reporter() {
    let mut c = Correlator::default();
    let store = Store::default();
    record_into(&mut c, &store, event("web", "BackOff", "m", 0)).unwrap();
    let w = record_into(&mut c, &store, event("web", "BackOff", "m", 5)).unwrap();
    let io: ObjectReference = w.event.involved_object.clone().unwrap();
    assert_eq!((io.name.as_str(), io.uid.as_str()), ("web", "uid-web"));
    assert_eq!(io.field_path, "spec.containers{app}");
    assert_eq!(w.event.meta().generate_name, "");
    assert_eq!(w.event.meta().resource_version, "");
    assert_eq!(w.event.source.unwrap().host, "node-1");
}

#[test]
fn a_deleted_event_is_created_again_with_its_count() {
    let e = as_new({
        let mut c = Correlator::default();
        let store = Store::default();
        record_into(&mut c, &store, event("web", "BackOff", "m", 0)).unwrap();
        c.correlate(event("web", "BackOff", "m", 5)).unwrap().event
    });
    assert_eq!(e.meta().name, "");
    assert_eq!(e.meta().generate_name, "web.");
    assert_eq!(e.count, 2);
}
