//! The namespace controller: a namespace with a deletionTimestamp has everything in it deleted,
//! then goes itself.

use std::sync::Arc;
use std::time::Duration;

use skiff_api::kinds::KINDS;
use skiff_api::v1::Namespace;
use skiff_api::{Resource, ResourceExt};
use tokio_stream::StreamExt;

use crate::server::handler::{decode, key};
use crate::store::{EventKind, Store, StoreError};

/// Lists, reconciles every terminating namespace, then follows the watch; relists on any error.
pub async fn run(store: Arc<dyn Store>) {
    loop {
        if let Err(e) = sync(&store).await {
            tracing::warn!(error = %e, "namespace controller: relisting");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn sync(store: &Arc<dyn Store>) -> Result<(), StoreError> {
    let prefix = format!("/{}/", Namespace::PLURAL);
    let page = store.list(&prefix, None, 0).await?;
    for kv in &page.items {
        reconcile(store, kv).await?;
    }
    let mut events = store.watch(&prefix, page.revision).await?;
    while let Some(event) = events.next().await {
        let event = event?;
        if event.kind == EventKind::Put {
            reconcile(store, &event.kv).await?;
        }
    }
    Ok(())
}

async fn reconcile(store: &Arc<dyn Store>, kv: &crate::store::KeyValue) -> Result<(), StoreError> {
    let Ok(ns) = decode::<Namespace>(kv) else {
        return Ok(());
    };
    if ns.meta().deletion_timestamp.is_none() {
        return Ok(());
    }
    let name = ns.name().to_string();
    for info in KINDS.iter().filter(|k| k.namespaced) {
        let prefix = format!("/{}/{name}/", info.plural);
        loop {
            let page = store.list(&prefix, None, 500).await?;
            for item in &page.items {
                match store.delete(&item.key, None).await {
                    Ok(_) | Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            if !page.more {
                break;
            }
        }
    }
    match store.delete(&key::<Namespace>("", &name), None).await {
        Ok(_) | Err(StoreError::NotFound(_)) => {
            tracing::info!(namespace = %name, "namespace deleted");
            Ok(())
        }
        Err(e) => Err(e),
    }
}
