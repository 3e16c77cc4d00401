//! `custom.metrics.k8s.io/v1beta2` over REST, in prometheus-adapter's shape, so that the
//! dashboard, `kubectl get --raw` and HPA-style clients read a function's request rate, latency
//! and cold starts with the caller's own credentials:
//! `GET /apis/custom.metrics.k8s.io/v1beta2/namespaces/NS/pods/{NAME|*}/METRIC` (`*` with
//! `labelSelector`) and `.../namespaces/NS/services/NAME/METRIC`, each a `MetricValueList`
//! (`describedObject`, `metric.name`, `timestamp`, `windowSeconds`, `value` as a Kubernetes
//! quantity: `1500m`, `12300u`). Discovery lists `pods/METRIC` and `services/METRIC` as
//! prometheus-adapter does. Only get: no watch, and no `metricSelector` (the metrics carry no
//! labels to select by; one given is refused).
//!
//! Must not: compute anything ([`crate::custom_metrics`] does) or authorize on its own.

use std::sync::Arc;

use serde_json::{Value, json};

use super::discovery::SubresourceDiscovery;
use super::metrics_api::cpu_quantity;
use super::status::RestError;
use super::{Context, Request, Response, Routes, Subresource};
use crate::custom_metrics::{CustomMetrics, GROUP, Metric, MetricValue, Pods, VERSION};
use crate::error::ApiError;

/// Registers `pods` and `services` of custom.metrics.k8s.io/v1beta2.
pub fn register(routes: &mut Routes, context: &Context) {
    for services in [false, true] {
        routes.resource(
            GROUP,
            VERSION,
            if services { "services" } else { "pods" },
            Arc::new(CustomMetricsRoute {
                api: context.metrics.custom(),
                services,
            }),
        );
    }
}

struct CustomMetricsRoute {
    api: CustomMetrics,
    /// Services' metrics (else pods').
    services: bool,
}

impl CustomMetricsRoute {
    async fn answer(&self, req: &Request) -> Result<Value, RestError> {
        super::metrics_api::only_reads(req, "custom.metrics.k8s.io serves get, not watch")?;
        let t = &req.target;
        if t.namespace.is_empty() || t.name.is_empty() || t.subresource.is_empty() {
            return Err(RestError::not_found(format!(
                "the server could not find the requested resource ({}): ask for namespaces/NS/{}/NAME/METRIC",
                req.http.uri().path(),
                t.resource
            )));
        }
        if !req.query.get("metricSelector").is_empty() {
            return Err(RestError::bad_request(
                "metricSelector: skiff's function metrics have no labels to select by",
            ));
        }
        let metric = t.subresource.as_str();
        let resource = if self.services { "services" } else { "pods" };
        let not_found = |e: ApiError| match e {
            ApiError::NotFound { name, .. } => RestError::not_found(format!(
                "the server could not find the metric {metric} for {resource} {name}"
            )),
            e => RestError::from_api(e, GROUP, "MetricValueList", &t.name),
        };
        let values = if self.services {
            vec![
                self.api
                    .service(&req.who, &t.namespace, &t.name, metric)
                    .await
                    .map_err(not_found)?,
            ]
        } else {
            // `*` as sent, or percent-encoded as kubectl sends it (`%2A`).
            let which = if matches!(t.name.as_str(), "*" | "%2A" | "%2a") {
                Pods::Selected(req.query.get("labelSelector"))
            } else {
                Pods::Named(&t.name)
            };
            self.api
                .pods(&req.who, &t.namespace, which, metric)
                .await
                .map_err(not_found)?
        };
        Ok(list_json(&values))
    }
}

#[async_trait::async_trait]
impl Subresource for CustomMetricsRoute {
    async fn serve(&self, req: Request) -> Response {
        let result = self.answer(&req).await;
        let subresource = req.target.subresource.clone();
        super::metrics_api::answered(&req, "get", (GROUP, VERSION), subresource, result)
    }

    fn discovery(&self) -> SubresourceDiscovery {
        SubresourceDiscovery {
            group: GROUP,
            version: VERSION,
            kind: "MetricValueList",
            verbs: &["get"],
        }
    }

    fn namespaced(&self) -> bool {
        true
    }

    fn discovery_names(&self, resource: &str) -> Vec<String> {
        Metric::ALL
            .iter()
            .map(|m| format!("{resource}/{}", m.name()))
            .collect()
    }
}

/// A `MetricValueList` of `values`.
pub fn list_json(values: &[MetricValue]) -> Value {
    let items: Vec<Value> = values.iter().map(value_json).collect();
    json!({
        "kind": "MetricValueList",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {},
        "items": items,
    })
}

fn value_json(v: &MetricValue) -> Value {
    json!({
        "describedObject": {
            "kind": v.kind,
            "namespace": v.namespace,
            "name": v.name,
            "apiVersion": "v1",
        },
        "metric": { "name": v.metric.name() },
        "timestamp": skiff_api::json::timestamp_text(&crate::resource_metrics::wall(v.at)),
        "windowSeconds": v.window.as_secs_f64().round().max(1.0) as i64,
        "value": quantity(v.value),
    })
}

/// A figure as a Kubernetes quantity in its canonical decimal form, to the nano: `10`, `1500m`,
/// `12300u`, `0`.
pub fn quantity(value: f64) -> String {
    if !(value.is_finite() && value > 0.0) {
        return "0".into();
    }
    let nanos = (value * 1e9).round();
    // Past u64's nanos (1.8e10 units) a figure is counted in whole units.
    if nanos >= u64::MAX as f64 {
        return format!("{}", value.round() as u64);
    }
    cpu_quantity(nanos as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn values_are_kubernetes_quantities() {
        assert_eq!(quantity(0.0), "0");
        assert_eq!(quantity(-1.0), "0");
        assert_eq!(quantity(f64::NAN), "0");
        assert_eq!(quantity(10.0), "10");
        assert_eq!(quantity(1.5), "1500m");
        assert_eq!(quantity(0.0123), "12300u");
        assert_eq!(quantity(0.000_000_5), "500n");
        assert_eq!(quantity(1e12), "1000000000000");
    }

    #[test]
    fn a_list_has_prometheus_adapters_shape() {
        let v = list_json(&[MetricValue {
            kind: "Pod",
            namespace: "fns".into(),
            name: "hello-1".into(),
            metric: Metric::RequestsPerSecond,
            at: Instant::now(),
            window: Duration::from_millis(2010),
            value: 2.5,
        }]);
        assert_eq!(v["kind"], "MetricValueList");
        assert_eq!(v["apiVersion"], "custom.metrics.k8s.io/v1beta2");
        let item = &v["items"][0];
        assert_eq!(item["describedObject"]["kind"], "Pod");
        assert_eq!(item["describedObject"]["namespace"], "fns");
        assert_eq!(item["describedObject"]["name"], "hello-1");
        assert_eq!(item["metric"]["name"], "skiff_function_requests_per_second");
        assert_eq!(item["windowSeconds"], 2);
        assert_eq!(item["value"], "2500m");
        assert!(item["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
