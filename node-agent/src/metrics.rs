//! The node's pods' figures for the control plane (kubelet's summary API, pushed instead of
//! scraped: an edge node needs no listening port): every [`REPORT_PERIOD`] the agent asks each
//! running container's shim for its Stats (the task API: a Linux container's cgroup, a Wasm
//! guest's instance, and a function's request counters), turns the cumulative CPU time into a
//! rate over the period, and sends one `NodeMetricsApi.Report` naming the node. A report is a few
//! dozen bytes per pod; the server keeps only the latest (`control-plane/src/pod_metrics.rs`).
//!
//! A container's first reading has no rate yet: its pod is reported from its second reading on
//! (the HPA counts a pod without figures as Kubernetes does). The machine's own figures
//! ([`crate::host_usage`]) go with each report from the second reading on, for the node's line
//! of `skiff top nodes`.
//!
//! Must not: write objects, or decide anything from the figures.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use skiff_api::client::Transport;
use skiff_api::v1::node_metrics_api_client::NodeMetricsApiClient;
use skiff_api::v1::{ContainerMetricsSample, NodeMetricsReport, PodMetricsSample, ResourceUsage};

use crate::containers::{Containers, Instance};
use crate::host_usage::HostReading;
use crate::shim::TaskUsage;

/// How often the node reports.
pub const REPORT_PERIOD: Duration = Duration::from_secs(2);

/// One container's previous reading.
#[derive(Debug, Clone, Copy)]
struct Previous {
    at: Instant,
    cpu: Duration,
}

/// Turns readings into a report; keeps each container's previous reading.
#[derive(Debug, Default)]
pub struct Reporter {
    previous: HashMap<String, Previous>,
    /// The machine's previous reading.
    host: Option<(Instant, HostReading)>,
}

impl Reporter {
    /// The report of `readings` (pod `namespace/name`, container attempt, figures) taken `at`.
    pub fn report(
        &mut self,
        node: &str,
        at: Instant,
        readings: Vec<(String, Instance, TaskUsage)>,
    ) -> NodeMetricsReport {
        let mut pods: BTreeMap<String, PodMetricsSample> = BTreeMap::new();
        let mut incomplete = std::collections::BTreeSet::new();
        let mut seen = std::collections::HashSet::new();
        for (pod, instance, usage) in readings {
            seen.insert(instance.id.clone());
            let before = self
                .previous
                .insert(instance.id.clone(), Previous { at, cpu: usage.cpu });
            let Some((namespace, name)) = pod.split_once('/') else {
                continue;
            };
            let Some(before) = before else {
                incomplete.insert(pod.clone());
                continue;
            };
            let elapsed = at.saturating_duration_since(before.at).as_nanos();
            let used = usage.cpu.saturating_sub(before.cpu).as_nanos();
            let nano_cores = (used * 1_000_000_000)
                .checked_div(elapsed)
                .map_or(0, |n| u64::try_from(n).unwrap_or(u64::MAX));
            let sample = pods.entry(pod.clone()).or_insert_with(|| PodMetricsSample {
                namespace: namespace.to_string(),
                name: name.to_string(),
                uid: instance.pod_uid.clone(),
                containers: Vec::new(),
            });
            sample.containers.push(ContainerMetricsSample {
                name: instance.container.clone(),
                cpu_nano_cores: nano_cores,
                memory_bytes: usage.memory_bytes,
                requests_in_flight: usage
                    .requests
                    .map(|(_, n)| u32::try_from(n).unwrap_or(u32::MAX)),
                requests_total: usage.requests.map(|(total, _)| total),
                request_duration_count: usage
                    .function
                    .as_ref()
                    .map(|f| f.duration_buckets.iter().sum()),
                request_duration_seconds_sum: usage
                    .function
                    .as_ref()
                    .map(|f| f.duration_sum.as_secs_f64()),
                cold_starts_total: usage.function.as_ref().map(|f| f.instantiations),
            });
        }
        self.previous.retain(|id, _| seen.contains(id));
        NodeMetricsReport {
            node_name: node.to_string(),
            window_millis: u32::try_from(REPORT_PERIOD.as_millis()).unwrap_or(u32::MAX),
            node: None,
            pods: pods
                .into_iter()
                .filter(|(pod, _)| !incomplete.contains(pod))
                .map(|(_, sample)| sample)
                .collect(),
        }
    }
}

impl Reporter {
    /// The machine's usage since its previous reading (None for the first, or no reading).
    pub fn host(&mut self, at: Instant, reading: Option<HostReading>) -> Option<ResourceUsage> {
        let Some(reading) = reading else {
            self.host = None;
            return None;
        };
        let (before_at, before) = self.host.replace((at, reading))?;
        let elapsed = at.saturating_duration_since(before_at).as_nanos();
        let used = reading.busy.saturating_sub(before.busy).as_nanos();
        let cpu_nano_cores = (used * 1_000_000_000)
            .checked_div(elapsed)
            .map_or(0, |n| u64::try_from(n).unwrap_or(u64::MAX));
        Some(ResourceUsage {
            cpu_nano_cores,
            memory_bytes: reading.memory_bytes,
        })
    }
}

