//! The rules, as a pure function of a [`Snapshot`]: an nftables table of skiff's own, shaped as
//! kube-proxy's nftables mode, and the one `nft -f` transaction that makes a table exactly that.
//!
//! The table (`ip skiff_<hash>`):
//! - base chains `nat_prerouting` (traffic from pods and from outside) and `nat_output` (from the
//!   node itself) jump to `services`, which looks the destination up in two verdict maps:
//!   `service_ips` (cluster IP . protocol . port → `goto svc_*`) and, for packets to the node's
//!   own addresses, `node_ports` (protocol . port → `goto np_*`, which marks the packet for
//!   masquerading first: a NodePort's reply must come back through this node);
//! - a `svc_*` chain per Service port picks an endpoint at random (`numgen random mod N vmap`),
//!   after the endpoints a client already sticks to (`ip saddr @aff_*`, ClientIP affinity); with
//!   no ready endpoint it DNATs to its holder, if one is set ([`super::Proxy::hold`]), else it is
//!   not in the maps at all;
//! - an `ep_*` chain per endpoint records the client in its affinity set and DNATs; an endpoint
//!   that is a pod of this node takes the masquerade mark off (the node is its gateway: replies
//!   come back through here anyway, and the pod sees its client's address);
//! - `nat_postrouting` masquerades what was marked (port-preserving: `fully-random` gave the
//!   server a new source port per connection whose TCP timestamps did not follow those of the
//!   TIME-WAIT it found there, and one SYN in a few hundred waited 1 s for its retransmission),
//!   and the hairpin: a pod of this node's block
//!   reaching a Service served by a pod of the same block (the reply would go straight over the
//!   bridge, past conntrack, with the wrong source);
//! - `filter_prerouting` (right after DNAT, before routing) and `filter_output` refuse what is
//!   still addressed to the service CIDR after DNAT: an allocated address (a port it does not
//!   serve, no endpoint) with ICMP port unreachable (connection refused, as kube-proxy), any
//!   other with host unreachable. Before routing, not in the forward hook: a pod's packet to the
//!   service CIDR would be routed back out of the bridge it came in by, and the kernel would
//!   first send the pod an ICMP redirect, after which the pod looks for the address on its link
//!   and the refusal is lost.
//!
//! Must not: run anything, or read anything but the snapshot (the object names are stable
//! hashes, so a sync changes only what changed, and affinity sets outlive syncs).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddrV4;

use super::snapshot::{Protocol, ServicePort, Snapshot};

/// The packet mark bit asking `nat_postrouting` to masquerade (kube-proxy's).
pub const MASQUERADE_MARK: &str = "0x00004000";
/// Every bit but [`MASQUERADE_MARK`].
const UNMARK: &str = "0xffffbfff";

/// A chain: its hook line for base chains, and its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub base: Option<&'static str>,
    pub rules: Vec<String>,
}

/// A set or a verdict map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// `set` or `map`.
    pub keyword: &'static str,
    /// What goes between its braces: type, flags, timeout.
    pub spec: String,
    pub elements: Vec<String>,
    /// Filled by the packets (affinity): a sync never flushes it.
    pub dynamic: bool,
}

/// The whole table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    pub comment: String,
    pub chains: BTreeMap<String, Chain>,
    pub sets: BTreeMap<String, Set>,
}

/// What a table holds now, by name (from `nft list table`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Present {
    pub chains: BTreeSet<String>,
    /// Set or map name → `set` or `map`.
    pub sets: BTreeMap<String, String>,
}

