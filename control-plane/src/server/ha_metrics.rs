//! The agents' figures across API servers (HA on etcd): an agent reports to whichever server its
//! channel picks, but the HorizontalPodAutoscaler runs in the leader only, which must see every
//! node's figures. Each server keeps the last report it received from each node and, every
//! [`SHARE_PERIOD`] when it received any, writes them under its own key
//! ([`KEY_PREFIX`]`<host>_<server address>`) in the store; each server reads the other servers'
//! keys (from its watch cache as it is, no quorum read) and takes every report newer than the
//! newest it has for that node (its own or another server's), so whichever server leads has
//! every node's figures a few seconds late at most. Kubernetes has no such need: its
//! metrics-server is one Deployment that scrapes every kubelet.
//!
//! Reports carry the wall-clock time their server received them; one older than [`STALE`] is not
//! taken, so the key a dead server left behind fades on its own. The figures are checked again by
//! [`PodMetrics::report`](crate::pod_metrics::PodMetrics::report) (bounds; a pod's figures are
//! read only from its own node's report), and only API servers write these keys.
//!
//! Must not: write anywhere but its own key, or take a report older than one already taken.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use prost::Message;
use skiff_api::v1::NodeMetricsReport;

use crate::controllers::hpa::Autoscaling;
use crate::store::{Store, StoreError};

/// Where the servers' keys live (outside every kind's prefix).
pub const KEY_PREFIX: &str = "/~skiff/node-metrics/";
/// How often a server writes what it received and reads the others'.
pub const SHARE_PERIOD: Duration = Duration::from_secs(2);
/// Reports older than this (by the receiving server's clock) are not taken.
pub const STALE: Duration = Duration::from_secs(30);

/// One server's key: the reports it last received, one per node.
#[derive(Clone, PartialEq, Message)]
struct Shared {
    #[prost(message, repeated, tag = "1")]
    reports: Vec<Received>,
}

#[derive(Clone, PartialEq, Message)]
struct Received {
    /// When this server received it (unix milliseconds).
    #[prost(int64, tag = "1")]
    at_millis: i64,
    #[prost(message, optional, tag = "2")]
    report: Option<NodeMetricsReport>,
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One server's side of the sharing.
pub struct SharedFigures {
    key: String,
    /// The last report this server received from each node, and when.
    received: DashMap<String, (i64, NodeMetricsReport)>,
    /// The newest report taken for each node (received here or elsewhere), by receive time.
    newest: DashMap<String, i64>,
    /// Whether a report arrived since the last write.
    fresh: AtomicBool,
}

impl SharedFigures {
    /// The sharing of the server listening at `server`: its key is named for this machine and
    /// that address (two servers on `0.0.0.0:6443` of two machines have two keys; a restarted
    /// server takes its own key back).
    pub fn new(server: &str) -> Arc<Self> {
        let name: String = format!("{}_{server}", super::ha::hostname())
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        Arc::new(Self {
            key: format!("{KEY_PREFIX}{name}"),
            received: DashMap::new(),
            newest: DashMap::new(),
            fresh: AtomicBool::new(false),
        })
    }

    /// A report this server took from its node (already in its own figures).
    pub fn received(&self, report: &NodeMetricsReport) {
        let at = now_millis();
        self.newest.insert(report.node_name.clone(), at);
        self.received
            .insert(report.node_name.clone(), (at, report.clone()));
        self.fresh.store(true, Ordering::Relaxed);
    }

