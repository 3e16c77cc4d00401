//! The figures agents report for their nodes and pods (`crate::pod_metrics`, what `skiff top` and
//! metrics.k8s.io show), read at each scrape: `skiff_node_cpu_usage_cores{node}`,
//! `skiff_node_memory_working_set_bytes{node}`, `skiff_pod_cpu_usage_cores{namespace,pod,node}`
//! and `skiff_pod_memory_working_set_bytes{namespace,pod,node}`. CPU is a rate (cores, averaged
//! over the agent's report window, as metrics-server's), so these are gauges and skiff's own
//! names; the kubelet's cumulative `container_cpu_usage_seconds_total` is on each agent's
//! `/metrics`. A Wasm pod's figure is its own instances' (wasmtime's accounting in the shim),
//! not the shared shim process's. One series per node and per pod with fresh figures: a pod
//! that is gone, or a node silent for a minute, leaves no series behind.
//!
//! Must not: keep figures of its own.

use std::sync::RwLock;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::controllers::hpa::Autoscaling;
use crate::pod_metrics::{NodeSample, PodKey, PodSample};

/// Where the figures are: the running control plane's (set by [`watch`]).
static SOURCE: RwLock<Option<Autoscaling>> = RwLock::new(None);

/// Exports the figures `autoscaling` keeps (the last control plane started in this process).
pub fn watch(autoscaling: Autoscaling) {
    if let Ok(mut source) = SOURCE.write() {
        *source = Some(autoscaling);
    }
}

/// Encodes the pod and node figures at each scrape.
#[derive(Debug)]
pub(super) struct Collector;

/// What one scrape reads.
type Figures = Vec<(String, NodeSample, Vec<(PodKey, PodSample)>)>;

fn read() -> Figures {
    let Ok(source) = SOURCE.read() else {
        return Vec::new();
    };
    let Some(autoscaling) = source.as_ref() else {
        return Vec::new();
    };
    let figures = autoscaling.metrics();
    let mut nodes: Figures = figures
        .node_names()
        .into_iter()
        .filter_map(|name| {
            let node = figures.node(&name)?;
            let mut pods = figures.pods_of(&name);
            pods.sort_by(|a, b| a.0.cmp(&b.0));
            Some((name, node, pods))
        })
        .collect();
    nodes.sort_by(|a, b| a.0.cmp(&b.0));
    nodes
}

fn cores(nano_cores: u64) -> ConstGauge<f64> {
    ConstGauge::new(nano_cores as f64 / 1e9)
}

fn bytes(n: u64) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
}

fn encode_nodes<M: EncodeMetric>(
    e: &mut DescriptorEncoder,
    figures: &Figures,
    (name, help, unit): (&str, &str, &Unit),
    value: impl Fn(&NodeSample) -> M,
) -> Result<(), std::fmt::Error> {
    let mut metric = e.encode_descriptor(name, help, Some(unit), MetricType::Gauge)?;
    for (node, sample, _) in figures {
        let labels = [("node", node.as_str())];
        value(sample).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn encode_pods<M: EncodeMetric>(
    e: &mut DescriptorEncoder,
    figures: &Figures,
    (name, help, unit): (&str, &str, &Unit),
    value: impl Fn(&PodSample) -> M,
) -> Result<(), std::fmt::Error> {
    let mut metric = e.encode_descriptor(name, help, Some(unit), MetricType::Gauge)?;
    for (node, _, pods) in figures {
        for ((namespace, pod), sample) in pods {
            let labels = [
                ("namespace", namespace.as_str()),
                ("pod", pod.as_str()),
                ("node", node.as_str()),
            ];
            value(sample).encode(metric.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let figures = read();
        let e = &mut encoder;
        encode_nodes(
            e,
            &figures,
            (
                "skiff_node_cpu_usage",
                "CPU a node uses, in cores, as its agent last reported (the machine's own figure, never less than its pods' sum).",
                &Unit::Other("cores".into()),
            ),
            |n| cores(n.cpu_nano_cores),
        )?;
        encode_nodes(
            e,
            &figures,
            (
                "skiff_node_memory_working_set",
                "Memory a node uses, in bytes, as its agent last reported.",
                &Unit::Bytes,
            ),
            |n| bytes(n.memory_bytes),
        )?;
        encode_pods(
            e,
            &figures,
            (
                "skiff_pod_cpu_usage",
                "CPU a pod uses, in cores, averaged over its agent's report window (a Wasm pod's own guest time).",
                &Unit::Other("cores".into()),
            ),
            |p| cores(p.containers.iter().map(|c| c.cpu_nano_cores).sum()),
        )?;
        encode_pods(
            e,
            &figures,
            (
                "skiff_pod_memory_working_set",
                "Memory a pod uses, in bytes, as its agent last reported (a Wasm pod's own linear memories and tables).",
                &Unit::Bytes,
            ),
            |p| bytes(p.memory_bytes()),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metrics::encode;
    use skiff_api::v1::{ContainerMetricsSample, NodeMetricsReport, PodMetricsSample};

    #[tokio::test]
    async fn each_fresh_node_and_pod_is_a_series() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::embedded::EmbeddedStore::open(
            &dir.path().join("s.redb"),
            crate::store::embedded::EmbeddedOptions::default(),
        )
        .unwrap();
        let autoscaling = Autoscaling::new(std::sync::Arc::new(store));
        watch(autoscaling.clone());
        autoscaling
            .metrics()
            .report(&NodeMetricsReport {
                node_name: "edge-1".into(),
                window_millis: 2000,
                node: None,
                pods: vec![PodMetricsSample {
                    namespace: "fns".into(),
                    name: "hog".into(),
                    uid: "u1".into(),
                    containers: vec![ContainerMetricsSample {
                        name: "main".into(),
                        cpu_nano_cores: 250_000_000,
                        memory_bytes: 64 << 20,
                        ..Default::default()
                    }],
                }],
            })
            .unwrap();
        let mut text = String::new();
        encode(false, &mut text).unwrap();
        for line in [
            "# TYPE skiff_node_cpu_usage_cores gauge",
            r#"skiff_node_cpu_usage_cores{node="edge-1"} 0.25"#,
            r#"skiff_node_memory_working_set_bytes{node="edge-1"} 67108864"#,
            "# TYPE skiff_pod_memory_working_set_bytes gauge",
            r#"skiff_pod_cpu_usage_cores{namespace="fns",pod="hog",node="edge-1"} 0.25"#,
            r#"skiff_pod_memory_working_set_bytes{namespace="fns",pod="hog",node="edge-1"} 67108864"#,
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
    }
}
