//! Guests' name lookups (`wasi:sockets/ip-name-lookup`, the `net lookup` guest): with the spec's
//! resolver settings they ask its nameservers, with its search path and `ndots`, from the
//! guest's network namespace; without outbound sockets they get none.

use std::net::Ipv4Addr;
use std::process::Command;

use skiff_runtime::wasm::{Network, Resolver, WasmSpec};
use skiff_tests::dns::Upstream;

use crate::common::Executor;

/// A network namespace with only its loopback up; deleted on drop.
struct TestNetns(String);

impl TestNetns {
    fn new() -> Self {
        let ns = TestNetns(format!("skiff-rt-{}-dns", std::process::id()));
        let _ = Command::new("ip").args(["netns", "delete", &ns.0]).output();
        for args in [
            vec!["netns", "add", &ns.0],
            vec!["-n", &ns.0, "link", "set", "lo", "up"],
        ] {
            let out = Command::new("ip").args(&args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        }
        ns
    }

    fn path(&self) -> std::path::PathBuf {
        std::path::Path::new("/run/netns").join(&self.0)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .output();
    }
}

fn spec(ex: &Executor, id: &str, names: &[&str], network: Network) -> WasmSpec {
    WasmSpec {
        argv0: "net".into(),
        network,
        ..ex.spec(id, &skiff_tests::guests::socket_component("net"), names)
    }
}

#[tokio::test]
async fn names_are_asked_of_the_spec_resolver_from_the_guest_namespace() {
    let ns = TestNetns::new();
    // The only resolver: on the loopback of the guest's namespace (the test's own has none there).
    let upstream = Upstream::start_in(
        Some(&ns.path()),
        "127.0.0.1".parse().unwrap(),
        &[
            ("web.shop.svc.cluster.local.", Ipv4Addr::new(10, 96, 0, 10)),
            ("outside.example.", Ipv4Addr::new(192, 0, 2, 10)),
        ],
    );
    let ex = Executor::new();
    let network = Network {
        allow_outbound: true,
        resolver: Some(Resolver::parse(
            "search shop.svc.cluster.local svc.cluster.local\nnameserver 127.0.0.1\noptions ndots:5 timeout:2\n",
        )),
        ..Network::default()
    };
    let mut s = spec(
        &ex,
        "lookup",
        &[
            "lookup",
            "web",
            "outside.example",
            "missing.example",
            "10.1.2.3",
        ],
        network.clone(),
    );
    s.netns = Some(ns.path());
    let exit = ex.run(&s).await;
    let (out, err) = ex.output("lookup");
    assert_eq!(
        out,
        "web 10.96.0.10\noutside.example 192.0.2.10\nmissing.example error: name-unresolvable\n10.1.2.3 10.1.2.3\n",
        "{err}"
    );
    assert_eq!(exit.code, 1, "one name did not resolve: {exit:?}");
    let asked = upstream.asked();
    assert!(
        asked.contains(&"web.shop.svc.cluster.local.".to_string()),
        "the search path: {asked:?}"
    );
    assert!(
        !asked.iter().any(|n| n.starts_with("10.1.2.3")),
        "an address is never asked: {asked:?}"
    );

    // Without outbound sockets: no lookups at all.
    let denied = Network {
        allow_outbound: false,
        allow_bind_ports: vec![18350],
        ..network
    };
    let mut s = spec(&ex, "denied", &["lookup", "web"], denied);
    s.netns = Some(ns.path());
    let exit = ex.run(&s).await;
    assert_eq!(exit.code, 1, "{exit:?}");
    assert_eq!(
        ex.output("denied").0,
        "web error: permanent-resolver-failure\n"
    );
}
