//! The rendering of the proxy's rules, checked on snapshots: maps, chains, affinity, holders,
//! the transaction script and the listing parser.
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
        load_balancer: false,
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
            &"ct status dnat ip saddr 10.244.0.0/24 ip daddr 10.244.0.0/24 masquerade".to_string()
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
        text.contains("add element ip skiff_1 cluster_ips { 10.96.0.10, 10.96.0.11, 10.96.0.12 }")
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

#[test]
fn load_balancer_ports_are_answered_on_the_nodes_addresses_first_service_first() {
    let mut s = snapshot();
    s.ports[2].load_balancer = true;
    // A second LoadBalancer Service on the same port and protocol: only its node port answers.
    let mut other = s.ports[2].clone();
    other.id = "default/zz:http".into();
    other.service = ("default".into(), "zz".into());
    other.cluster_ip = "10.96.0.13".parse().unwrap();
    other.node_port = Some(30081);
    s.ports.push(other);
    let r = render(&s, "node-a");
    let np = name("np", "default/web:http");
    assert_eq!(
        r.sets["lb_ports"].elements,
        [format!("tcp . 80 : goto {np}")]
    );
    assert_eq!(
        r.sets["node_ports"].elements,
        [
            format!("tcp . 30080 : goto {np}"),
            format!("tcp . 30081 : goto {}", name("np", "default/zz:http"))
        ]
    );
    assert_eq!(
        r.chains["services"].rules[2],
        "ip daddr { 192.0.2.10 } meta l4proto . th dport vmap @lb_ports"
    );
}

#[test]
fn endpoints_outside_the_cluster_cidr_are_masqueraded() {
    // default/kubernetes: an API server on a node address, which has no route back to pods.
    let mut s = snapshot();
    s.ports.push(ServicePort {
        id: "default/kubernetes:https".into(),
        service: ("default".into(), "kubernetes".into()),
        cluster_ip: "10.96.0.1".parse().unwrap(),
        port: 443,
        protocol: Protocol::Tcp,
        node_port: None,
        load_balancer: false,
        affinity: None,
        endpoints: vec!["192.0.2.1:7443".parse().unwrap()],
        hold: None,
    });
    let r = render(&s, "node-a");
    assert_eq!(
        r.chains[&name("ep", "default/kubernetes:https>192.0.2.1:7443")].rules,
        [
            format!("meta mark set meta mark | {MASQUERADE_MARK}"),
            "meta l4proto tcp dnat ip to 192.0.2.1:7443".to_string()
        ]
    );
}
