//! The latest figures of every pod, as the node agents report them (`NodeMetricsApi.Report`, every
//! few seconds): CPU (a rate over the agent's window), memory, and a function's requests (in
//! flight; and per second, mean duration and cold starts per minute, as computed here from two
//! consecutive reports' totals: [`FunctionWindow`]). Kept in memory only, per
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
    /// A function's admitted requests that ended, and their durations' sum in seconds.
    pub request_duration_count: Option<u64>,
    pub request_duration_seconds_sum: Option<f64>,
    /// A function's cold starts (instances made).
    pub cold_starts_total: Option<u64>,
}

/// A function pod's figures between two consecutive reports of its node (the server's receive
/// times): what ended in that window, so that a Service's figure is a sum over its pods and its
/// mean duration weighs each pod by its requests. A counter that went down (the container
/// restarted from zero) counts from zero, as Prometheus' `rate()` reads a reset.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FunctionWindow {
    /// How long the window was.
    pub seconds: f64,
    /// Requests received in it.
    pub requests: u64,
    /// Admitted requests that ended in it, and the sum of their durations (seconds).
    pub ended: u64,
    pub duration_seconds_sum: f64,
    /// Cold starts in it.
    pub cold_starts: u64,
}

impl FunctionWindow {
    /// The window from `before`'s totals to `now`'s, `seconds` apart; None when the pod reports
    /// no request counts or the window is empty.
    pub fn between(before: &PodSample, now: &PodSample, seconds: f64) -> Option<Self> {
        if !(seconds.is_finite() && seconds > 0.0) {
            return None;
        }
        let requests = counter_delta(before.requests_total()?, now.requests_total()?);
        let (ended, duration_seconds_sum) = match (
            before.duration_count(),
            now.duration_count(),
            before.duration_sum(),
            now.duration_sum(),
        ) {
            (Some(ca), Some(cb), Some(sa), Some(sb)) if cb >= ca && sb >= sa => (cb - ca, sb - sa),
            // A reset: what ended since it.
            (Some(_), Some(cb), Some(_), Some(sb)) => (cb, sb),
            _ => (0, 0.0),
        };
        let cold_starts = match (before.cold_starts_total(), now.cold_starts_total()) {
            (Some(a), Some(b)) => counter_delta(a, b),
            _ => 0,
        };
        Some(Self {
            seconds,
            requests,
            ended,
            duration_seconds_sum,
            cold_starts,
        })
    }

    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// The mean duration of the requests that ended in the window; None when none did.
    pub fn mean_duration_seconds(&self) -> Option<f64> {
        (self.ended > 0).then(|| self.duration_seconds_sum / self.ended as f64)
    }

    pub fn cold_starts_per_minute(&self) -> f64 {
        self.cold_starts as f64 * 60.0 / self.seconds
    }

    /// Several pods' windows as one (a Service's): counts add up, rates add up, and the mean
    /// duration weighs each pod by the requests that ended in it.
    pub fn sum(windows: &[FunctionWindow]) -> Option<Aggregate> {
        if windows.is_empty() {
            return None;
        }
        let mut a = Aggregate::default();
        let (mut ended, mut sum) = (0u64, 0.0f64);
        for w in windows {
            a.requests_per_second += w.requests_per_second();
            a.cold_starts_per_minute += w.cold_starts_per_minute();
            ended = ended.saturating_add(w.ended);
            sum += w.duration_seconds_sum;
        }
        a.mean_duration_seconds = (ended > 0).then(|| sum / ended as f64);
        Some(a)
    }
}

/// Several function pods' figures together (a Service's).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Aggregate {
    pub requests_per_second: f64,
    pub mean_duration_seconds: Option<f64>,
    pub cold_starts_per_minute: f64,
}

/// How much a counter grew from `before` to `now`; a counter that went down restarted from zero.
fn counter_delta(before: u64, now: u64) -> u64 {
    if now >= before { now - before } else { now }
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
    /// A function's figures between this report and the one before it.
    pub function: Option<FunctionWindow>,
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
        sum_of(self.containers.iter().map(|c| c.requests_total))
    }

    fn duration_count(&self) -> Option<u64> {
        sum_of(self.containers.iter().map(|c| c.request_duration_count))
    }

    fn cold_starts_total(&self) -> Option<u64> {
        sum_of(self.containers.iter().map(|c| c.cold_starts_total))
    }

    fn duration_sum(&self) -> Option<f64> {
        let counted: Vec<f64> = self
            .containers
            .iter()
            .filter_map(|c| c.request_duration_seconds_sum)
            .collect();
        (!counted.is_empty()).then(|| counted.iter().sum())
    }
}

