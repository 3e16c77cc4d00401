//! The node proxy end to end, on three agents that each run in a network namespace the test
//! made, all on one test-made link (traffic only goes to addresses inside those namespaces and
//! the test's bridge).
//!
//! - An OCI busybox pod reaches a Service's cluster IP (HTTP from busybox httpd on another node),
//!   a pod on the same bridge as the endpoint too (hairpin), the node itself, and a Wasm pod
//!   granted sockets (the `net` guest); a NodePort answers on every node's address while its one
//!   pod runs on one node.
//! - An unallocated address of the service CIDR and an unknown pod address are refused at once
//!   (`No route to host`), from the node and from a pod.
//! - The agent is killed and started again: the NodePort keeps answering meanwhile (the table
//!   stays), and a Service made after the restart is served.
//! - A UDP Service answers (a static C echo server in a busybox image), and a UDP flow that keeps
//!   sending follows a change of its Endpoints; `sessionAffinity:
//!   ClientIP` sticks; hand-written Endpoints: `notReadyAddresses` get no traffic, and traffic
//!   follows a change of the ready address, and a removal, within a bound.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::netns::NodeNetwork;
use skiff_tests::netslot::NetSlot;
use skiff_tests::registry::{Compress, Registry};
use skiff_tests::{Cluster, ClusterOptions, stdout, text, wait_for};

/// A UDP echo server (`udp serve PORT TEXT`: answers every datagram with TEXT) and client (`udp
/// ask IP PORT`: prints the first answer, asking again every 0.5 s, 40 times).
const UDP_C: &str = r#"
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: udp serve PORT TEXT | udp ask IP PORT\n"); return 2; }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a; memset(&a, 0, sizeof a); a.sin_family = AF_INET;
    char buf[512];
    if (strcmp(argv[1], "serve") == 0) {
        a.sin_port = htons(atoi(argv[2])); a.sin_addr.s_addr = htonl(INADDR_ANY);
        if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind"); return 1; }
        printf("serving\n"); fflush(stdout);
        for (;;) {
            struct sockaddr_in p; socklen_t l = sizeof p;
            if (recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&p, &l) < 0) continue;
            sendto(s, argv[3], strlen(argv[3]), 0, (struct sockaddr *)&p, l);
        }
    }
    a.sin_port = htons(atoi(argv[3])); inet_pton(AF_INET, argv[2], &a.sin_addr);
    struct timeval tv = {0, 500000}; setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (int i = 0; i < 40; i++) {
        sendto(s, "ping", 4, 0, (struct sockaddr *)&a, sizeof a);
        ssize_t n = recv(s, buf, sizeof buf - 1, 0);
        if (n > 0) { buf[n] = 0; printf("%s\n", buf); return 0; }
    }
    fprintf(stderr, "ask: no answer\n");
    return 1;
}
"#;

/// Three nodes, each agent in its own namespace, a registry on the test's bridge address.
struct Nodes {
    // Dropped in this order: the cluster (its agents) before the namespaces they live in.
    c: Cluster,
    net: NodeNetwork,
    registry: Registry,
    image: String,
}

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];

fn three_nodes() -> Nodes {
    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 3);
    let registry = Registry::start_on(net.host_address().parse().expect("ip"));
    let image = registry.push_busybox();
    let options = ClusterOptions {
        listen: Some(format!("{}:0", net.host_address())),
        agent_env: vec![("SKIFF_INSECURE_REGISTRIES".into(), registry.host())],
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    for (i, name) in NODES.iter().enumerate() {
        c.add_agent_at(name, net.address(i), Some(net.namespace(i)), &[]);
    }
    // Every node routes the others' blocks before pods talk across them.
    for (i, node) in NODES.iter().enumerate() {
        wait_for(
            &format!("{node} routes the two other blocks"),
            Duration::from_secs(30),
            || {
                let routes = stdout(
                    &Command::new("ip")
                        .args(["-n", net.namespace(i), "-o", "route", "show", "proto", "77"])
                        .output()
                        .expect("ip route"),
                );
                (routes.lines().count() == 2).then_some(())
            },
        );
    }
    Nodes {
        c,
        net,
        registry,
        image,
    }
}

