//! The service load balancer controller: skiff's answer to `type: LoadBalancer`, k3s ServiceLB's
//! semantics without its per-node pods. Every node's proxy answers a LoadBalancer Service's
//! ports on the node's own addresses (besides its node ports), so the Service's
//! `status.loadBalancer.ingress` lists the InternalIP of every Ready node, sorted; clients (or a
//! DNS record, or an upstream load balancer) use any of them.
//!
//! A Service asking for a port the ingress routers hold on the nodes' addresses (80, 443: see
//! [`super::ingress::reserved_ports`], which also tells it why with an Event) gets no address,
//! and a Service that stops being a LoadBalancer loses its status, as Kubernetes' service
//! controller clears it.
//!
//! Must not: touch anything but a Service's `status.loadBalancer`, or a Service of
//! `loadBalancerClass` another controller owns (skiff has no such field: every LoadBalancer
//! Service is its).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use skiff_api::v1::{LoadBalancerIngress, LoadBalancerStatus, Node, Service, ServiceStatus};

use super::informer::{self, Cache, Reconciler};
use super::ingress::{ready_addresses, reserved_ports};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::registry::{Registry, prefix};
use crate::store::{EventKind, KeyValue, Store};

/// Runs until aborted.
pub async fn run(store: Arc<dyn Store>) {
    let s = store.clone();
    informer::run_forever("service-lb", store, Duration::from_secs(60), move || {
        Controller::new(s.clone())
    })
    .await;
}

struct Controller {
    services: Cache<Service>,
    nodes: Cache<Node>,
    api: Registry<Service>,
}

/// The `status.loadBalancer` `service` should have, given the Ready nodes' addresses.
pub fn wanted(service: &Service, addresses: &[String]) -> LoadBalancerStatus {
    let is_lb = service
        .spec
        .as_ref()
        .is_some_and(|s| s.r#type == "LoadBalancer");
    if !is_lb || !reserved_ports(service).is_empty() {
        return LoadBalancerStatus::default();
    }
    LoadBalancerStatus {
        ingress: addresses
            .iter()
            .map(|ip| LoadBalancerIngress {
                ip: ip.clone(),
                ..Default::default()
            })
            .collect(),
    }
}

fn current(service: &Service) -> LoadBalancerStatus {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.clone())
        .unwrap_or_default()
}

impl Controller {
    fn new(store: Arc<dyn Store>) -> Self {
        Self {
            services: Cache::default(),
            nodes: Cache::default(),
            api: Registry::new(store),
        }
    }
}

#[async_trait::async_trait]
impl Reconciler for Controller {
    fn prefixes(&self) -> Vec<String> {
        vec![prefix::<Service>(""), prefix::<Node>("")]
    }

    fn observe(&mut self, kind: EventKind, kv: &KeyValue, dirty: &mut BTreeSet<String>) {
        if Cache::<Service>::owns(&kv.key) {
            let (old, new) = self.services.apply(kind, kv);
            if new.is_some() && (old.is_none() || old != new) {
                dirty.insert(kv.key.clone());
            }
        } else if Cache::<Node>::owns(&kv.key) {
            let (old, new) = self.nodes.apply(kind, kv);
            // Heartbeats change nodes all the time; only a change of the addresses matters.
            let address = |n: Option<Arc<Node>>| ready_addresses(n.as_deref().into_iter());
            if address(old) != address(new) {
                dirty.extend(self.all_keys());
            }
        }
    }

    fn all_keys(&self) -> Vec<String> {
        self.services.keys().cloned().collect()
    }

    async fn reconcile(&mut self, key: &str) -> Result<Option<Duration>, ApiError> {
        let Some(service) = self.services.get_key(key).cloned() else {
            return Ok(None);
        };
        let wanted = wanted(&service, &ready_addresses(self.nodes.values()));
        if current(&service) == wanted {
            return Ok(None);
        }
        let mut updated = service;
        updated
            .status
            .get_or_insert_with(ServiceStatus::default)
            .load_balancer = Some(wanted);
        let written = self.api.update_status(&Identity::Admin, updated).await?;
        self.services.remember(written);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{ServicePort, ServiceSpec};

    fn service(kind: &str, port: i32) -> Service {
        Service {
            spec: Some(ServiceSpec {
                r#type: kind.into(),
                ports: vec![ServicePort {
                    port,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn load_balancers_get_every_ready_nodes_address() {
        let nodes = vec!["10.0.0.1".to_string(), "10.0.0.2".to_string()];
        let got = wanted(&service("LoadBalancer", 8080), &nodes);
        let ips: Vec<&str> = got.ingress.iter().map(|i| i.ip.as_str()).collect();
        assert_eq!(ips, ["10.0.0.1", "10.0.0.2"]);
        // The ingress routers' ports: no address (an Event says why).
        assert_eq!(
            wanted(&service("LoadBalancer", 443), &nodes),
            LoadBalancerStatus::default()
        );
        // Not a LoadBalancer (any more): none.
        assert_eq!(
            wanted(&service("NodePort", 8080), &nodes),
            LoadBalancerStatus::default()
        );
    }
}
