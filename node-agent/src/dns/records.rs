//! The cluster zone's answers, from the node's [`Catalog`] of Services and Endpoints, after
//! Kubernetes' DNS specification (the names CoreDNS' kubernetes plugin serves):
//!
//! - `NAME.NS.svc.D`: `A` of a ClusterIP Service's address; of a headless Service, the ready
//!   addresses of its Endpoints; an ExternalName Service is a `CNAME` to its external name;
//! - `_PORT._PROTO.NAME.NS.svc.D`: `SRV` of a named port (target the Service's name, or for a
//!   headless Service each ready endpoint's own name), with the targets' addresses as
//!   additional records; `SRV` of `NAME.NS.svc.D` lists every named port;
//! - `HOST.NAME.NS.svc.D`: one endpoint of a headless Service, by the hostname its Endpoints
//!   give it (a pod's `hostname` with `subdomain: NAME`) or by its address with dashes
//!   (`10-244-1-5`);
//! - `A-B-C-D.NS.pod.D`: the address spelled in the name (CoreDNS' `pods insecure`);
//! - any other name under `D`: `NXDOMAIN`; a name that exists without records of the asked
//!   type: an empty answer; both with the zone's `SOA` (negative caching, RFC 2308).
//!
//! Names outside `D` are not answered here ([`Answer::Forward`]), except `localhost.` and the
//! names under it, which a caching server answers itself with the loopback addresses (RFC 6761
//! §6.3): a pod whose image has no `nsswitch.conf` asks DNS before `/etc/hosts`, and such
//! names must never reach the upstream.
//!
//! Must not: do I/O; answer for names outside the cluster domain.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use skiff_api::v1::{Endpoints, Service};

use crate::catalog::Catalog;

/// Seconds answers may be cached (CoreDNS' kubernetes default).
pub const TTL: u32 = 5;

/// The answer to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Not in the cluster domain: for the upstream resolvers.
    Forward,
    /// The name exists: its records of the asked type (none: no data), and the addresses of
    /// names they point at.
    Records {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// No such name in the cluster domain.
    NxDomain,
}

/// The cluster zone `D` (e.g. `cluster.local.`), answering from a catalog.
#[derive(Debug, Clone)]
pub struct Zone {
    origin: Name,
    soa: Record,
}

impl Zone {
    /// The zone of cluster domain `domain` (`cluster.local`); `None` if it is no DNS name.
    pub fn new(domain: &str) -> Option<Self> {
        let origin = Name::from_ascii(format!("{}.", domain.trim_end_matches('.')))
            .ok()?
            .to_lowercase();
        let mname = Name::from_ascii("ns.dns")
            .ok()?
            .append_domain(&origin)
            .ok()?;
        let rname = Name::from_ascii("hostmaster")
            .ok()?
            .append_domain(&origin)
            .ok()?;
        let soa = SOA::new(mname, rname, 1, 7200, 1800, 86400, TTL);
        let soa = Record::from_rdata(origin.clone(), TTL, RData::SOA(soa));
        Some(Self { origin, soa })
    }

