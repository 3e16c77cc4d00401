//! API request metrics, as kube-apiserver names them: `apiserver_request_total` (by verb, group,
//! version, resource, subresource and HTTP code), `apiserver_request_duration_seconds` (the same
//! without the code), and `apiserver_registered_watchers` (watches open, by kind).
//!
//! Both front ends feed them through one seam: a call on a kind is counted where its audit event
//! is written (`server::limits::Call::done`, which gRPC handlers and REST handlers both call), a
//! call refused before that (authentication, rate limits) or outside the kinds' APIs (logs, exec,
//! port-forward, discovery, node reports) where the gate admits or refuses it. Verbs are
//! Kubernetes' metric verbs (`GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `DELETE`,
//! `DELETECOLLECTION`; `CONNECT` for every call outside the kinds' verbs); a resource or
//! subresource skiff does not serve is counted as `""`/`other`, so a client cannot grow the label
//! sets with invented paths.
//!
//! Must not: see a request's body, its caller's name or credentials.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::audit::ObjectRef;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: &'static str,
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    subresource: &'static str,
    code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    verb: &'static str,
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    subresource: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatcherLabels {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
}

type Durations = Family<DurationLabels, Histogram, fn() -> Histogram>;

/// The API families.
pub(super) struct Api {
    requests: Family<RequestLabels, Counter>,
    durations: Durations,
    watchers: Family<WatcherLabels, Gauge>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(super::LATENCY_BUCKETS)
}

impl Api {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let durations: Durations = Family::new_with_constructor(latency_histogram);
        let watchers = Family::<WatcherLabels, Gauge>::default();
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, API group, version, resource, subresource and HTTP response code",
            requests.clone(),
        );
        registry.register_with_unit(
            "apiserver_request_duration",
            "Response latency distribution in seconds for each verb, API group, version, resource and subresource",
            Unit::Seconds,
            durations.clone(),
        );
        registry.register(
            "apiserver_registered_watchers",
            "Number of currently registered watchers for a given resource (API clients' and the server's own feeds that read through the registry)",
            watchers.clone(),
        );
        Self {
            requests,
            durations,
            watchers,
        }
    }
}

/// Kubernetes' metric verb of a handler's verb (`create` → `POST`); anything else is `CONNECT`.
pub fn metric_verb(verb: &str) -> &'static str {
    match verb {
        "get" => "GET",
        "list" => "LIST",
        "watch" => "WATCH",
        "create" => "POST",
        "update" => "PUT",
        "patch" => "PATCH",
        "apply" => "APPLY",
        "delete" => "DELETE",
        "deletecollection" => "DELETECOLLECTION",
        _ => "CONNECT",
    }
}

/// The subresources skiff serves, as label values; anything else is `other`.
fn subresource_label(subresource: &str) -> &'static str {
    const KNOWN: [&str; 13] = [
        "",
        "status",
        "scale",
        "binding",
        "eviction",
        "log",
        "exec",
        "attach",
        "portforward",
        "proxy",
        "token",
        "approval",
        "finalize",
    ];
    KNOWN
        .iter()
        .find(|k| **k == subresource)
        .copied()
        .unwrap_or("other")
}

/// `(group, version, resource)` of a kind skiff serves, by its plural; `("", "", "")` otherwise.
fn resource_labels(resource: &str) -> (&'static str, &'static str, &'static str) {
    match skiff_api::kinds::KINDS
        .iter()
        .find(|k| k.plural == resource)
    {
        Some(k) => {
            let (group, version) = k.api_version.split_once('/').unwrap_or(("", k.api_version));
            (group, version, k.plural)
        }
        None => ("", "", ""),
    }
}

/// Counts one finished request on `object` (none: a call on no kind) that took `elapsed`; `code`
/// is the HTTP status Kubernetes would answer (`crate::audit::http_code`).
pub fn request_done(verb: &str, object: Option<&ObjectRef>, code: u16, elapsed: Duration) {
    let (group, version, resource) = object.map_or(("", "", ""), |o| resource_labels(&o.resource));
    let subresource = object.map_or("", |o| subresource_label(&o.subresource));
    // A create that succeeds is Kubernetes' 201 Created.
    let code = if verb == "create" && code == 200 {
        201
    } else {
        code
    };
    let verb = metric_verb(verb);
    let api = super::api();
    api.requests
        .get_or_create(&RequestLabels {
            verb,
            group,
            version,
            resource,
            subresource,
            code,
        })
        .inc();
    api.durations
        .get_or_create(&DurationLabels {
            verb,
            group,
            version,
            resource,
            subresource,
        })
        .observe(elapsed.as_secs_f64());
}

/// One open watch on kind `K`; the gauge drops back when this is dropped.
#[must_use = "the watch counts as open while this lives"]
#[derive(Debug)]
pub struct Watcher(WatcherLabels);

impl Watcher {
    pub fn open<K: skiff_api::Resource>() -> Self {
        let (group, version) = K::API_VERSION
            .split_once('/')
            .unwrap_or(("", K::API_VERSION));
        let labels = WatcherLabels {
            group,
            version,
            kind: K::KIND,
        };
        super::api().watchers.get_or_create(&labels).inc();
        Self(labels)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        super::api().watchers.get_or_create(&self.0).dec();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metrics::encode;

    fn scrape() -> String {
        let mut out = String::new();
        encode(false, &mut out).unwrap();
        out
    }

    /// The value of the sample line that starts with `prefix` (0 when absent).
    fn sample(text: &str, prefix: &str) -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse().unwrap())
    }

    #[test]
    fn a_request_counts_by_verb_kind_and_code() {
        let line = r#"apiserver_request_total{verb="POST",group="apps",version="v1",resource="deployments",subresource="scale",code="409"}"#;
        let before = sample(&scrape(), line);
        let object = ObjectRef {
            resource: "deployments".into(),
            subresource: "scale".into(),
            ..Default::default()
        };
        request_done("create", Some(&object), 409, Duration::from_millis(3));
        let text = scrape();
        assert_eq!(sample(&text, line), before + 1.0, "{text}");
        assert!(text.contains("# TYPE apiserver_request_total counter"));
        assert!(text.contains("# TYPE apiserver_request_duration_seconds histogram"));
        assert!(text.contains(r#"apiserver_request_duration_seconds_bucket{verb="POST",group="apps",version="v1",resource="deployments",subresource="scale",le="0.005"}"#));
        // A create that succeeds is 201 Created.
        request_done("create", Some(&object), 200, Duration::ZERO);
        assert!(scrape().contains(r#"subresource="scale",code="201"} 1"#));
    }

    #[test]
    fn invented_resources_verbs_and_subresources_add_no_label_values() {
        let object = ObjectRef {
            resource: "no-such-things".into(),
            subresource: "x-42".into(),
            ..Default::default()
        };
        request_done("frobnicate", Some(&object), 404, Duration::ZERO);
        let text = scrape();
        assert!(!text.contains("no-such-things") && !text.contains("x-42"));
        assert!(!text.contains("frobnicate"));
        assert!(text.contains(
            r#"verb="CONNECT",group="",version="",resource="",subresource="other",code="404""#
        ));
    }

    #[test]
    fn a_watcher_counts_while_it_lives() {
        let line = r#"apiserver_registered_watchers{group="",version="v1",kind="ConfigMap"}"#;
        let before = sample(&scrape(), line);
        let w = Watcher::open::<skiff_api::v1::ConfigMap>();
        assert_eq!(sample(&scrape(), line), before + 1.0);
        drop(w);
        assert_eq!(sample(&scrape(), line), before);
    }
}
