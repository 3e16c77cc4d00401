//! The pod network end to end, with busybox pods pulled from a real registry: each OCI pod has
//! its own address from its node's podCIDR (assigned by the control plane), pods reach each other
//! by those addresses over TCP on one node, across two agents sharing the host (no routes), and
//! across two nodes that live in separate network namespaces made by the test (routed host-gw
//! style between them); `status.podIP` and its downward-API env agree; Wasm pods granted sockets
//! get their own address and namespace too (two bind one port on one node, a sidecar reaches its
//! server on localhost, an OCI pod reaches them), those granted none keep the node's address; a deleted pod's address, namespace and veth go with it; a restarted agent keeps the
//! addresses of running pods and frees those of pods deleted while it was down.

use std::time::Duration;

use serde_json::Value;
use skiff_api::cidr::Ipv4Cidr;
use skiff_tests::netns::NodeNetwork;
use skiff_tests::netslot::NetSlot;
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, ClusterOptions, stdout, text, wait_for};

/// The busybox image, pushed to `registry`.
fn busybox(registry: &Registry) -> String {
    registry.push_busybox()
}

/// A busybox pod on `node` running `script`, with its `status.podIP` in `$MY_IP`.
fn pod(name: &str, image: &str, node: &str, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  nodeSelector:\n    kubernetes.io/hostname: {node}\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, {script:?}]\n    env:\n    - name: MY_IP\n      valueFrom:\n        fieldRef:\n          fieldPath: status.podIP\n"
    )
}

/// Serves one TCP connection on 8080 with `from-<its address>`.
const SERVER: &str = "echo ip=$MY_IP; echo from-$MY_IP | busybox nc -l -p 8080";

/// Connects to `ip`:8080 (retrying while the server or the route is not there yet).
fn client_script(ip: &str) -> String {
    format!(
        "for i in $(busybox seq 1 80); do busybox nc {ip} 8080 </dev/null && exit 0; busybox sleep 0.25; done; exit 1"
    )
}

/// Waits until pod `name` runs with an address; returns the pod.
fn running_with_ip(c: &Cluster, name: &str) -> Value {
    wait_for(
        &format!("pod {name} Running with a podIP"),
        Duration::from_secs(60),
        || {
            c.get_json("pod", name).filter(|p| {
                p["status"]["phase"] == "Running"
                    && p["status"]["podIP"].as_str().is_some_and(|i| !i.is_empty())
            })
        },
    )
}

