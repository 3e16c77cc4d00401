//! The control-plane controllers of one API server: run at once on the embedded store, or only
//! while this server holds the leader lease when the store is etcd (docs/ha.md).
//!
//! On etcd, the controllers and the scheduler get a store handle fenced by the leader's term
//! ([`crate::leader`]), wrapped for Secrets at rest exactly as the API's own handle is, so a
//! deposed leader's writes are refused by etcd itself. They read from the server's watch cache
//! (`store/cache.rs`) like the API does; only their writes take the fenced handle.
//!
//! Must not: run controllers on etcd without the lease, or let a stopping server keep its lease
//! until it expires (it is revoked, and another server leads at once).

use std::sync::Arc;
use std::time::Duration;

use crate::controllers::hpa::{Autoscaling, HpaOptions};
use crate::controllers::node_ipam::NodeIpamOptions;
use crate::controllers::node_lifecycle::LifecycleOptions;
use crate::leader::{self, LeaderOptions};
use crate::store::Store;
use crate::store::cache::WatchCache;
use crate::store::etcd::EtcdStore;

/// Turns a (fenced) etcd handle into the store the controllers use (the Secrets' sealing).
pub(super) type Wrap = Arc<dyn Fn(Arc<dyn Store>) -> Arc<dyn Store> + Send + Sync>;

/// What leader election needs: the etcd store, the lease and the wrapping.
pub(super) struct Ha {
    pub etcd: EtcdStore,
    pub lease: Duration,
    pub identity: String,
    pub wrap: Wrap,
}

impl Ha {
    /// The candidate of the API server at `addr`: its controllers' store seals Secrets as
    /// `sealed`, the API's own handle, does (its keys, its prefixes), over the fenced store; with
    /// the server's watch `cache`, they read from it and write through the fenced handle.
    pub fn new(
        etcd: EtcdStore,
        cache: Option<WatchCache>,
        lease: Duration,
        addr: std::net::SocketAddr,
        sealed: crate::store::encrypt::EncryptedStore,
    ) -> Self {
        let wrap: Wrap = Arc::new(move |fenced| {
            let inner: Arc<dyn Store> = match &cache {
                Some(cache) => Arc::new(cache.writing_to(fenced)),
                None => fenced,
            };
            Arc::new(sealed.over(inner))
        });
        let host = hostname();
        Self {
            etcd,
            lease,
            identity: format!("{host} {addr} pid {}", std::process::id()),
            wrap,
        }
    }
}

/// This machine's name (the leader's identity and the HA figures' key name it).
pub(super) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The controllers' options, as `ControlPlane` holds them.
pub(super) struct ControllerOptions {
    pub lifecycle: LifecycleOptions,
    pub ipam: NodeIpamOptions,
    pub autoscaling: Autoscaling,
    pub hpa: HpaOptions,
}

/// The running controllers (or the candidate that runs them while leading).
pub(super) struct Controllers {
    task: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Controllers {
    /// Starts the controllers on `store`, or the election that runs them when `ha` is set.
    pub fn spawn(ha: Option<Ha>, store: Arc<dyn Store>, options: ControllerOptions) -> Self {
        let ControllerOptions {
            lifecycle,
            ipam,
            autoscaling,
            hpa,
        } = options;
        let Some(ha) = ha else {
            let task = tokio::spawn(crate::controllers::run(
                store,
                lifecycle,
                ipam,
                autoscaling,
                hpa,
            ));
            return Self { task, stop: None };
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let candidate = LeaderOptions {
            name: leader::CONTROLLERS.to_string(),
            identity: ha.identity,
            ttl: ha.lease,
        };
        let wrap = ha.wrap;
        let task = tokio::spawn(leader::run(
            ha.etcd,
            candidate,
            move |fenced: EtcdStore| {
                crate::controllers::run(
                    wrap(Arc::new(fenced)),
                    lifecycle,
                    ipam,
                    autoscaling.clone(),
                    hpa,
                )
            },
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            task,
            stop: Some(stop),
        }
    }

    /// Stops the controllers; a leader gives its lease back (waiting at most 2 s for etcd).
    pub async fn stop(mut self) {
        match self.stop.take() {
            Some(stop) => {
                let _ = stop.send(());
                if tokio::time::timeout(Duration::from_secs(2), &mut self.task)
                    .await
                    .is_err()
                {
                    self.task.abort();
                }
            }
            None => self.task.abort(),
        }
    }
}
