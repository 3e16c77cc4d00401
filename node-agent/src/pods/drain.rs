//! Graceful endpoint removal: a terminating pod that serves a Service gets SIGTERM only after its
//! address has left the Service's endpoints everywhere, so that no node's proxy still sends it
//! new connections while it shuts down — a rolling update drops no request, without the preStop
//! `sleep` Kubernetes users add for the same reason.
//!
//! The endpoints controller drops a pod from `addresses` as soon as it is terminating. This node
//! waits (bounded) until its own catalog no longer lists the address, then for
//! [`PROPAGATION`]: every node's proxy applies a change within its minimum sync interval of 1 s
//! after its watch delivers it, and the watches of all nodes deliver the same change at about the
//! same time. Both waits together never exceed [`MAX_WAIT`] nor the pod's grace period.
//!
//! Must not: touch containers or the API (the caller stops the pod after the wait).

use std::time::Duration;

use skiff_api::ResourceExt;
use skiff_api::selector::LabelSelector;
use skiff_api::v1::Pod;
use tokio::time::Instant;

use crate::catalog::Catalog;

/// The longest a terminating pod waits before its containers are signalled.
pub const MAX_WAIT: Duration = Duration::from_secs(5);
/// Time for every node's proxy to apply a change seen here.
pub const PROPAGATION: Duration = Duration::from_millis(1500);

/// Waits until no Endpoints in `catalog` lists `pod` as ready, then for [`PROPAGATION`], all
/// within `grace` and [`MAX_WAIT`]. Returns at once for a pod no Service selects or with no
/// address. Whether it waited.
pub async fn drain(catalog: &Catalog, pod: &Pod, grace: Duration) -> bool {
    drain_within(catalog, pod, grace.min(MAX_WAIT), PROPAGATION).await
}

async fn drain_within(
    catalog: &Catalog,
    pod: &Pod,
    limit: Duration,
    propagation: Duration,
) -> bool {
    let ip = pod.status.as_ref().map_or("", |s| s.pod_ip.as_str());
    if ip.is_empty() || !selected(catalog, pod) {
        return false;
    }
    let deadline = Instant::now() + limit;
    let mut changes = catalog.subscribe();
    while listed(catalog, pod, ip) {
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            // The controller is slow or away: the pod stops anyway, its grace period counting.
            return true;
        }
    }
    tokio::time::sleep_until(deadline.min(Instant::now() + propagation)).await;
    true
}

/// Whether a Service of the pod's namespace selects it.
fn selected(catalog: &Catalog, pod: &Pod) -> bool {
    let labels = &pod.meta().labels;
    catalog.services().iter().any(|svc| {
        svc.namespace() == pod.namespace()
            && svc.spec.as_ref().is_some_and(|s| {
                !s.selector.is_empty() && LabelSelector::from_map(&s.selector).matches(labels)
            })
    })
}

/// Whether an Endpoints lists the pod (address `ip`) among its ready addresses.
fn listed(catalog: &Catalog, pod: &Pod, ip: &str) -> bool {
    let uid = &pod.meta().uid;
    catalog.all_endpoints().iter().any(|ep| {
        ep.namespace() == pod.namespace()
            && ep.subsets.iter().any(|s| {
                s.addresses.iter().any(|a| {
                    a.ip == ip
                        && a.target_ref
                            .as_ref()
                            .is_none_or(|r| r.uid.is_empty() || &r.uid == uid)
                })
            })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use skiff_api::v1::{
        EndpointAddress, EndpointSubset, Endpoints, ObjectMeta, PodStatus, Service, ServiceSpec,
    };

    fn pod() -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                namespace: "default".into(),
                name: "web-1".into(),
                uid: "u1".into(),
                labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: "10.244.0.7".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn service() -> Service {
        Service {
            metadata: Some(ObjectMeta {
                namespace: "default".into(),
                name: "web".into(),
                ..Default::default()
            }),
            spec: Some(ServiceSpec {
                selector: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn endpoints(ips: &[&str]) -> Endpoints {
        Endpoints {
            metadata: Some(ObjectMeta {
                namespace: "default".into(),
                name: "web".into(),
                ..Default::default()
            }),
            subsets: vec![EndpointSubset {
                addresses: ips
                    .iter()
                    .map(|ip| EndpointAddress {
                        ip: ip.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn a_pod_no_service_selects_stops_at_once() {
        let catalog = Catalog::from_objects(vec![], vec![endpoints(&["10.244.0.7"])]);
        assert!(!drain_within(&catalog, &pod(), MS * 60_000, MS * 60_000).await);
        let mut unaddressed = pod();
        unaddressed.status = None;
        let catalog = Catalog::from_objects(vec![service()], vec![endpoints(&["10.244.0.7"])]);
        assert!(!drain_within(&catalog, &unaddressed, MS * 60_000, MS * 60_000).await);
    }

    #[tokio::test]
    async fn a_served_pod_waits_for_its_removal_then_for_the_proxies() {
        let catalog = Catalog::from_objects(vec![service()], vec![endpoints(&["10.244.0.7"])]);
        let started = Instant::now();
        let waiting = {
            let catalog = catalog.clone();
            tokio::spawn(async move { drain_within(&catalog, &pod(), MS * 60_000, MS * 300).await })
        };
        tokio::time::sleep(MS * 200).await;
        assert!(!waiting.is_finished(), "still listed: still waiting");
        catalog.replace_endpoints(vec![endpoints(&["10.244.0.8"])]);
        assert!(waiting.await.unwrap());
        assert!(started.elapsed() >= MS * 500, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn the_wait_ends_at_its_limit_even_if_still_listed() {
        let catalog = Catalog::from_objects(vec![service()], vec![endpoints(&["10.244.0.7"])]);
        let started = Instant::now();
        assert!(drain_within(&catalog, &pod(), MS * 300, MS * 60_000).await);
        let waited = started.elapsed();
        assert!(waited >= MS * 300 && waited < MS * 30_000, "{waited:?}");
    }
}
