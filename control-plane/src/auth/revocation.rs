//! Client certificate revocation, for nodes and users: the ConfigMaps
//! `kube-system/skiff-revoked-node-certificates` (`skiff node revoke NAME`) and
//! `kube-system/skiff-revoked-user-certificates` (`skiff user revoke NAME`), each kept in memory by
//! a watch, asked by authentication for every client certificate, and the signal that ends a
//! revoked holder's open streams (watches, a node's tunnel).
//!
//! Each key names a holder (a node name; a user name as [`revoked_user_key`] spells it), each
//! value the RFC 3339 time of its revocation: every certificate of that holder signed up to that
//! time is refused, whoever holds it (the node, or a thief who renewed with its key before the
//! revocation; a user and any copy of their key). A certificate signed later (the machine joined
//! again with a bootstrap token; the admin gave the user a new one) is good. Kubernetes has no
//! such list (it relies on short lifetimes and CSR approval, and cannot revoke a user's
//! certificate at all); skiff's nodes renew their own certificates, and user certificates are
//! made offline for months, so a stolen key would otherwise last until the CA changes.
//!
//! Must not: write to the store, or decide what a holder may do (authorization does).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use dashmap::DashMap;
use futures::Stream;
use skiff_api::join::{
    BOOTSTRAP_NAMESPACE, REVOKED_NODES_CONFIG_MAP, REVOKED_USERS_CONFIG_MAP, parse_rfc3339,
    user_of_revoked_key,
};
use skiff_api::v1::ConfigMap;
use tokio::sync::watch;
use tonic::Status;

use super::feed::{self, Index};
use crate::error::ApiError;
use crate::registry::Registry;

/// Whose certificates a list revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// `system:node:NAME` certificates, keyed by node name.
    Node,
    /// Users' certificates (by common name), keyed by [`skiff_api::join::revoked_user_key`].
    User,
}

impl Holder {
    fn config_map(self) -> &'static str {
        match self {
            Holder::Node => REVOKED_NODES_CONFIG_MAP,
            Holder::User => REVOKED_USERS_CONFIG_MAP,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Holder::Node => "node",
            Holder::User => "user",
        }
    }

    /// The holder a list's key names; `None`: no holder (ignored).
    fn name_of(self, key: &str) -> Option<String> {
        match self {
            Holder::Node => Some(key.to_string()),
            Holder::User => user_of_revoked_key(key),
        }
    }
}

/// The revoked holders of one kind, by name: the unix second of each revocation.
pub struct RevokedCertificates {
    holder: Holder,
    at: DashMap<String, i64>,
    /// Bumped on every change, for [`RevokedCertificates::until_revoked`].
    changed: watch::Sender<u64>,
}

/// The list of revoked node certificates (the name the rest of the server knows it by).
pub type RevokedNodes = RevokedCertificates;

impl Default for RevokedCertificates {
    /// The nodes' list.
    fn default() -> Self {
        Self::of(Holder::Node)
    }
}

impl RevokedCertificates {
    /// An empty list of `holder`'s certificates.
    pub fn of(holder: Holder) -> Self {
        Self {
            holder,
            at: DashMap::new(),
            changed: watch::Sender::new(0),
        }
    }

    /// Whose certificates it revokes.
    pub fn holder(&self) -> Holder {
        self.holder
    }

    fn fields(&self) -> String {
        format!("metadata.name={}", self.holder.config_map())
    }
    /// When `name`'s certificates were revoked, if they were.
    pub fn revoked_at(&self, name: &str) -> Option<i64> {
        self.at.get(name).map(|t| *t)
    }

    /// Refuses a certificate of `name` signed at `issued` (unix seconds) if a revocation covers it.
    pub fn check(&self, name: &str, issued: i64) -> Result<(), String> {
        let word = self.holder.word();
        match self.revoked_at(name) {
            Some(at) if issued <= at => Err(format!(
                "the certificate of {word} {name:?} has been revoked (every certificate of the {word} signed up to {})",
                skiff_api::join::rfc3339(at)
            )),
            _ => Ok(()),
        }
    }