/// The sum of the counted ones, if any is.
fn sum_of(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    values.fold(None, |acc, v| match (acc, v) {
        (acc, None) => acc,
        (None, Some(v)) => Some(v),
        (Some(a), Some(v)) => Some(a.saturating_add(v)),
    })
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
                    request_duration_count: c.request_duration_count,
                    // A sum that is no finite non-negative figure is not taken.
                    request_duration_seconds_sum: c
                        .request_duration_seconds_sum
                        .filter(|s| s.is_finite() && *s >= 0.0),
                    cold_starts_total: c.cold_starts_total,
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
                function: None,
            };
            if let Some(before) = before.and_then(|b| b.pods.get(&key))
                && before.uid == sample.uid
            {
                let secs = now.duration_since(before.at).as_secs_f64();
                // Two reports at one instant (HA servers sharing theirs): the last window stays.
                sample.function =
                    FunctionWindow::between(before, &sample, secs).or(before.function);
                sample.requests_per_second = sample
                    .function
                    .map(|w| w.requests_per_second())
                    .or(before.requests_per_second);
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
                        ..Default::default()
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

    /// A function pod's sample with totals: requests, ended requests, their durations' sum,
    /// cold starts.
    fn function(requests: u64, ended: u64, sum: f64, cold: u64) -> PodSample {
        PodSample {
            node: "a".into(),
            uid: "u".into(),
            at: Instant::now(),
            window: Duration::from_secs(2),
            containers: vec![ContainerSample {
                name: "fn".into(),
                requests_total: Some(requests),
                request_duration_count: Some(ended),
                request_duration_seconds_sum: Some(sum),
                cold_starts_total: Some(cold),
                ..Default::default()
            }],
            requests_per_second: None,
            function: None,
        }
    }

    #[test]
    fn a_functions_rate_latency_and_cold_starts_come_from_two_reports() {
        // 20 requests in 2 s, 16 of them ended taking 0.8 s in all, 20 cold starts.
        let w = FunctionWindow::between(
            &function(100, 90, 4.5, 100),
            &function(120, 106, 5.3, 120),
            2.0,
        )
        .unwrap();
        assert_eq!((w.requests, w.ended, w.cold_starts), (20, 16, 20));
        assert!((w.requests_per_second() - 10.0).abs() < 1e-9);
        assert!((w.mean_duration_seconds().unwrap() - 0.05).abs() < 1e-9);
        assert!((w.cold_starts_per_minute() - 600.0).abs() < 1e-9);
        // Nothing ended: no mean (not zero).
        let idle =
            FunctionWindow::between(&function(5, 5, 1.0, 5), &function(5, 5, 1.0, 5), 2.0).unwrap();
        assert_eq!(idle.mean_duration_seconds(), None);
        assert_eq!(idle.requests_per_second(), 0.0);
        // A container restarted: its counters start from zero, and what it counted since is the
        // window's.
        let reset =
            FunctionWindow::between(&function(100, 90, 4.5, 100), &function(4, 4, 0.2, 4), 2.0)
                .unwrap();
        assert_eq!((reset.requests, reset.ended, reset.cold_starts), (4, 4, 4));
        assert!((reset.mean_duration_seconds().unwrap() - 0.05).abs() < 1e-9);
        // No window, or no counts: nothing.
        assert!(
            FunctionWindow::between(&function(1, 1, 1.0, 1), &function(2, 2, 2.0, 2), 0.0)
                .is_none()
        );
        let mut plain = function(0, 0, 0.0, 0);
        plain.containers[0] = ContainerSample::default();
        assert!(FunctionWindow::between(&plain, &plain, 2.0).is_none());
    }

    #[test]
    fn a_services_figure_sums_its_pods_and_weighs_their_latency_by_requests() {
        let a = FunctionWindow {
            seconds: 2.0,
            requests: 20,
            ended: 20,
            duration_seconds_sum: 0.2, // 10 ms each
            cold_starts: 20,
        };
        let b = FunctionWindow {
            seconds: 2.0,
            requests: 2,
            ended: 2,
            duration_seconds_sum: 2.0, // 1 s each
            cold_starts: 0,
        };
        let s = FunctionWindow::sum(&[a, b]).unwrap();
        assert!((s.requests_per_second - 11.0).abs() < 1e-9);
        assert!((s.cold_starts_per_minute - 600.0).abs() < 1e-9);
        // (0.2 + 2.0) / 22, not the mean of the means (0.505).
        assert!((s.mean_duration_seconds.unwrap() - 0.1).abs() < 1e-9);
        assert_eq!(FunctionWindow::sum(&[]), None);
        let quiet = FunctionWindow {
            seconds: 2.0,
            ..Default::default()
        };
        assert_eq!(
            FunctionWindow::sum(&[quiet]).unwrap().mean_duration_seconds,
            None
        );
    }

    #[test]
    fn a_report_keeps_the_functions_window_and_drops_bad_sums() {
        let m = PodMetrics::default();
        let mut r = report("a", &[("fn-1", 0, Some(10))]);
        let c = &mut r.pods[0].containers[0];
        c.request_duration_count = Some(10);
        c.request_duration_seconds_sum = Some(0.5);
        c.cold_starts_total = Some(10);
        m.report(&r).unwrap();
        assert_eq!(m.get("default", "fn-1", "a").unwrap().function, None);
        std::thread::sleep(Duration::from_millis(20));
        let c = &mut r.pods[0].containers[0];
        c.requests_total = Some(14);
        c.request_duration_count = Some(14);
        c.request_duration_seconds_sum = Some(0.9);
        c.cold_starts_total = Some(14);
        m.report(&r).unwrap();
        let w = m.get("default", "fn-1", "a").unwrap().function.unwrap();
        assert_eq!((w.requests, w.ended, w.cold_starts), (4, 4, 4));
        assert!((w.mean_duration_seconds().unwrap() - 0.1).abs() < 1e-9);
        // A sum that is not a finite, non-negative figure is not taken.
        r.pods[0].containers[0].request_duration_seconds_sum = Some(f64::NAN);
        m.report(&r).unwrap();
        let s = m.get("default", "fn-1", "a").unwrap();
        assert_eq!(s.containers[0].request_duration_seconds_sum, None);
        assert_eq!(s.function.unwrap().mean_duration_seconds(), None);
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
