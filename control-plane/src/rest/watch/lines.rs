//! Watch lines encoded once per event for every REST watcher: a hundred watchers of pods see
//! each change as the same `{"type":...,"object":...}` line, so the first to send it encodes it
//! and the others take its bytes. A line is known by the kind, the event type, the object's
//! namespace/name and resourceVersion, which name one state of one object (watch events are
//! not shaped per caller; Table watches, which are, do not come here).
//!
//! Bounded: past [`CAPACITY`] lines the cache starts again empty (a watcher far behind encodes
//! its own line; nothing is ever wrong, only encoded twice).
//!
//! Must not: hold anything but encoded lines, or be read for Table or bookmark lines.

use std::sync::LazyLock;

use bytes::Bytes;
use dashmap::DashMap;
use skiff_api::{Resource, ResourceExt};

/// Lines kept at most (a burst of this many distinct events is shared by every watcher).
pub const CAPACITY: usize = 4096;

/// kind, event type, namespace, name, resourceVersion.
type Key = (&'static str, &'static str, String, String, String);

/// Encoded lines by event.
struct Lines {
    map: DashMap<Key, Bytes>,
    capacity: usize,
}

impl Lines {
    fn new(capacity: usize) -> Self {
        Self {
            map: DashMap::new(),
            capacity,
        }
    }

    fn line<K: Resource>(
        &self,
        kind: &'static str,
        obj: &K,
        encode: impl FnOnce() -> Bytes,
    ) -> Bytes {
        let meta = obj.meta();
        if meta.resource_version.is_empty() {
            return encode();
        }
        let key = (
            K::KIND,
            kind,
            meta.namespace.clone(),
            meta.name.clone(),
            meta.resource_version.clone(),
        );
        if let Some(line) = self.map.get(&key) {
            return line.clone();
        }
        let line = encode();
        if self.map.len() >= self.capacity {
            self.map.clear();
        }
        self.map.insert(key, line.clone());
        line
    }
}

static LINES: LazyLock<Lines> = LazyLock::new(|| Lines::new(CAPACITY));

/// The line of event `kind` of `obj`, made by `encode` only when no watcher made it before.
pub fn line<K: Resource>(kind: &'static str, obj: &K, encode: impl FnOnce() -> Bytes) -> Bytes {
    LINES.line(kind, obj, encode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{ConfigMap, ObjectMeta};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn cm(name: &str, rv: &str) -> ConfigMap {
        ConfigMap {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "lines-test".into(),
                resource_version: rv.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_event_is_encoded_once_for_every_watcher() {
        let encoded = AtomicUsize::new(0);
        let encode = |text: &'static str| {
            encoded.fetch_add(1, Ordering::SeqCst);
            Bytes::from_static(text.as_bytes())
        };
        let lines = Lines::new(CAPACITY);
        let line = |kind, obj: &ConfigMap, f: &dyn Fn() -> Bytes| lines.line(kind, obj, f);
        let obj = cm("once", "7");
        for _ in 0..100 {
            assert_eq!(line("MODIFIED", &obj, &|| encode("a")), "a");
        }
        assert_eq!(encoded.load(Ordering::SeqCst), 1);
        // Another type, version or name is another line.
        assert_eq!(line("DELETED", &obj, &|| encode("b")), "b");
        assert_eq!(line("MODIFIED", &cm("once", "8"), &|| encode("c")), "c");
        assert_eq!(line("MODIFIED", &cm("twice", "7"), &|| encode("d")), "d");
        assert_eq!(encoded.load(Ordering::SeqCst), 4);
        // An object without a version is never shared.
        let bare = cm("bare", "");
        line("ADDED", &bare, &|| encode("e"));
        line("ADDED", &bare, &|| encode("e"));
        assert_eq!(encoded.load(Ordering::SeqCst), 6);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let lines = Lines::new(16);
        for i in 0..100 {
            lines.line("ADDED", &cm(&format!("bounded-{i}"), "1"), || {
                Bytes::from("x")
            });
        }
        assert!(lines.map.len() <= 16);
    }
}