fn finished(c: &Cluster, name: &str) -> Value {
    wait_for(
        &format!("pod {name} to finish"),
        Duration::from_secs(60),
        || {
            c.get_json("pod", name)
                .filter(|p| matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        },
    )
}

fn logs(c: &Cluster, name: &str) -> String {
    let out = c.skiff(&["logs", name]);
    assert!(out.status.success(), "{}", text(&out));
    stdout(&out)
}

fn pod_ip(p: &Value) -> String {
    p["status"]["podIP"].as_str().unwrap_or("").to_string()
}

/// The node's podCIDR, once the control plane has given it one.
fn node_block(c: &Cluster, node: &str) -> Ipv4Cidr {
    let n = wait_for(
        &format!("node {node} to get a podCIDR"),
        Duration::from_secs(10),
        || {
            c.get_json("node", node)
                .filter(|n| n["spec"]["podCIDR"].as_str().is_some_and(|b| !b.is_empty()))
        },
    );
    assert_eq!(n["spec"]["podCIDRs"][0], n["spec"]["podCIDR"], "{n:#}");
    n["spec"]["podCIDR"]
        .as_str()
        .and_then(|b| b.parse().ok())
        .expect("a CIDR")
}

fn assert_inside(block: Ipv4Cidr, ip: &str) {
    let addr: std::net::Ipv4Addr = ip.parse().expect("an IPv4 podIP");
    assert!(block.contains(addr), "{ip} is not in {block}");
}

/// Pod `a` reaches pod `b` on its address; `b` saw its own address in its env.
fn assert_talk(c: &Cluster, image: &str, from_node: &str, to_node: &str) -> (Value, Value) {
    c.apply(&pod("server", image, to_node, SERVER));
    let server = running_with_ip(c, "server");
    let server_ip = pod_ip(&server);
    c.apply(&pod("client", image, from_node, &client_script(&server_ip)));
    let client = finished(c, "client");
    assert_eq!(
        client["status"]["phase"],
        "Succeeded",
        "the client did not reach {server_ip}: {client:#}\n{}",
        logs(c, "client")
    );
    let said = logs(c, "client");
    assert!(said.contains(&format!("from-{server_ip}\n")), "{said}");
    let server = finished(c, "server");
    assert!(
        logs(c, "server").starts_with(&format!("ip={server_ip}\n")),
        "status.podIP in the env is the pod's address: {}",
        logs(c, "server")
    );
    (server, client)
}

#[test]
fn pods_on_one_node_reach_each_other_by_pod_ip() {
    let registry = Registry::start();
    let image = busybox(&registry);
    let mut c = Cluster::start();
    c.add_agent("node-1");
    let block = node_block(&c, "node-1");
    let cluster: Ipv4Cidr = c.cluster_cidr().parse().expect("cluster CIDR");
    assert!(
        cluster.overlaps(&block) && block.prefix() == 24,
        "{block} in {cluster}"
    );

    let (server, client) = assert_talk(&c, &image, "node-1", "node-1");
    let (server_ip, client_ip) = (pod_ip(&server), pod_ip(&client));
    assert_ne!(server_ip, client_ip);
    for (p, ip) in [(&server, &server_ip), (&client, &client_ip)] {
        assert_inside(block, ip);
        assert_eq!(p["status"]["podIPs"][0]["ip"], ip.as_str(), "{p:#}");
        assert_eq!(p["status"]["hostIP"], "127.0.0.2", "{p:#}");
    }

    // Deleting a pod frees its address and removes its namespace (and so its veth).
    let uid = server["metadata"]["uid"].as_str().expect("uid").to_string();
    let address_file = c.agent(0).data_dir.join("ipam").join(&server_ip);
    assert!(address_file.exists(), "{}", address_file.display());
    let out = c.skiff(&["delete", "pod", "server"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for(
        "the server's address freed",
        Duration::from_secs(20),
        || (!address_file.exists()).then_some(()),
    );
    wait_for(
        "the server's network namespace removed",
        Duration::from_secs(10),
        || (!std::path::Path::new(&format!("/run/netns/skiff-{uid}")).exists()).then_some(()),
    );
}

#[test]
fn pods_on_two_agents_sharing_one_host_reach_each_other_without_routes() {
    let registry = Registry::start();
    let image = busybox(&registry);
    let mut c = Cluster::start();
    c.add_agent("node-1");
    c.add_agent("node-2");
    let (block_1, block_2) = (node_block(&c, "node-1"), node_block(&c, "node-2"));
    assert!(!block_1.overlaps(&block_2), "{block_1} {block_2}");
    let (server, client) = assert_talk(&c, &image, "node-1", "node-2");
    assert_inside(block_2, &pod_ip(&server));
    assert_inside(block_1, &pod_ip(&client));
    // Both bridges are local: no route was made for either block (the nodes are on loopback).
    let out = std::process::Command::new("ip")
        .args(["-o", "route", "show", "proto", "77"])
        .output()
        .expect("ip route");
    let routes = stdout(&out);
    for block in [block_1, block_2] {
        assert!(!routes.contains(&block.to_string()), "{routes}");
    }
}

#[test]
fn a_restarted_agent_keeps_running_pods_addresses_and_frees_those_of_pods_gone_meanwhile() {
    let registry = Registry::start();
    let image = busybox(&registry);
    let mut c = Cluster::start();
    c.add_agent("node-1");
    let forever = "while :; do busybox sleep 1; done";
    c.apply(&pod("keep", &image, "node-1", forever));
    c.apply(&pod("gone", &image, "node-1", forever));
    let keep = running_with_ip(&c, "keep");
    let gone = running_with_ip(&c, "gone");
    let ipam = c.agent(0).data_dir.join("ipam");
    let gone_uid = gone["metadata"]["uid"].as_str().expect("uid").to_string();

    c.kill_agent(0);
    let out = c.skiff(&["delete", "pod", "gone", "--grace-period", "0"]);
    assert!(out.status.success(), "{}", text(&out));
    c.start_agent(0);
    wait_for(
        "the address of the pod deleted meanwhile freed",
        Duration::from_secs(20),
        || (!ipam.join(pod_ip(&gone)).exists()).then_some(()),
    );
    // Its container is stopped first (through its shim), then its namespace goes.
    wait_for("its namespace removed", Duration::from_secs(20), || {
        (!std::path::Path::new(&format!("/run/netns/skiff-{gone_uid}")).exists()).then_some(())
    });
    let after = c.get_json("pod", "keep").expect("keep");
    assert_eq!(pod_ip(&after), pod_ip(&keep), "{after:#}");
    assert!(ipam.join(pod_ip(&keep)).exists());
}

/// A Wasm pod serving `text` on 8080 once per connection for `count` connections (the
/// `net` guest, a WASI preview 2 component using `wasi:sockets`), with a sidecar container
/// that fetches it over the pod's `localhost`.
fn wasm_server(name: &str, text: &str, count: u32) -> String {
    let net = skiff_tests::guests::socket_component("net");
    let net = net.display();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  annotations:\n    skiff.dev/allow-outbound: \"true\"\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  nodeSelector:\n    kubernetes.io/hostname: node-1\n  containers:\n  - name: server\n    image: file:{net}\n    command: [net, serve, \"8080\", {text}, \"{count}\"]\n    ports:\n    - containerPort: 8080\n  - name: sidecar\n    image: file:{net}\n    command: [net, fetch, 127.0.0.1, \"8080\", \"80\"]\n"
    )
}

#[test]
fn wasm_pods_granted_sockets_live_in_their_own_pod_network() {
    let registry = Registry::start();
    let image = busybox(&registry);
    let mut c = Cluster::start();
    c.add_agent("node-1");
    let block = node_block(&c, "node-1");
    // Two Wasm pods on one node bind the same port: each in its own namespace.
    c.apply(&wasm_server("wasm-a", "from-a", 2));
    c.apply(&wasm_server("wasm-b", "from-b", 2));
    let (a, b) = (running_with_ip(&c, "wasm-a"), running_with_ip(&c, "wasm-b"));
    let (ip_a, ip_b) = (pod_ip(&a), pod_ip(&b));
    assert_ne!(ip_a, ip_b);
    for (p, ip) in [(&a, &ip_a), (&b, &ip_b)] {
        assert_inside(block, ip);
        assert_eq!(p["status"]["hostIP"], "127.0.0.2", "{p:#}");
    }

    // An OCI pod reaches each by its address; each sidecar reached its own on localhost.
    for (ip, want) in [(&ip_a, "from-a"), (&ip_b, "from-b")] {
        c.apply(&pod("client", &image, "node-1", &client_script(ip)));
        let client = finished(&c, "client");
        let said = logs(&c, "client");
        assert_eq!(client["status"]["phase"], "Succeeded", "{client:#}\n{said}");
        assert_eq!(said, format!("{want}\n"));
        let out = c.skiff(&["delete", "pod", "client", "--grace-period", "0"]);
        assert!(out.status.success(), "{}", text(&out));
        wait_for("the client gone", Duration::from_secs(20), || {
            c.get_json("pod", "client").is_none().then_some(())
        });
    }
    for (name, want) in [("wasm-a", "from-a"), ("wasm-b", "from-b")] {
        let p = finished(&c, name);
        assert_eq!(p["status"]["phase"], "Succeeded", "{p:#}");
        let out = c.skiff(&["logs", name, "-c", "sidecar"]);
        assert_eq!(stdout(&out), format!("{want}\n"), "{}", text(&out));
    }

    // Deleting a Wasm pod frees its address and namespace, as for OCI pods.
    let uid = a["metadata"]["uid"].as_str().expect("uid").to_string();
    let address_file = c.agent(0).data_dir.join("ipam").join(&ip_a);
    let out = c.skiff(&["delete", "pod", "wasm-a"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for("wasm-a's address freed", Duration::from_secs(20), || {
        (!address_file.exists()).then_some(())
    });
    wait_for(
        "wasm-a's namespace removed",
        Duration::from_secs(10),
        || (!std::path::Path::new(&format!("/run/netns/skiff-{uid}")).exists()).then_some(()),
    );
}

#[test]
fn wasm_pods_granted_no_socket_keep_the_node_address() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    let probe = skiff_tests::guests::guest("probe");
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: w\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: file:{}\n    command: [probe]\n    args: [exit, \"0\"]\n",
        probe.display()
    ));
    let p = finished(&c, "w");
    assert_eq!(p["status"]["phase"], "Succeeded", "{p:#}");
    assert_eq!(p["status"]["podIP"], "127.0.0.2", "{p:#}");
    assert_eq!(p["status"]["hostIP"], "127.0.0.2", "{p:#}");
}

#[test]
fn pods_on_two_nodes_in_separate_network_namespaces_reach_each_other() {
    let slot = NetSlot::take();
    // Dropped last (declared first): after the cluster has ended its agents.
    let net = NodeNetwork::new(&slot, 2);
    let registry = Registry::start_on(net.host_address().parse().expect("ip"));
    let image = busybox(&registry);
    let options = ClusterOptions {
        listen: Some(format!("{}:0", net.host_address())),
        agent_env: vec![("SKIFF_INSECURE_REGISTRIES".into(), registry.host())],
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    c.add_agent_at("node-a", net.address(0), Some(net.namespace(0)), &[]);
    c.add_agent_at("node-b", net.address(1), Some(net.namespace(1)), &[]);
    let (block_a, block_b) = (node_block(&c, "node-a"), node_block(&c, "node-b"));
    assert!(!block_a.overlaps(&block_b), "{block_a} {block_b}");

    // Each node routes the other's block via the other's address (host-gw).
    let route_to = |ns: &str, block: Ipv4Cidr, via: &str| {
        let want = format!("{block} via {via} ");
        wait_for(
            &format!("a route {want}in {ns}"),
            Duration::from_secs(20),
            || {
                let out = std::process::Command::new("ip")
                    .args(["-n", ns, "-o", "route", "show", "proto", "77"])
                    .output()
                    .expect("ip route");
                stdout(&out).contains(&want).then_some(())
            },
        );
    };
    route_to(net.namespace(0), block_b, net.address(1));
    route_to(net.namespace(1), block_a, net.address(0));

    let (server, client) = assert_talk(&c, &image, "node-a", "node-b");
    assert_eq!(server["spec"]["nodeName"], "node-b");
    assert_eq!(client["spec"]["nodeName"], "node-a");
    assert_inside(block_b, &pod_ip(&server));
    assert_inside(block_a, &pod_ip(&client));
    assert_eq!(server["status"]["hostIP"], net.address(1), "{server:#}");
}