/// A busybox pod on `node` running `script`, labelled `app: LABEL`.
fn pod(name: &str, image: &str, node: &str, label: &str, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {label}}}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  nodeSelector:\n    kubernetes.io/hostname: {node}\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, {script:?}]\n"
    )
}

/// busybox httpd on 8080 answering `NAME`, and a TCP banner `banner-NAME` on 9000.
fn web(name: &str, image: &str, node: &str) -> String {
    let script = format!(
        "mkdir -p /tmp/www && echo {name} > /tmp/www/index.html && busybox httpd -p 8080 -h /tmp/www && exec busybox nc -ll -p 9000 -e echo banner-{name}"
    );
    pod(name, image, node, "web", &script)
}

fn running(c: &Cluster, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let p = c.get_json("pod", name);
        if let Some(p) = p.as_ref().filter(|p| p["status"]["phase"] == "Running") {
            return p.clone();
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = (0..c.agent_count())
                .map(|i| {
                    let log = c.agent(i).log();
                    let tail: Vec<&str> = log.lines().rev().take(30).collect();
                    format!(
                        "--- {}\n{}",
                        c.agent(i).name,
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    )
                })
                .collect();
            panic!("pod {name} not Running: {p:#?}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn finished(c: &Cluster, name: &str) -> Value {
    wait_for(
        &format!("pod {name} to finish"),
        Duration::from_secs(90),
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

/// Runs pod `name` to its end; its log.
fn run_pod(c: &Cluster, name: &str, yaml: &str) -> String {
    c.apply(yaml);
    let p = finished(c, name);
    let log = logs(c, name);
    assert_eq!(p["status"]["phase"], "Succeeded", "{name}: {p:#}\n{log}");
    log
}

fn cluster_ip(c: &Cluster, service: &str) -> String {
    let s = wait_for(
        &format!("service {service} to get a cluster IP"),
        Duration::from_secs(10),
        || c.get_json("service", service),
    );
    s["spec"]["clusterIP"]
        .as_str()
        .expect("clusterIP")
        .to_string()
}

fn node_port(c: &Cluster, service: &str, index: usize) -> u16 {
    let s = c.get_json("service", service).expect("service");
    let port = s["spec"]["ports"][index]["nodePort"]
        .as_u64()
        .expect("nodePort");
    u16::try_from(port).expect("a port")
}

/// Waits until Endpoints `name` lists `count` ready addresses.
fn ready_endpoints(c: &Cluster, name: &str, count: usize) {
    wait_for(
        &format!("endpoints {name} with {count} ready addresses"),
        Duration::from_secs(60),
        || {
            let e = c.get_json("endpoints", name)?;
            let n: usize = e["subsets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| s["addresses"].as_array().map_or(0, Vec::len))
                .sum();
            (n == count).then_some(())
        },
    );
}

/// `GET /` over HTTP/1.0 to `addr`; the body, or the error.
fn http_get(addr: &str) -> Result<String, String> {
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    s.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .ok_or_else(|| format!("no HTTP response: {response:?}"))?;
    Ok(body)
}

/// `http_get`, retried for a while (rules and pods settling).
fn http_get_eventually(addr: &str, want: &str) {
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match http_get(addr) {
            Ok(body) if body == want => return,
            Ok(body) => last = format!("answered {body:?}"),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("GET {addr}: wanted {want:?}, last: {last}");
}

/// Runs `args` inside node namespace `ns`; (success, stdout + stderr).
fn in_node(ns: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("ip netns exec");
    (
        out.status.success(),
        format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr)),
    )
}

/// An address of the service CIDR no Service of the cluster holds.
fn unallocated_service_ip(c: &Cluster) -> String {
    let cidr: skiff_api::cidr::Ipv4Cidr = c.service_cidr().parse().expect("service CIDR");
    let out = c.skiff(&["get", "services", "-A", "-o", "json"]);
    let taken = stdout(&out);
    (1..cidr.size() - 1)
        .rev()
        .filter_map(|i| cidr.nth(i))
        .map(|ip| ip.to_string())
        .find(|ip| !taken.contains(&format!("\"{ip}\"")))
        .expect("a free address")
}

#[test]
fn services_reach_ready_endpoints_from_pods_nodes_and_every_node_port() {
    let Nodes {
        mut c,
        net,
        image,
        registry: _registry,
    } = three_nodes();
    c.apply(&web("web-1", &image, "node-b"));
    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80, targetPort: 8080}\n  - {name: banner, port: 9000, targetPort: 9000}\n",
    );
    running(&c, "web-1");
    ready_endpoints(&c, "web", 1);
    let ip = cluster_ip(&c, "web");
    // busybox wget looks the scheme's port up through glibc's NSS, which a static busybox in
    // a bare image cannot load: HTTP by hand over nc.
    let fetch = format!(
        "for i in $(busybox seq 1 60); do out=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 2 {ip} 80) && [ -n \"$out\" ] && echo \"$out\" | busybox tail -n 1 && exit 0; busybox sleep 0.25; done; exit 1"
    );

    // From an OCI pod on another node, and from one on the endpoint's own bridge (hairpin).
    for (name, node) in [("client-a", "node-a"), ("client-b", "node-b")] {
        let log = run_pod(&c, name, &pod(name, &image, node, "client", &fetch));
        assert_eq!(log, "web-1\n", "{name} on {node}");
    }
    // From a Wasm pod granted sockets, on the third node.
    let net_guest = skiff_tests::guests::socket_component("net");
    let wasm = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: wasm-client\n  annotations:\n    skiff.dev/allow-outbound: \"true\"\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  nodeSelector:\n    kubernetes.io/hostname: node-c\n  containers:\n  - name: main\n    image: file:{}\n    command: [net, fetch, {ip}, \"9000\", \"40\"]\n",
        net_guest.display()
    );
    assert_eq!(run_pod(&c, "wasm-client", &wasm), "banner-web-1\n");
    // From each node itself (the output hook).
    for (i, node) in NODES.iter().enumerate() {
        let get = format!(
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 {ip} 80 | busybox tail -n 1"
        );
        let (ok, said) = in_node(net.namespace(i), &["sh", "-c", &get]);
        assert!(ok && said == "web-1\n", "{node}: {said}");
    }
    // The NodePort answers on every node's address; its only endpoint is on node-b.
    let port = node_port(&c, "web", 0);
    for i in 0..3 {
        http_get_eventually(&format!("{}:{port}", net.address(i)), "web-1");
    }

    // Addresses that nothing serves fail at once instead of leaving the node.
    let free = unallocated_service_ip(&c);
    let cluster: skiff_api::cidr::Ipv4Cidr = c.cluster_cidr().parse().expect("cluster CIDR");
    let nobody = cluster
        .nth(cluster.size() - 2)
        .expect("an address")
        .to_string();
    for target in [&free, &nobody] {
        let started = Instant::now();
        let (ok, said) = in_node(
            net.namespace(0),
            &["busybox", "nc", "-w", "5", target, "80"],
        );
        assert!(!ok && said.contains("No route to host"), "{target}: {said}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "refused, not timed out: {target} took {:?}",
            started.elapsed()
        );
    }
    let probe = format!(
        "busybox nc -w 5 {free} 80 </dev/null; echo rc=$?; busybox nc -w 5 {nobody} 80 </dev/null; echo rc=$?"
    );
    let out = run_pod(
        &c,
        "unreachable",
        &pod("unreachable", &image, "node-a", "client", &probe),
    );
    assert_eq!(
        out.matches("No route to host").count(),
        2,
        "a pod is refused too: {out}"
    );

    // The agent of node-a dies: its rules stay, the NodePort keeps answering on its address.
    c.kill_agent(0);
    for _ in 0..5 {
        assert_eq!(
            http_get(&format!("{}:{port}", net.address(0))).as_deref(),
            Ok("web-1"),
            "while node-a's agent is down"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.start_agent(0);
    assert_eq!(
        http_get(&format!("{}:{port}", net.address(0))).as_deref(),
        Ok("web-1"),
        "after node-a's agent is back"
    );
    // The restarted agent follows changes again.
    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: later}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports:\n  - {port: 8000, targetPort: 8080}\n",
    );
    ready_endpoints(&c, "later", 1);
    let later = node_port(&c, "later", 0);
    http_get_eventually(&format!("{}:{later}", net.address(0)), "web-1");
    let log = c.agent(0).log();
    assert!(!log.contains("node proxy sync; retrying"), "{log}");
}

/// busybox with `/bin/udp` (the static C program [`UDP_C`]), pushed to `registry`.
fn busybox_with_udp(registry: &Registry, dir: &std::path::Path) -> String {
    let source = dir.join("udp.c");
    std::fs::write(&source, UDP_C).expect("udp.c");
    let binary = dir.join("udp");
    let out = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("gcc");
    assert!(out.status.success(), "gcc: {}", text(&out));
    let bytes = std::fs::read(&binary).expect("udp binary");
    let mut layer = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o755);
    header.set_size(bytes.len() as u64);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    layer
        .append_data(&mut header, "bin/udp", &bytes[..])
        .expect("udp layer");
    let layer = layer.into_inner().expect("udp layer");
    let base = skiff_tests::images::busybox_rootfs().expect("busybox rootfs");
    let config = serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["/bin/sh"],
        "WorkingDir": "/",
    });
    registry
        .push_layer_tars_as("busybox-udp", "v1", &[base, layer], config, Compress::Gzip)
        .reference
}

