//! The custom metrics API (`custom.metrics.k8s.io/v1beta2`, as prometheus-adapter serves it to
//! the HorizontalPodAutoscaler and to `kubectl get --raw`) over the functions' figures the agents
//! report ([`crate::pod_metrics`]): a function pod's requests per second, mean request duration,
//! cold starts per minute (each over the window between its node's last two reports, about 2 s)
//! and requests in flight (now), for one pod, the pods a label selector picks, or a Service (its
//! selector's pods together: rates and in-flight summed, the duration weighed by each pod's
//! requests). One source for the REST resources in [`crate::rest::custom_metrics_api`].
//!
//! As [`crate::resource_metrics`]: a pod is described only when it exists, is bound, and its node
//! reported figures for that pod's uid; a pod with no function figures (not a function, or its
//! first report) has no value, and a named one is NotFound. Authorization is Kubernetes': `get`
//! of `pods/METRIC` or `services/METRIC` in API group `custom.metrics.k8s.io` (a list of pods by
//! `*` too: prometheus-adapter's requests are gets of a name or `*`), which the default
//! `system:aggregated-custom-metrics-reader` ClusterRole grants, aggregated into view, edit and
//! admin.
//!
//! Must not: write anything, or serve figures a node reported for a pod bound elsewhere.

use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_api::ResourceExt;
use skiff_api::v1::{Pod, Service};

use crate::auth::{Attributes, Chain, Identity, Verb};
use crate::error::ApiError;
use crate::pod_metrics::{FunctionWindow, PodSample};
use crate::registry::Registry;
use crate::resource_metrics::Figures;
use crate::store::Store;

/// The group the API is served in.
pub const GROUP: &str = "custom.metrics.k8s.io";
/// Its version (prometheus-adapter's, the one the HPA asks for first).
pub const VERSION: &str = "v1beta2";
/// The kinds the authorizer sees (`resource_of` maps them to `custom.metrics.k8s.io`
/// `pods`/`services`; the metric is the subresource).
pub const POD_KIND: &str = "PodCustomMetric";
pub const SERVICE_KIND: &str = "ServiceCustomMetric";

/// A metric of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Requests received per second over the window.
    RequestsPerSecond,
    /// The mean duration, in seconds, of the admitted requests that ended in the window (none
    /// ended: no value).
    RequestDurationSeconds,
    /// Cold starts (instances made) per minute over the window.
    ColdStartsPerMinute,
    /// Requests being served at the report.
    RequestsInFlight,
}

impl Metric {
    pub const ALL: [Metric; 4] = [
        Metric::RequestsPerSecond,
        Metric::RequestDurationSeconds,
        Metric::ColdStartsPerMinute,
        Metric::RequestsInFlight,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::RequestsPerSecond => "skiff_function_requests_per_second",
            Metric::RequestDurationSeconds => "skiff_function_request_duration_seconds",
            Metric::ColdStartsPerMinute => "skiff_function_cold_starts_per_minute",
            Metric::RequestsInFlight => "skiff_function_requests_in_flight",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// A pod's value and its window; None when the pod has none.
    fn of_pod(self, s: &PodSample) -> Option<(f64, Duration)> {
        if self == Metric::RequestsInFlight {
            return s.requests_in_flight().map(|n| (n as f64, s.window));
        }
        let w = s.function?;
        let window = Duration::from_secs_f64(w.seconds);
        self.of_window(&[w]).map(|v| (v, window))
    }

    /// Several pods' windows together.
    fn of_window(self, windows: &[FunctionWindow]) -> Option<f64> {
        let a = FunctionWindow::sum(windows)?;
        match self {
            Metric::RequestsPerSecond => Some(a.requests_per_second),
            Metric::RequestDurationSeconds => a.mean_duration_seconds,
            Metric::ColdStartsPerMinute => Some(a.cold_starts_per_minute),
            Metric::RequestsInFlight => None,
        }
    }
}

/// One value: a MetricValue of the API.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValue {
    /// `Pod` or `Service`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub metric: Metric,
    /// When the figures were reported (the oldest of a Service's pods').
    pub at: Instant,
    pub window: Duration,
    pub value: f64,
}