/// Reports every [`REPORT_PERIOD`] until aborted.
pub async fn run(transport: Transport, node: String, runtime: Containers) {
    let mut client = NodeMetricsApiClient::new(transport);
    let mut reporter = Reporter::default();
    let mut tick = tokio::time::interval(REPORT_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let readings = runtime.usage().await;
        crate::prometheus::observe_usage(&readings);
        let host = crate::host_usage::read().await;
        let now = Instant::now();
        let mut report = reporter.report(&node, now, readings);
        report.node = reporter.host(now, host);
        if let Err(status) = client.report(report).await {
            tracing::debug!(%status, "reporting the pods' figures");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn reading(
        pod: &str,
        container: &str,
        cpu_ms: u64,
        requests: Option<(u64, u64)>,
    ) -> (String, Instance, TaskUsage) {
        let instance = Instance {
            id: format!("uid-{pod}/{container}/0"),
            pod_uid: format!("uid-{pod}"),
            container: container.into(),
            attempt: 0,
            running: true,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            started_at: SystemTime::UNIX_EPOCH,
            finished_at: SystemTime::UNIX_EPOCH,
            digest: String::new(),
        };
        let usage = TaskUsage {
            cpu: Duration::from_millis(cpu_ms),
            memory_bytes: 1 << 20,
            requests,
            function: None,
        };
        (format!("default/{pod}"), instance, usage)
    }

    #[test]
    fn cpu_is_a_rate_from_the_second_reading_on() {
        let mut r = Reporter::default();
        let t0 = Instant::now();
        let first = r.report("n1", t0, vec![reading("web", "app", 100, None)]);
        assert!(first.pods.is_empty(), "no rate yet");
        // 500 ms of CPU over 2 s: a quarter of a core.
        let t1 = t0 + Duration::from_secs(2);
        let second = r.report("n1", t1, vec![reading("web", "app", 600, Some((9, 1)))]);
        let pod = &second.pods[0];
        assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str()),
            ("default", "web")
        );
        assert_eq!(pod.containers[0].cpu_nano_cores, 250_000_000);
        assert_eq!(pod.containers[0].requests_total, Some(9));
        assert_eq!(pod.containers[0].requests_in_flight, Some(1));
        assert_eq!(second.node_name, "n1");
        // A pod with a new container waits for its second reading too.
        let t2 = t1 + Duration::from_secs(2);
        let third = r.report(
            "n1",
            t2,
            vec![
                reading("web", "app", 600, None),
                reading("web", "side", 0, None),
            ],
        );
        assert!(third.pods.is_empty());
    }

    #[test]
    fn a_functions_latency_and_cold_starts_are_reported_as_totals() {
        let mut r = Reporter::default();
        let t0 = Instant::now();
        let function = |n: u64| {
            let (pod, instance, mut usage) = reading("fn", "fn", 0, Some((n, 0)));
            let mut stats = skiff_runtime::wasm::FunctionStats {
                requests_total: n,
                instantiations: n,
                duration_sum: Duration::from_millis(20 * n),
                ..Default::default()
            };
            stats.duration_buckets[2] = n;
            usage.function = Some(stats);
            (pod, instance, usage)
        };
        r.report("n1", t0, vec![function(3)]);
        let second = r.report("n1", t0 + Duration::from_secs(2), vec![function(5)]);
        let c = &second.pods[0].containers[0];
        assert_eq!(c.request_duration_count, Some(5));
        assert!((c.request_duration_seconds_sum.unwrap() - 0.1).abs() < 1e-9);
        assert_eq!(c.cold_starts_total, Some(5));
        // No function, no function figures.
        let plain = r.report(
            "n1",
            t0 + Duration::from_secs(4),
            vec![reading("fn", "fn", 0, None)],
        );
        assert_eq!(plain.pods[0].containers[0].cold_starts_total, None);
    }

    #[test]
    fn the_machine_is_a_rate_from_its_second_reading_on() {
        let mut r = Reporter::default();
        let t0 = Instant::now();
        let reading = |busy_ms, memory_bytes| HostReading {
            busy: Duration::from_millis(busy_ms),
            memory_bytes,
        };
        assert_eq!(r.host(t0, Some(reading(1_000, 1 << 30))), None);
        // 3 s busy over 2 s: one and a half cores.
        let t1 = t0 + Duration::from_secs(2);
        let u = r.host(t1, Some(reading(4_000, 2 << 30))).unwrap();
        assert_eq!((u.cpu_nano_cores, u.memory_bytes), (1_500_000_000, 2 << 30));
        // A failed reading starts over.
        assert_eq!(r.host(t1, None), None);
        assert_eq!(
            r.host(t1 + Duration::from_secs(2), Some(reading(5_000, 1))),
            None
        );
    }
}
