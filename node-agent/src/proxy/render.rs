//! The rules, as a pure function of a [`Snapshot`]: an nftables table of skiff's own, shaped as
//! kube-proxy's nftables mode, and the one `nft -f` transaction that makes a table exactly that.
//!
//! The table (`ip skiff_<hash>`):
//! - base chains `nat_prerouting` (traffic from pods and from outside) and `nat_output` (from the
//!   node itself) jump to `services`, which looks the destination up in two verdict maps:
//!   `service_ips` (cluster IP . protocol . port → `goto svc_*`) and, for packets to the node's
//!   own addresses, `node_ports` (protocol . port → `goto np_*`, which marks the packet for
//!   masquerading first: a NodePort's reply must come back through this node) and `lb_ports`
//!   (a LoadBalancer Service's own port on the node's addresses, to the same `np_*` chain: k3s
//!   ServiceLB's semantics; the first Service by id takes a port two of them ask for);
//! - a `svc_*` chain per Service port picks an endpoint at random (`numgen random mod N vmap`),
//!   after the endpoints a client already sticks to (`ip saddr @aff_*`, ClientIP affinity); with
//!   no ready endpoint it DNATs to its holder, if one is set ([`super::Proxy::hold`]), else it is
//!   not in the maps at all;
//! - an `ep_*` chain per endpoint records the client in its affinity set and DNATs; an endpoint
//!   that is a pod of this node takes the masquerade mark off (the node is its gateway: replies
//!   come back through here anyway, and the pod sees its client's address); one outside the
//!   cluster CIDR (an API server behind `default/kubernetes`) puts it on (its host has no route
//!   back to a pod);
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
        services.push(format!(
            "ip daddr {{ {} }} meta l4proto . th dport vmap @lb_ports",
            ips.join(", ")
        ));
    }
    r.chains.insert("services".into(), chain(None, services));

    let mut service_ips = Vec::new();
    let mut node_ports = Vec::new();
    let mut lb_ports = Vec::new();
    // One Service per LoadBalancer port and protocol: the first by id (later ones are not
    // answered on the nodes' addresses; their node ports still are).
    let mut lb_taken = BTreeSet::new();
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
        let lb = port.load_balancer && lb_taken.insert((port.protocol, port.port));
        if port.node_port.is_some() || lb {
            // From outside the node: masqueraded, so the reply comes back through it.
            let np = name("np", &port.id);
            r.chains.insert(
                np.clone(),
                chain(None, vec![mark.clone(), format!("goto {svc}")]),
            );
            if let Some(node_port) = port.node_port {
                node_ports.push(format!("{} . {node_port} : goto {np}", port.protocol.nft()));
            }
            if lb {
                lb_ports.push(format!(
                    "{} . {} : goto {np}",
                    port.protocol.nft(),
                    port.port
                ));
            }
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
        "lb_ports".into(),
        set("map", "type inet_proto . inet_service : verdict;", lb_ports),
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
        if snapshot
            .cluster_cidr
            .is_some_and(|c| !c.contains(*endpoint.ip()))
        {
            // An endpoint outside the pods (the API servers behind default/kubernetes): its host
            // has no route back to a pod's address, so the reply must come back through here.
            ep_rules.push(format!("meta mark set meta mark | {MASQUERADE_MARK}"));
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
#[path = "render_tests.rs"]
mod tests;
