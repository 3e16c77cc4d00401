//! Keeps an authentication or authorization index in step with the store: a list, then the watch
//! that follows it; when the watch breaks, the index is rebuilt from a new list.
//!
//! Must not: write to the store, or decide anything (the index does).

use std::sync::Arc;
use std::time::Duration;

use skiff_api::v1::{ListRequest, WatchRequest};

use crate::error::ApiError;
use crate::registry::{Registry, Strategy};

/// Pause before listing again after a broken watch.
const RELIST: Duration = Duration::from_secs(1);

/// An in-memory index of one kind's objects.
pub trait Index<K>: Send + Sync + 'static {
    /// Everything there is (after a list): replaces what was known.
    fn replace(&self, objects: Vec<K>);
    /// An object was added or changed.
    fn put(&self, object: K);
    /// An object was deleted.
    fn remove(&self, object: K);
}

/// Fills `index` from a list of `namespace` (empty: all) filtered by `fields`; returns the list's
/// resource version, for [`follow`].
pub async fn load<K: Strategy>(
    registry: &Registry<K>,
    namespace: &str,
    fields: &str,
    index: &dyn Index<K>,
) -> Result<String, ApiError> {
    let mut objects = Vec::new();
    let mut req = ListRequest {
        namespace: namespace.to_string(),
        field_selector: fields.to_string(),
        limit: 500,
        ..Default::default()
    };
    let version = loop {
        let (items, meta) = registry.list(&req).await?;
        objects.extend(items);
        if meta.r#continue.is_empty() {
            break meta.resource_version;
        }
        req.r#continue = meta.r#continue;
    };
    index.replace(objects);
    Ok(version)
}

/// Follows the watch from `version` (a [`load`]'s), relisting when it breaks. Runs until aborted.
pub async fn follow<K: Strategy>(
    registry: Registry<K>,
    namespace: String,
    fields: String,
    index: Arc<dyn Index<K>>,
    mut version: String,
) {
    loop {
        let req = WatchRequest {
            namespace: namespace.clone(),
            field_selector: fields.clone(),
            resource_version: version.clone(),
            ..Default::default()
        };
        match registry.watch(&req).await {
            Ok(mut events) => {
                while let Some(Ok((kind, object))) = events.recv().await {
                    if kind == "DELETED" {
                        index.remove(object);
                    } else {
                        index.put(object);
                    }
                }
            }
            Err(e) => tracing::debug!(kind = K::KIND, error = %e, "index watch refused"),
        }
        tokio::time::sleep(RELIST).await;
        loop {
            match load(&registry, &namespace, &fields, index.as_ref()).await {
                Ok(v) => {
                    version = v;
                    break;
                }
                Err(e) => {
                    tracing::warn!(kind = K::KIND, error = %e, "index list failed");
                    tokio::time::sleep(RELIST).await;
                }
            }
        }
    }
}
