//! The ingress controller: the control-plane half of skiff's ingress (the routers on every node
//! are the other). For each Ingress served by skiff's controller (`skiff.dev/ingress`, through
//! the class it names or the default class):
//!
//! - `status.loadBalancer.ingress` lists the InternalIP of every Ready node, sorted: each node's
//!   router answers for every Ingress (the addresses a client or a DNS record may use).
//! - A backend naming a Service that does not exist, or a port the Service lacks, gets a Warning
//!   Event on the Ingress naming the field (`ServiceNotFound`, `ServicePortNotFound`:
//!   `spec.rules[0].http.paths[0].backend.service.name: service "default/x" not found`). Each
//!   problem is told once while it lasts (again after it is fixed and comes back, or after a
//!   restart of the controller); requests to such a backend get 503 from the routers meanwhile.
//!
//! - A `type: LoadBalancer` Service asking for port 80 or 443 gets a Warning Event
//!   (`IngressPortReserved`) naming the port: those ports of the nodes' addresses are the ingress
//!   routers' (`--ingress-addr`), and skiff has no load balancer to give it an address.
//!
//! Must not: touch Ingresses of other classes, or anything but an Ingress's status and Events.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use skiff_api::ResourceExt;
use skiff_api::v1::{
    Ingress, IngressBackend, IngressClass, IngressLoadBalancerIngress, IngressLoadBalancerStatus,
    IngressStatus, Node, Service,
};
use skiff_api::validation::{INGRESS_CONTROLLER, served_by};

use super::informer::{self, Cache, Reconciler};
use super::recorder::Recorder;
use crate::auth::Identity;
use crate::error::ApiError;
use crate::registry::{Registry, key, prefix};
use crate::store::{EventKind, KeyValue, Store};

/// Runs until aborted.
pub async fn run(store: Arc<dyn Store>) {
    let s = store.clone();
    informer::run_forever("ingress", store, Duration::from_secs(60), move || {
        Controller::new(s.clone())
    })
    .await;
}

struct Controller {
    ingresses: Cache<Ingress>,
    classes: Cache<IngressClass>,
    services: Cache<Service>,
    nodes: Cache<Node>,
    api: Registry<Ingress>,
    recorder: Recorder,
    /// Problems already told, by Ingress key.
    told: HashMap<String, BTreeSet<Problem>>,
}

/// A backend that leads nowhere: the field at fault, the Event's reason and message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub path: String,
    pub reason: &'static str,
    pub message: String,
}

/// The backends of `ingress` whose Service (or Service port) does not exist in `services`.
pub fn problems(ingress: &Ingress, service: impl Fn(&str) -> Option<Service>) -> BTreeSet<Problem> {
    let mut out = BTreeSet::new();
    let Some(spec) = &ingress.spec else {
        return out;
    };
    let mut backends: Vec<(String, &IngressBackend)> = Vec::new();
    if let Some(b) = &spec.default_backend {
        backends.push(("spec.defaultBackend".into(), b));
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        for (j, p) in rule.http.iter().flat_map(|h| &h.paths).enumerate() {
            if let Some(b) = &p.backend {
                backends.push((format!("spec.rules[{i}].http.paths[{j}].backend"), b));
            }
        }
    }
    for (path, backend) in backends {
        let Some(wanted) = &backend.service else {
            continue;
        };
        let full = format!("{}/{}", ingress.namespace(), wanted.name);
        let Some(found) = service(&wanted.name) else {
            out.insert(Problem {
                path: format!("{path}.service.name"),
                reason: "ServiceNotFound",
                message: format!("{path}.service.name: service \"{full}\" not found"),
            });
            continue;
        };
        let port = wanted.port.clone().unwrap_or_default();
        let ports = found.spec.map(|s| s.ports).unwrap_or_default();
        let (field, shown, exists) = if port.name.is_empty() {
            (
                "number",
                port.number.to_string(),
                ports.iter().any(|p| p.port == port.number),
            )
        } else {
            (
                "name",
                format!("{:?}", port.name),
                ports.iter().any(|p| p.name == port.name),
            )
        };
        if !exists {
            out.insert(Problem {
                path: format!("{path}.service.port.{field}"),
                reason: "ServicePortNotFound",
                message: format!(
                    "{path}.service.port.{field}: service \"{full}\" has no port {shown}"
                ),
            });
        }
    }
    out
}

/// The ports of the nodes' addresses the ingress routers hold by default.
pub const INGRESS_PORTS: [i32; 2] = [80, 443];