/// Endpoints `name` by hand: `ready` and `not_ready` pod addresses, port `port`.
fn endpoints(name: &str, ready: &[&str], not_ready: &[&str], port: u16) -> String {
    let list = |ips: &[&str]| {
        let items: Vec<String> = ips.iter().map(|ip| format!("{{ip: {ip}}}")).collect();
        format!("[{}]", items.join(", "))
    };
    format!(
        "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: {name}}}\nsubsets:\n- addresses: {}\n  notReadyAddresses: {}\n  ports: [{{port: {port}}}]\n",
        list(ready),
        list(not_ready)
    )
}

fn pod_ip(c: &Cluster, name: &str) -> String {
    let p = wait_for(
        &format!("pod {name} with an address"),
        Duration::from_secs(60),
        || {
            c.get_json("pod", name).filter(|p| {
                p["status"]["phase"] == "Running"
                    && p["status"]["podIP"].as_str().is_some_and(|i| !i.is_empty())
            })
        },
    );
    p["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// What `n` GETs of `addr` answered.
fn answers(addr: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| http_get(addr).unwrap_or_else(|e| format!("error: {e}")))
        .collect()
}

#[test]
fn udp_affinity_and_endpoint_changes_are_followed() {
    let Nodes {
        c,
        net,
        registry,
        image,
    } = three_nodes();
    let dir = tempfile::tempdir().expect("tempdir");
    let udp_image = busybox_with_udp(&registry, dir.path());
    for (name, node) in [("web-1", "node-b"), ("web-2", "node-c")] {
        c.apply(&web(name, &image, node));
    }
    c.apply(&pod(
        "echo",
        &udp_image,
        "node-c",
        "echo",
        "exec /bin/udp serve 5353 udp-from-echo",
    ));
    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: dns}\nspec:\n  type: NodePort\n  selector: {app: echo}\n  ports:\n  - {port: 53, targetPort: 5353, protocol: UDP}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: sticky}\nspec:\n  type: NodePort\n  selector: {app: web}\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}\n  ports:\n  - {port: 80, targetPort: 8080}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: manual}\nspec:\n  type: NodePort\n  ports:\n  - {port: 80, targetPort: 8080}\n",
    );
    running(&c, "echo");
    let (ip_1, ip_2) = (pod_ip(&c, "web-1"), pod_ip(&c, "web-2"));
    ready_endpoints(&c, "sticky", 2);
    ready_endpoints(&c, "dns", 1);

    // UDP: through the cluster IP from a node, and through the NodePort from outside.
    let dns_ip = cluster_ip(&c, "dns");
    let udp_client = dir.path().join("udp");
    let client = udp_client.to_string_lossy().into_owned();
    let (ok, said) = in_node(net.namespace(0), &[&client, "ask", &dns_ip, "53"]);
    assert!(
        ok && said == "udp-from-echo\n",
        "UDP via the cluster IP: {said}"
    );
    let socket = UdpSocket::bind(format!("{}:0", net.host_address())).expect("udp socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let dns_port = node_port(&c, "dns", 0);
    let answer = (0..40).find_map(|_| {
        socket
            .send_to(b"ping", format!("{}:{dns_port}", net.address(1)))
            .ok()?;
        let mut buf = [0u8; 64];
        let n = socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    });
    assert_eq!(
        answer.as_deref(),
        Some("udp-from-echo"),
        "UDP via the NodePort"
    );

    // A UDP flow that keeps sending follows its Service's Endpoints: from none (its first
    // packets found no rule) to echo, then to echo-2 (the agent deletes its conntrack entries,
    // else it would stay where it first went as long as it is busy).
    c.apply(&pod(
        "echo-2",
        &udp_image,
        "node-b",
        "echo-2",
        "exec /bin/udp serve 5353 udp-from-echo-2",
    ));
    let (echo_1, echo_2) = (pod_ip(&c, "echo"), pod_ip(&c, "echo-2"));
    let udp_endpoints = |ip: &str| {
        format!(
            "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: udp-manual}}\nsubsets:\n- addresses: [{{ip: {ip}}}]\n  ports: [{{port: 5353, protocol: UDP}}]\n"
        )
    };
    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: udp-manual}\nspec:\n  type: NodePort\n  ports:\n  - {port: 53, targetPort: 5353, protocol: UDP}\n",
    );
    c.apply(&udp_endpoints(&echo_1));
    let flow = UdpSocket::bind(format!("{}:0", net.host_address())).expect("udp socket");
    flow.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let target = format!("{}:{}", net.address(2), node_port(&c, "udp-manual", 0));
    let ask = || -> Option<String> {
        flow.send_to(b"ping", &target).ok()?;
        let mut buf = [0u8; 64];
        let n = flow.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    wait_for(
        "the UDP flow to reach echo",
        Duration::from_secs(20),
        || (ask().as_deref() == Some("udp-from-echo")).then_some(()),
    );
    c.apply(&udp_endpoints(&echo_2));
    wait_for(
        "the same UDP flow to follow the Endpoints to echo-2",
        Duration::from_secs(10),
        || (ask().as_deref() == Some("udp-from-echo-2")).then_some(()),
    );

    // ClientIP affinity: one client, one endpoint, every time.
    let sticky = format!("{}:{}", net.address(0), node_port(&c, "sticky", 0));
    wait_for(
        "the sticky Service to answer",
        Duration::from_secs(20),
        || http_get(&sticky).ok(),
    );
    let seen = answers(&sticky, 20);
    assert!(
        seen.iter().all(|a| *a == seen[0]) && seen[0].starts_with("web-"),
        "{seen:?}"
    );

    // Hand-written Endpoints: the not-ready address gets nothing.
    let manual = format!("{}:{}", net.address(2), node_port(&c, "manual", 0));
    c.apply(&endpoints("manual", &[&ip_1], &[&ip_2], 8080));
    http_get_eventually(&manual, "web-1");
    let seen = answers(&manual, 20);
    assert!(seen.iter().all(|a| a == "web-1"), "{seen:?}");
    // The ready one changes: traffic follows.
    let changed = Instant::now();
    c.apply(&endpoints("manual", &[&ip_2], &[&ip_1], 8080));
    http_get_eventually(&manual, "web-2");
    eprintln!(
        "traffic followed an Endpoints change in {:?}",
        changed.elapsed()
    );
    let seen = answers(&manual, 20);
    assert!(seen.iter().all(|a| a == "web-2"), "{seen:?}");
    // No ready address: refused.
    c.apply(&endpoints("manual", &[], &[&ip_1, &ip_2], 8080));
    wait_for(
        "the emptied Service to refuse",
        Duration::from_secs(10),
        || http_get(&manual).is_err().then_some(()),
    );
    let seen = answers(&manual, 5);
    assert!(seen.iter().all(|a| a.starts_with("error")), "{seen:?}");
}
