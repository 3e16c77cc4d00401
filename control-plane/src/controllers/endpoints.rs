//! The endpoints controller: keeps, for every Service with a selector, an Endpoints object of the
//! same name listing its pods — ready ones under `addresses`, the others under
//! `notReadyAddresses` (all under `addresses` with `publishNotReadyAddresses`).
//!
//! A pod counts once it has an IP and is not terminating or finished. A service port's
//! `targetPort` is resolved per pod (a number, or a named container port; pods without that name
//! are left out of that port's subset), so pods are grouped into subsets by their resolved ports,
//! as Kubernetes does.
//!
//! A named `targetPort` that some selected pods do not declare leaves those pods out of that
//! port, as in Kubernetes; skiff also says so once, with a `PortNotDeclared` Warning on the
//! Service naming the field, and again only after it was fixed and broke anew.
//!
//! Must not: touch Endpoints of a Service without a selector (those are the user's), or any pod.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use skiff_api::v1::{
    DeleteRequest, EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectMeta,
    ObjectReference, Pod, Service, ServicePort,
};
use skiff_api::{IntOrStringValue, Resource, ResourceExt};

use super::informer::{self, Cache, Reconciler};
use super::podutil;
use super::recorder::Recorder;
use crate::auth::Identity;
use crate::error::ApiError;
use crate::registry::{Registry, key, parse_key, prefix};
use crate::store::{EventKind, KeyValue, Store};

/// Marks the Endpoints this controller keeps; others (a user's, for a Service without a
/// selector) are never changed or deleted here.
pub const MANAGED_BY: &str = "skiff.dev/managed-by";
const ME: &str = "endpoints-controller";

fn managed(e: &Endpoints) -> bool {
    e.meta().annotations.get(MANAGED_BY).map(String::as_str) == Some(ME)
}

/// Runs until aborted.
pub async fn run(store: Arc<dyn Store>) {
    let s = store.clone();
    informer::run_forever("endpoints", store, Duration::from_secs(30), move || {
        Controller::new(s.clone())
    })
    .await;
}

struct Controller {
    services: Cache<Service>,
    pods: Cache<Pod>,
    endpoints: Cache<Endpoints>,
    /// Namespace → keys of its pods.
    pods_in: HashMap<String, BTreeSet<String>>,
    api: Registry<Endpoints>,
    events: Recorder,
    /// Service key → the warnings last given for it (one line each), so each is said once.
    warned: HashMap<String, BTreeSet<String>>,
}

fn selects(service: &Service, pod: &Pod) -> bool {
    let selector = service.spec.as_ref().map(|s| &s.selector);
    selector.is_some_and(|sel| {
        !sel.is_empty() && sel.iter().all(|(k, v)| pod.meta().labels.get(k) == Some(v))
    })
}

/// The pod port a service port reaches on this pod, if the pod has it.
fn target_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    match port.target_port.as_ref().and_then(|t| t.value.as_ref()) {
        None => Some(port.port),
        Some(IntOrStringValue::Int(n)) if *n > 0 => Some(*n),
        Some(IntOrStringValue::Int(_)) => Some(port.port),
        Some(IntOrStringValue::Str(name)) => pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| &c.ports)
            .find(|p| &p.name == name)
            .map(|p| p.container_port),
    }
}

/// Warns once per problem of `service` in `now` (the problems it has now); `warned` remembers.
async fn warn_once(
    events: &Recorder,
    warned: &mut HashMap<String, BTreeSet<String>>,
    service: &Service,
    now: BTreeSet<String>,
) {
    let key = key::<Service>(service.namespace(), service.name());
    let before = warned.remove(&key).unwrap_or_default();
    for message in now.difference(&before) {
        events
            .warning(service, "PortNotDeclared", message.clone())
            .await;
    }
    if !now.is_empty() {
        warned.insert(key, now);
    }
}

/// For each named `targetPort` some of `pods` do not declare: a message naming the field and
/// those pods (the first three).
fn undeclared_ports(service: &Service, pods: &[&Pod]) -> BTreeSet<String> {
    let Some(spec) = &service.spec else {
        return BTreeSet::new();
    };
    let active: Vec<&&Pod> = pods.iter().filter(|p| podutil::is_active(p)).collect();
    let mut out = BTreeSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let Some(IntOrStringValue::Str(name)) =
            port.target_port.as_ref().and_then(|t| t.value.as_ref())
        else {
            continue;
        };
        let lacking: Vec<&str> = active
            .iter()
            .filter(|p| target_port(port, p).is_none())
            .map(|p| p.name())
            .collect();
        if lacking.is_empty() {
            continue;
        }
        let shown = lacking
            .iter()
            .take(3)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        let more = if lacking.len() > 3 { ", ..." } else { "" };
        out.insert(format!(
            "spec.ports[{i}].targetPort: no container of {} of the {} pods this Service selects declares a port named {name:?} ({shown}{more}): they get no traffic on port {}",
            lacking.len(),
            active.len(),
            port.port
        ));
    }
    out
}