    /// Completes once a revocation covers a certificate of `name` signed at `issued` (at once if
    /// one does already); never otherwise.
    pub fn until_revoked(
        self: &Arc<Self>,
        name: String,
        issued: i64,
    ) -> impl Future<Output = ()> + Send + 'static {
        let mut changed = self.changed.subscribe();
        let this = self.clone();
        async move {
            loop {
                if this.check(&name, issued).is_err() {
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
        Ok(tokio::spawn(self.load(config_maps).await?))
    }

    /// Loads the list; the future that then keeps it in step with the store.
    async fn load(
        self: &Arc<Self>,
        config_maps: Registry<ConfigMap>,
    ) -> Result<impl Future<Output = ()> + Send + 'static, ApiError> {
        let version = feed::load(
            &config_maps,
            BOOTSTRAP_NAMESPACE,
            &self.fields(),
            self.as_ref(),
        )
        .await?;
        let index: Arc<dyn Index<ConfigMap>> = self.clone();
        Ok(feed::follow(
            config_maps,
            BOOTSTRAP_NAMESPACE.to_string(),
            self.fields(),
            index,
            version,
        ))
    }

    fn set(&self, entries: impl IntoIterator<Item = (String, i64)>) {
        self.at.clear();
        for (node, at) in entries {
            self.at.insert(node, at);
        }
        self.changed.send_modify(|g| *g = g.wrapping_add(1));
    }
}

/// Loads every list, then keeps them in step with the store, in one task (runs until aborted).
pub async fn start_all(
    lists: &[&Arc<RevokedCertificates>],
    config_maps: Registry<ConfigMap>,
) -> Result<tokio::task::JoinHandle<()>, ApiError> {
    let mut feeds = Vec::with_capacity(lists.len());
    for list in lists {
        feeds.push(list.load(config_maps.clone()).await?);
    }
    Ok(tokio::spawn(async move {
        futures::future::join_all(feeds).await;
    }))
}

/// The list's entries; a value that is no RFC 3339 time revokes everything the holder has (a
/// typo must not un-revoke anyone). A key that names no holder is skipped.
fn entries(holder: Holder, config_map: &ConfigMap) -> Vec<(String, i64)> {
    config_map
        .data
        .iter()
        .filter_map(|(key, at)| {
            let name = holder.name_of(key)?;
            Some((name, parse_rfc3339(at.trim()).unwrap_or(i64::MAX)))
        })
        .collect()
}

fn is_the_list(holder: Holder, config_map: &ConfigMap) -> bool {
    config_map
        .metadata
        .as_ref()
        .is_some_and(|m| m.name == holder.config_map() && m.namespace == BOOTSTRAP_NAMESPACE)
}

impl Index<ConfigMap> for RevokedCertificates {
    fn replace(&self, objects: Vec<ConfigMap>) {
        let list = objects.iter().find(|c| is_the_list(self.holder, c));
        self.set(list.map(|l| entries(self.holder, l)).unwrap_or_default());
    }

    fn put(&self, object: ConfigMap) {
        if is_the_list(self.holder, &object) {
            self.set(entries(self.holder, &object));
        }
    }

    fn remove(&self, object: ConfigMap) {
        if is_the_list(self.holder, &object) {
            self.set([]);
        }
    }
}

/// What a request made with a client certificate carries for [`end_when_revoked`]: put in its
/// extensions at authentication.
#[derive(Clone)]
pub struct Revocable {
    /// The list of the certificate's holder's kind (nodes or users).
    pub revoked: Arc<RevokedCertificates>,
    /// The node's or user's name.
    pub name: String,
    /// When the certificate the request came with was signed (unix seconds).
    pub issued: i64,
}

impl Revocable {
    /// The request's, if it came with a client certificate.
    pub fn of<T>(request: &tonic::Request<T>) -> Option<Self> {
        request.extensions().get::<Self>().cloned()
    }

    /// Completes when the certificate is revoked.
    pub fn revoked(&self) -> impl Future<Output = ()> + Send + 'static {
        self.revoked.until_revoked(self.name.clone(), self.issued)
    }

    /// The refusal that ends its streams.
    pub fn status(&self) -> Status {
        revoked_status(self.revoked.holder(), &self.name)
    }
}

/// The refusal that ends a revoked holder's stream.
pub fn revoked_status(holder: Holder, name: &str) -> Status {
    Status::unauthenticated(format!(
        "the certificate of {} {name:?} has been revoked",
        holder.word()
    ))
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// `stream`, ended with `Unauthenticated` as soon as the certificate of `revocable` (a request
/// made with a client certificate) is revoked; unchanged for other callers.
pub fn end_when_revoked<T: 'static>(
    revocable: Option<Revocable>,
    stream: impl Stream<Item = Result<T, Status>> + Send + 'static,
) -> Boxed<T> {
    match revocable {
        None => Box::pin(stream),
        Some(r) => Box::pin(Revoking {
            status: r.status(),
            revoked: Some(Box::pin(r.revoked())),
            inner: Box::pin(stream),
        }),
    }
}

struct Revoking<T> {
    /// What the stream ends with.
    status: Status,
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
            tracing::info!(why = %self.status.message(), "stream of a revoked client certificate ended");
            return Poll::Ready(Some(Err(self.status.clone())));
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

    #[test]
    fn users_are_revoked_by_their_spelled_names_in_their_own_list() {
        let users = RevokedCertificates::of(Holder::User);
        let mut list = list(&[
            ("jane_40corp", "2026-01-01T00:00:00Z"),
            ("bad_zz", "2026-01-01T00:00:00Z"),
        ]);
        // The nodes' list changes nothing for users.
        users.put(list.clone());
        assert!(users.check("jane@corp", 0).is_ok());
        list.metadata.as_mut().unwrap().name = REVOKED_USERS_CONFIG_MAP.into();
        users.put(list);
        let at = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        let refused = users.check("jane@corp", at).unwrap_err();
        assert!(
            refused.contains("the certificate of user \"jane@corp\" has been revoked"),
            "{refused}"
        );
        assert!(users.check("jane@corp", at + 1).is_ok());
        assert!(users.check("jane", 0).is_ok());
        assert_eq!(users.at.len(), 1, "a key that spells no name is skipped");
        assert_eq!(
            revoked_status(Holder::User, "jane").message(),
            "the certificate of user \"jane\" has been revoked"
        );
    }

    #[tokio::test]
    async fn a_stream_ends_when_its_node_is_revoked() {
        let revoked = Arc::new(RevokedNodes::default());
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<u32, Status>>(4);
        let revocable = Revocable {
            revoked: revoked.clone(),
            name: "n1".into(),
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
            name: "n1".into(),
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
