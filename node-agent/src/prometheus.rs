//! The node agent's Prometheus metrics (`--metrics-addr`; the HTTP listener is the binary's,
//! `cli/src/metrics_endpoint.rs`): what the kubelet and its cAdvisor export, from what the shims
//! report through the task API's Stats (shims open no port), and the agent's own pod starts.
//!
//! - Per container, labelled `namespace`, `pod`, `container` as cAdvisor's are:
//!   `container_cpu_usage_seconds_total` and `container_memory_working_set_bytes` (a Linux
//!   container's cgroup; a Wasm container's own instance, as wasmtime accounts it, never the
//!   shared shim process's), and a function's figures: `skiff_function_requests_total`,
//!   `skiff_function_requests_in_flight`, `skiff_function_cold_starts_total` (an instance is made
//!   per request), `skiff_function_request_failures_total{code}` (413 body too large, 500 trap or
//!   no response, 503 over the concurrency cap, 504 timed out) and
//!   `skiff_function_request_duration_seconds` (the shim's histogram, its buckets as they are).
//!   These come from the readings the agent takes every 2 s for the API server
//!   (`crate::metrics`), so a scrape costs no Stats call and shows figures at most 2 s old; a
//!   container's series go when it stops.
//! - `kubelet_pod_start_total_duration_seconds{runtime}`: from a pod's creation to the agent's
//!   first write of its phase Running (scheduling, image pulls and init containers included, as
//!   the kubelet's), by `runtime` (`wasm` for `runtimeClassName: wasm`, else `oci`).
//!
//! Must not: call the shims itself, or decide anything from the figures.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use skiff_api::ResourceExt;
use skiff_api::v1::Pod;

use crate::containers::Instance;
use crate::shim::TaskUsage;

/// Pod start buckets, in seconds: 0.1 s to 10 min (a Wasm pod starts in milliseconds, an OCI
/// pod pulling a large image in minutes).
const START_BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuntimeLabels {
    runtime: &'static str,
}

type StartDurations = Family<RuntimeLabels, Histogram, fn() -> Histogram>;

/// One container's latest reading.
#[derive(Debug, Clone)]
struct Reading {
    namespace: String,
    pod: String,
    container: String,
    usage: TaskUsage,
}

/// The containers' latest readings, replaced whole at each report.
#[derive(Debug, Default)]
struct Containers {
    latest: Mutex<Arc<Vec<Reading>>>,
}

struct Metrics {
    registry: Registry,
    pod_start: StartDurations,
    containers: Arc<Containers>,
}

fn start_histogram() -> Histogram {
    Histogram::new(START_BUCKETS)
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::default();
    let pod_start: StartDurations = Family::new_with_constructor(start_histogram);
    registry.register_with_unit(
        "kubelet_pod_start_total_duration",
        "Duration in seconds to start a pod since creation, including time to pull images and run init containers, measured from pod creation timestamp to when all its containers are reported as started, by runtime (wasm or oci)",
        Unit::Seconds,
        pod_start.clone(),
    );
    let containers = Arc::new(Containers::default());
    registry.register_collector(Box::new(Collector(containers.clone())));
    Metrics {
        registry,
        pod_start,
        containers,
    }
});

/// Appends the agent's families in OpenMetrics text (`openmetrics`, without the closing
/// `# EOF`, which the caller adds once) or Prometheus' text format 0.0.4.
pub fn encode(openmetrics: bool, out: &mut String) -> Result<(), std::fmt::Error> {
    if openmetrics {
        prometheus_client::encoding::text::encode_registry(out, &METRICS.registry)
    } else {
        prometheus_client::encoding::prometheus_text::encode(out, &METRICS.registry)
    }
}

/// Takes the containers' latest readings (pod `namespace/name`, container attempt, figures).
pub fn observe_usage(readings: &[(String, Instance, TaskUsage)]) {
    let latest: Vec<Reading> = readings
        .iter()
        .filter_map(|(pod, instance, usage)| {
            let (namespace, name) = pod.split_once('/')?;
            Some(Reading {
                namespace: namespace.to_string(),
                pod: name.to_string(),
                container: instance.container.clone(),
                usage: usage.clone(),
            })
        })
        .collect();
    if let Ok(mut slot) = METRICS.containers.latest.lock() {
        *slot = Arc::new(latest);
    }
}

/// The `runtime` label of a pod.
fn runtime_of(pod: &Pod) -> &'static str {
    let wasm = pod
        .spec
        .as_ref()
        .is_some_and(|s| s.runtime_class_name == skiff_api::workload::WASM_RUNTIME);
    if wasm { "wasm" } else { "oci" }
}

/// A status write took `pod` from `before` (the phase the agent last wrote) to `after`: the first
/// Running of a pod counts its start, from its creation to now.
pub fn status_written(pod: &Pod, before: Option<&str>, after: &str) {
    if after != "Running" || before == Some("Running") {
        return;
    }
    let Some(created) = pod.meta().creation_timestamp else {
        return;
    };
    let created = std::time::UNIX_EPOCH
        + Duration::new(
            u64::try_from(created.seconds).unwrap_or(0),
            u32::try_from(created.nanos).unwrap_or(0),
        );
    let took = std::time::SystemTime::now()
        .duration_since(created)
        .unwrap_or_default();
    pod_started(runtime_of(pod), took);
}