    /// `cluster.local.`
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The zone's SOA, for the authority section of negative answers.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// The answer to `name` `qtype` from `catalog`.
    pub fn answer(&self, catalog: &Catalog, name: &Name, qtype: RecordType) -> Answer {
        let name = name.to_lowercase();
        if !self.origin.zone_of(&name) {
            return localhost(&name, qtype).unwrap_or(Answer::Forward);
        }
        let depth = usize::from(name.num_labels() - self.origin.num_labels());
        let labels: Vec<String> = name
            .iter()
            .take(depth)
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let found = match labels.as_slice() {
            [] => Some(self.apex(qtype)),
            ["svc"] | ["pod"] => Some(Vec::new()),
            [ns, "svc"] | [ns, "pod"] => catalog
                .services()
                .iter()
                .any(|s| meta(s).0 == *ns)
                .then(Vec::new),
            [ip, _ns, "pod"] => pod_address(ip).map(|ip| by_type(&name, ip, qtype)),
            [svc, ns, "svc"] => catalog
                .service(ns, svc)
                .map(|s| self.service(catalog, &s, &name, qtype)),
            [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
                let found = catalog.service(ns, svc);
                let base = name.trim_to(self.origin.num_labels() as usize + 3);
                found.and_then(|s| {
                    self.named_port(catalog, &s, &base, &port[1..], &proto[1..], qtype)
                })
            }
            [host, svc, ns, "svc"] => {
                catalog
                    .service(ns, svc)
                    .filter(|s| headless(s))
                    .and_then(|_| {
                        let ips = ready(catalog.endpoints(ns, svc).as_deref());
                        let ip = ips
                            .iter()
                            .find(|(h, ip)| endpoint_label(h, *ip) == *host)?
                            .1;
                        Some(by_type(&name, ip, qtype))
                    })
            }
            _ => None,
        };
        match found {
            Some(answers) => {
                let additionals = self.additionals(catalog, &answers);
                Answer::Records {
                    answers,
                    additionals,
                }
            }
            None => Answer::NxDomain,
        }
    }

    fn apex(&self, qtype: RecordType) -> Vec<Record> {
        match qtype {
            RecordType::SOA => vec![self.soa.clone()],
            _ => Vec::new(),
        }
    }

