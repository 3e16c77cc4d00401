//! Copying one store into another (`skiff server --import-embedded-store`: an embedded-store
//! cluster moved onto etcd, docs/ha.md).
//!
//! Keys and values are copied as they are (sealed Secrets stay sealed: the copy runs under any
//! wrapper); revisions are the target's own, so clients re-list afterwards.
//!
//! Must not: write into a target that already holds keys (two clusters would mix), or decode
//! values.

use super::{Store, StoreError};

/// Keys copied per page read from the source.
const PAGE: usize = 500;

/// Copies every key of `from` into `to`, which must be empty; returns how many were copied.
pub async fn copy_all(from: &dyn Store, to: &dyn Store) -> Result<usize, StoreError> {
    if let Some(kv) = to.list("/", None, 1).await?.items.first() {
        return Err(StoreError::AlreadyExists(format!(
            "{} (the target store is not empty)",
            kv.key
        )));
    }
    let mut copied = 0;
    let mut after: Option<String> = None;
    loop {
        let page = from.list("/", after.as_deref(), PAGE).await?;
        for kv in &page.items {
            to.create(&kv.key, kv.value.clone()).await?;
            copied += 1;
        }
        after = page.items.last().map(|kv| kv.key.clone());
        if !page.more || after.is_none() {
            return Ok(copied);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::Bytes;

    use super::*;
    use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn copies_every_key_and_refuses_a_target_with_keys() {
        let dir = tempfile::tempdir().unwrap();
        let from = EmbeddedStore::open(&dir.path().join("a"), EmbeddedOptions::default()).unwrap();
        let to = EmbeddedStore::open(&dir.path().join("b"), EmbeddedOptions::default()).unwrap();
        for i in 0..1234 {
            let key = format!("/pods/ns/p{i:04}");
            from.create(&key, Bytes::from(key.clone())).await.unwrap();
        }
        from.delete("/pods/ns/p0007", None).await.unwrap();
        assert_eq!(copy_all(&from, &to).await.unwrap(), 1233);
        let page = to.list("/", None, 0).await.unwrap();
        assert_eq!(page.items.len(), 1233);
        assert!(page.items.iter().all(|kv| kv.value == kv.key.as_bytes()));
        assert!(matches!(
            copy_all(&from, &to).await,
            Err(StoreError::AlreadyExists(_))
        ));
    }
}
