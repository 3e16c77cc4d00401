//! The resource metrics API (`metrics.k8s.io/v1beta1` NodeMetrics and PodMetrics, as
//! metrics-server serves them to `kubectl top` and the HPA): the figures the agents report
//! ([`PodMetrics`]) joined with the objects they are about. One source for both wires: the gRPC
//! `NodeMetricsApi.ListNodes|ListPods` (`skiff top`) and the REST resources in
//! [`crate::rest::metrics_api`].
//!
//! As metrics-server: a pod is listed only when it exists, is bound, and its node reported
//! figures for that pod's uid (a pod just started, or one whose node is silent, has none yet);
//! a node is listed when it exists and reported within [`crate::pod_metrics::STALE`]. Labels
//! are the objects' own, so label selectors work as on the objects. Authorization is Kubernetes':
//! `get`/`list` of `pods` or `nodes` in API group `metrics.k8s.io` (metrics-server's
//! `system:aggregated-metrics-reader` role, aggregated into view, edit and admin).
//!
//! Must not: write anything, or serve figures a node reported for a pod bound elsewhere.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use skiff_api::v1::{
    ContainerMetrics, ListRequest, MetricsListRequest, Node, NodeMetrics, ObjectMeta, Pod,
    PodMetrics as PodMetricsItem, ResourceUsage,
};
use skiff_api::{ResourceExt, Timestamp};

use crate::auth::{Attributes, Chain, Identity, Verb};
use crate::error::ApiError;
use crate::pod_metrics::{NodeSample, PodMetrics, PodSample};
use crate::registry::Registry;
use crate::store::Store;

/// The group the API is served in.
pub const GROUP: &str = "metrics.k8s.io";
/// Its version (the one metrics-server serves and kubectl asks for).
pub const VERSION: &str = "v1beta1";
/// The kinds the authorizer sees (`resource_of` maps them to `metrics.k8s.io` `nodes`/`pods`).
pub const NODE_KIND: &str = "NodeMetrics";
pub const POD_KIND: &str = "PodMetrics";

/// Figures as a source of metrics: implemented by the agents' reports, faked in tests.
pub trait Figures: Send + Sync {
    fn node(&self, node: &str) -> Option<NodeSample>;
    fn pod(&self, namespace: &str, name: &str, node: &str) -> Option<PodSample>;

    /// `pod`'s figures as its own node reports them, if they are this pod's (its uid, not an
    /// earlier pod's of the same name); none for a pod not bound yet.
    fn of_pod(&self, pod: &Pod) -> Option<PodSample> {
        let node = pod.spec.as_ref().map(|s| s.node_name.as_str())?;
        if node.is_empty() {
            return None;
        }
        let sample = self.pod(pod.namespace(), pod.name(), node)?;
        (sample.uid == pod.meta().uid).then_some(sample)
    }
}

/// Every pod of `namespace` (all with "") matching `selector`, read 500 a page.
pub(crate) async fn all_pods(
    pods: &Registry<Pod>,
    namespace: &str,
    selector: &str,
) -> Result<Vec<Pod>, ApiError> {
    let mut list = ListRequest {
        namespace: namespace.to_string(),
        label_selector: selector.to_string(),
        limit: 500,
        ..Default::default()
    };
    let mut out = Vec::new();
    loop {
        let (items, meta) = pods.list(&list).await?;
        out.extend(items);
        if meta.r#continue.is_empty() {
            return Ok(out);
        }
        list.r#continue = meta.r#continue;
    }
}

impl Figures for PodMetrics {
    fn node(&self, node: &str) -> Option<NodeSample> {
        PodMetrics::node(self, node)
    }
    fn pod(&self, namespace: &str, name: &str, node: &str) -> Option<PodSample> {
        self.get(namespace, name, node)
    }
}

impl Figures for crate::controllers::hpa::Autoscaling {
    fn node(&self, node: &str) -> Option<NodeSample> {
        self.metrics().node(node)
    }
    fn pod(&self, namespace: &str, name: &str, node: &str) -> Option<PodSample> {
        self.metrics().get(namespace, name, node)
    }
}

/// The API over the figures and the store.
#[derive(Clone)]
pub struct ResourceMetrics {
    figures: Arc<dyn Figures>,
    nodes: Registry<Node>,
    pods: Registry<Pod>,
    authz: Chain,
    store: Arc<dyn Store>,
}

impl ResourceMetrics {
    pub fn new(figures: Arc<dyn Figures>, store: Arc<dyn Store>, authz: Chain) -> Self {
        Self {
            figures,
            nodes: Registry::new(store.clone()),
            pods: Registry::new(store.clone()),
            authz,
            store,
        }
    }

