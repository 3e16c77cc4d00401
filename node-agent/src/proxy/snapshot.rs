//! What the proxy's rules are made from: every Service port with a cluster IP, the ready endpoints
//! of its Endpoints (kube-proxy's `ServicePort` and `Endpoint` views), and what the node knows of
//! itself. A pure reading of the catalog's objects, so it is unit-tested without a cluster.
//!
//! Must not: decide how traffic is steered (that is [`super::render`]), or read anything but the
//! objects and values it is given.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use skiff_api::ResourceExt;
use skiff_api::cidr::Ipv4Cidr;
use skiff_api::v1::{Endpoints, Service, ServicePort as ApiServicePort, ServiceSpec};

/// `sessionAffinityConfig.clientIP.timeoutSeconds` unless set: 3 hours, as Kubernetes.
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

/// The transport protocols the proxy forwards (SCTP Services get no rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// `TCP` (also the default, empty) or `UDP`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "" | "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            _ => None,
        }
    }

    /// nft's name: `tcp`, `udp`.
    pub fn nft(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// The ports of the node's addresses the HTTP ingress routers hold (the control plane's
/// ingress controller tells a LoadBalancer Service asking for them that it gets no address).
pub const INGRESS_PORTS: [u16; 2] = [80, 443];

/// `namespace/name` of a Service.
pub type ServiceKey = (String, String);

/// One port of one Service, with where its traffic may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// `namespace/name:port` (the port's name, or its number when unnamed), unique per node.
    pub id: String,
    pub service: ServiceKey,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    /// Its NodePort, for NodePort and LoadBalancer Services.
    pub node_port: Option<u16>,
    /// A LoadBalancer Service's port, answered on the node's addresses as well (k3s ServiceLB's
    /// semantics); never the ingress routers' ports ([`INGRESS_PORTS`]).
    pub load_balancer: bool,
    /// `sessionAffinity: ClientIP`: how long a client sticks to its endpoint, in seconds.
    pub affinity: Option<u32>,
    /// The ready endpoints (never `notReadyAddresses`), sorted, without duplicates.
    pub endpoints: Vec<SocketAddrV4>,
    /// Where connections go while there is no ready endpoint (a scale-from-zero holder).
    pub hold: Option<SocketAddrV4>,
}

/// Everything one sync renders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Sorted by `id`.
    pub ports: Vec<ServicePort>,
    /// The addresses NodePorts answer on (the node's own, never loopback).
    pub node_ips: Vec<Ipv4Addr>,
    /// The node's podCIDR: pods that reach a Service served by a pod of the same bridge.
    pub local_block: Option<Ipv4Cidr>,
    /// The cluster CIDR: traffic to a Service from outside it is masqueraded.
    pub cluster_cidr: Option<Ipv4Cidr>,
    /// The service CIDR: what no rule DNATs there is refused.
    pub service_cidr: Option<Ipv4Cidr>,
}

/// The affinity timeout of a Service, if it asks for ClientIP affinity.
fn affinity(spec: &ServiceSpec) -> Option<u32> {
    (spec.session_affinity == "ClientIP").then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    })
}

/// The ready endpoints of service port `port` in `endpoints`: in each subset, the addresses
/// with the port of the same name and protocol (kube-proxy's matching).
fn ready_endpoints(port: &ApiServicePort, endpoints: Option<&Endpoints>) -> Vec<SocketAddrV4> {
    let protocol = Protocol::parse(&port.protocol);
    let mut found = BTreeSet::new();
    for subset in endpoints.iter().flat_map(|e| &e.subsets) {
        let Some(target) = subset
            .ports
            .iter()
            .find(|p| p.name == port.name && Protocol::parse(&p.protocol) == protocol)
            .and_then(|p| u16::try_from(p.port).ok())
            .filter(|p| *p != 0)
        else {
            continue;
        };
        for address in &subset.addresses {
            if let Ok(ip) = address.ip.parse::<Ipv4Addr>() {
                found.insert(SocketAddrV4::new(ip, target));
            }
        }
    }
    found.into_iter().collect()
}

