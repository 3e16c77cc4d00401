//! Node certificate revocation: the ConfigMap `kube-system/skiff-revoked-node-certificates`
//! (`skiff node revoke NAME`) kept in memory by a watch, asked by authentication for every node
//! certificate, and the signal that ends a revoked node's open streams (watches, its tunnel).
//!
//! Each key is a node name, each value the RFC 3339 time of its revocation: every certificate of
//! `system:node:NAME` signed up to that time is refused, whoever holds it (the node, or a thief
//! who renewed with its key before the revocation). A certificate signed later (the machine
//! joined again with a bootstrap token) is good. Kubernetes has no such list (it relies on short
//! lifetimes and CSR approval); skiff's nodes renew their own certificates, so a stolen key would
//! otherwise last until the CA changes.
//!
//! Must not: write to the store, or decide what a node may do (the node authorizer does).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use dashmap::DashMap;
use futures::Stream;
use skiff_api::join::{BOOTSTRAP_NAMESPACE, REVOKED_NODES_CONFIG_MAP, parse_rfc3339};
use skiff_api::v1::ConfigMap;
use tokio::sync::watch;
use tonic::Status;

use super::feed::{self, Index};
use crate::error::ApiError;
use crate::registry::Registry;

/// The revoked nodes, by name: the unix second of each revocation.
pub struct RevokedNodes {
    at: DashMap<String, i64>,
    /// Bumped on every change, for [`RevokedNodes::until_revoked`].
    changed: watch::Sender<u64>,
}

impl Default for RevokedNodes {
    fn default() -> Self {
        Self {
            at: DashMap::new(),
            changed: watch::Sender::new(0),
        }
    }
}

fn fields() -> String {
    format!("metadata.name={REVOKED_NODES_CONFIG_MAP}")
}

impl RevokedNodes {
    /// When `node`'s certificates were revoked, if they were.
    pub fn revoked_at(&self, node: &str) -> Option<i64> {
        self.at.get(node).map(|t| *t)
    }

    /// Refuses a certificate of `node` signed at `issued` (unix seconds) if a revocation covers it.
    pub fn check(&self, node: &str, issued: i64) -> Result<(), String> {
        match self.revoked_at(node) {
            Some(at) if issued <= at => Err(format!(
                "the certificate of node {node:?} has been revoked (every certificate of the node signed up to {})",
                skiff_api::join::rfc3339(at)
            )),
            _ => Ok(()),
        }
    }

    /// Completes once a revocation covers a certificate of `node` signed at `issued` (at once if
    /// one does already); never otherwise.
    pub fn until_revoked(
        self: &Arc<Self>,
        node: String,
        issued: i64,
    ) -> impl Future<Output = ()> + Send + 'static {
        let mut changed = self.changed.subscribe();
        let this = self.clone();
        async move {
            loop {
                if this.check(&node, issued).is_err() {
                    return;
                }
                if changed.changed().await.is_err() {
                    // The index is gone (the server is stopping): nothing more will be revoked.
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    /// Loads the list, then keeps it in step with the store (the task runs until aborted).
    pub async fn start(
        self: &Arc<Self>,
        config_maps: Registry<ConfigMap>,
    ) -> Result<tokio::task::JoinHandle<()>, ApiError> {
        let version =
            feed::load(&config_maps, BOOTSTRAP_NAMESPACE, &fields(), self.as_ref()).await?;
        let index: Arc<dyn Index<ConfigMap>> = self.clone();
        Ok(tokio::spawn(feed::follow(
            config_maps,
            BOOTSTRAP_NAMESPACE.to_string(),
            fields(),
            index,
            version,
        )))
    }

    fn set(&self, entries: impl IntoIterator<Item = (String, i64)>) {
        self.at.clear();
        for (node, at) in entries {
            self.at.insert(node, at);
        }
        self.changed.send_modify(|g| *g = g.wrapping_add(1));
    }
}

/// The list's entries; a value that is no RFC 3339 time revokes everything the node holds (a
/// typo must not un-revoke a node).
fn entries(config_map: &ConfigMap) -> Vec<(String, i64)> {
    config_map
        .data
        .iter()
        .map(|(node, at)| (node.clone(), parse_rfc3339(at.trim()).unwrap_or(i64::MAX)))
        .collect()
}

fn is_the_list(config_map: &ConfigMap) -> bool {
    config_map
        .metadata
        .as_ref()
        .is_some_and(|m| m.name == REVOKED_NODES_CONFIG_MAP && m.namespace == BOOTSTRAP_NAMESPACE)
}

impl Index<ConfigMap> for RevokedNodes {
    fn replace(&self, objects: Vec<ConfigMap>) {
        let list = objects.iter().find(|c| is_the_list(c));
        self.set(list.map(entries).unwrap_or_default());
    }

    fn put(&self, object: ConfigMap) {
        if is_the_list(&object) {
            self.set(entries(&object));
        }
    }

    fn remove(&self, object: ConfigMap) {
        if is_the_list(&object) {
            self.set([]);
        }
    }
}

/// What a node's request carries for [`end_when_revoked`]: put in its extensions at
/// authentication.
#[derive(Clone)]
pub struct Revocable {
    pub revoked: Arc<RevokedNodes>,
    pub node: String,
    /// When the certificate the request came with was signed (unix seconds).
    pub issued: i64,
}

impl Revocable {
    /// The request's, if it is a node's.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<Self> {
        request.extensions().get::<Self>().cloned()
    }

    /// Completes when the certificate is revoked.
    pub fn revoked(&self) -> impl Future<Output = ()> + Send + 'static {
        self.revoked.until_revoked(self.node.clone(), self.issued)
    }
}

/// The refusal that ends a revoked node's stream.
pub fn revoked_status(node: &str) -> Status {
    Status::unauthenticated(format!("the certificate of node {node:?} has been revoked"))
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// `stream`, ended with `Unauthenticated` as soon as the certificate of `revocable` (a node's
/// request) is revoked; unchanged for other callers.
pub fn end_when_revoked<T: 'static>(
    revocable: Option<Revocable>,
    stream: impl Stream<Item = Result<T, Status>> + Send + 'static,
) -> Boxed<T> {
    match revocable {
        None => Box::pin(stream),
        Some(r) => Box::pin(Revoking {
            node: r.node.clone(),
            revoked: Some(Box::pin(r.revoked())),
            inner: Box::pin(stream),
        }),
    }
}

struct Revoking<T> {
    node: String,
    /// None once it fired: the stream has ended.
    revoked: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    inner: Boxed<T>,
}

impl<T> Stream for Revoking<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(revoked) = self.revoked.as_mut() else {
            return Poll::Ready(None);
        };
        if revoked.as_mut().poll(cx).is_ready() {
            self.revoked = None;
            tracing::info!(node = %self.node, "stream of a revoked node certificate ended");
            return Poll::Ready(Some(Err(revoked_status(&self.node))));
        }
        self.inner.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use skiff_api::v1::ObjectMeta;