fn pod_started(runtime: &'static str, took: Duration) {
    METRICS
        .pod_start
        .get_or_create(&RuntimeLabels { runtime })
        .observe(took.as_secs_f64());
}

/// Encodes the containers' readings at each scrape.
#[derive(Debug)]
struct Collector(Arc<Containers>);

type Labels<'a> = [(&'static str, &'a str); 3];

fn labels(r: &Reading) -> Labels<'_> {
    [
        ("namespace", r.namespace.as_str()),
        ("pod", r.pod.as_str()),
        ("container", r.container.as_str()),
    ]
}

/// One family over the readings: `value` gives a reading's sample, if it has one.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    readings: &[Reading],
    (name, help, unit, kind): (&str, &str, Option<&Unit>, MetricType),
    value: impl Fn(&Reading) -> Option<M>,
) -> Result<(), std::fmt::Error> {
    if !readings.iter().any(|r| value(r).is_some()) {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, unit, kind)?;
    for r in readings {
        if let Some(v) = value(r) {
            let l = labels(r);
            v.encode(metric.encode_family(&l)?)?;
        }
    }
    Ok(())
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let readings = match self.0.latest.lock() {
            Ok(latest) => latest.clone(),
            Err(_) => return Ok(()),
        };
        let e = &mut encoder;
        family(
            e,
            &readings,
            (
                "container_cpu_usage",
                "Cumulative cpu time consumed by the container in seconds (a Wasm container's own guest time)",
                Some(&Unit::Seconds),
                MetricType::Counter,
            ),
            |r| Some(ConstCounter::new(r.usage.cpu.as_secs_f64())),
        )?;
        family(
            e,
            &readings,
            (
                "container_memory_working_set",
                "Current working set of the container in bytes (a Wasm container's linear memories and tables)",
                Some(&Unit::Bytes),
                MetricType::Gauge,
            ),
            |r| {
                Some(ConstGauge::new(
                    i64::try_from(r.usage.memory_bytes).unwrap_or(i64::MAX),
                ))
            },
        )?;
        family(
            e,
            &readings,
            (
                "skiff_function_requests",
                "Requests a function received (every outcome, rejections included).",
                None,
                MetricType::Counter,
            ),
            |r| {
                r.usage
                    .function
                    .as_ref()
                    .map(|s| ConstCounter::new(s.requests_total))
            },
        )?;
        family(
            e,
            &readings,
            (
                "skiff_function_requests_in_flight",
                "Requests a function is serving now.",
                None,
                MetricType::Gauge,
            ),
            |r| {
                r.usage
                    .function
                    .as_ref()
                    .map(|s| ConstGauge::new(i64::try_from(s.in_flight).unwrap_or(i64::MAX)))
            },
        )?;
        family(
            e,
            &readings,
            (
                "skiff_function_cold_starts",
                "Instances a function made (one per admitted request: every one a cold start).",
                None,
                MetricType::Counter,
            ),
            |r| {
                r.usage
                    .function
                    .as_ref()
                    .map(|s| ConstCounter::new(s.instantiations))
            },
        )?;
        failures(e, &readings)?;
        durations(e, &readings)
    }
}

/// The readings of function containers, with their figures (borrowed: a scrape copies nothing).
fn functions(readings: &[Reading]) -> Vec<(&Reading, &skiff_runtime::wasm::FunctionStats)> {
    readings
        .iter()
        .filter_map(|r| r.usage.function.as_ref().map(|s| (r, s)))
        .collect()
}

/// `skiff_function_request_failures_total{code}`: one series per code.
fn failures(e: &mut DescriptorEncoder, readings: &[Reading]) -> Result<(), std::fmt::Error> {
    let functions = functions(readings);
    if functions.is_empty() {
        return Ok(());
    }
    let mut metric = e.encode_descriptor(
        "skiff_function_request_failures",
        "Requests a function answered with an error, by HTTP code: 413 body too large, 500 trap or no response, 503 over its concurrency, 504 timed out.",
        None,
        MetricType::Counter,
    )?;
    for (r, s) in &functions {
        for (code, n) in [
            ("413", s.rejected_too_large),
            ("500", s.errors),
            ("503", s.rejected_busy),
            ("504", s.timed_out),
        ] {
            let l = labels(r);
            let with_code = [l[0], l[1], l[2], ("code", code)];
            ConstCounter::new(n).encode(metric.encode_family(&with_code)?)?;
        }
    }
    Ok(())
}