/// The Service ports the proxy serves: every TCP or UDP port of a Service with a cluster IP
/// (not headless, not ExternalName), with its ready endpoints and its holder, if any.
pub fn service_ports(
    services: &[Arc<Service>],
    endpoints: impl Fn(&str, &str) -> Option<Arc<Endpoints>>,
    holds: &BTreeMap<ServiceKey, SocketAddrV4>,
) -> Vec<ServicePort> {
    let mut out = Vec::new();
    for service in services {
        let Some(spec) = &service.spec else { continue };
        if spec.r#type == "ExternalName" {
            continue;
        }
        let Ok(cluster_ip) = spec.cluster_ip.parse::<Ipv4Addr>() else {
            continue; // headless (`None`), not yet allocated, or IPv6
        };
        let key = (service.namespace().to_string(), service.name().to_string());
        let found = endpoints(&key.0, &key.1);
        for port in &spec.ports {
            let (Some(protocol), Ok(number)) =
                (Protocol::parse(&port.protocol), u16::try_from(port.port))
            else {
                continue;
            };
            let label = if port.name.is_empty() {
                format!("{number}/{}", protocol.nft())
            } else {
                port.name.clone()
            };
            out.push(ServicePort {
                id: format!("{}/{}:{label}", key.0, key.1),
                service: key.clone(),
                cluster_ip,
                port: number,
                protocol,
                node_port: u16::try_from(port.node_port).ok().filter(|p| *p != 0),
                load_balancer: spec.r#type == "LoadBalancer" && !INGRESS_PORTS.contains(&number),
                affinity: affinity(spec),
                endpoints: ready_endpoints(port, found.as_deref()),
                hold: holds.get(&key).copied(),
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// UDP flows whose conntrack entries no longer say where they should go: to `service_ip:port`
/// (`None`: the NodePort `port` on any node address), DNATed to `endpoint` (`None`: however
/// they were NATed, or not at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StaleFlow {
    pub service_ip: Option<Ipv4Addr>,
    pub port: u16,
    pub endpoint: Option<Ipv4Addr>,
}

/// The UDP flows a change between two snapshots leaves on the wrong path (kube-proxy deletes
/// the same entries). A UDP flow has no end: conntrack keeps it where its first packet went as
/// long as packets keep coming, so a client that keeps sending would never see the change.
/// - flows DNATed to an endpoint that left its Service port;
/// - every flow to a Service port that had no ready endpoint and now has one: its packets were
///   refused, left un-NATed (a NodePort's went to the node itself) or held, and would stay so.
///
/// TCP flows end by themselves; new connections follow the rules.
pub fn stale_udp_flows(before: &[ServicePort], after: &[ServicePort]) -> Vec<StaleFlow> {
    let mut stale = BTreeSet::new();
    let mut add = |port: &ServicePort, endpoint: Option<Ipv4Addr>| {
        stale.insert(StaleFlow {
            service_ip: Some(port.cluster_ip),
            port: port.port,
            endpoint,
        });
        if let Some(node_port) = port.node_port {
            stale.insert(StaleFlow {
                service_ip: None,
                port: node_port,
                endpoint,
            });
        }
    };
    let same = |a: &ServicePort, b: &ServicePort| a.id == b.id && a.cluster_ip == b.cluster_ip;
    for old in before.iter().filter(|p| p.protocol == Protocol::Udp) {
        let now = after.iter().find(|p| same(p, old));
        for endpoint in &old.endpoints {
            if !now.is_some_and(|n| n.endpoints.contains(endpoint)) {
                add(old, Some(*endpoint.ip()));
            }
        }
    }
    for new in after.iter().filter(|p| p.protocol == Protocol::Udp) {
        let had = before
            .iter()
            .any(|p| same(p, new) && !p.endpoints.is_empty());
        if !new.endpoints.is_empty() && !had {
            add(new, None);
        }
    }
    stale.into_iter().collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use skiff_api::v1::{
        ClientIpConfig, EndpointAddress, EndpointPort, EndpointSubset, ObjectMeta,
        SessionAffinityConfig,
    };

    fn meta(name: &str) -> Option<ObjectMeta> {
        Some(ObjectMeta {
            namespace: "default".into(),
            name: name.into(),
            ..Default::default()
        })
    }

    fn port(name: &str, protocol: &str, number: i32, node_port: i32) -> ApiServicePort {
        ApiServicePort {
            name: name.into(),
            protocol: protocol.into(),
            port: number,
            node_port,
            ..Default::default()
        }
    }

    fn service(name: &str, ip: &str, ports: Vec<ApiServicePort>) -> Arc<Service> {
        Arc::new(Service {
            metadata: meta(name),
            spec: Some(ServiceSpec {
                cluster_ip: ip.into(),
                ports,
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn address(ip: &str) -> EndpointAddress {
        EndpointAddress {
            ip: ip.into(),
            ..Default::default()
        }
    }

    #[test]
    fn load_balancer_ports_but_the_ingress_routers_are_answered_on_node_addresses() {
        let mut lb = (*service(
            "lb",
            "10.96.0.20",
            vec![
                port("http", "TCP", 8080, 30080),
                port("web", "TCP", 443, 30443),
            ],
        ))
        .clone();
        lb.spec.as_mut().unwrap().r#type = "LoadBalancer".into();
        let got = service_ports(&[Arc::new(lb)], |_, _| None, &BTreeMap::new());
        let answered: Vec<(u16, bool)> = got.iter().map(|p| (p.port, p.load_balancer)).collect();
        assert_eq!(answered, [(8080, true), (443, false)]);
        let plain = service_ports(
            &[service(
                "np",
                "10.96.0.21",
                vec![port("http", "TCP", 8080, 30081)],
            )],
            |_, _| None,
            &BTreeMap::new(),
        );
        assert!(!plain[0].load_balancer);
    }

    #[test]
    fn ready_addresses_of_the_matching_port_name_and_protocol_only() {
        let web = service(
            "web",
            "10.96.0.10",
            vec![port("http", "TCP", 80, 30080), port("dns", "UDP", 53, 0)],
        );
        let eps = Arc::new(Endpoints {
            metadata: meta("web"),
            subsets: vec![EndpointSubset {
                addresses: vec![address("10.244.1.3"), address("10.244.0.2")],
                not_ready_addresses: vec![address("10.244.0.9")],
                ports: vec![
                    EndpointPort {
                        name: "http".into(),
                        port: 8080,
                        protocol: "TCP".into(),
                        ..Default::default()
                    },
                    EndpointPort {
                        name: "dns".into(),
                        port: 5353,
                        protocol: "UDP".into(),
                        ..Default::default()
                    },
                ],
            }],
        });
        let holds = BTreeMap::new();
        let ports = service_ports(&[web], |_, _| Some(eps.clone()), &holds);
        assert_eq!(ports.len(), 2);
        let (dns, http) = (&ports[0], &ports[1]);
        assert_eq!(http.id, "default/web:http");
        assert_eq!(http.node_port, Some(30080));
        assert_eq!(
            http.endpoints,
            vec![
                "10.244.0.2:8080".parse().unwrap(),
                "10.244.1.3:8080".parse().unwrap()
            ],
            "sorted, and the not-ready 10.244.0.9 is left out"
        );
        assert_eq!(
            (dns.protocol, dns.port, dns.node_port),
            (Protocol::Udp, 53, None)
        );
        assert_eq!(dns.endpoints[0], "10.244.0.2:5353".parse().unwrap());
    }

    #[test]
    fn udp_flows_to_endpoints_that_left_are_stale_and_tcp_ones_are_not() {
        let port = |id: &str, protocol, node_port, endpoints: &[&str]| ServicePort {
            id: id.into(),
            service: ("default".into(), id.into()),
            cluster_ip: "10.96.0.10".parse().unwrap(),
            port: 53,
            protocol,
            node_port,
            load_balancer: false,
            affinity: None,
            endpoints: endpoints.iter().map(|e| e.parse().unwrap()).collect(),
            hold: None,
        };
        let before = [
            port(
                "dns",
                Protocol::Udp,
                Some(30053),
                &["10.244.0.2:5353", "10.244.1.3:5353"],
            ),
            port("web", Protocol::Tcp, None, &["10.244.0.2:80"]),
            port("gone", Protocol::Udp, None, &["10.244.2.4:53"]),
        ];
        let after = [
            port("dns", Protocol::Udp, Some(30053), &["10.244.1.3:5353"]),
            port("web", Protocol::Tcp, None, &[]),
        ];
        let gone = |service_ip: Option<&str>, port, endpoint: Option<&str>| StaleFlow {
            service_ip: service_ip.map(|i| i.parse().unwrap()),
            port,
            endpoint: endpoint.map(|e| e.parse().unwrap()),
        };
        assert_eq!(
            stale_udp_flows(&before, &after),
            vec![
                gone(None, 30053, Some("10.244.0.2")),
                gone(Some("10.96.0.10"), 53, Some("10.244.0.2")),
                gone(Some("10.96.0.10"), 53, Some("10.244.2.4")),
            ]
        );
        // A Service port that gets its first endpoint: every flow to it starts again.
        let empty = [port("dns", Protocol::Udp, Some(30053), &[])];
        assert_eq!(
            stale_udp_flows(&empty, &after),
            vec![gone(None, 30053, None), gone(Some("10.96.0.10"), 53, None)]
        );
        assert!(stale_udp_flows(&after, &after).is_empty());
    }

    #[test]
    fn headless_external_name_and_sctp_get_nothing_and_affinity_defaults() {
        let headless = service("h", "None", vec![port("", "", 80, 0)]);
        let sctp = service("s", "10.96.0.11", vec![port("", "SCTP", 80, 0)]);
        let mut sticky = service("sticky", "10.96.0.12", vec![port("", "", 80, 0)]);
        Arc::make_mut(&mut sticky)
            .spec
            .as_mut()
            .unwrap()
            .session_affinity = "ClientIP".into();
        let mut short = service("short", "10.96.0.13", vec![port("", "", 80, 0)]);
        {
            let spec = Arc::make_mut(&mut short).spec.as_mut().unwrap();
            spec.session_affinity = "ClientIP".into();
            spec.session_affinity_config = Some(SessionAffinityConfig {
                client_ip: Some(ClientIpConfig {
                    timeout_seconds: Some(60),
                }),
            });
        }
        let holder: SocketAddrV4 = "10.244.0.1:9000".parse().unwrap();
        let holds = BTreeMap::from([(("default".to_string(), "short".to_string()), holder)]);
        let ports = service_ports(&[headless, sctp, sticky, short], |_, _| None, &holds);
        let ids: Vec<_> = ports.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["default/short:80/tcp", "default/sticky:80/tcp"]);
        assert_eq!(ports[0].affinity, Some(60));
        assert_eq!(ports[0].hold, Some(holder));
        assert!(ports[0].endpoints.is_empty());
        assert_eq!(ports[1].affinity, Some(DEFAULT_AFFINITY_TIMEOUT));
        assert_eq!(ports[1].hold, None);
    }
}