/// 64-bit FNV-1a.
pub(super) fn fnv(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A short stable name: `prefix_` and 12 hex digits of `key`'s hash.
fn name(prefix: &str, key: &str) -> String {
    format!("{prefix}_{:012x}", fnv(key) & 0xffff_ffff_ffff)
}

fn chain(base: Option<&'static str>, rules: Vec<String>) -> Chain {
    Chain { base, rules }
}

fn dnat(protocol: Protocol, to: SocketAddrV4) -> String {
    format!("meta l4proto {} dnat ip to {to}", protocol.nft())
}

/// The ruleset for `snapshot`, with `comment` on the table.
pub fn render(snapshot: &Snapshot, comment: &str) -> Ruleset {
    let mark = format!("meta mark set meta mark | {MASQUERADE_MARK}");
    let mut r = Ruleset {
        comment: comment.to_string(),
        ..Default::default()
    };
    let nat = |hook: &'static str| Some(hook);
    r.chains.insert(
        "nat_prerouting".into(),
        chain(
            nat("type nat hook prerouting priority -100; policy accept;"),
            vec!["jump services".into()],
        ),
    );
    r.chains.insert(
        "nat_output".into(),
        chain(
            nat("type nat hook output priority -100; policy accept;"),
            vec!["jump services".into()],
        ),
    );
    let mut post = vec![format!(
        "meta mark & {MASQUERADE_MARK} == {MASQUERADE_MARK} meta mark set meta mark ^ {MASQUERADE_MARK} masquerade"
    )];
    if let Some(block) = snapshot.local_block {
        post.push(format!(
            "ct status dnat ip saddr {block} ip daddr {block} masquerade"
        ));
    }
    r.chains.insert(
        "nat_postrouting".into(),
        chain(
            nat("type nat hook postrouting priority 100; policy accept;"),
            post,
        ),
    );
    for (hook, base) in [
        (
            "filter_prerouting",
            "type filter hook prerouting priority -90; policy accept;",
        ),
        (
            "filter_output",
            "type filter hook output priority 0; policy accept;",
        ),
    ] {
        r.chains
            .insert(hook.into(), chain(Some(base), vec!["jump refuse".into()]));
    }
    let mut refuse = vec!["ip daddr @cluster_ips reject".to_string()];
    if let Some(cidr) = snapshot.service_cidr {
        refuse.push(format!(
            "ip daddr {cidr} reject with icmp type host-unreachable"
        ));
    }
    r.chains.insert("refuse".into(), chain(None, refuse));

    let mut services = vec!["ip daddr . meta l4proto . th dport vmap @service_ips".to_string()];
    if !snapshot.node_ips.is_empty() {
        let ips: Vec<String> = snapshot.node_ips.iter().map(|i| i.to_string()).collect();
        services.push(format!(
            "ip daddr {{ {} }} meta l4proto . th dport vmap @node_ports",
            ips.join(", ")
        ));
    }
    r.chains.insert("services".into(), chain(None, services));

    let mut service_ips = Vec::new();
    let mut node_ports = Vec::new();
    let mut cluster_ips = BTreeSet::new();
    for port in &snapshot.ports {
        cluster_ips.insert(port.cluster_ip);
        let Some(rules) = service_chain(port, snapshot, &mut r) else {
            continue;
        };
        let svc = name("svc", &port.id);
        r.chains.insert(svc.clone(), chain(None, rules));
        service_ips.push(format!(
            "{} . {} . {} : goto {svc}",
            port.cluster_ip,
            port.protocol.nft(),
            port.port
        ));
        if let Some(node_port) = port.node_port {
            let np = name("np", &port.id);
            r.chains.insert(
                np.clone(),
                chain(None, vec![mark.clone(), format!("goto {svc}")]),
            );
            node_ports.push(format!("{} . {node_port} : goto {np}", port.protocol.nft()));
        }
    }
    let set = |keyword, spec: &str, elements| Set {
        keyword,
        spec: spec.to_string(),
        elements,
        dynamic: false,
    };
    r.sets.insert(
        "service_ips".into(),
        set(
            "map",
            "type ipv4_addr . inet_proto . inet_service : verdict;",
            service_ips,
        ),
    );
    r.sets.insert(
        "node_ports".into(),
        set(
            "map",
            "type inet_proto . inet_service : verdict;",
            node_ports,
        ),
    );
    r.sets.insert(
        "cluster_ips".into(),
        set(
            "set",
            "type ipv4_addr;",
            cluster_ips.iter().map(|i| i.to_string()).collect(),
        ),
    );
    r
}

/// The rules of `port`'s `svc_*` chain (adding its endpoints' chains and sets to `r`), or
/// `None` when its traffic has nowhere to go.
fn service_chain(port: &ServicePort, snapshot: &Snapshot, r: &mut Ruleset) -> Option<Vec<String>> {
    let mut rules = Vec::new();
    if let Some(cluster) = snapshot.cluster_cidr {
        // From outside the pods (the node itself, another host): the reply must come back here.
        rules.push(format!(
            "ip saddr != {cluster} meta mark set meta mark | {MASQUERADE_MARK}"
        ));
    }
    if port.endpoints.is_empty() {
        let hold = port.hold?;
        rules.push(dnat(port.protocol, hold));
        return Some(rules);
    }
    let mut targets = Vec::new();
    for endpoint in &port.endpoints {
        let key = format!("{}>{endpoint}", port.id);
        let ep = name("ep", &key);
        let mut ep_rules = Vec::new();
        if snapshot
            .local_block
            .is_some_and(|b| b.contains(*endpoint.ip()))
        {
            // A pod of this node answers through this node anyway (it is the pod's gateway):
            // no masquerade, and the pod sees its client's address.
            ep_rules.push(format!("meta mark set meta mark & {UNMARK}"));
        }
        if let Some(timeout) = port.affinity {
            // The timeout is in the name: a changed timeout is a new set, the old one goes.
            let aff = format!("{}_{timeout}", name("aff", &key));
            r.sets.insert(
                aff.clone(),
                Set {
                    keyword: "set",
                    spec: format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"),
                    elements: Vec::new(),
                    dynamic: true,
                },
            );
            rules.push(format!("ip saddr @{aff} goto {ep}"));
            ep_rules.push(format!("update @{aff} {{ ip saddr }}"));
        }
        ep_rules.push(dnat(port.protocol, *endpoint));
        r.chains.insert(ep.clone(), chain(None, ep_rules));
        targets.push(ep);
    }
    if let [only] = targets.as_slice() {
        rules.push(format!("goto {only}"));
    } else {
        let arms: Vec<String> = targets
            .iter()
            .enumerate()
            .map(|(i, ep)| format!("{i} : goto {ep}"))
            .collect();
        rules.push(format!(
            "numgen random mod {} vmap {{ {} }}",
            targets.len(),
            arms.join(", ")
        ));
    }
    Some(rules)
}

/// The `nft -f` script that makes table `ip <table>` exactly `wanted`, given what it holds now
/// (empty: the table is new, or is replaced whole). One transaction: the kernel applies all of
/// it or none. Chains and plain sets are emptied and filled again; dynamic sets keep their
/// elements; chains and sets no longer wanted are deleted.
pub fn script(table: &str, wanted: &Ruleset, present: &Present) -> String {
    let t = format!("ip {table}");
    let mut s = String::new();
    let comment = wanted.comment.replace('"', "'");
    let _ = writeln!(s, "add table {t} {{ comment \"{comment}\"; }}");
    for (name, c) in &wanted.chains {
        match c.base {
            Some(base) => {
                let _ = writeln!(s, "add chain {t} {name} {{ {base} }}");
            }
            None => {
                let _ = writeln!(s, "add chain {t} {name}");
            }
        }
    }
    for (name, set) in &wanted.sets {
        let _ = writeln!(s, "add {} {t} {name} {{ {} }}", set.keyword, set.spec);
    }
    let stale_chains: Vec<&String> = present
        .chains
        .iter()
        .filter(|c| !wanted.chains.contains_key(*c))
        .collect();
    let stale_sets: Vec<(&String, &String)> = present
        .sets
        .iter()
        .filter(|(name, _)| !wanted.sets.contains_key(*name))
        .collect();
    for name in wanted.chains.keys().chain(stale_chains.iter().copied()) {
        let _ = writeln!(s, "flush chain {t} {name}");
    }
    for (name, set) in wanted.sets.iter().filter(|(_, set)| !set.dynamic) {
        let _ = writeln!(s, "flush {} {t} {name}", set.keyword);
    }
    for (name, c) in &wanted.chains {
        for rule in &c.rules {
            let _ = writeln!(s, "add rule {t} {name} {rule}");
        }
    }
    for (name, set) in &wanted.sets {
        if !set.elements.is_empty() {
            let _ = writeln!(
                s,
                "add element {t} {name} {{ {} }}",
                set.elements.join(", ")
            );
        }
    }
    for name in stale_chains {
        let _ = writeln!(s, "delete chain {t} {name}");
    }
    for (name, keyword) in stale_sets {
        let _ = writeln!(s, "delete {keyword} {t} {name}");
    }
    s
}

/// Names of the chains and sets (maps included) in `nft -t list table` output.
pub fn parse_present(listing: &str) -> Present {
    let mut present = Present::default();
    for line in listing.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("chain"), Some(name), Some("{")) => {
                present.chains.insert(name.to_string());
            }
            (Some(keyword @ ("set" | "map")), Some(name), Some("{")) => {
                present.sets.insert(name.to_string(), keyword.to_string());
            }
            _ => {}
        }
    }
    present
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn snapshot() -> Snapshot {
        let port = |id: &str, ip: &str, port, node_port, endpoints: &[&str]| ServicePort {
            id: id.into(),
            service: ("default".into(), id.into()),
            cluster_ip: ip.parse().unwrap(),
            port,
            protocol: Protocol::Tcp,
            node_port,
            affinity: None,
            endpoints: endpoints.iter().map(|e| e.parse().unwrap()).collect(),
            hold: None,
        };
        let mut dns = port(
            "default/dns:53/udp",
            "10.96.0.10",
            53,
            None,
            &["10.244.1.5:5353"],
        );
        dns.protocol = Protocol::Udp;
        Snapshot {
            ports: vec![
                dns,
                port("default/empty:80/tcp", "10.96.0.11", 80, None, &[]),
                port(
                    "default/web:http",
                    "10.96.0.12",
                    80,
                    Some(30080),
                    &["10.244.0.2:8080", "10.244.1.3:8080"],
                ),
            ],
            node_ips: vec!["192.0.2.10".parse().unwrap()],
            local_block: Some("10.244.0.0/24".parse().unwrap()),
            cluster_cidr: Some("10.244.0.0/16".parse().unwrap()),
            service_cidr: Some("10.96.0.0/12".parse().unwrap()),
        }
    }

    fn rules_of<'a>(r: &'a Ruleset, prefix: &str, id: &str) -> &'a [String] {
        &r.chains[&name(prefix, id)].rules
    }

    #[test]
    fn cluster_ips_and_node_ports_lead_to_ready_endpoints_at_random() {
        let r = render(&snapshot(), "node-a");
        let web = name("svc", "default/web:http");
        let dns = name("svc", "default/dns:53/udp");
        assert_eq!(
            r.sets["service_ips"].elements,
            [
                format!("10.96.0.10 . udp . 53 : goto {dns}"),
                format!("10.96.0.12 . tcp . 80 : goto {web}"),
            ],
            "the Service without endpoints has no entry: the filter refuses it"
        );
        assert_eq!(
            r.sets["cluster_ips"].elements,
            ["10.96.0.10", "10.96.0.11", "10.96.0.12"]
        );
        let np = name("np", "default/web:http");
        assert_eq!(
            r.sets["node_ports"].elements,
            [format!("tcp . 30080 : goto {np}")]
        );
        assert_eq!(
            rules_of(&r, "np", "default/web:http"),
            [
                format!("meta mark set meta mark | {MASQUERADE_MARK}"),
                format!("goto {web}")
            ],
            "NodePort traffic is masqueraded: the reply must come back through this node"
        );
        let (a, b) = (
            name("ep", "default/web:http>10.244.0.2:8080"),
            name("ep", "default/web:http>10.244.1.3:8080"),
        );
        assert_eq!(
            rules_of(&r, "svc", "default/web:http"),
            [
                format!("ip saddr != 10.244.0.0/16 meta mark set meta mark | {MASQUERADE_MARK}"),
                format!("numgen random mod 2 vmap {{ 0 : goto {a}, 1 : goto {b} }}"),
            ]
        );
        assert_eq!(
            r.chains[&a].rules,
            [
                "meta mark set meta mark & 0xffffbfff",
                "meta l4proto tcp dnat ip to 10.244.0.2:8080"
            ],
            "10.244.0.2 is a pod of this node: its replies come back through here unmasqueraded"
        );
        assert_eq!(
            r.chains[&b].rules,
            ["meta l4proto tcp dnat ip to 10.244.1.3:8080"]
        );
        assert_eq!(
            r.chains[&name("ep", "default/dns:53/udp>10.244.1.5:5353")].rules,
            ["meta l4proto udp dnat ip to 10.244.1.5:5353"]
        );
        assert_eq!(
            r.chains["services"].rules[1],
            "ip daddr { 192.0.2.10 } meta l4proto . th dport vmap @node_ports"
        );
        assert!(
            r.chains["nat_postrouting"].rules.contains(
                &"ct status dnat ip saddr 10.244.0.0/24 ip daddr 10.244.0.0/24 masquerade"
                    .to_string()
            ),
            "hairpin: a local pod reaching a local endpoint through a Service"
        );
        assert_eq!(
            r.chains["refuse"].rules,
            [
                "ip daddr @cluster_ips reject",
                "ip daddr 10.96.0.0/12 reject with icmp type host-unreachable"
            ]
        );
    }

    #[test]
    fn client_ip_affinity_checks_the_sets_before_choosing() {
        let mut s = snapshot();
        s.ports[2].affinity = Some(60);
        let r = render(&s, "node-a");
        let key = "default/web:http>10.244.0.2:8080";
        let aff = format!("{}_60", name("aff", key));
        let ep = name("ep", key);
        let svc = rules_of(&r, "svc", "default/web:http");
        assert_eq!(svc[1], format!("ip saddr @{aff} goto {ep}"));
        assert!(svc[3].starts_with("numgen random mod 2 vmap"));
        assert_eq!(
            r.chains[&ep].rules[1..],
            [
                format!("update @{aff} {{ ip saddr }}"),
                "meta l4proto tcp dnat ip to 10.244.0.2:8080".to_string()
            ]
        );
        let set = &r.sets[&aff];
        assert!(set.dynamic);
        assert_eq!(
            set.spec,
            "type ipv4_addr; flags dynamic,timeout; timeout 60s;"
        );
    }

    #[test]
    fn a_held_service_without_endpoints_goes_to_its_holder_until_one_is_ready() {
        let mut s = snapshot();
        s.ports[1].hold = Some("10.244.0.1:9000".parse().unwrap());
        let r = render(&s, "node-a");
        let svc = name("svc", "default/empty:80/tcp");
        assert!(
            r.sets["service_ips"]
                .elements
                .contains(&format!("10.96.0.11 . tcp . 80 : goto {svc}"))
        );
        assert_eq!(
            r.chains[&svc].rules[1],
            "meta l4proto tcp dnat ip to 10.244.0.1:9000"
        );
        // Once an endpoint is ready the holder is out of the path.
        s.ports[1].endpoints = vec!["10.244.0.7:80".parse().unwrap()];
        let r = render(&s, "node-a");
        assert_eq!(
            r.chains[&svc].rules[1],
            format!("goto {}", name("ep", "default/empty:80/tcp>10.244.0.7:80"))
        );
    }

    #[test]
    fn without_node_addresses_or_ranges_nothing_refers_to_them() {
        let s = Snapshot::default();
        let r = render(&s, "node-a");
        assert_eq!(r.chains["services"].rules.len(), 1, "no NodePort rule");
        assert_eq!(r.chains["refuse"].rules, ["ip daddr @cluster_ips reject"]);
        assert_eq!(r.chains["nat_postrouting"].rules.len(), 1);
    }

    #[test]
    fn a_script_rebuilds_in_place_keeps_affinity_and_deletes_what_went() {
        let mut s = snapshot();
        s.ports[2].affinity = Some(60);
        let wanted = render(&s, "skiff node \"a\"");
        let aff = format!("{}_60", name("aff", "default/web:http>10.244.0.2:8080"));
        let present = Present {
            chains: ["services".to_string(), "svc_gone".to_string()].into(),
            sets: [
                ("aff_gone_60".to_string(), "set".to_string()),
                (aff.clone(), "set".to_string()),
            ]
            .into(),
        };
        let text = script("skiff_1", &wanted, &present);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "add table ip skiff_1 { comment \"skiff node 'a'\"; }"
        );
        assert!(lines.contains(
            &"add chain ip skiff_1 nat_prerouting { type nat hook prerouting priority -100; policy accept; }"
        ));
        let pos = |l: &str| {
            lines
                .iter()
                .position(|x| *x == l)
                .unwrap_or_else(|| panic!("{l}\n{text}"))
        };
        // Rules are emptied before they are added again, stale chains emptied before deleted.
        assert!(
            pos("flush chain ip skiff_1 services")
                < pos(
                    "add rule ip skiff_1 services ip daddr . meta l4proto . th dport vmap @service_ips"
                )
        );
        assert!(pos("flush chain ip skiff_1 svc_gone") < pos("delete chain ip skiff_1 svc_gone"));
        assert!(pos("delete chain ip skiff_1 svc_gone") < pos("delete set ip skiff_1 aff_gone_60"));
        assert!(pos("flush map ip skiff_1 service_ips") > 0);
        assert!(
            !text.contains(&format!("flush set ip skiff_1 {aff}")),
            "a client's affinity survives a sync"
        );
        assert!(!text.contains(&format!("delete set ip skiff_1 {aff}")));
        assert!(
            text.contains(
                "add element ip skiff_1 cluster_ips { 10.96.0.10, 10.96.0.11, 10.96.0.12 }"
            )
        );
        assert!(!text.contains("add element ip skiff_1 node_ports { }"));
    }

    #[test]
    fn listings_give_chain_and_set_names() {
        let listing = "table ip skiff_1 {\n\tcomment \"x\"\n\tmap service_ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t}\n\n\tset aff_1_60 {\n\t\ttype ipv4_addr\n\t}\n\n\tchain nat_output {\n\t\ttype nat hook output priority dstnat; policy accept;\n\t\tjump services\n\t}\n\n\tchain services {\n\t}\n}\n";
        let p = parse_present(listing);
        assert_eq!(
            p.chains,
            ["nat_output".to_string(), "services".to_string()].into()
        );
        assert_eq!(
            p.sets,
            [
                ("aff_1_60".to_string(), "set".to_string()),
                ("service_ips".to_string(), "map".to_string())
            ]
            .into()
        );
    }
}
