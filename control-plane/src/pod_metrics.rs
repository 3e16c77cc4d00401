//! The latest figures of every pod, as the node agents report them (`NodeMetricsApi.Report`, every
//! few seconds): CPU (a rate over the agent's window), memory, and a function's requests (in
//! flight, and per second as computed here from two reports' totals). Kept in memory only, per
//! node: a node's report replaces that node's figures whole (its pods it no longer reports go, in
//! time proportional to its own pods, never the cluster's), and never touches another node's, so a
//! node naming a pod bound elsewhere cannot hide that pod's figures. Readers ask for a pod's
//! figures as reported by the node of its `spec.nodeName`. The HorizontalPodAutoscaler controller
//! reads it, and so does the resource metrics API (`crate::resource_metrics`: `skiff top`,
//! metrics.k8s.io), which also reads a node's own figure (its machine's, as the agent reads it). A server that restarts knows nothing until the next reports,
//! a few seconds later; figures older than [`STALE`] are not served, and a node silent for that
//! long is forgotten. The map is bounded: [`MAX_PODS_PER_REPORT`] per report, [`MAX_NODES`]
//! nodes and [`MAX_PODS`] pods in all (Kubernetes' own limits for one cluster), so invented node
//! names cannot grow it without end.
//!
//! Must not: write the store, or trust a report for a pod bound to another node (readers name the
//! pod's node, and check the sample's uid).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use skiff_api::v1::NodeMetricsReport;

/// Figures older than this are not served, and a node that has not reported for this long is
/// forgotten (an agent that stopped reporting).
pub const STALE: Duration = Duration::from_secs(60);
/// The most pods one report may carry (a node's `pods` capacity is far below).
pub const MAX_PODS_PER_REPORT: usize = 4096;
/// The most nodes whose figures are kept (Kubernetes supports 5,000 nodes per cluster).
pub const MAX_NODES: usize = 10_000;
/// The most pods whose figures are kept, over all nodes (Kubernetes supports 150,000 pods per
/// cluster).
pub const MAX_PODS: usize = 150_000;

/// Why a report was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("{0}")]
    Invalid(String),
    /// Taking it would pass [`MAX_NODES`] or [`MAX_PODS`].
    #[error("{0}")]
    Full(String),
}

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
    /// How long the CPU rates were measured over.
    pub window: Duration,
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

/// One node's latest report.
#[derive(Debug)]
struct NodeSamples {
    at: Instant,
    window: Duration,
    /// The machine's own figures (cpu nanocores, memory bytes), when the agent read them.
    own: Option<(u64, u64)>,
    pods: HashMap<PodKey, PodSample>,
}

/// One node's latest figures, for the resource metrics API (`skiff top nodes`).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSample {
    pub at: Instant,
    pub window: Duration,
    pub cpu_nano_cores: u64,
    pub memory_bytes: u64,
}

/// Every pod's latest figures, by the node that reported them; cheap to share (an `Arc` of it
/// is).
#[derive(Debug)]
pub struct PodMetrics {
    nodes: DashMap<String, NodeSamples>,
    /// The pods in [`PodMetrics::nodes`], summed.
    pods: AtomicUsize,
    /// When silent nodes were last looked for.
    swept: Mutex<Instant>,
}

impl Default for PodMetrics {
    fn default() -> Self {
        Self {
            nodes: DashMap::new(),
            pods: AtomicUsize::new(0),
            swept: Mutex::new(Instant::now()),
        }
    }
}