    /// Writes and reads every [`SHARE_PERIOD`] until aborted.
    pub fn spawn(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        autoscaling: Autoscaling,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SHARE_PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.publish(store.as_ref()).await {
                    tracing::debug!(error = %e, "sharing the agents' figures");
                }
                match self.collect(store.as_ref(), &autoscaling).await {
                    Ok(taken) if taken > 0 => {
                        tracing::trace!(taken, "agents' figures taken from other servers");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "reading the servers' figures"),
                }
            }
        })
    }

    /// Writes this server's reports, if any arrived since the last write.
    async fn publish(&self, store: &dyn Store) -> Result<(), StoreError> {
        if !self.fresh.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let oldest = now_millis() - STALE.as_millis() as i64;
        self.received.retain(|_, (at, _)| *at >= oldest);
        let shared = Shared {
            reports: self
                .received
                .iter()
                .map(|e| Received {
                    at_millis: e.value().0,
                    report: Some(e.value().1.clone()),
                })
                .collect(),
        };
        let value = Bytes::from(shared.encode_to_vec());
        match store.update(&self.key, value.clone(), None).await {
            Err(StoreError::NotFound(_)) => store.create(&self.key, value).await.map(|_| ()),
            other => other.map(|_| ()),
        }
    }

    /// Takes the other servers' reports that are newer than what this server has; how many.
    async fn collect(
        &self,
        store: &dyn Store,
        autoscaling: &Autoscaling,
    ) -> Result<usize, StoreError> {
        let page = crate::store::cache::not_older_than(0, store.list(KEY_PREFIX, None, 0)).await?;
        let oldest = now_millis() - STALE.as_millis() as i64;
        let mut taken = 0;
        for kv in page.items.iter().filter(|kv| kv.key != self.key) {
            let Ok(shared) = Shared::decode(kv.value.as_ref()) else {
                tracing::debug!(key = %kv.key, "undecodable shared figures");
                continue;
            };
            for received in shared.reports {
                let Some(report) = received.report else {
                    continue;
                };
                if received.at_millis < oldest || !self.newer(&report.node_name, received.at_millis)
                {
                    continue;
                }
                if autoscaling.metrics().report(&report).is_ok() {
                    taken += 1;
                }
            }
        }
        Ok(taken)
    }

    /// Records `at` as `node`'s newest if it is newer than the one taken; whether it was.
    fn newer(&self, node: &str, at: i64) -> bool {
        let mut newest = self.newest.entry(node.to_string()).or_insert(i64::MIN);
        if at > *newest {
            *newest = at;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{ContainerMetricsSample, PodMetricsSample};

    fn report(node: &str, pod: &str, memory: u64) -> NodeMetricsReport {
        NodeMetricsReport {
            node_name: node.into(),
            window_millis: 2_000,
            pods: vec![PodMetricsSample {
                namespace: "default".into(),
                name: pod.into(),
                uid: format!("uid-{pod}"),
                containers: vec![ContainerMetricsSample {
                    name: "main".into(),
                    memory_bytes: memory,
                    ..Default::default()
                }],
            }],
            ..Default::default()
        }
    }

    /// Two servers on one store: a node reporting to A only is seen by B, newer figures replace
    /// older ones, and a report B has newer of its own is not overwritten by A's older one.
    #[tokio::test]
    async fn a_server_sees_the_figures_another_server_received() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            crate::store::embedded::EmbeddedStore::open(
                &dir.path().join("store.redb"),
                crate::store::embedded::EmbeddedOptions::default(),
            )
            .unwrap(),
        );
        let (a, b) = (
            SharedFigures::new("10.0.0.1:6443"),
            SharedFigures::new("10.0.0.2:6443"),
        );
        let (on_a, on_b) = (
            Autoscaling::new(store.clone()),
            Autoscaling::new(store.clone()),
        );
        let take = |fig: &SharedFigures, on: &Autoscaling, r: NodeMetricsReport| {
            on.metrics().report(&r).unwrap();
            fig.received(&r);
        };
        let memory = |on: &Autoscaling, pod: &str, node: &str| {
            on.metrics()
                .get("default", pod, node)
                .map(|s| s.memory_bytes())
        };
        take(&a, &on_a, report("n1", "p1", 100));
        a.publish(store.as_ref()).await.unwrap();
        assert_eq!(b.collect(store.as_ref(), &on_b).await.unwrap(), 1);
        assert_eq!(memory(&on_b, "p1", "n1"), Some(100));
        // Nothing new: nothing taken again.
        assert_eq!(b.collect(store.as_ref(), &on_b).await.unwrap(), 0);
        // B's own newer report of n1 is not replaced by A's older one.
        tokio::time::sleep(Duration::from_millis(5)).await;
        take(&b, &on_b, report("n1", "p1", 300));
        assert_eq!(b.collect(store.as_ref(), &on_b).await.unwrap(), 0);
        assert_eq!(memory(&on_b, "p1", "n1"), Some(300));
        // ... and A takes B's.
        b.publish(store.as_ref()).await.unwrap();
        assert_eq!(a.collect(store.as_ref(), &on_a).await.unwrap(), 1);
        assert_eq!(memory(&on_a, "p1", "n1"), Some(300));
        // A server's own key is never read back as another's.
        a.publish(store.as_ref()).await.unwrap();
        assert_eq!(a.collect(store.as_ref(), &on_a).await.unwrap(), 0);
    }
}