/// A LoadBalancer Service's ports that ask for the ingress routers' ports.
pub fn reserved_ports(service: &Service) -> BTreeSet<Problem> {
    let mut out = BTreeSet::new();
    let Some(spec) = service.spec.as_ref().filter(|s| s.r#type == "LoadBalancer") else {
        return out;
    };
    for (i, p) in spec.ports.iter().enumerate() {
        if INGRESS_PORTS.contains(&p.port) {
            out.insert(Problem {
                path: format!("spec.ports[{i}].port"),
                reason: "IngressPortReserved",
                message: format!(
                    "spec.ports[{i}].port: port {} of the nodes' addresses is the ingress router's (--ingress-addr), and skiff has no load balancer: the Service gets no external address; route to it with an Ingress, or use its nodePort",
                    p.port
                ),
            });
        }
    }
    out
}

/// The InternalIPs of the Ready nodes, sorted.
pub fn ready_addresses<'a>(nodes: impl Iterator<Item = &'a Node>) -> Vec<String> {
    let mut out: Vec<String> = nodes
        .filter(|n| {
            n.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.r#type == "Ready" && c.status == "True")
            })
        })
        .filter_map(|n| {
            n.status.as_ref().and_then(|s| {
                s.addresses
                    .iter()
                    .find(|a| a.r#type == "InternalIP")
                    .map(|a| a.address.clone())
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

impl Controller {
    /// Tells a LoadBalancer Service that asks for the ingress ports why it gets no address.
    async fn reconcile_service(&mut self, service_key: &str) {
        let found = self
            .services
            .get_key(service_key)
            .map(reserved_ports)
            .unwrap_or_default();
        if found.is_empty() {
            self.told.remove(service_key);
            return;
        }
        let new: Vec<Problem> = match self.told.get(service_key) {
            Some(told) => found.difference(told).cloned().collect(),
            None => found.iter().cloned().collect(),
        };
        if let Some(service) = self.services.get_key(service_key).cloned() {
            for problem in new {
                self.recorder
                    .warning(&service, problem.reason, problem.message)
                    .await;
            }
        }
        self.told.insert(service_key.to_string(), found);
    }

    fn new(store: Arc<dyn Store>) -> Self {
        Self {
            ingresses: Cache::default(),
            classes: Cache::default(),
            services: Cache::default(),
            nodes: Cache::default(),
            api: Registry::new(store.clone()),
            recorder: Recorder::new(store, "ingress-controller"),
            told: HashMap::new(),
        }
    }

    fn keys_in(&self, namespace: &str) -> Vec<String> {
        self.ingresses
            .values()
            .filter(|i| i.namespace() == namespace)
            .map(|i| key::<Ingress>(i.namespace(), i.name()))
            .collect()
    }
}

#[async_trait::async_trait]
impl Reconciler for Controller {
    fn prefixes(&self) -> Vec<String> {
        vec![
            prefix::<Ingress>(""),
            prefix::<IngressClass>(""),
            prefix::<Service>(""),
            prefix::<Node>(""),
        ]
    }

    fn observe(&mut self, kind: EventKind, kv: &KeyValue, dirty: &mut BTreeSet<String>) {
        if Cache::<Ingress>::owns(&kv.key) {
            let (old, new) = self.ingresses.apply(kind, kv);
            if old.is_some() || new.is_some() {
                dirty.insert(kv.key.clone());
            }
        } else if Cache::<Service>::owns(&kv.key) {
            let (old, new) = self.services.apply(kind, kv);
            if let Some(s) = new.or(old) {
                dirty.extend(self.keys_in(s.namespace()));
                dirty.insert(kv.key.clone());
            }
        } else if Cache::<IngressClass>::owns(&kv.key) {
            let (old, new) = self.classes.apply(kind, kv);
            if old.is_some() || new.is_some() {
                dirty.extend(self.all_keys());
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
        self.ingresses.keys().cloned().collect()
    }

    async fn reconcile(&mut self, ingress_key: &str) -> Result<Option<Duration>, ApiError> {
        if Cache::<Service>::owns(ingress_key) {
            self.reconcile_service(ingress_key).await;
            return Ok(None);
        }
        let Some(ingress) = self.ingresses.get_key(ingress_key).cloned() else {
            self.told.remove(ingress_key);
            return Ok(None);
        };
        if !served_by(&ingress, self.classes.values(), INGRESS_CONTROLLER) {
            self.told.remove(ingress_key);
            return Ok(None);
        }
        // Events first: a failed status write must not hold them back.
        let found = problems(&ingress, |name| {
            self.services.get(ingress.namespace(), name).cloned()
        });
        let new: Vec<Problem> = match self.told.get(ingress_key) {
            Some(told) => found.difference(told).cloned().collect(),
            None => found.iter().cloned().collect(),
        };
        for problem in new {
            self.recorder
                .warning(&ingress, problem.reason, problem.message)
                .await;
        }
        self.told.insert(ingress_key.to_string(), found);

        let wanted = IngressLoadBalancerStatus {
            ingress: ready_addresses(self.nodes.values())
                .into_iter()
                .map(|ip| IngressLoadBalancerIngress {
                    ip,
                    ..Default::default()
                })
                .collect(),
        };
        let current = ingress
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.clone())
            .unwrap_or_default();
        if current == wanted {
            return Ok(None);
        }
        let mut updated = ingress;
        updated.status = Some(IngressStatus {
            load_balancer: Some(wanted),
        });
        let written = self.api.update_status(&Identity::Admin, updated).await?;
        self.ingresses.remember(written);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{
        Condition, HttpIngressPath, HttpIngressRuleValue, IngressRule, IngressServiceBackend,
        IngressSpec, NodeAddress, NodeStatus, ObjectMeta, ServiceBackendPort, ServicePort,
        ServiceSpec,
    };

    fn backend(name: &str, port: ServiceBackendPort) -> Option<IngressBackend> {
        Some(IngressBackend {
            service: Some(IngressServiceBackend {
                name: name.into(),
                port: Some(port),
            }),
            resource: None,
        })
    }

    #[test]
    fn missing_services_and_ports_are_named_by_field() {
        let number = |n| ServiceBackendPort {
            number: n,
            ..Default::default()
        };
        let named = |n: &str| ServiceBackendPort {
            name: n.into(),
            ..Default::default()
        };
        let ingress = Ingress {
            metadata: Some(ObjectMeta {
                name: "i".into(),
                namespace: "web".into(),
                ..Default::default()
            }),
            spec: Some(IngressSpec {
                default_backend: backend("ghost", number(80)),
                rules: vec![IngressRule {
                    host: "a.test".into(),
                    http: Some(HttpIngressRuleValue {
                        paths: [("a", number(80)), ("a", number(81)), ("a", named("admin"))]
                            .into_iter()
                            .map(|(svc, port)| HttpIngressPath {
                                path: "/".into(),
                                path_type: "Prefix".into(),
                                backend: backend(svc, port),
                            })
                            .collect(),
                    }),
                }],
                ..Default::default()
            }),
            status: None,
        };
        let a = Service {
            spec: Some(ServiceSpec {
                ports: vec![ServicePort {
                    name: "http".into(),
                    port: 80,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let found = problems(&ingress, |name| (name == "a").then(|| a.clone()));
        let messages: Vec<(&str, &str)> = found
            .iter()
            .map(|p| (p.reason, p.message.as_str()))
            .collect();
        assert_eq!(
            messages,
            [
                (
                    "ServiceNotFound",
                    "spec.defaultBackend.service.name: service \"web/ghost\" not found"
                ),
                (
                    "ServicePortNotFound",
                    "spec.rules[0].http.paths[1].backend.service.port.number: service \"web/a\" has no port 81"
                ),
                (
                    "ServicePortNotFound",
                    "spec.rules[0].http.paths[2].backend.service.port.name: service \"web/a\" has no port \"admin\""
                ),
            ]
        );
    }

    #[test]
    fn load_balancers_asking_for_the_ingress_ports_are_told() {
        let service = |r#type: &str| Service {
            spec: Some(ServiceSpec {
                r#type: r#type.into(),
                ports: [8080, 443]
                    .into_iter()
                    .map(|port| ServicePort {
                        port,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let told: Vec<(String, &str)> = reserved_ports(&service("LoadBalancer"))
            .into_iter()
            .map(|p| (p.path, p.reason))
            .collect();
        assert_eq!(
            told,
            [("spec.ports[1].port".to_string(), "IngressPortReserved")]
        );
        assert!(reserved_ports(&service("NodePort")).is_empty());
    }

    #[test]
    fn only_ready_nodes_internal_ips_are_addresses() {
        let node = |ip: &str, ready: &str| Node {
            status: Some(NodeStatus {
                conditions: vec![Condition {
                    r#type: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }],
                addresses: vec![
                    NodeAddress {
                        r#type: "Hostname".into(),
                        address: "h".into(),
                    },
                    NodeAddress {
                        r#type: "InternalIP".into(),
                        address: ip.into(),
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let nodes = [
            node("10.0.0.2", "True"),
            node("10.0.0.3", "Unknown"),
            node("10.0.0.1", "True"),
        ];
        assert_eq!(ready_addresses(nodes.iter()), ["10.0.0.1", "10.0.0.2"]);
    }
}