impl PodMetrics {
    /// Takes a node's report in: its pods' figures replace the node's earlier ones whole (pods it
    /// no longer reports go); other nodes' are left alone.
    pub fn report(&self, report: &NodeMetricsReport) -> Result<(), ReportError> {
        if report.node_name.is_empty() {
            return Err(ReportError::Invalid("node_name: required".into()));
        }
        if report.pods.len() > MAX_PODS_PER_REPORT {
            return Err(ReportError::Invalid(format!(
                "pods: {} pods in one report, more than {MAX_PODS_PER_REPORT}",
                report.pods.len()
            )));
        }
        let now = Instant::now();
        self.sweep(now);
        let window = Duration::from_millis(u64::from(report.window_millis));
        let own = report
            .node
            .as_ref()
            .map(|u| (u.cpu_nano_cores, u.memory_bytes));
        let node = &report.node_name;
        let fresh = !self.nodes.contains_key(node);
        if fresh && self.nodes.len() >= MAX_NODES {
            return Err(ReportError::Full(format!(
                "node_name: {node}: figures of {MAX_NODES} nodes are kept already"
            )));
        }
        let entry = self.nodes.entry(node.clone());
        let before = match &entry {
            Entry::Occupied(o) => Some(o.get()),
            Entry::Vacant(_) => None,
        };
        let had = before.map_or(0, |b| b.pods.len());
        let mut pods = HashMap::with_capacity(report.pods.len());
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
                window,
                containers,
                requests_per_second: None,
            };
            if let Some(before) = before.and_then(|b| b.pods.get(&key))
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
            pods.insert(key, sample);
        }
        let count = pods.len();
        // Under the node's entry lock: a concurrent report of the same node waits, others add
        // their own counts.
        let total = self.pods.load(Ordering::Relaxed);
        if count > had && total.saturating_sub(had) + count > MAX_PODS {
            return Err(ReportError::Full(format!(
                "pods: figures of {MAX_PODS} pods are kept already"
            )));
        }
        self.pods.fetch_add(count, Ordering::Relaxed);
        match entry {
            Entry::Occupied(mut o) => {
                o.insert(NodeSamples {
                    at: now,
                    window,
                    own,
                    pods,
                });
            }
            Entry::Vacant(v) => {
                v.insert(NodeSamples {
                    at: now,
                    window,
                    own,
                    pods,
                });
            }
        }
        self.pods.fetch_sub(had, Ordering::Relaxed);
        Ok(())
    }

    /// Forgets the nodes silent for [`STALE`], at most every half of it (one pass over the
    /// nodes, not their pods).
    fn sweep(&self, now: Instant) {
        let Ok(mut swept) = self.swept.try_lock() else {
            return;
        };
        if now.duration_since(*swept) < STALE / 2 {
            return;
        }
        *swept = now;
        drop(swept);
        self.nodes.retain(|_, n| {
            let keep = now.duration_since(n.at) < STALE;
            if !keep {
                self.pods.fetch_sub(n.pods.len(), Ordering::Relaxed);
            }
            keep
        });
    }

    /// Pod `namespace/name`'s figures as node `node` (the pod's `spec.nodeName`) reported them,
    /// unless stale.
    pub fn get(&self, namespace: &str, name: &str, node: &str) -> Option<PodSample> {
        let samples = self.nodes.get(node)?;
        samples
            .pods
            .get(&(namespace.to_string(), name.to_string()))
            .filter(|s| s.at.elapsed() < STALE)
            .cloned()
    }

    /// Node `node`'s figures, unless stale: the machine's own usage as its agent read it, and
    /// never less than the sum of its pods' (an agent that could not read the machine's, or
    /// pods outside what the machine figure covers).
    pub fn node(&self, node: &str) -> Option<NodeSample> {
        let samples = self.nodes.get(node)?;
        if samples.at.elapsed() >= STALE {
            return None;
        }
        let (pods_cpu, pods_memory) = samples.pods.values().fold((0u64, 0u64), |(c, m), p| {
            let cpu: u64 = p.containers.iter().map(|c| c.cpu_nano_cores).sum();
            (c.saturating_add(cpu), m.saturating_add(p.memory_bytes()))
        });
        let (own_cpu, own_memory) = samples.own.unwrap_or((0, 0));
        Some(NodeSample {
            at: samples.at,
            window: samples.window,
            cpu_nano_cores: own_cpu.max(pods_cpu),
            memory_bytes: own_memory.max(pods_memory),
        })
    }

    /// The names of the nodes whose figures are fresh (for `/metrics`, which then asks
    /// [`PodMetrics::node`] and [`PodMetrics::pods_of`] for each).
    pub fn node_names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.at.elapsed() < STALE)
            .map(|n| n.key().clone())
            .collect()
    }

    /// Every pod's figures as node `node` reported them, unless stale.
    pub fn pods_of(&self, node: &str) -> Vec<(PodKey, PodSample)> {
        let Some(samples) = self.nodes.get(node) else {
            return Vec::new();
        };
        samples
            .pods
            .iter()
            .filter(|(_, s)| s.at.elapsed() < STALE)
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    }

    /// How many pods' figures are kept.
    pub fn len(&self) -> usize {
        self.pods.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
            node: None,
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
        assert_eq!(m.get("default", "web-1", "a").unwrap().cpu_millis(), 250);
        m.report(&report("a", &[("web-1", 500_000_000, None)]))
            .unwrap();
        assert_eq!(m.get("default", "web-1", "a").unwrap().cpu_millis(), 500);
        assert!(
            m.get("default", "web-2", "a").is_none(),
            "gone from its node"
        );
        assert!(m.get("default", "web-3", "b").is_some(), "another node's");
        assert!(m.report(&report("", &[])).is_err());
    }

    #[test]
    fn requests_per_second_come_from_two_totals() {
        let m = PodMetrics::default();
        m.report(&report("a", &[("fn-1", 0, Some(100))])).unwrap();
        assert_eq!(
            m.get("default", "fn-1", "a").unwrap().requests_per_second,
            None
        );
        std::thread::sleep(Duration::from_millis(50));
        m.report(&report("a", &[("fn-1", 0, Some(110))])).unwrap();
        let s = m.get("default", "fn-1", "a").unwrap();
        assert!(s.requests_per_second.unwrap() > 10.0, "{s:?}");
        assert_eq!(s.requests_in_flight(), Some(2));
    }

    #[test]
    fn a_node_never_replaces_another_nodes_figures_of_a_pod() {
        let m = PodMetrics::default();
        m.report(&report("a", &[("web-1", 250_000_000, None)]))
            .unwrap();
        // Node b names the same pod (a stale view, or a lie): a's figures stay.
        m.report(&report("b", &[("web-1", 900_000_000, None)]))
            .unwrap();
        assert_eq!(m.get("default", "web-1", "a").unwrap().cpu_millis(), 250);
        assert_eq!(m.get("default", "web-1", "b").unwrap().cpu_millis(), 900);
        assert!(m.get("default", "web-1", "c").is_none());
        // b's next report without it drops b's only.
        m.report(&report("b", &[])).unwrap();
        assert!(m.get("default", "web-1", "b").is_none());
        assert!(m.get("default", "web-1", "a").is_some());
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_node_is_its_own_figure_and_never_less_than_its_pods() {
        use skiff_api::v1::ResourceUsage;
        let m = PodMetrics::default();
        m.report(&report(
            "a",
            &[("web-1", 250_000_000, None), ("web-2", 50_000_000, None)],
        ))
        .unwrap();
        // No machine figure: the pods' sum (two pods of 1 MiB each).
        let a = m.node("a").unwrap();
        assert_eq!((a.cpu_nano_cores, a.memory_bytes), (300_000_000, 2 << 20));
        assert_eq!(a.window, Duration::from_secs(1));
        let mut with_own = report("a", &[("web-1", 250_000_000, None)]);
        with_own.node = Some(ResourceUsage {
            cpu_nano_cores: 1_500_000_000,
            memory_bytes: 512 << 20,
        });
        m.report(&with_own).unwrap();
        let a = m.node("a").unwrap();
        assert_eq!(
            (a.cpu_nano_cores, a.memory_bytes),
            (1_500_000_000, 512 << 20)
        );
        assert!(m.node("b").is_none());
    }

    #[test]
    fn nodes_and_their_pods_are_listed_for_metrics() {
        let m = PodMetrics::default();
        m.report(&report("a", &[("web-1", 250_000_000, None)]))
            .unwrap();
        m.report(&report(
            "b",
            &[("web-2", 50_000_000, None), ("web-3", 0, None)],
        ))
        .unwrap();
        let mut nodes = m.node_names();
        nodes.sort();
        assert_eq!(nodes, ["a", "b"]);
        let mut pods: Vec<String> = m.pods_of("b").into_iter().map(|(k, _)| k.1).collect();
        pods.sort();
        assert_eq!(pods, ["web-2", "web-3"]);
        assert!(m.pods_of("c").is_empty());
    }

    #[test]
    fn a_silent_node_is_forgotten() {
        let m = PodMetrics::default();
        m.report(&report("a", &[("web-1", 0, None), ("web-2", 0, None)]))
            .unwrap();
        assert_eq!(m.len(), 2);
        m.sweep(Instant::now() + STALE);
        assert_eq!(m.len(), 0);
        assert!(m.get("default", "web-1", "a").is_none());
        assert!(m.nodes.is_empty());
    }

    #[test]
    fn invented_nodes_cannot_grow_the_figures_without_end() {
        let m = PodMetrics::default();
        for i in 0..MAX_NODES {
            m.report(&report(&format!("node-{i}"), &[])).unwrap();
        }
        assert!(matches!(
            m.report(&report("one-more", &[])),
            Err(ReportError::Full(_))
        ));
        m.report(&report("node-0", &[("web-1", 0, None)])).unwrap();

        let m = PodMetrics::default();
        let many: Vec<String> = (0..MAX_PODS_PER_REPORT).map(|i| format!("p-{i}")).collect();
        let pods: Vec<(&str, u64, Option<u64>)> =
            many.iter().map(|n| (n.as_str(), 0, None)).collect();
        let fit = MAX_PODS / MAX_PODS_PER_REPORT;
        for i in 0..fit {
            m.report(&report(&format!("node-{i}"), &pods)).unwrap();
        }
        assert_eq!(m.len(), fit * MAX_PODS_PER_REPORT);
        assert!(matches!(
            m.report(&report("one-more", &pods)),
            Err(ReportError::Full(_))
        ));
        // A node already kept may still report as many as before.
        m.report(&report("node-0", &pods)).unwrap();
        assert_eq!(m.len(), fit * MAX_PODS_PER_REPORT);
        let too_many: Vec<(&str, u64, Option<u64>)> = vec![("x", 0, None); MAX_PODS_PER_REPORT + 1];
        assert!(matches!(
            m.report(&report("node-0", &too_many)),
            Err(ReportError::Invalid(_))
        ));
    }
}
