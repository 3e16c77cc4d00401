//! The proxy against the real `nft` and `ip`, in a network namespace the test makes (root only:
//! skipped, with a note, otherwise): a table applied, changed in place (an affinity set keeps
//! its clients, what went is deleted), and everything gone after [`remove_in`].

#![allow(clippy::unwrap_used)]

use std::process::Command;

use super::*;
use crate::proxy::snapshot::{Protocol, ServicePort};

/// A network namespace for one test, deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Option<Self> {
        let name = format!("skiff-ut-{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot make a network namespace (not root?)");
            return None;
        }
        let ns = Self(name);
        Host::in_netns(&ns.0)
            .run("ip", &["link", "set", "lo", "up"], None)
            .unwrap();
        Some(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

fn snapshot(endpoints: &[&str], affinity: Option<u32>) -> Snapshot {
    Snapshot {
        ports: vec![ServicePort {
            id: "default/web:http".into(),
            service: ("default".into(), "web".into()),
            cluster_ip: "10.112.0.10".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
            node_port: Some(30080),
            load_balancer: false,
            affinity,
            endpoints: endpoints.iter().map(|e| e.parse().unwrap()).collect(),
            hold: None,
        }],
        node_ips: vec!["192.0.2.10".parse().unwrap()],
        local_block: Some("10.240.0.0/24".parse().unwrap()),
        cluster_cidr: Some("10.240.0.0/20".parse().unwrap()),
        service_cidr: Some("10.112.0.0/20".parse().unwrap()),
    }
}

#[test]
fn a_table_is_changed_in_place_and_removed_with_its_routes() {
    let Some(ns) = Netns::new("proxy") else {
        return;
    };
    let host = Host::in_netns(&ns.0);
    let table = table_name("node-a", "10.112.0.0/20".parse().ok());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(STATE_FILE);

    let first = render::render(
        &snapshot(&["10.240.0.2:8080", "10.240.1.3:8080"], Some(60)),
        "t",
    );
    host.apply(&table, &first).unwrap();
    let present = host.list(&table).unwrap().expect("the table exists");
    assert!(present.chains.contains("nat_prerouting"), "{present:?}");
    let affinity: Vec<String> = present
        .sets
        .keys()
        .filter(|s| s.starts_with("aff_"))
        .cloned()
        .collect();
    assert_eq!(affinity.len(), 2, "{present:?}");
    host.run(
        "nft",
        &[
            "add",
            "element",
            "ip",
            &table,
            &affinity[0],
            "{ 10.240.0.9 }",
        ],
        None,
    )
    .unwrap();
    let routes = vec![
        Route::Unreachable("10.240.0.0/20".parse().unwrap()),
        Route::Dev("10.112.0.0/20".parse().unwrap(), "lo".into()),
    ];
    State {
        table: Some(table.clone()),
        routes: routes.clone(),
    }
    .write(&state)
    .unwrap();
    routes::sync(&host, &routes, &[]).unwrap();

    // One endpoint goes: its chain and set go; the other's set keeps its client.
    let kept = affinity[0].clone();
    let only_a = render::render(&snapshot(&["10.240.0.2:8080"], Some(60)), "t");
    let one_left = if only_a.sets.contains_key(&kept) {
        "10.240.0.2:8080"
    } else {
        "10.240.1.3:8080"
    };
    let second = render::render(&snapshot(&[one_left], Some(60)), "t");
    host.apply(&table, &second).unwrap();
    let present = host.list(&table).unwrap().unwrap();
    let sets: Vec<&String> = present
        .sets
        .keys()
        .filter(|s| s.starts_with("aff_"))
        .collect();
    assert_eq!(sets, [&kept], "{present:?}");
    let listing = host
        .run("nft", &["list", "set", "ip", &table, &kept], None)
        .unwrap();
    assert!(
        listing.contains("10.240.0.9"),
        "affinity survives a sync: {listing}"
    );
    let eps = present
        .chains
        .iter()
        .filter(|c| c.starts_with("ep_"))
        .count();
    assert_eq!(eps, 1, "{present:?}");

    let shown = host
        .run("ip", &["-o", "route", "show", "proto", "78"], None)
        .unwrap();
    assert!(shown.contains("unreachable 10.240.0.0/20"), "{shown}");
    assert!(shown.contains("10.112.0.0/20 dev lo"), "{shown}");

    remove_in(&host, &state).unwrap();
    assert!(host.list(&table).unwrap().is_none(), "the table is gone");
    let shown = host
        .run("ip", &["-o", "route", "show", "proto", "78"], None)
        .unwrap();
    assert_eq!(shown.trim(), "", "the routes are gone");
    assert!(!state.exists());
    // Nothing recorded: nothing to do.
    remove_in(&host, &state).unwrap();
}

#[test]
fn holders_must_be_reachable_from_pods() {
    let proxy = Proxy::new(
        "node-a",
        "127.0.0.2".parse().unwrap(),
        Path::new("/nonexistent"),
    );
    assert!(proxy.node_ip.is_none(), "no NodePorts on loopback");
    let err = proxy
        .hold("default", "fn", "127.0.0.1:9000".parse().unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("non-loopback"), "{err}");
    let mut kicks = proxy.kick.subscribe();
    kicks.mark_unchanged();
    proxy
        .hold("default", "fn", "10.240.0.1:9000".parse().unwrap())
        .unwrap();
    assert!(kicks.has_changed().unwrap(), "a hold asks for a sync");
    proxy.release("default", "fn");
    assert!(proxy.holds.is_empty());
}

#[test]
fn the_state_file_round_trips() {
    let state = State {
        table: Some("skiff_0011aabb".into()),
        routes: vec![
            Route::Unreachable("10.240.0.0/20".parse().unwrap()),
            Route::Dev("10.112.0.0/20".parse().unwrap(), "skiff00112233".into()),
        ],
    };
    assert_eq!(State::parse(&state.render()), state);
    assert_eq!(
        Ranges::from_config(&BTreeMap::from([
            ("serviceCIDR".to_string(), "10.112.0.0/20".to_string()),
            ("clusterCIDR".to_string(), "not a cidr".to_string()),
        ])),
        Ranges {
            service_cidr: "10.112.0.0/20".parse().ok(),
            cluster_cidr: None
        }
    );
}