    /// The custom metrics API (a function's requests, latency, cold starts) over the same
    /// figures, store and authorizer.
    pub fn custom(&self) -> crate::custom_metrics::CustomMetrics {
        crate::custom_metrics::CustomMetrics::new(
            self.figures.clone(),
            self.store.clone(),
            self.authz.clone(),
        )
    }

    /// NodeMetrics of every node that reported (or of node `req.name`: NotFound without
    /// figures, as metrics-server answers).
    pub async fn nodes(
        &self,
        who: &Identity,
        req: &MetricsListRequest,
    ) -> Result<Vec<NodeMetrics>, ApiError> {
        let verb = if req.name.is_empty() {
            Verb::List
        } else {
            Verb::Get
        };
        self.authz
            .check(who, &Attributes::new(verb, NODE_KIND, "").name(&req.name))?;
        let nodes = if req.name.is_empty() {
            let list = ListRequest {
                label_selector: req.label_selector.clone(),
                ..Default::default()
            };
            self.nodes.list(&list).await?.0
        } else {
            vec![self.nodes.get("", &req.name).await.map_err(|e| match e {
                ApiError::NotFound { .. } => not_found("nodes", &req.name),
                e => e,
            })?]
        };
        let items: Vec<NodeMetrics> = nodes
            .iter()
            .filter_map(|n| {
                let sample = self.figures.node(n.name())?;
                Some(NodeMetrics {
                    metadata: Some(meta_of(n.meta())),
                    timestamp: Some(wall(sample.at)),
                    window_millis: millis(sample.window),
                    usage: Some(ResourceUsage {
                        cpu_nano_cores: sample.cpu_nano_cores,
                        memory_bytes: sample.memory_bytes,
                    }),
                })
            })
            .collect();
        if !req.name.is_empty() && items.is_empty() {
            return Err(not_found("nodes", &req.name));
        }
        Ok(items)
    }

    /// PodMetrics of the pods of `req.namespace` (every namespace when empty) whose node
    /// reported them (or of pod `req.name`: NotFound without figures).
    pub async fn pods(
        &self,
        who: &Identity,
        req: &MetricsListRequest,
    ) -> Result<Vec<PodMetricsItem>, ApiError> {
        let verb = if req.name.is_empty() {
            Verb::List
        } else {
            Verb::Get
        };
        self.authz.check(
            who,
            &Attributes::new(verb, POD_KIND, &req.namespace).name(&req.name),
        )?;
        let pods = if req.name.is_empty() {
            all_pods(&self.pods, &req.namespace, &req.label_selector).await?
        } else {
            if req.namespace.is_empty() {
                return Err(ApiError::BadRequest(
                    "namespace: required to name a pod".into(),
                ));
            }
            vec![
                self.pods
                    .get(&req.namespace, &req.name)
                    .await
                    .map_err(|e| match e {
                        ApiError::NotFound { .. } => not_found("pods", &req.name),
                        e => e,
                    })?,
            ]
        };
        let items: Vec<PodMetricsItem> = pods.iter().filter_map(|p| self.pod_item(p)).collect();
        if !req.name.is_empty() && items.is_empty() {
            return Err(not_found("pods", &req.name));
        }
        Ok(items)
    }

    fn pod_item(&self, pod: &Pod) -> Option<PodMetricsItem> {
        let sample = self.figures.of_pod(pod)?;
        Some(PodMetricsItem {
            metadata: Some(meta_of(pod.meta())),
            timestamp: Some(wall(sample.at)),
            window_millis: millis(sample.window),
            containers: sample
                .containers
                .iter()
                .map(|c| ContainerMetrics {
                    name: c.name.clone(),
                    usage: Some(ResourceUsage {
                        cpu_nano_cores: c.cpu_nano_cores,
                        memory_bytes: c.memory_bytes,
                    }),
                })
                .collect(),
        })
    }
}

/// metrics-server's metadata: name, namespace, labels, and the time of the answer.
fn meta_of(meta: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        labels: meta.labels.clone(),
        creation_timestamp: Some(skiff_api::time::now()),
        ..Default::default()
    }
}

/// metrics-server's NotFound.
fn not_found(resource: &str, name: &str) -> ApiError {
    // The REST answer adds the group: `podmetrics.metrics.k8s.io "web" not found`.
    let plural = if resource == "nodes" {
        "nodemetrics"
    } else {
        "podmetrics"
    };
    ApiError::NotFound {
        plural,
        name: name.to_string(),
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// The wall-clock time of an `Instant` in the past.
pub fn wall(at: std::time::Instant) -> Timestamp {
    let when = SystemTime::now()
        .checked_sub(at.elapsed())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let since = when
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}