/// The pod's `hostname` when its `subdomain` names this Service (Kubernetes' rule): cluster DNS
/// then answers `HOSTNAME.SERVICE.NS.svc.DOMAIN` with the pod's address.
fn endpoint_hostname(service: &Service, pod: &Pod) -> String {
    let Some(spec) = &pod.spec else {
        return String::new();
    };
    let named = !spec.hostname.is_empty()
        && spec.subdomain == service.name()
        && pod.namespace() == service.namespace();
    if named {
        spec.hostname.clone()
    } else {
        String::new()
    }
}

/// The subsets a Service's pods make, sorted so that equal inputs give equal objects.
pub fn subsets(service: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    // Resolved ports → (ready, not ready) addresses.
    type Group = (Vec<EndpointAddress>, Vec<EndpointAddress>);
    let mut groups: BTreeMap<Vec<(String, i32, String)>, Group> = BTreeMap::new();
    for pod in pods {
        let ip = pod
            .status
            .as_ref()
            .map(|s| s.pod_ip.clone())
            .unwrap_or_default();
        if ip.is_empty() || !podutil::is_active(pod) {
            continue;
        }
        let ports: Vec<(String, i32, String)> = spec
            .ports
            .iter()
            .filter_map(|p| {
                let protocol = if p.protocol.is_empty() {
                    "TCP"
                } else {
                    &p.protocol
                };
                target_port(p, pod).map(|n| (p.name.clone(), n, protocol.to_string()))
            })
            .collect();
        if ports.is_empty() && !spec.ports.is_empty() {
            continue;
        }
        let address = EndpointAddress {
            ip,
            hostname: endpoint_hostname(service, pod),
            node_name: pod
                .spec
                .as_ref()
                .map(|s| s.node_name.clone())
                .unwrap_or_default(),
            target_ref: Some(ObjectReference {
                kind: Pod::KIND.into(),
                namespace: pod.namespace().to_string(),
                name: pod.name().to_string(),
                uid: pod.meta().uid.clone(),
                ..Default::default()
            }),
        };
        let group = groups.entry(ports).or_default();
        if podutil::is_ready(pod) || spec.publish_not_ready_addresses {
            group.0.push(address);
        } else {
            group.1.push(address);
        }
    }
    let by_ip = |a: &EndpointAddress, b: &EndpointAddress| {
        (
            a.ip.as_str(),
            a.target_ref.as_ref().map(|r| r.name.as_str()),
        )
            .cmp(&(
                b.ip.as_str(),
                b.target_ref.as_ref().map(|r| r.name.as_str()),
            ))
    };
    groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(by_ip);
            not_ready.sort_by(by_ip);
            EndpointSubset {
                addresses: ready,
                not_ready_addresses: not_ready,
                ports: ports
                    .into_iter()
                    .map(|(name, port, protocol)| EndpointPort {
                        name,
                        port,
                        protocol,
                        app_protocol: String::new(),
                    })
                    .collect(),
            }
        })
        .collect()
}

impl Controller {
    fn new(store: Arc<dyn Store>) -> Self {
        Self {
            services: Cache::default(),
            pods: Cache::default(),
            endpoints: Cache::default(),
            pods_in: HashMap::new(),
            api: Registry::new(store.clone()),
            events: Recorder::new(store, ME),
            warned: HashMap::new(),
        }
    }

    fn services_selecting(&self, pod: &Pod) -> Vec<String> {
        self.services
            .values()
            .filter(|s| s.namespace() == pod.namespace() && selects(s, pod))
            .map(|s| key::<Service>(s.namespace(), s.name()))
            .collect()
    }
}

#[async_trait::async_trait]
impl Reconciler for Controller {
    fn prefixes(&self) -> Vec<String> {
        vec![
            prefix::<Service>(""),
            prefix::<Pod>(""),
            prefix::<Endpoints>(""),
        ]
    }

    fn observe(&mut self, kind: EventKind, kv: &KeyValue, dirty: &mut BTreeSet<String>) {
        if Cache::<Service>::owns(&kv.key) {
            let (old, new) = self.services.apply(kind, kv);
            if old.is_some() || new.is_some() {
                dirty.insert(kv.key.clone());
            }
        } else if Cache::<Pod>::owns(&kv.key) {
            let (old, new) = self.pods.apply(kind, kv);
            for pod in old.iter().chain(new.iter()) {
                dirty.extend(self.services_selecting(pod));
            }
            match (&old, &new) {
                (_, Some(p)) => {
                    self.pods_in
                        .entry(p.namespace().to_string())
                        .or_default()
                        .insert(kv.key.clone());
                }
                (Some(p), None) => {
                    if let Some(keys) = self.pods_in.get_mut(p.namespace()) {
                        keys.remove(&kv.key);
                    }
                }
                (None, None) => {}
            }
        } else if Cache::<Endpoints>::owns(&kv.key) {
            let (old, new) = self.endpoints.apply(kind, kv);
            // Someone changed or removed an object of ours: put it back.
            if let Some(e) = new.as_deref().or(old.as_deref())
                && (old.as_deref().is_some_and(managed) || new.as_deref().is_some_and(managed))
            {
                dirty.insert(key::<Service>(e.namespace(), e.name()));
            }
        }
    }

