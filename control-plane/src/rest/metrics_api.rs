//! `metrics.k8s.io/v1beta1` over REST, in metrics-server's shape, so that `kubectl top nodes|pods`
//! and the dashboard read the agents' figures: `GET /apis/metrics.k8s.io/v1beta1/nodes[/NAME]`,
//! `.../pods` (every namespace) and `.../namespaces/NS/pods[/NAME]`, with `labelSelector`.
//! Usage is in Kubernetes quantities as metrics-server writes them (cpu in the canonical decimal
//! form of nanocores, `250m` or `1234567n`; memory in the canonical binary form, `34Mi` or
//! `1234567`), the window as a Go duration (`2s`). Only get and list: no watch (metrics-server
//! has none either).
//!
//! Must not: compute anything ([`crate::resource_metrics`] does) or authorize on its own.

use std::sync::Arc;

use serde_json::{Value, json};
use skiff_api::v1::{MetricsListRequest, NodeMetrics, PodMetrics, ResourceUsage};

use super::discovery::SubresourceDiscovery;
use super::status::{RestError, json_response};
use super::{Context, Request, Response, Routes, Subresource};
use crate::audit::ObjectRef;
use crate::resource_metrics::{GROUP, ResourceMetrics, VERSION};

/// Registers `nodes` and `pods` of metrics.k8s.io/v1beta1.
pub fn register(routes: &mut Routes, context: &Context) {
    for pods in [false, true] {
        routes.resource(
            GROUP,
            VERSION,
            if pods { "pods" } else { "nodes" },
            Arc::new(MetricsRoute {
                api: context.metrics.clone(),
                pods,
            }),
        );
    }
}

/// Refuses what a read-only metrics API does not serve: any method but GET (405, Kubernetes'
/// words), and a watch (405 saying `no_watch`).
pub(super) fn only_reads(req: &Request, no_watch: &str) -> Result<(), RestError> {
    if req.http.method() != http::Method::GET {
        return Err(RestError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {})",
            req.http.method(),
            req.http.uri().path()
        )));
    }
    if req.query.flag("watch") {
        return Err(RestError::method_not_allowed(no_watch.to_string()));
    }
    Ok(())
}

/// A metrics API's answer to `req`: audited as `verb` of its target in `group_version` (and
/// `subresource`), then the JSON or the refusal.
pub(super) fn answered(
    req: &Request,
    verb: &str,
    (group, version): (&str, &str),
    subresource: String,
    result: Result<Value, RestError>,
) -> Response {
    let object = ObjectRef {
        resource: req.target.resource.clone(),
        namespace: req.target.namespace.clone(),
        name: req.target.name.clone(),
        api_group: group.into(),
        api_version: version.into(),
        subresource,
    };
    let audited = result.as_ref().map(|_| ()).map_err(RestError::to_grpc);
    req.call.done(&req.who, verb, object, &audited);
    match result {
        Ok(v) => json_response(200, &v),
        Err(e) => e.into_response(),
    }
}

struct MetricsRoute {
    api: ResourceMetrics,
    /// PodMetrics (else NodeMetrics).
    pods: bool,
}

impl MetricsRoute {
    async fn answer(&self, req: &Request) -> Result<Value, RestError> {
        only_reads(req, "metrics.k8s.io serves get and list, not watch")?;
        let t = &req.target;
        if !t.subresource.is_empty() {
            return Err(RestError::not_found(format!(
                "the server could not find the requested resource ({})",
                req.http.uri().path()
            )));
        }
        if !self.pods && !t.namespace.is_empty() {
            return Err(RestError::not_found(
                "the server could not find the requested resource: nodes are not namespaced",
            ));
        }
        let request = MetricsListRequest {
            namespace: t.namespace.clone(),
            label_selector: req.query.get("labelSelector").to_string(),
            name: t.name.clone(),
        };
        let (kind, items) = if self.pods {
            let items = self
                .api
                .pods(&req.who, &request)
                .await
                .map_err(|e| RestError::from_api(e, GROUP, "PodMetrics", &t.name))?;
            ("PodMetrics", items.iter().map(pod_json).collect::<Vec<_>>())
        } else {
            let items = self
                .api
                .nodes(&req.who, &request)
                .await
                .map_err(|e| RestError::from_api(e, GROUP, "NodeMetrics", &t.name))?;
            ("NodeMetrics", items.iter().map(node_json).collect())
        };
        let api_version = format!("{GROUP}/{VERSION}");
        if !t.name.is_empty() {
            let mut one = items.into_iter().next().unwrap_or(Value::Null);
            if let Value::Object(map) = &mut one {
                map.insert("kind".into(), json!(kind));
                map.insert("apiVersion".into(), json!(api_version));
            }
            return Ok(one);
        }
        Ok(json!({
            "kind": format!("{kind}List"),
            "apiVersion": api_version,
            "metadata": {},
            "items": items,
        }))
    }
}

#[async_trait::async_trait]
impl Subresource for MetricsRoute {
    async fn serve(&self, req: Request) -> Response {
        let result = self.answer(&req).await;
        let verb = if req.target.name.is_empty() {
            "list"
        } else {
            "get"
        };
        answered(&req, verb, (GROUP, VERSION), String::new(), result)
    }

