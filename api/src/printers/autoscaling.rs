//! autoscaling/v2 HorizontalPodAutoscalers' columns.

use serde_json::{Value, json};

use super::{Column, Printer, created, text};
use crate::resource::ResourceExt;
use crate::v1::*;

/// One metric of an HPA as kubectl's TARGETS column shows it: `cpu: 20%/50%`,
/// `requests_in_flight: 3/10` (`<unknown>` before the controller has read it).
fn hpa_target(spec: &MetricSpec, current: &[MetricStatus]) -> String {
    let unknown = || "<unknown>".to_string();
    let value = |target: &MetricTarget, current: Option<&MetricValueStatus>| {
        if target.r#type == "Utilization" {
            let now = current
                .and_then(|c| c.average_utilization)
                .map_or_else(unknown, |u| format!("{u}%"));
            format!("{now}/{}%", target.average_utilization.unwrap_or(0))
        } else {
            let now = current
                .map(|c| c.average_value.clone())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(unknown);
            format!("{now}/{}", target.average_value)
        }
    };
    match (spec.resource.as_ref(), spec.pods.as_ref()) {
        (Some(r), _) => {
            let now = current
                .iter()
                .filter_map(|c| c.resource.as_ref())
                .find(|c| c.name == r.name)
                .and_then(|c| c.current.as_ref());
            format!(
                "{}: {}",
                r.name,
                value(&r.target.clone().unwrap_or_default(), now)
            )
        }
        (_, Some(p)) => {
            let name = p
                .metric
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            let now = current
                .iter()
                .filter_map(|c| c.pods.as_ref())
                .find(|c| c.metric.as_ref().is_some_and(|m| m.name == name))
                .and_then(|c| c.current.as_ref());
            format!(
                "{name}: {}",
                value(&p.target.clone().unwrap_or_default(), now)
            )
        }
        _ => unknown(),
    }
}

impl Printer for HorizontalPodAutoscaler {
    fn columns() -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Reference", "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource."),
            Column::new("Targets", "the current and target value of each metric (the first two)"),
            Column::new("MinPods", "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.").integer(),
            Column::new("MaxPods", "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.").integer(),
            Column::new("Replicas", "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.").integer(),
            Column::age(),
        ]
    }
    fn cells(&self) -> Vec<Value> {
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().unwrap_or_default();
        let reference = spec
            .scale_target_ref
            .as_ref()
            .map(|t| format!("{}/{}", t.kind, t.name))
            .unwrap_or_default();
        let default_metric = [MetricSpec {
            r#type: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: Some(MetricTarget {
                    r#type: "Utilization".into(),
                    average_utilization: Some(80),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }];
        let metrics: &[MetricSpec] = if spec.metrics.is_empty() {
            &default_metric
        } else {
            &spec.metrics
        };
        let mut targets: Vec<String> = metrics
            .iter()
            .take(2)
            .map(|m| hpa_target(m, &status.current_metrics))
            .collect();
        if metrics.len() > 2 {
            targets.push(format!("+ {} more...", metrics.len() - 2));
        }
        vec![
            text(self.name()),
            text(reference),
            text(targets.join(", ")),
            json!(spec.min_replicas.unwrap_or(1)),
            json!(spec.max_replicas),
            json!(status.current_replicas),
            created(self),
        ]
    }
}
