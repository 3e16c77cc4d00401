//! Leader election on etcd: of several API servers sharing one etcd, one runs the scheduler and
//! the controllers (Kubernetes' `--leader-elect` of kube-scheduler and
//! kube-controller-manager, on an etcd lease instead of a Lease object).
//!
//! A candidate waits until the election key (`/skiff-leader/controllers` beside the data
//! prefix) is absent, then creates it bound to a fresh etcd lease of `ttl`, in one transaction
//! that only succeeds if the key is still absent. The key's `create_revision` names this term.
//! The holder renews its lease every `ttl / 3` and checks the key is still its own; its work gets
//! a store handle fenced by that revision ([`EtcdStore::fenced`]), so once the lease has
//! expired (a leader paused or cut off) none of its writes can land, even before it notices.
//! On losing, the work is aborted and the candidate campaigns again; on a stop, the lease is
//! revoked so another server takes over at once instead of after `ttl`.
//!
//! Must not: run the work without a fence, or keep running it after a renewal it could not
//! confirm for a whole `ttl`.

use std::future::Future;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, WatchOptions};

use crate::store::StoreError;
use crate::store::etcd::{EtcdStore, Fence};

/// The election of the scheduler and controllers.
pub const CONTROLLERS: &str = "controllers";

/// The lease of a leader unless configured: another server leads at most this long after a
/// leader dies (Kubernetes' default is 15 s on Lease objects; an etcd lease is renewed by etcd's
/// own clock, so a shorter one is safe).
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);

/// An API server on etcd (`skiff server --etcd`): the store and the leader lease.
#[derive(Debug, Clone)]
pub struct HaOptions {
    pub etcd: crate::store::etcd::EtcdOptions,
    /// `--leader-elect-lease-duration`.
    pub lease: Duration,
    /// `--watch-cache` (on unless `=false`): reads and watches served from memory.
    pub watch_cache: Option<crate::store::cache::CacheOptions>,
}

/// Options of one candidate.
#[derive(Debug, Clone)]
pub struct LeaderOptions {
    /// Which election (`controllers`).
    pub name: String,
    /// Who this candidate is (stored as the key's value: `etcdctl get` names the leader).
    pub identity: String,
    pub ttl: Duration,
}

/// A won term: the lease and the fence of its writes.
#[derive(Debug, Clone)]
pub struct Term {
    pub lease: i64,
    pub fence: Fence,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("etcd: {e}"))
}

fn ttl_secs(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs().max(2)).unwrap_or(5)
}

/// Waits until the election is free and wins it.
pub async fn campaign(store: &EtcdStore, options: &LeaderOptions) -> Result<Term, StoreError> {
    let key = store.election_key(&options.name);
    let mut client = store.client();
    loop {
        let current = client.get(key.as_str(), None).await.map_err(backend)?;
        if let Some(holder) = current.kvs().first() {
            // Someone leads: wait for the key to go (or a ttl, then look again).
            let from = current.header().map_or(0, |h| h.revision()) + 1;
            tracing::debug!(
                leader = %String::from_utf8_lossy(holder.value()),
                "waiting for the leader's term to end"
            );
            let mut watch = client
                .watch(
                    key.as_str(),
                    Some(WatchOptions::new().with_start_revision(from)),
                )
                .await
                .map_err(backend)?;
            let _ = tokio::time::timeout(options.ttl, async {
                while let Ok(Some(resp)) = watch.message().await {
                    if resp
                        .events()
                        .iter()
                        .any(|e| e.event_type() == etcd_client::EventType::Delete)
                    {
                        return;
                    }
                }
            })
            .await;
            continue;
        }
        let lease = client
            .lease_grant(ttl_secs(options.ttl), None)
            .await
            .map_err(backend)?
            .id();
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.as_str(),
                options.identity.as_bytes(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let resp = client.txn(txn).await.map_err(backend)?;
        if resp.succeeded() {
            let revision = resp
                .header()
                .map(|h| h.revision())
                .ok_or_else(|| backend("a reply without a header"))?;
            return Ok(Term {
                lease,
                fence: Fence {
                    key,
                    create_revision: revision,
                },
            });
        }
        // Another candidate won the race.
        let _ = client.lease_revoke(lease).await;
    }
}

/// Renews `term` until it is lost (the error says why) or `stop` completes (the lease is then
/// revoked and `Ok` returned).
pub async fn hold(
    store: &EtcdStore,
    options: &LeaderOptions,
    term: &Term,
    stop: impl Future<Output = ()>,
) -> Result<(), String> {
    let mut client = store.client();
    let period = options.ttl / 3;
    let mut confirmed = Instant::now();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => {
                let _ = client.lease_revoke(term.lease).await;
                return Ok(());
            }
            _ = tokio::time::sleep(period) => {}
        }
        match renew(store, term).await {
            Ok(()) => confirmed = Instant::now(),
            Err(Renewal::Lost(why)) => return Err(why),
            Err(Renewal::Unknown(why)) => {
                if confirmed.elapsed() >= options.ttl {
                    let _ = client.lease_revoke(term.lease).await;
                    return Err(format!("no renewal confirmed for {:?}: {why}", options.ttl));
                }
                tracing::warn!(error = %why, "leader lease renewal failed; retrying");
            }
        }
    }
}

