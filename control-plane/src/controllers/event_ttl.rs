//! Event TTL: Events are deleted an hour (`--event-ttl`, Kubernetes' default 1h) after they were
//! last recorded, so a busy cluster's Events do not grow without end.
//!
//! Kubernetes puts each Event under an etcd lease renewed on every write; skiff's store has no
//! leases, so this sweeps: every `ttl / 12` (at most a minute) it lists the Events and deletes
//! those whose last record (`lastTimestamp`, else `firstTimestamp`, else the creation time) is
//! older than the TTL, each at the resourceVersion it read (an Event recorded again meanwhile
//! stays). Deleting an expired Event twice is harmless, so it needs no leader.
//!
//! Must not: touch anything but Events.

use std::sync::Arc;
use std::time::Duration;

use skiff_api::v1::{DeleteRequest, Event};

use crate::auth::Identity;
use crate::error::ApiError;
use crate::registry::Registry;
use crate::store::Store;

/// Kubernetes' `--event-ttl` default.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);

/// The seconds (Unix time) an Event was last recorded.
fn last_recorded(event: &Event) -> i64 {
    event
        .last_timestamp
        .as_ref()
        .or(event.first_timestamp.as_ref())
        .or(event
            .metadata
            .as_ref()
            .and_then(|m| m.creation_timestamp.as_ref()))
        .map(|t| t.seconds)
        .unwrap_or(0)
}

/// The Events of `events` older than `ttl` at `now` (Unix seconds).
pub fn expired(events: &[Event], now: i64, ttl: Duration) -> Vec<&Event> {
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    events
        .iter()
        .filter(|e| now.saturating_sub(last_recorded(e)) >= ttl)
        .collect()
}

/// Deletes the Events expired at `now`; returns how many went.
pub async fn sweep(store: &Arc<dyn Store>, now: i64, ttl: Duration) -> Result<usize, ApiError> {
    let registry = Registry::<Event>::new(store.clone());
    let events = registry.list_all("").await?;
    let mut deleted = 0;
    for event in expired(&events, now, ttl) {
        let Some(meta) = &event.metadata else {
            continue;
        };
        let req = DeleteRequest {
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            resource_version: meta.resource_version.clone(),
            ..Default::default()
        };
        match registry.delete(&Identity::Admin, &req).await {
            Ok(_) => deleted += 1,
            // Recorded again, or deleted by someone else, since the list.
            Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// Sweeps until aborted.
pub async fn run(store: Arc<dyn Store>, ttl: Duration) {
    let period = (ttl / 12).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = skiff_api::time::now().seconds;
        match sweep(&store, now, ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "expired events deleted"),
            Err(e) => tracing::warn!(error = %e, "event TTL sweep failed"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};
    use skiff_api::Timestamp;
    use skiff_api::v1::{Namespace, ObjectMeta, ObjectReference};

    fn event(name: &str, last: Option<i64>, first: Option<i64>) -> Event {
        Event {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            involved_object: Some(ObjectReference {
                kind: "Pod".into(),
                name: "p".into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            reason: "Started".into(),
            message: "started".into(),
            r#type: "Normal".into(),
            last_timestamp: last.map(|seconds| Timestamp { seconds, nanos: 0 }),
            first_timestamp: first.map(|seconds| Timestamp { seconds, nanos: 0 }),
            ..Default::default()
        }
    }

    #[test]
    fn an_event_expires_an_hour_after_it_was_last_recorded() {
        let now = 10_000;
        let events = [
            event("old", Some(now - 3600), Some(now - 7200)),
            event("renewed", Some(now - 60), Some(now - 7200)),
            event("first-only", None, Some(now - 4000)),
            event("fresh", None, Some(now - 10)),
        ];
        let names: Vec<_> = expired(&events, now, DEFAULT_EVENT_TTL)
            .iter()
            .map(|e| e.metadata.as_ref().unwrap().name.clone())
            .collect();
        assert_eq!(names, ["old", "first-only"]);
    }

    #[tokio::test]
    async fn a_sweep_deletes_expired_events_only() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(&dir.path().join("s.redb"), EmbeddedOptions::default()).unwrap(),
        );
        Registry::<Namespace>::new(store.clone())
            .create(
                &Identity::Admin,
                Namespace {
                    metadata: Some(ObjectMeta {
                        name: "default".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let registry = Registry::<Event>::new(store.clone());
        let now = skiff_api::time::now().seconds;
        for e in [
            event("old", Some(now - 4000), None),
            event("new", Some(now - 5), None),
        ] {
            registry.create(&Identity::Admin, e).await.unwrap();
        }
        assert_eq!(sweep(&store, now, DEFAULT_EVENT_TTL).await.unwrap(), 1);
        let left = registry.list_all("").await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].metadata.as_ref().unwrap().name, "new");
    }
}