    /// `NAME.NS.svc.D`.
    fn service(
        &self,
        catalog: &Catalog,
        service: &Service,
        name: &Name,
        qtype: RecordType,
    ) -> Vec<Record> {
        let spec = service.spec.clone().unwrap_or_default();
        if spec.r#type == "ExternalName" {
            return match Name::from_ascii(format!("{}.", spec.external_name)) {
                Ok(target) => vec![Record::from_rdata(
                    name.clone(),
                    TTL,
                    RData::CNAME(CNAME(target)),
                )],
                Err(_) => Vec::new(),
            };
        }
        if qtype == RecordType::SRV {
            let ports = spec.ports.iter().filter(|p| !p.name.is_empty());
            let mut out = Vec::new();
            for p in ports {
                let proto = if p.protocol.is_empty() {
                    "TCP"
                } else {
                    &p.protocol
                };
                out.extend(
                    self.named_port(catalog, service, name, &p.name, proto, qtype)
                        .unwrap_or_default(),
                );
            }
            return out;
        }
        addresses(catalog, service)
            .into_iter()
            .flat_map(|ip| by_type(name, ip, qtype))
            .collect()
    }

    /// `_PORT._PROTO.NAME.NS.svc.D` (`base` is `NAME.NS.svc.D`): `None` if the Service has no
    /// such port.
    fn named_port(
        &self,
        catalog: &Catalog,
        service: &Service,
        base: &Name,
        port: &str,
        proto: &str,
        qtype: RecordType,
    ) -> Option<Vec<Record>> {
        let spec = service.spec.as_ref()?;
        let wanted = spec.ports.iter().find(|p| {
            let protocol = if p.protocol.is_empty() {
                "TCP"
            } else {
                &p.protocol
            };
            !p.name.is_empty()
                && p.name.eq_ignore_ascii_case(port)
                && protocol.eq_ignore_ascii_case(proto)
        })?;
        if qtype != RecordType::SRV {
            return Some(Vec::new());
        }
        let owner = Name::from_ascii(format!("_{}._{}", wanted.name, proto.to_lowercase()))
            .ok()?
            .append_domain(base)
            .ok()?
            .to_lowercase();
        let srv = |port: i32, target: Name| {
            let port = u16::try_from(port).unwrap_or(0);
            Record::from_rdata(
                owner.clone(),
                TTL,
                RData::SRV(SRV::new(0, 100, port, target)),
            )
        };
        if !headless(service) {
            return Some(vec![srv(wanted.port, base.clone())]);
        }
        // A headless Service's port is each endpoint's own (its target port).
        let (ns, svc) = meta(service);
        let endpoints = catalog.endpoints(ns, svc);
        let mut out = Vec::new();
        for subset in endpoints.iter().flat_map(|e| &e.subsets) {
            let Some(port) = subset.ports.iter().find(|p| p.name == wanted.name) else {
                continue;
            };
            for a in &subset.addresses {
                let Ok(ip) = a.ip.parse::<IpAddr>() else {
                    continue;
                };
                let label = endpoint_label(&a.hostname, ip);
                if let Ok(target) = Name::from_ascii(&label).and_then(|l| l.append_domain(base)) {
                    out.push(srv(port.port, target.to_lowercase()));
                }
            }
        }
        Some(out)
    }

    /// The addresses of the SRV targets among `answers` (names in this zone only).
    fn additionals(&self, catalog: &Catalog, answers: &[Record]) -> Vec<Record> {
        let mut out = Vec::new();
        for record in answers {
            let RData::SRV(srv) = record.data() else {
                continue;
            };
            if let Answer::Records { answers, .. } =
                self.answer(catalog, srv.target(), RecordType::A)
            {
                for a in answers {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
        }
        out
    }
}

fn meta(service: &Service) -> (&str, &str) {
    service
        .metadata
        .as_ref()
        .map_or(("", ""), |m| (m.namespace.as_str(), m.name.as_str()))
}

fn headless(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .is_some_and(|s| s.cluster_ip == "None")
}

/// A Service's addresses: its cluster IPs, or for a headless one its ready endpoints'.
fn addresses(catalog: &Catalog, service: &Service) -> Vec<IpAddr> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    if headless(service) {
        let (ns, name) = meta(service);
        return ready(catalog.endpoints(ns, name).as_deref())
            .into_iter()
            .map(|(_, ip)| ip)
            .collect();
    }
    let mut ips: Vec<IpAddr> = spec
        .cluster_ips
        .iter()
        .chain(std::iter::once(&spec.cluster_ip))
        .filter_map(|ip| ip.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// The ready addresses of `endpoints` with their hostnames, each once.
fn ready(endpoints: Option<&Endpoints>) -> Vec<(String, IpAddr)> {
    let mut out: Vec<(String, IpAddr)> = Vec::new();
    for a in endpoints
        .iter()
        .flat_map(|e| &e.subsets)
        .flat_map(|s| &s.addresses)
    {
        if let Ok(ip) = a.ip.parse::<IpAddr>()
            && !out.iter().any(|(_, known)| *known == ip)
        {
            out.push((a.hostname.clone(), ip));
        }
    }
    out
}

/// An endpoint's own name under its Service: its hostname, else its address with dashes.
fn endpoint_label(hostname: &str, ip: IpAddr) -> String {
    if !hostname.is_empty() {
        return hostname.to_lowercase();
    }
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// `localhost.` and names under it: the loopback addresses (RFC 6761 §6.3).
fn localhost(name: &Name, qtype: RecordType) -> Option<Answer> {
    let last = name.iter().next_back()?;
    if !last.eq_ignore_ascii_case(b"localhost") {
        return None;
    }
    let mut answers = by_type(name, IpAddr::V4(Ipv4Addr::LOCALHOST), qtype);
    answers.extend(by_type(name, IpAddr::V6(Ipv6Addr::LOCALHOST), qtype));
    Some(Answer::Records {
        answers,
        additionals: Vec::new(),
    })
}

/// `10-244-1-5` → 10.244.1.5.
fn pod_address(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// `ip` as an answer to `qtype`: `A` or `AAAA` when asked (or `ANY`), else nothing.
fn by_type(name: &Name, ip: IpAddr, qtype: RecordType) -> Vec<Record> {
    let rdata = match (ip, qtype) {
        (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => RData::A(A(v4)),
        (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(v6)),
        _ => return Vec::new(),
    };
    vec![Record::from_rdata(name.clone(), TTL, rdata)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{EndpointAddress, EndpointPort, EndpointSubset, ObjectMeta};

    use crate::catalog::fixtures::service;

    fn endpoints(ns: &str, name: &str, ready: &[(&str, &str)], port: (&str, i32)) -> Endpoints {
        Endpoints {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: ns.into(),
                ..Default::default()
            }),
            subsets: vec![EndpointSubset {
                addresses: ready
                    .iter()
                    .map(|(host, ip)| EndpointAddress {
                        ip: ip.to_string(),
                        hostname: host.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                not_ready_addresses: vec![EndpointAddress {
                    ip: "10.244.9.9".into(),
                    ..Default::default()
                }],
                ports: vec![EndpointPort {
                    name: port.0.into(),
                    port: port.1,
                    protocol: "TCP".into(),
                    ..Default::default()
                }],
            }],
        }
    }

    fn catalog() -> std::sync::Arc<Catalog> {
        let mut external = service("shop", "ext", "", &[]);
        if let Some(s) = external.spec.as_mut() {
            s.r#type = "ExternalName".into();
            s.external_name = "db.example.com".into();
            s.cluster_ips.clear();
        }
        Catalog::from_objects(
            vec![
                service(
                    "shop",
                    "web",
                    "10.96.0.10",
                    &[("http", 80, "TCP"), ("", 81, "")],
                ),
                service("shop", "db", "None", &[("pg", 5432, "TCP")]),
                external,
            ],
            vec![endpoints(
                "shop",
                "db",
                &[("db-0", "10.244.1.5"), ("", "10.244.2.7")],
                ("pg", 15432),
            )],
        )
    }

    fn zone() -> Zone {
        Zone::new("cluster.local").expect("zone")
    }

    fn ask(name: &str, qtype: RecordType) -> Answer {
        zone().answer(&catalog(), &Name::from_ascii(name).unwrap(), qtype)
    }

    fn data(answer: &Answer) -> Vec<String> {
        match answer {
            Answer::Records { answers, .. } => {
                answers.iter().map(|r| r.data().to_string()).collect()
            }
            other => panic!("not records: {other:?}"),
        }
    }

    #[test]
    fn a_cluster_ip_service_answers_its_address_case_insensitively() {
        let answer = ask("Web.Shop.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&answer), ["10.96.0.10"]);
        if let Answer::Records { answers, .. } = &answer {
            assert_eq!(answers[0].ttl(), TTL);
            assert_eq!(answers[0].name().to_string(), "web.shop.svc.cluster.local.");
        }
        assert!(data(&ask("web.shop.svc.cluster.local.", RecordType::AAAA)).is_empty());
    }

    #[test]
    fn a_headless_service_answers_its_ready_endpoints() {
        let mut got = data(&ask("db.shop.svc.cluster.local.", RecordType::A));
        got.sort();
        assert_eq!(
            got,
            ["10.244.1.5", "10.244.2.7"],
            "not-ready addresses are left out"
        );
        assert_eq!(
            data(&ask("db-0.db.shop.svc.cluster.local.", RecordType::A)),
            ["10.244.1.5"]
        );
        assert_eq!(
            data(&ask("10-244-2-7.db.shop.svc.cluster.local.", RecordType::A)),
            ["10.244.2.7"]
        );
        assert_eq!(
            ask("db-1.db.shop.svc.cluster.local.", RecordType::A),
            Answer::NxDomain
        );
        assert_eq!(
            ask("x.web.shop.svc.cluster.local.", RecordType::A),
            Answer::NxDomain,
            "a ClusterIP service has no endpoint names"
        );
    }

    #[test]
    fn srv_names_named_ports() {
        let answer = ask("_http._tcp.web.shop.svc.cluster.local.", RecordType::SRV);
        assert_eq!(data(&answer), ["0 100 80 web.shop.svc.cluster.local."]);
        let Answer::Records { additionals, .. } = &answer else {
            panic!("{answer:?}")
        };
        assert_eq!(additionals.len(), 1);
        assert_eq!(additionals[0].data().to_string(), "10.96.0.10");
        assert_eq!(
            ask("_http._udp.web.shop.svc.cluster.local.", RecordType::SRV),
            Answer::NxDomain
        );
        let mut headless = data(&ask("_pg._tcp.db.shop.svc.cluster.local.", RecordType::SRV));
        headless.sort();
        assert_eq!(
            headless,
            [
                "0 100 15432 10-244-2-7.db.shop.svc.cluster.local.",
                "0 100 15432 db-0.db.shop.svc.cluster.local."
            ]
        );
        assert_eq!(
            data(&ask("web.shop.svc.cluster.local.", RecordType::SRV)),
            ["0 100 80 web.shop.svc.cluster.local."],
            "the unnamed port has no SRV"
        );
    }

    #[test]
    fn unknown_names_are_nxdomain_and_known_ones_without_data_are_empty() {
        assert_eq!(
            ask("nope.shop.svc.cluster.local.", RecordType::A),
            Answer::NxDomain
        );
        assert_eq!(
            ask("web.other.svc.cluster.local.", RecordType::A),
            Answer::NxDomain
        );
        assert_eq!(
            ask("a.b.c.d.e.f.cluster.local.", RecordType::A),
            Answer::NxDomain
        );
        assert!(data(&ask("shop.svc.cluster.local.", RecordType::A)).is_empty());
        assert!(data(&ask("svc.cluster.local.", RecordType::A)).is_empty());
        assert_eq!(
            ask("other.svc.cluster.local.", RecordType::A),
            Answer::NxDomain
        );
        let soa = ask("cluster.local.", RecordType::SOA);
        assert!(data(&soa)[0].starts_with("ns.dns.cluster.local. hostmaster.cluster.local."));
    }

    #[test]
    fn other_names_are_forwarded_and_pod_names_spell_their_address() {
        assert_eq!(ask("example.com.", RecordType::A), Answer::Forward);
        assert_eq!(
            ask("cluster.local.example.com.", RecordType::A),
            Answer::Forward
        );
        assert_eq!(
            data(&ask("10-244-1-5.shop.pod.cluster.local.", RecordType::A)),
            ["10.244.1.5"]
        );
        assert_eq!(
            ask("x-1.shop.pod.cluster.local.", RecordType::A),
            Answer::NxDomain
        );
    }

    #[test]
    fn localhost_is_loopback_and_never_forwarded() {
        assert_eq!(data(&ask("localhost.", RecordType::A)), ["127.0.0.1"]);
        assert_eq!(data(&ask("Foo.LocalHost.", RecordType::AAAA)), ["::1"]);
        assert!(data(&ask("localhost.", RecordType::MX)).is_empty());
        assert_eq!(ask("localhost.example.", RecordType::A), Answer::Forward);
    }

    #[test]
    fn external_name_services_are_cnames() {
        assert_eq!(
            data(&ask("ext.shop.svc.cluster.local.", RecordType::A)),
            ["db.example.com."]
        );
    }

    #[test]
    fn another_cluster_domain_is_its_own_zone() {
        let zone = Zone::new("corp.internal").expect("zone");
        let name = Name::from_ascii("web.shop.svc.corp.internal.").unwrap();
        let answer = zone.answer(&catalog(), &name, RecordType::A);
        assert_eq!(data(&answer), ["10.96.0.10"]);
        let local = Name::from_ascii("web.shop.svc.cluster.local.").unwrap();
        assert_eq!(
            zone.answer(&catalog(), &local, RecordType::A),
            Answer::Forward
        );
    }
}