    fn list(entries: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: Some(ObjectMeta {
                name: REVOKED_NODES_CONFIG_MAP.into(),
                namespace: BOOTSTRAP_NAMESPACE.into(),
                ..Default::default()
            }),
            data: entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn certificates_signed_up_to_the_revocation_are_refused() {
        let r = RevokedNodes::default();
        r.put(list(&[
            ("n1", "2026-01-01T00:00:00Z"),
            ("n2", "not a time"),
        ]));
        let at = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        let refused = r.check("n1", at - 100).unwrap_err();
        assert!(
            refused.contains("node \"n1\" has been revoked"),
            "{refused}"
        );
        assert!(r.check("n1", at).is_err());
        // Joined again after it: good.
        assert!(r.check("n1", at + 1).is_ok());
        // A value that is no time revokes everything.
        assert!(r.check("n2", i64::MAX - 1).is_err());
        assert!(r.check("n3", 0).is_ok());
        // Another ConfigMap of the same name elsewhere changes nothing.
        let mut elsewhere = list(&[]);
        elsewhere.metadata.as_mut().unwrap().namespace = "default".into();
        r.put(elsewhere.clone());
        r.remove(elsewhere);
        assert!(r.check("n1", at).is_err());
        // The list deleted: nothing is revoked.
        r.remove(list(&[]));
        assert!(r.check("n1", at).is_ok());
        r.replace(vec![list(&[("n1", "2026-01-01T00:00:00Z")])]);
        assert!(r.check("n1", at).is_err());
    }

    #[tokio::test]
    async fn a_stream_ends_when_its_node_is_revoked() {
        let revoked = Arc::new(RevokedNodes::default());
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<u32, Status>>(4);
        let revocable = Revocable {
            revoked: revoked.clone(),
            node: "n1".into(),
            issued: 1_000,
        };
        let mut stream = end_when_revoked(
            Some(revocable),
            tokio_stream::wrappers::ReceiverStream::new(rx),
        );
        tx.send(Ok(1)).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), 1);
        // Another node's revocation, and one older than the certificate: the stream goes on.
        revoked.put(list(&[
            ("n2", "2026-01-01T00:00:00Z"),
            ("n1", "1970-01-01T00:10:00Z"),
        ]));
        tx.send(Ok(2)).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), 2);
        revoked.put(list(&[("n1", "2026-01-01T00:00:00Z")]));
        let ended = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert_eq!(ended.code(), tonic::Code::Unauthenticated);
        assert!(stream.next().await.is_none());
        // A stream opened after the revocation ends at once; a caller with no node goes on.
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<u32, Status>>(1);
        let again = Revocable {
            revoked: revoked.clone(),
            node: "n1".into(),
            issued: 1_000,
        };
        let mut stream =
            end_when_revoked(Some(again), tokio_stream::wrappers::ReceiverStream::new(rx));
        assert!(stream.next().await.unwrap().is_err());
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<u32, Status>>(1);
        let mut plain = end_when_revoked(None, tokio_stream::wrappers::ReceiverStream::new(rx));
        tx.send(Ok(3)).await.unwrap();
        assert_eq!(plain.next().await.unwrap().unwrap(), 3);
    }
}