/// Which pods of a namespace: one by name, or every one a label selector picks (`*`).
#[derive(Debug, Clone, Copy)]
pub enum Pods<'a> {
    Named(&'a str),
    Selected(&'a str),
}

/// The API over the figures and the store.
#[derive(Clone)]
pub struct CustomMetrics {
    figures: Arc<dyn Figures>,
    pods: Registry<Pod>,
    services: Registry<Service>,
    authz: Chain,
}

impl CustomMetrics {
    pub fn new(figures: Arc<dyn Figures>, store: Arc<dyn Store>, authz: Chain) -> Self {
        Self {
            figures,
            pods: Registry::new(store.clone()),
            services: Registry::new(store),
            authz,
        }
    }

    /// `metric` of the pods `which` of `namespace`. An unknown metric, or a named pod without
    /// the metric, is NotFound (`pods`); a selection may be empty.
    pub async fn pods(
        &self,
        who: &Identity,
        namespace: &str,
        which: Pods<'_>,
        metric: &str,
    ) -> Result<Vec<MetricValue>, ApiError> {
        let name = match which {
            Pods::Named(n) => n,
            Pods::Selected(_) => "",
        };
        self.authz.check(
            who,
            &Attributes::new(Verb::Get, POD_KIND, namespace)
                .name(name)
                .subresource(metric),
        )?;
        let not_found = || ApiError::NotFound {
            plural: "pods",
            name: name.to_string(),
        };
        let metric = Metric::parse(metric).ok_or_else(not_found)?;
        let pods = match which {
            Pods::Named(n) => vec![self.pods.get(namespace, n).await.map_err(|e| match e {
                ApiError::NotFound { .. } => not_found(),
                e => e,
            })?],
            Pods::Selected(selector) => self.list_pods(namespace, selector).await?,
        };
        let values: Vec<MetricValue> = pods
            .iter()
            .filter_map(|p| {
                let s = self.sample(p)?;
                let (value, window) = metric.of_pod(&s)?;
                Some(MetricValue {
                    kind: "Pod",
                    namespace: p.namespace().to_string(),
                    name: p.name().to_string(),
                    metric,
                    at: s.at,
                    window,
                    value,
                })
            })
            .collect();
        if matches!(which, Pods::Named(_)) && values.is_empty() {
            return Err(not_found());
        }
        Ok(values)
    }

    /// `metric` of Service `namespace/name`: over the pods its selector picks that have the
    /// figure (rates and in-flight summed, the duration weighed by requests). NotFound when
    /// none has it, or the Service selects nothing.
    pub async fn service(
        &self,
        who: &Identity,
        namespace: &str,
        name: &str,
        metric: &str,
    ) -> Result<MetricValue, ApiError> {
        self.authz.check(
            who,
            &Attributes::new(Verb::Get, SERVICE_KIND, namespace)
                .name(name)
                .subresource(metric),
        )?;
        let not_found = || ApiError::NotFound {
            plural: "services",
            name: name.to_string(),
        };
        let metric = Metric::parse(metric).ok_or_else(not_found)?;
        let service = self
            .services
            .get(namespace, name)
            .await
            .map_err(|e| match e {
                ApiError::NotFound { .. } => not_found(),
                e => e,
            })?;
        let selector = service
            .spec
            .as_ref()
            .map(|s| &s.selector)
            .filter(|s| !s.is_empty())
            .ok_or_else(not_found)?;
        let selector: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let samples: Vec<PodSample> = self
            .list_pods(namespace, &selector.join(","))
            .await?
            .iter()
            .filter_map(|p| self.sample(p))
            .collect();
        service_value(metric, namespace, name, &samples).ok_or_else(not_found)
    }

    async fn list_pods(&self, namespace: &str, selector: &str) -> Result<Vec<Pod>, ApiError> {
        crate::resource_metrics::all_pods(&self.pods, namespace, selector).await
    }

    /// The pod's figures from its own node, if they are this pod's (its uid).
    fn sample(&self, pod: &Pod) -> Option<PodSample> {
        self.figures.of_pod(pod)
    }
}

/// A Service's value of `metric` over its pods' samples; None when no pod has it.
pub fn service_value(
    metric: Metric,
    namespace: &str,
    name: &str,
    samples: &[PodSample],
) -> Option<MetricValue> {
    let at = samples.iter().map(|s| s.at).min()?;
    let (value, window) = if metric == Metric::RequestsInFlight {
        let counted: Vec<(u64, Duration)> = samples
            .iter()
            .filter_map(|s| s.requests_in_flight().map(|n| (n, s.window)))
            .collect();
        let window = counted.iter().map(|(_, w)| *w).max()?;
        (counted.iter().map(|(n, _)| *n as f64).sum(), window)
    } else {
        let windows: Vec<FunctionWindow> = samples.iter().filter_map(|s| s.function).collect();
        let longest = windows.iter().map(|w| w.seconds).fold(0.0, f64::max);
        (
            metric.of_window(&windows)?,
            Duration::from_secs_f64(longest),
        )
    };
    Some(MetricValue {
        kind: "Service",
        namespace: namespace.to_string(),
        name: name.to_string(),
        metric,
        at,
        window,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_metrics::ContainerSample;

    fn sample(requests: u64, ended: u64, sum: f64, in_flight: Option<u32>) -> PodSample {
        PodSample {
            node: "a".into(),
            uid: "u".into(),
            at: Instant::now(),
            window: Duration::from_secs(2),
            containers: vec![ContainerSample {
                name: "fn".into(),
                requests_in_flight: in_flight,
                ..Default::default()
            }],
            requests_per_second: None,
            function: Some(FunctionWindow {
                seconds: 2.0,
                requests,
                ended,
                duration_seconds_sum: sum,
                cold_starts: requests,
            }),
        }
    }

    #[test]
    fn metric_names_are_prometheus_style_and_parse_back() {
        for m in Metric::ALL {
            assert!(m.name().starts_with("skiff_function_"), "{m:?}");
            assert_eq!(Metric::parse(m.name()), Some(m));
        }
        assert_eq!(Metric::parse("cpu"), None);
    }

    #[test]
    fn a_pods_values_come_from_its_window() {
        let s = sample(10, 10, 0.5, Some(3));
        let (rps, window) = Metric::RequestsPerSecond.of_pod(&s).unwrap();
        assert_eq!((rps, window), (5.0, Duration::from_secs(2)));
        let (mean, _) = Metric::RequestDurationSeconds.of_pod(&s).unwrap();
        assert!((mean - 0.05).abs() < 1e-9);
        assert_eq!(Metric::ColdStartsPerMinute.of_pod(&s).unwrap().0, 300.0);
        assert_eq!(Metric::RequestsInFlight.of_pod(&s).unwrap().0, 3.0);
        // Nothing ended: no duration; no window at all: no rate either.
        assert_eq!(
            Metric::RequestDurationSeconds.of_pod(&sample(0, 0, 0.0, None)),
            None
        );
        let mut first = sample(0, 0, 0.0, None);
        first.function = None;
        assert_eq!(Metric::RequestsPerSecond.of_pod(&first), None);
        assert_eq!(Metric::RequestsInFlight.of_pod(&first), None);
    }

    /// No figures at all (the authorization comes first).
    struct NoFigures;
    impl Figures for NoFigures {
        fn node(&self, _: &str) -> Option<crate::pod_metrics::NodeSample> {
            None
        }
        fn pod(&self, _: &str, _: &str, _: &str) -> Option<PodSample> {
            None
        }
    }

    /// The default reader role lets its holder get pods' and services' metrics (a pod without
    /// figures is then NotFound); a user without it is refused in Kubernetes' words; the role is
    /// aggregated into view as metrics.k8s.io's.
    #[tokio::test]
    async fn the_reader_role_allows_the_metrics_and_nobody_else() {
        use crate::auth::rbac::RbacAuthorizer;
        use crate::auth::rbac::defaults::cluster_roles;
        use crate::auth::rbac::index::PolicyIndex;
        use skiff_api::v1::{ClusterRoleBinding, ObjectMeta, RoleRef, Subject};
        const READER: &str = "system:aggregated-custom-metrics-reader";
        let roles = cluster_roles();
        let reader = roles
            .iter()
            .find(|r| r.metadata.as_ref().is_some_and(|m| m.name == READER))
            .expect("the reader role");
        let metrics_reader = roles
            .iter()
            .find(|r| {
                r.metadata
                    .as_ref()
                    .is_some_and(|m| m.name == "system:aggregated-metrics-reader")
            })
            .unwrap();
        assert_eq!(
            reader.metadata.as_ref().unwrap().labels,
            metrics_reader.metadata.as_ref().unwrap().labels,
            "aggregated into view, edit and admin"
        );
        let index = Arc::new(PolicyIndex::default());
        index.put_cluster_role(reader);
        index.put_cluster_role_binding(&ClusterRoleBinding {
            metadata: Some(ObjectMeta {
                name: "jane-reads".into(),
                ..Default::default()
            }),
            role_ref: Some(RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: READER.into(),
            }),
            subjects: vec![Subject {
                kind: "User".into(),
                api_group: "rbac.authorization.k8s.io".into(),
                name: "jane".into(),
                namespace: String::new(),
            }],
        });
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            crate::store::embedded::EmbeddedStore::open(
                &dir.path().join("store.redb"),
                crate::store::embedded::EmbeddedOptions::default(),
            )
            .unwrap(),
        );
        let api = CustomMetrics::new(
            Arc::new(NoFigures),
            store,
            Chain::new(vec![Arc::new(RbacAuthorizer::new(index))]),
        );
        let user = |name: &str| Identity::User {
            name: name.into(),
            groups: vec![],
        };
        let rps = Metric::RequestsPerSecond.name();
        let jane = api
            .pods(&user("jane"), "shop", Pods::Named("web-1"), rps)
            .await;
        assert!(matches!(jane, Err(ApiError::NotFound { .. })), "{jane:?}");
        let selected = api
            .pods(&user("jane"), "shop", Pods::Selected("app=web"), rps)
            .await
            .unwrap();
        assert!(selected.is_empty());
        let service = api.service(&user("jane"), "shop", "web", rps).await;
        assert!(
            matches!(service, Err(ApiError::NotFound { .. })),
            "{service:?}"
        );
        let bob = api
            .pods(&user("bob"), "shop", Pods::Named("web-1"), rps)
            .await
            .unwrap_err();
        assert_eq!(
            bob.to_string(),
            "User \"bob\" cannot get resource \"pods/skiff_function_requests_per_second\" in API group \"custom.metrics.k8s.io\" in the namespace \"shop\""
        );
        let bob = api.service(&user("bob"), "shop", "web", rps).await;
        assert!(matches!(bob, Err(ApiError::Forbidden(_))), "{bob:?}");
    }

    #[test]
    fn a_services_value_sums_its_pods() {
        let pods = [sample(20, 20, 0.2, Some(1)), sample(2, 2, 2.0, Some(4))];
        let v = |m| service_value(m, "shop", "fn", &pods).unwrap();
        assert_eq!(v(Metric::RequestsPerSecond).value, 11.0);
        assert_eq!(v(Metric::RequestsInFlight).value, 5.0);
        assert!((v(Metric::RequestDurationSeconds).value - 0.1).abs() < 1e-9);
        assert_eq!(v(Metric::ColdStartsPerMinute).value, 660.0);
        let one = v(Metric::RequestsPerSecond);
        assert_eq!((one.kind, one.name.as_str()), ("Service", "fn"));
        assert_eq!(one.window, Duration::from_secs(2));
        assert_eq!(
            service_value(Metric::RequestsPerSecond, "shop", "fn", &[]),
            None
        );
    }
}