    fn all_keys(&self) -> Vec<String> {
        self.services
            .values()
            .map(|s| key::<Service>(s.namespace(), s.name()))
            .collect()
    }

    async fn reconcile(&mut self, service_key: &str) -> Result<Option<Duration>, ApiError> {
        let Some(service) = self.services.get_key(service_key).cloned() else {
            self.warned.remove(service_key);
            // The Service is gone: so are its endpoints (only if we would have managed them).
            if let Some((ns, name)) = parse_key::<Service>(service_key)
                && self.endpoints.get(&ns, &name).is_some_and(managed)
            {
                let request = DeleteRequest {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    ..Default::default()
                };
                match self.api.delete(&Identity::Admin, &request).await {
                    Ok(_) | Err(ApiError::NotFound { .. }) => self.endpoints.forget(&ns, &name),
                    Err(e) => return Err(e),
                }
            }
            return Ok(None);
        };
        let Some(spec) = &service.spec else {
            return Ok(None);
        };
        if spec.selector.is_empty() {
            return Ok(None);
        }
        let pods: Vec<&Pod> = self
            .pods_in
            .get(service.namespace())
            .into_iter()
            .flatten()
            .filter_map(|k| self.pods.get_key(k))
            .filter(|p| selects(&service, p))
            .collect();
        let wanted = subsets(&service, &pods);
        let undeclared = undeclared_ports(&service, &pods);
        warn_once(&self.events, &mut self.warned, &service, undeclared).await;
        let existing = self
            .endpoints
            .get(service.namespace(), service.name())
            .cloned();
        let written = match existing {
            Some(e) if e.subsets == wanted && managed(&e) => return Ok(None),
            Some(mut e) => {
                e.subsets = wanted;
                e.metadata_mut()
                    .annotations
                    .insert(MANAGED_BY.into(), ME.into());
                self.api.update(&Identity::Admin, e).await?
            }
            None => {
                let e = Endpoints {
                    metadata: Some(ObjectMeta {
                        name: service.name().to_string(),
                        namespace: service.namespace().to_string(),
                        labels: service.meta().labels.clone(),
                        annotations: [(MANAGED_BY.to_string(), ME.to_string())].into(),
                        ..Default::default()
                    }),
                    subsets: wanted,
                };
                self.api.create(&Identity::Admin, e).await?
            }
        };
        self.endpoints.remember(written);
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{ObjectMeta, PodSpec};

    fn meta(ns: &str, name: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            name: name.into(),
            namespace: ns.into(),
            ..Default::default()
        })
    }

    #[test]
    fn endpoints_name_pods_whose_subdomain_is_the_service() {
        let service = Service {
            metadata: meta("shop", "db"),
            ..Default::default()
        };
        let pod = |ns: &str, hostname: &str, subdomain: &str| Pod {
            metadata: meta(ns, "p"),
            spec: Some(PodSpec {
                hostname: hostname.into(),
                subdomain: subdomain.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            endpoint_hostname(&service, &pod("shop", "db-0", "db")),
            "db-0"
        );
        assert_eq!(endpoint_hostname(&service, &pod("shop", "db-0", "web")), "");
        assert_eq!(endpoint_hostname(&service, &pod("shop", "", "db")), "");
        assert_eq!(endpoint_hostname(&service, &pod("other", "db-0", "db")), "");
    }

    #[test]
    fn a_named_target_port_some_pods_lack_is_named_with_them() {
        use skiff_api::IntOrString;
        use skiff_api::v1::{Container, ContainerPort, ServiceSpec};
        let service = Service {
            metadata: meta("shop", "web"),
            spec: Some(ServiceSpec {
                ports: vec![
                    ServicePort {
                        port: 80,
                        target_port: Some(IntOrString::string("http")),
                        ..Default::default()
                    },
                    ServicePort {
                        port: 9000,
                        target_port: Some(IntOrString::int(9000)),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = |name: &str, port: &str| Pod {
            metadata: meta("shop", name),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "main".into(),
                    ports: vec![ContainerPort {
                        name: port.into(),
                        container_port: 8080,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let (good, bad) = (pod("web-1", "http"), pod("web-2", "web"));
        assert!(undeclared_ports(&service, &[&good]).is_empty());
        let said = undeclared_ports(&service, &[&good, &bad]);
        assert_eq!(
            said.into_iter().collect::<Vec<_>>(),
            vec![
                "spec.ports[0].targetPort: no container of 1 of the 2 pods this Service selects \
                 declares a port named \"http\" (web-2): they get no traffic on port 80"
                    .to_string()
            ]
        );
    }
}