/// `skiff_function_request_duration_seconds`, from the shim's own buckets.
fn durations(e: &mut DescriptorEncoder, readings: &[Reading]) -> Result<(), std::fmt::Error> {
    use skiff_runtime::wasm::http::stats::DURATION_BUCKETS;
    let functions = functions(readings);
    if functions.is_empty() {
        return Ok(());
    }
    let mut metric = e.encode_descriptor(
        "skiff_function_request_duration",
        "Time a function took to answer the requests it admitted, in seconds",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for (r, s) in &functions {
        let bounds = DURATION_BUCKETS
            .iter()
            .map(Duration::as_secs_f64)
            .chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds.zip(s.duration_buckets.iter().copied()).collect();
        let count = s.duration_buckets.iter().sum();
        let l = labels(r);
        metric.encode_family(&l)?.encode_histogram::<NoLabelSet>(
            s.duration_sum.as_secs_f64(),
            count,
            &buckets,
            None,
        )?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn instance(container: &str) -> Instance {
        Instance {
            id: format!("uid/{container}/0"),
            pod_uid: "uid".into(),
            container: container.into(),
            attempt: 0,
            running: true,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            started_at: SystemTime::UNIX_EPOCH,
            finished_at: SystemTime::UNIX_EPOCH,
            digest: String::new(),
        }
    }

    fn scrape(openmetrics: bool) -> String {
        let mut out = String::new();
        encode(openmetrics, &mut out).unwrap();
        out
    }

    #[test]
    fn containers_and_functions_are_exported_as_cadvisor_names_them() {
        let mut buckets = [0u64; DURATION_BUCKETS_LEN];
        buckets[0] = 3;
        buckets[DURATION_BUCKETS_LEN - 1] = 1;
        let function = skiff_runtime::wasm::FunctionStats {
            requests_total: 6,
            in_flight: 1,
            rejected_busy: 2,
            instantiations: 4,
            duration_sum: Duration::from_millis(10_500),
            duration_buckets: buckets,
            ..Default::default()
        };
        observe_usage(&[
            (
                "default/web".into(),
                instance("app"),
                TaskUsage {
                    cpu: Duration::from_millis(1500),
                    memory_bytes: 3 << 20,
                    requests: None,
                    function: None,
                },
            ),
            (
                "fns/hello".into(),
                instance("fn"),
                TaskUsage {
                    cpu: Duration::ZERO,
                    memory_bytes: 1 << 20,
                    requests: Some((6, 1)),
                    function: Some(function),
                },
            ),
        ]);
        let text = scrape(false);
        for line in [
            "# TYPE container_cpu_usage_seconds_total counter",
            r#"container_cpu_usage_seconds_total{namespace="default",pod="web",container="app"} 1.5"#,
            "# TYPE container_memory_working_set_bytes gauge",
            r#"container_memory_working_set_bytes{namespace="default",pod="web",container="app"} 3145728"#,
            r#"skiff_function_requests_total{namespace="fns",pod="hello",container="fn"} 6"#,
            r#"skiff_function_requests_in_flight{namespace="fns",pod="hello",container="fn"} 1"#,
            r#"skiff_function_cold_starts_total{namespace="fns",pod="hello",container="fn"} 4"#,
            r#"skiff_function_request_failures_total{namespace="fns",pod="hello",container="fn",code="503"} 2"#,
            r#"skiff_function_request_duration_seconds_bucket{namespace="fns",pod="hello",container="fn",le="0.005"} 3"#,
            r#"skiff_function_request_duration_seconds_bucket{namespace="fns",pod="hello",container="fn",le="+Inf"} 4"#,
            r#"skiff_function_request_duration_seconds_count{namespace="fns",pod="hello",container="fn"} 4"#,
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
        // A container without a function has no function series.
        assert!(!text.contains(r#"skiff_function_requests_total{namespace="default""#));
        // OpenMetrics: the family's name without _total, its unit.
        let om = scrape(true);
        assert!(
            om.contains("# TYPE container_cpu_usage_seconds counter"),
            "{om}"
        );
        assert!(
            om.contains("# UNIT container_cpu_usage_seconds seconds"),
            "{om}"
        );
        // The next report replaces the readings whole: a stopped container's series go.
        observe_usage(&[]);
        assert!(!scrape(false).contains("container_cpu_usage_seconds_total{"));
    }

    const DURATION_BUCKETS_LEN: usize =
        skiff_runtime::wasm::http::stats::DURATION_BUCKETS.len() + 1;

    #[test]
    fn a_pods_first_running_counts_its_start_by_runtime() {
        let mut pod = Pod::default();
        let created = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            - Duration::from_secs(2);
        pod.metadata = Some(skiff_api::v1::ObjectMeta {
            creation_timestamp: Some(skiff_api::Timestamp {
                seconds: i64::try_from(created.as_secs()).unwrap(),
                nanos: 0,
            }),
            ..Default::default()
        });
        pod.spec = Some(skiff_api::v1::PodSpec {
            runtime_class_name: "wasm".into(),
            ..Default::default()
        });
        status_written(&pod, Some("Pending"), "Running");
        // Running again (a later status write) is no new start.
        status_written(&pod, Some("Running"), "Running");
        let text = scrape(false);
        assert!(
            text.contains(r#"kubelet_pod_start_total_duration_seconds_count{runtime="wasm"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kubelet_pod_start_total_duration_seconds_bucket{runtime="wasm",le="10"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kubelet_pod_start_total_duration_seconds_bucket{runtime="wasm",le="1"} 0"#
            ),
            "{text}"
        );
    }
}
