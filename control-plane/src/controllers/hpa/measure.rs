//! One metric of an HPA over its target's pods: each pod's figure (from the agents' reports) and,
//! for a utilization target, its request; then the metric's proposal ([`super::algorithm`]) and
//! its `currentMetrics` entry.
//!
//! Must not: read anything but the pods and samples it is given.

use skiff_api::ResourceExt;
use skiff_api::quantity::Quantity;
use skiff_api::v1::{
    MetricIdentifier, MetricSpec, MetricStatus, MetricValueStatus, Pod, PodsMetricStatus,
    ResourceMetricStatus,
};
use skiff_api::validation::{REQUESTS_IN_FLIGHT, REQUESTS_PER_SECOND};

use super::algorithm::{self, PodReading, Target};
use crate::pod_metrics::PodSample;

/// One metric's outcome in a sync.
pub(super) struct Measured {
    pub replicas: i32,
    pub status: MetricStatus,
    /// `cpu resource utilization (percentage of request)`, for the rescale reason.
    pub name: String,
}

/// A quantity in thousandths as Kubernetes prints it: `250m`, or `3` when whole.
fn milli_text(millis: f64) -> String {
    let m = millis.round() as i64;
    if m % 1000 == 0 {
        (m / 1000).to_string()
    } else {
        format!("{m}m")
    }
}

/// A pod's request of `resource`, in thousandths (millicores, milli-bytes).
fn request_millis(pod: &Pod, resource: &str) -> Option<f64> {
    let spec = pod.spec.as_ref()?;
    let mut total = 0i64;
    for c in &spec.containers {
        let q = c.resources.as_ref()?.requests.get(resource)?;
        total += Quantity::parse(q).ok()?.millis();
    }
    Some(total as f64)
}

/// A pod's figure of `metric` in thousandths of its unit.
fn figure(sample: &PodSample, metric: &str) -> Option<f64> {
    match metric {
        "cpu" => Some(sample.cpu_millis() as f64),
        "memory" => Some(sample.memory_bytes() as f64 * 1000.0),
        REQUESTS_IN_FLIGHT => sample.requests_in_flight().map(|n| n as f64 * 1000.0),
        REQUESTS_PER_SECOND => sample.requests_per_second.map(|r| r * 1000.0),
        _ => None,
    }
}

/// One metric over `pods`: its proposal and status, or why it could not be read.
pub(super) fn measure(
    metric: &MetricSpec,
    current: i32,
    pods: &[(Pod, Option<PodSample>)],
) -> Result<Measured, (&'static str, String)> {
    let (name, target, resource) = match (metric.r#type.as_str(), &metric.resource, &metric.pods) {
        ("Resource", Some(r), _) => (r.name.clone(), r.target.clone().unwrap_or_default(), true),
        ("Pods", _, Some(p)) => (
            p.metric
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            p.target.clone().unwrap_or_default(),
            false,
        ),
        _ => {
            return Err((
                "InvalidMetricSourceType",
                format!(
                    "the HPA was unable to compute the replica count: unsupported metric source type {:?}",
                    metric.r#type
                ),
            ));
        }
    };
    let failed = if resource {
        "FailedGetResourceMetric"
    } else {
        "FailedGetPodsMetric"
    };
    let goal = if target.r#type == "Utilization" {
        Target::Utilization(f64::from(target.average_utilization.unwrap_or(0)))
    } else {
        let q = Quantity::parse(&target.average_value).map_err(|e| (failed, e.to_string()))?;
        Target::AverageValue(q.millis() as f64)
    };
    let mut readings = Vec::with_capacity(pods.len());
    for (pod, sample) in pods {
        let request = match goal {
            Target::Utilization(_) => request_millis(pod, &name).ok_or_else(|| {
                (
                    failed,
                    format!(
                        "the HPA was unable to compute the replica count: failed to get {name} utilization: missing request for {name} in pod {}",
                        pod.name()
                    ),
                )
            })?,
            Target::AverageValue(_) => 0.0,
        };
        // Kubernetes' unready set: a Pending pod (not started; figures or not).
        let phase = pod.status.as_ref().map_or("", |s| s.phase.as_str());
        readings.push(PodReading {
            value: sample.as_ref().and_then(|s| figure(s, &name)),
            request,
            unready: phase.is_empty() || phase == "Pending",
        });
    }
    let what = if resource {
        format!("{name} resource")
    } else {
        format!("pods metric {name}")
    };
    let proposal = algorithm::proposal(current, &readings, goal).ok_or_else(|| {
        (
            failed,
            format!("the HPA was unable to compute the replica count: unable to get metrics for {what}: no metrics returned from the pods' nodes"),
        )
    })?;
    let mut value = MetricValueStatus::default();
    match goal {
        Target::Utilization(_) => {
            value.average_utilization = Some(proposal.current.round() as i32);
        }
        Target::AverageValue(_) => value.average_value = milli_text(proposal.current),
    }
    let status = if resource {
        MetricStatus {
            r#type: "Resource".into(),
            resource: Some(ResourceMetricStatus {
                name: name.clone(),
                current: Some(value),
            }),
            pods: None,
        }
    } else {
        MetricStatus {
            r#type: "Pods".into(),
            resource: None,
            pods: Some(PodsMetricStatus {
                metric: Some(MetricIdentifier {
                    name: name.clone(),
                    selector: None,
                }),
                current: Some(value),
            }),
        }
    };
    let name = match goal {
        Target::Utilization(_) => {
            format!("{name} resource utilization (percentage of request)")
        }
        Target::AverageValue(_) if resource => format!("{name} resource"),
        Target::AverageValue(_) => format!("pods metric {name}"),
    };
    Ok(Measured {
        replicas: proposal.replicas,
        status,
        name,
    })
}
