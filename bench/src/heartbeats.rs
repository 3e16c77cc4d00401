//! Node heartbeats as agents send them, for many simulated nodes at once: each node's Lease in
//! `kube-node-lease` is renewed every period (the write), and its Node read (the agent's check
//! whether its status changed; unchanged here, so no status write), the nodes spread evenly over
//! the period. Used by `bench/run scheduler` to bind pods while 5,000 nodes heartbeat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_api::client::Api;
use skiff_api::v1::{Lease, LeaseSpec, Node, ObjectMeta};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The namespace of node Leases.
const NAMESPACE: &str = "kube-node-lease";

/// Tasks that share the renewals (each owns every `WORKERS`-th node).
const WORKERS: usize = 64;

/// What the heartbeats did.
#[derive(Default)]
pub struct Report {
    pub renewals: usize,
    pub failures: usize,
    /// Lease update latencies, sorted.
    pub latency: Vec<Duration>,
    /// The slowest a node went between two renewals (the period, plus any lag).
    pub max_gap: Duration,
}

/// Heartbeats running in the background until [`Heartbeats::stop`].
pub struct Heartbeats {
    stop: watch::Sender<bool>,
    tasks: JoinSet<Result<Report, String>>,
}

fn lease(name: &str) -> Lease {
    Lease {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            namespace: NAMESPACE.into(),
            ..Default::default()
        }),
        spec: Some(LeaseSpec {
            holder_identity: Some(name.to_string()),
            lease_duration_seconds: Some(40),
            acquire_time: Some(skiff_api::time::now()),
            renew_time: Some(skiff_api::time::now()),
            lease_transitions: None,
        }),
    }
}

impl Heartbeats {
    /// Creates a Lease for each of `names`, then renews each every `period`.
    pub async fn start(
        leases: Api<Lease>,
        nodes: Api<Node>,
        names: Vec<String>,
        period: Duration,
    ) -> Result<Self, String> {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let count = names.len().max(1);
        let names = Arc::new(names);
        for w in 0..WORKERS {
            let (leases, nodes, names, mut stopped) = (
                leases.clone(),
                nodes.clone(),
                names.clone(),
                stopped.clone(),
            );
            tasks.spawn(async move {
                let mine: Vec<usize> = (w..names.len()).step_by(WORKERS).collect();
                let mut held = Vec::with_capacity(mine.len());
                for &i in &mine {
                    let created = leases
                        .create(lease(&names[i]))
                        .await
                        .map_err(|e| format!("lease {}: {e}", names[i]))?;
                    held.push(created);
                }
                // Node i renews at i/count of the period, every period.
                let origin = Instant::now();
                let mut last_renewed: Vec<Option<Instant>> = vec![None; mine.len()];
                let mut report = Report::default();
                let mut round: u32 = 0;
                'run: loop {
                    for (slot, &i) in mine.iter().enumerate() {
                        let at = origin + period * round + period.mul_f64(i as f64 / count as f64);
                        tokio::select! {
                            () = tokio::time::sleep_until(at.into()) => {}
                            _ = stopped.changed() => break 'run,
                        }
                        let mut next = held[slot].clone();
                        if let Some(spec) = next.spec.as_mut() {
                            spec.renew_time = Some(skiff_api::time::now());
                        }
                        let t = Instant::now();
                        match leases.update(next).await {
                            Ok(renewed) => {
                                report.latency.push(t.elapsed());
                                held[slot] = renewed;
                                report.renewals += 1;
                                if let Some(last) = last_renewed[slot] {
                                    report.max_gap = report.max_gap.max(t.duration_since(last));
                                }
                                last_renewed[slot] = Some(t);
                            }
                            Err(_) => report.failures += 1,
                        }
                        if nodes.get(&names[i]).await.is_err() {
                            report.failures += 1;
                        }
                    }
                    round += 1;
                }
                Ok(report)
            });
        }
        Ok(Self { stop, tasks })
    }

    pub async fn stop(mut self) -> Result<Report, String> {
        let _ = self.stop.send(true);
        let mut report = Report::default();
        while let Some(done) = self.tasks.join_next().await {
            let part = done.map_err(|e| e.to_string())??;
            report.renewals += part.renewals;
            report.failures += part.failures;
            report.latency.extend(part.latency);
            report.max_gap = report.max_gap.max(part.max_gap);
        }
        report.latency.sort();
        Ok(report)
    }
}
