//! Guests' sockets (WASI preview 2 `wasi:sockets`, the `net` guest): what the spec grants, and
//! in which network namespace the sockets live.

use std::process::Command;
use std::time::Duration;

use skiff_runtime::wasm::{Network, WasmSpec};

use crate::common::{Executor, exited};

fn net() -> std::path::PathBuf {
    skiff_tests::guests::socket_component("net")
}

/// A network namespace made for the test (`ip netns add`), with loopback up; deleted on drop.
struct TestNetns(String);

impl TestNetns {
    fn new(letter: char) -> Self {
        let name = format!("skiff-rt-{}-{letter}", std::process::id());
        let ns = TestNetns(name);
        let _ = Command::new("ip").args(["netns", "delete", &ns.0]).output();
        ns.ip(&["netns", "add", &ns.0]);
        ns.ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> std::path::PathBuf {
        std::path::Path::new("/run/netns").join(&self.0)
    }

    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .output();
    }
}

fn spec(ex: &Executor, id: &str, args: &[&str], network: Network) -> WasmSpec {
    WasmSpec {
        argv0: "net".into(),
        network,
        ..ex.spec(id, &net(), args)
    }
}

fn serving(port: u16) -> Network {
    Network {
        allow_bind_ports: vec![port],
        allow_outbound: false,
        ..Network::default()
    }
}

fn outbound() -> Network {
    Network {
        allow_bind_ports: Vec::new(),
        allow_outbound: true,
        ..Network::default()
    }
}

#[tokio::test]
async fn a_port_not_granted_cannot_be_bound_and_no_grant_means_no_socket() {
    let ex = Executor::new();
    let exit = ex
        .run(&spec(&ex, "other-port", &["bind", "18342"], serving(18341)))
        .await;
    assert_eq!(exit.code, 1, "{exit:?}");
    assert_eq!(ex.output("other-port").0, "bind 18342: access-denied\n");
    let exit = ex
        .run(&spec(&ex, "none", &["bind", "18341"], Network::default()))
        .await;
    assert_eq!(exit.code, 1, "{exit:?}");
    let (out, err) = ex.output("none");
    assert!(out.contains("access-denied"), "{out}{err}");
}

#[tokio::test]
async fn sockets_live_in_the_namespace_the_spec_names() {
    let (ns_a, ns_b) = (TestNetns::new('a'), TestNetns::new('b'));
    let ex = Executor::new();
    // One port, two namespaces: no clash.
    let mut servers = Vec::new();
    for (ns, text) in [(&ns_a, "from-a"), (&ns_b, "from-b")] {
        let mut server = spec(
            &ex,
            &format!("serve-{text}"),
            &["serve", "18341", text],
            serving(18341),
        );
        server.netns = Some(ns.path());
        servers.push(ex.start(&server).await);
    }
    // A client in each namespace reaches that namespace's server on its localhost.
    for ((ns, text), server) in [(&ns_a, "from-a"), (&ns_b, "from-b")]
        .into_iter()
        .zip(&servers)
    {
        let id = format!("fetch-{text}");
        let mut client = spec(&ex, &id, &["fetch", "127.0.0.1", "18341", "80"], outbound());
        client.netns = Some(ns.path());
        let exit = ex.run(&client).await;
        let (out, err) = ex.output(&id);
        assert_eq!(exit.code, 0, "{exit:?}\n{out}{err}");
        assert_eq!(out, format!("{text}\n"));
        let served = exited(server, Duration::from_secs(10)).await;
        assert_eq!(served.code, 0, "{served:?}");
        assert_eq!(
            ex.output(&format!("serve-{text}")).0,
            "listening on 18341\n"
        );
    }
    // A namespace that is no namespace is refused, by name, as the caller's mistake.
    let file = ex.dir.path().join("not-a-netns");
    std::fs::write(&file, "").unwrap();
    let mut bad = spec(&ex, "bad-netns", &["bind", "18341"], serving(18341));
    bad.netns = Some(file.clone());
    let err = ex.engine.start(bad.clone()).await.err().unwrap();
    assert!(err.is_invalid_input(), "{err:?}");
    let err = err.to_string();
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(err.contains("not a network namespace"), "{err}");
    // A guest granted no socket makes none: its namespace is not even opened.
    bad.id = "no-sockets".into();
    bad.log_path = ex.log_path("no-sockets");
    bad.network = Network::default();
    let exit = ex.run(&bad).await;
    assert_eq!(exit.code, 1, "{exit:?}");
    assert!(ex.output("no-sockets").0.contains("access-denied"));
}