    fn discovery(&self) -> SubresourceDiscovery {
        SubresourceDiscovery {
            group: GROUP,
            version: VERSION,
            kind: if self.pods {
                "PodMetrics"
            } else {
                "NodeMetrics"
            },
            verbs: &["get", "list"],
        }
    }

    fn namespaced(&self) -> bool {
        self.pods
    }
}

fn metadata(meta: Option<&skiff_api::v1::ObjectMeta>) -> Value {
    let meta = meta.cloned().unwrap_or_default();
    let mut m = json!({ "name": meta.name });
    if !meta.namespace.is_empty() {
        m["namespace"] = json!(meta.namespace);
    }
    if let Some(ts) = &meta.creation_timestamp {
        m["creationTimestamp"] = json!(skiff_api::json::timestamp_text(ts));
    }
    if !meta.labels.is_empty() {
        m["labels"] = json!(meta.labels);
    }
    m
}

fn usage(u: Option<&ResourceUsage>) -> Value {
    let u = u.cloned().unwrap_or_default();
    json!({ "cpu": cpu_quantity(u.cpu_nano_cores), "memory": memory_quantity(u.memory_bytes) })
}

fn node_json(n: &NodeMetrics) -> Value {
    json!({
        "metadata": metadata(n.metadata.as_ref()),
        "timestamp": n.timestamp.as_ref().map(skiff_api::json::timestamp_text),
        "window": go_duration(n.window_millis),
        "usage": usage(n.usage.as_ref()),
    })
}

fn pod_json(p: &PodMetrics) -> Value {
    let containers: Vec<Value> = p
        .containers
        .iter()
        .map(|c| json!({ "name": c.name, "usage": usage(c.usage.as_ref()) }))
        .collect();
    json!({
        "metadata": metadata(p.metadata.as_ref()),
        "timestamp": p.timestamp.as_ref().map(skiff_api::json::timestamp_text),
        "window": go_duration(p.window_millis),
        "containers": containers,
    })
}

/// Nanocores in Kubernetes' canonical decimal form: `1`, `250m`, `1500u`, `1234567n`.
pub fn cpu_quantity(nano: u64) -> String {
    if nano == 0 {
        return "0".into();
    }
    for (scale, suffix) in [(1_000_000_000, ""), (1_000_000, "m"), (1_000, "u")] {
        if nano.is_multiple_of(scale) {
            return format!("{}{suffix}", nano / scale);
        }
    }
    format!("{nano}n")
}

/// Bytes in Kubernetes' canonical binary form: `34Mi`, `1Gi`, `1234567` (not a multiple of 1Ki).
pub fn memory_quantity(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    for (shift, suffix) in [(50, "Pi"), (40, "Ti"), (30, "Gi"), (20, "Mi"), (10, "Ki")] {
        if bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Milliseconds as Go's `time.Duration.String()`: `2s`, `1.5s`, `500ms`, `1m30s`.
pub fn go_duration(millis: u32) -> String {
    if millis == 0 {
        return "0s".into();
    }
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let minutes = millis / 60_000;
    let rest = millis % 60_000;
    let seconds = if rest.is_multiple_of(1000) {
        format!("{}s", rest / 1000)
    } else {
        let text = format!("{}.{:03}", rest / 1000, rest % 1000);
        format!("{}s", text.trim_end_matches('0'))
    };
    if minutes == 0 {
        seconds
    } else {
        format!("{minutes}m{seconds}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_kubernetes_canonical_forms() {
        assert_eq!(cpu_quantity(0), "0");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(cpu_quantity(250_000_000), "250m");
        assert_eq!(cpu_quantity(1_500_000), "1500u");
        assert_eq!(cpu_quantity(1_234_567), "1234567n");
        assert_eq!(memory_quantity(0), "0");
        assert_eq!(memory_quantity(34 << 20), "34Mi");
        assert_eq!(memory_quantity(1 << 30), "1Gi");
        assert_eq!(memory_quantity(1536), "1536");
        assert_eq!(memory_quantity(3072), "3Ki");
        assert_eq!(memory_quantity(1_234_567), "1234567");
        assert_eq!(go_duration(2000), "2s");
        assert_eq!(go_duration(1500), "1.5s");
        assert_eq!(go_duration(500), "500ms");
        assert_eq!(go_duration(90_000), "1m30s");
    }

    #[test]
    fn items_have_metrics_servers_shape() {
        let p = PodMetrics {
            metadata: Some(skiff_api::v1::ObjectMeta {
                name: "web".into(),
                namespace: "shop".into(),
                labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            timestamp: Some(skiff_api::Timestamp {
                seconds: 0,
                nanos: 0,
            }),
            window_millis: 2000,
            containers: vec![skiff_api::v1::ContainerMetrics {
                name: "app".into(),
                usage: Some(ResourceUsage {
                    cpu_nano_cores: 5_000_000,
                    memory_bytes: 8 << 20,
                }),
            }],
        };
        let v = pod_json(&p);
        assert_eq!(v["metadata"]["namespace"], "shop");
        assert_eq!(v["metadata"]["labels"]["app"], "web");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00Z");
        assert_eq!(v["window"], "2s");
        assert_eq!(v["containers"][0]["usage"]["cpu"], "5m");
        assert_eq!(v["containers"][0]["usage"]["memory"], "8Mi");
    }
}