enum Renewal {
    /// The term is over: the lease expired or the key is another's.
    Lost(String),
    /// etcd did not answer: the term may still hold.
    Unknown(String),
}

async fn renew(store: &EtcdStore, term: &Term) -> Result<(), Renewal> {
    let mut client = store.client();
    let renew = async {
        let (mut keeper, mut stream) = client
            .lease_keep_alive(term.lease)
            .await
            .map_err(|e| Renewal::Unknown(e.to_string()))?;
        keeper
            .keep_alive()
            .await
            .map_err(|e| Renewal::Unknown(e.to_string()))?;
        match stream.message().await {
            Ok(Some(r)) if r.ttl() > 0 => {}
            Ok(Some(_)) => return Err(Renewal::Lost("the lease expired".into())),
            Ok(None) => return Err(Renewal::Unknown("keep-alive stream closed".into())),
            Err(e) => return Err(Renewal::Unknown(e.to_string())),
        }
        let current = client
            .get(term.fence.key.as_str(), None)
            .await
            .map_err(|e| Renewal::Unknown(e.to_string()))?;
        match current.kvs().first() {
            Some(kv) if kv.create_revision() == term.fence.create_revision => Ok(()),
            Some(kv) => Err(Renewal::Lost(format!(
                "{} leads now",
                String::from_utf8_lossy(kv.value())
            ))),
            None => Err(Renewal::Lost("the election key is gone".into())),
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), renew).await {
        Ok(r) => r,
        Err(_) => Err(Renewal::Unknown("etcd did not answer in 5 s".into())),
    }
}

/// Campaigns, runs `work` with a fenced store handle while leading, and campaigns again when the
/// term is lost, until `stop` completes.
pub async fn run<W, F>(
    store: EtcdStore,
    options: LeaderOptions,
    mut work: W,
    stop: impl Future<Output = ()> + Send,
) where
    W: FnMut(EtcdStore) -> F + Send,
    F: Future<Output = ()> + Send + 'static,
{
    tokio::pin!(stop);
    loop {
        let term = tokio::select! {
            _ = &mut stop => return,
            t = campaign(&store, &options) => t,
        };
        let term = match term {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, election = %options.name, "leader election: campaign failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tracing::info!(
            election = %options.name,
            identity = %options.identity,
            term = term.fence.create_revision,
            "became leader"
        );
        let task = tokio::spawn(work(store.fenced(term.fence.clone())));
        let outcome = hold(&store, &options, &term, &mut stop).await;
        task.abort();
        match outcome {
            Ok(()) => {
                tracing::info!(election = %options.name, "stepped down");
                return;
            }
            Err(why) => tracing::warn!(
                election = %options.name,
                reason = %why,
                "lost leadership: the controllers stop until this server leads again"
            ),
        }
    }
}
