//! The latest figures of every pod, as the node agents report them (`NodeMetricsApi.Report`, every
//! few seconds): CPU (a rate over the agent's window), memory, and a function's requests (in
//! flight, and per second as computed here from two reports' totals). Kept in memory only, one
//! entry per pod, replaced by each report of its node: the HorizontalPodAutoscaler controller
//! reads it (and `skiff top` later). A server that restarts knows nothing until the next
//! reports, a few seconds later; figures older than [`STALE`] are not served.
//!
//! Must not: write the store, or trust a report for a pod bound to another node (readers check
//! the sample's node against the pod's `spec.nodeName`, and its uid).

use std::time::{Duration, Instant};

use dashmap::DashMap;
use skiff_api::v1::NodeMetricsReport;

/// Figures older than this are not served (an agent that stopped reporting).
pub const STALE: Duration = Duration::from_secs(60);
/// The most pods one report may carry (a node's `pods` capacity is far below).
pub const MAX_PODS_PER_REPORT: usize = 4096;

/// One container's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSample {
    pub name: String,
    pub cpu_nano_cores: u64,
    pub memory_bytes: u64,
    pub requests_in_flight: Option<u32>,
    pub requests_total: Option<u64>,
}

/// One pod's latest figures.
#[derive(Debug, Clone)]
pub struct PodSample {
    pub node: String,
    pub uid: String,
    pub at: Instant,
    pub containers: Vec<ContainerSample>,
    /// Requests per second between this report and the one before it (a function's).
    pub requests_per_second: Option<f64>,
}

impl PodSample {
    pub fn cpu_millis(&self) -> u64 {
        self.containers
            .iter()
            .map(|c| c.cpu_nano_cores)
            .sum::<u64>()
            / 1_000_000
    }

    pub fn memory_bytes(&self) -> u64 {
        self.containers.iter().map(|c| c.memory_bytes).sum()
    }

    /// Requests in flight in the pod, if its runtime counts them.
    pub fn requests_in_flight(&self) -> Option<u64> {
        let counted: Vec<u64> = self
            .containers
            .iter()
            .filter_map(|c| c.requests_in_flight.map(u64::from))
            .collect();
        (!counted.is_empty()).then(|| counted.iter().sum())
    }

    fn requests_total(&self) -> Option<u64> {
        let counted: Vec<u64> = self
            .containers
            .iter()
            .filter_map(|c| c.requests_total)
            .collect();
        (!counted.is_empty()).then(|| counted.iter().sum())
    }
}

/// `(namespace, name)` of a pod.
pub type PodKey = (String, String);

/// Every pod's latest figures; cheap to share (an `Arc` of it is).
#[derive(Debug, Default)]
pub struct PodMetrics {
    pods: DashMap<PodKey, PodSample>,
}

impl PodMetrics {
    /// Takes a node's report in: its pods' figures replace the earlier ones, and pods of the node
    /// that it no longer reports go.
    pub fn report(&self, report: &NodeMetricsReport) -> Result<(), String> {
        if report.node_name.is_empty() {
            return Err("node_name: required".into());
        }
        if report.pods.len() > MAX_PODS_PER_REPORT {
            return Err(format!(
                "pods: {} pods in one report, more than {MAX_PODS_PER_REPORT}",
                report.pods.len()
            ));
        }
        let now = Instant::now();
        let node = &report.node_name;
        let reported: std::collections::HashSet<PodKey> = report
            .pods
            .iter()
            .map(|p| (p.namespace.clone(), p.name.clone()))
            .collect();
        self.pods
            .retain(|key, sample| sample.node != *node || reported.contains(key));
        for pod in &report.pods {
            let containers: Vec<ContainerSample> = pod
                .containers
                .iter()
                .map(|c| ContainerSample {
                    name: c.name.clone(),
                    cpu_nano_cores: c.cpu_nano_cores,
                    memory_bytes: c.memory_bytes,
                    requests_in_flight: c.requests_in_flight,
                    requests_total: c.requests_total,
                })
                .collect();
            let key = (pod.namespace.clone(), pod.name.clone());
            let mut sample = PodSample {
                node: node.clone(),
                uid: pod.uid.clone(),
                at: now,
                containers,
                requests_per_second: None,
            };
            if let Some(before) = self.pods.get(&key)
                && before.uid == sample.uid
                && let (Some(was), Some(now_total)) =
                    (before.requests_total(), sample.requests_total())
            {
                let secs = now.duration_since(before.at).as_secs_f64();
                sample.requests_per_second = if secs > 0.0 {
                    Some(now_total.saturating_sub(was) as f64 / secs)
                } else {
                    before.requests_per_second
                };
            }
            self.pods.insert(key, sample);
        }
        Ok(())
    }

    /// Pod `namespace/name`'s figures, unless stale.
    pub fn get(&self, namespace: &str, name: &str) -> Option<PodSample> {
        self.pods
            .get(&(namespace.to_string(), name.to_string()))
            .filter(|s| s.at.elapsed() < STALE)
            .map(|s| s.clone())
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{ContainerMetricsSample, PodMetricsSample};

    fn report(node: &str, pods: &[(&str, u64, Option<u64>)]) -> NodeMetricsReport {
        NodeMetricsReport {
            node_name: node.into(),
            window_millis: 1000,
            pods: pods
                .iter()
                .map(|(name, cpu, total)| PodMetricsSample {
                    namespace: "default".into(),
                    name: name.to_string(),
                    uid: format!("uid-{name}"),
                    containers: vec![ContainerMetricsSample {
                        name: "app".into(),
                        cpu_nano_cores: *cpu,
                        memory_bytes: 1 << 20,
                        requests_in_flight: total.map(|_| 2),
                        requests_total: *total,
                    }],
                })
                .collect(),
        }
    }

    #[test]
    fn a_report_replaces_its_nodes_pods_only() {
        let m = PodMetrics::default();
        m.report(&report(
            "a",
            &[("web-1", 250_000_000, None), ("web-2", 0, None)],
        ))
        .unwrap();
        m.report(&report("b", &[("web-3", 0, None)])).unwrap();
        assert_eq!(m.get("default", "web-1").unwrap().cpu_millis(), 250);
        m.report(&report("a", &[("web-1", 500_000_000, None)]))
            .unwrap();
        assert_eq!(m.get("default", "web-1").unwrap().cpu_millis(), 500);
        assert!(m.get("default", "web-2").is_none(), "gone from its node");
        assert!(m.get("default", "web-3").is_some(), "another node's");
        assert!(m.report(&report("", &[])).is_err());
    }

    #[test]
    fn requests_per_second_come_from_two_totals() {
        let m = PodMetrics::default();
        m.report(&report("a", &[("fn-1", 0, Some(100))])).unwrap();
        assert_eq!(m.get("default", "fn-1").unwrap().requests_per_second, None);
        std::thread::sleep(Duration::from_millis(50));
        m.report(&report("a", &[("fn-1", 0, Some(110))])).unwrap();
        let s = m.get("default", "fn-1").unwrap();
        assert!(s.requests_per_second.unwrap() > 10.0, "{s:?}");
        assert_eq!(s.requests_in_flight(), Some(2));
    }
}
