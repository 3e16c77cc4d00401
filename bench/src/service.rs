//! `bench/run service`: what the node proxy costs a request, and how fast it follows a change.
//!
//! Three agents, each in a network namespace the bench makes, on one bridge of its own (as the
//! e2e tests run them; nothing leaves the machine). A busybox httpd pod on node-b serves a small
//! page; clients run on threads that enter node-a's namespace (`setns`), a new connection per
//! request (HTTP/1.0), `THREADS` at a time, and take turns path by path, round by round, so that
//! machine noise falls on every path alike:
//!
//! - the pod's address directly (the anchor),
//! - the Service's cluster IP (DNAT in node-a's output hook),
//! - its NodePort on node-b's address (the endpoint's node) and on node-c's (DNAT and
//!   masquerade there, one hop more: the price of a NodePort whose pod is elsewhere).
//!
//! Then: the time from an Endpoints change (`skiff apply` of a new ready address acknowledged)
//! to the first request through the cluster IP answered by the new endpoint, `FLIPS` times.
//!
//! - the ingress router on node-a's address, port 80 (an Ingress whose host-less rule leads to the
//!   Service: the request parsed and forwarded by node-a's router to the pod on node-b; the 0.9x
//!   goal is the node proxy's, the router's row is shown beside it).
//!
//! DNS is measured by `bench/run dns`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use skiff_tests::netns::NodeNetwork;
use skiff_tests::netslot::NetSlot;
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, ClusterOptions, stdout, wait_for};

use crate::client::in_netns;
use crate::stats::{fmt, percentile};

const THREADS: usize = 2;
const ROUNDS: usize = 3;
const SLICE: Duration = Duration::from_secs(2);
const FLIPS: usize = 10;

/// busybox httpd on 8080 answering `NAME`, labelled `app: NAME`.
fn web(name: &str, image: &str, node: &str) -> String {
    let script = format!(
        "mkdir -p /tmp/www && echo {name} > /tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www"
    );
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  nodeSelector:\n    kubernetes.io/hostname: {node}\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, {script:?}]\n"
    )
}

/// One `GET /` on a new connection; the body.
fn get(addr: SocketAddr) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    s.read_to_string(&mut response).map_err(|e| e.to_string())?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .ok_or_else(|| format!("no HTTP answer from {addr}"))
}

/// `THREADS` clients in `ns` on `addr` for `SLICE`: every request's latency, and the errors.
fn load(ns: &str, addr: SocketAddr) -> Result<(Vec<Duration>, usize), String> {
    let deadline = Instant::now() + SLICE;
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            in_netns(ns, move || {
                let (mut samples, mut errors) = (Vec::new(), 0);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match get(addr) {
                        Ok(_) => samples.push(t.elapsed()),
                        Err(_) => errors += 1,
                    }
                }
                Ok((samples, errors))
            })
        })
        .collect();
    let mut all = (Vec::new(), 0);
    for t in threads {
        let (samples, errors) = t.join().map_err(|_| "a client thread panicked")??;
        all.0.extend(samples);
        all.1 += errors;
    }
    Ok(all)
}

/// The paths measured, as `(name, address)`, the anchor first.
fn paths(
    pod: &str,
    cluster_ip: &str,
    node_port: u16,
    net: &NodeNetwork,
) -> Vec<(String, SocketAddr)> {
    let addr = |s: String| {
        s.parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    };
    vec![
        ("pod IP (direct)".into(), addr(format!("{pod}:8080"))),
        ("ClusterIP".into(), addr(format!("{cluster_ip}:80"))),
        (
            "NodePort, endpoint's node".into(),
            addr(format!("{}:{node_port}", net.address(1))),
        ),
        (
            "NodePort, another node".into(),
            addr(format!("{}:{node_port}", net.address(2))),
        ),
        (
            "Ingress, client's node".into(),
            addr(format!("{}:80", net.address(0))),
        ),
    ]
}

/// Address `host` of node `i`'s /24 (`10.239.<slot>.<host>/24`).
fn slot_address(net: &NodeNetwork, i: usize, host: u8) -> String {
    let base = net.address(i);
    let prefix = base.rsplit_once('.').map_or(base, |(p, _)| p);
    format!("{prefix}.{host}/24")
}

fn json_str(c: &Cluster, kind: &str, name: &str, pointer: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = c
            .get_json(kind, name)
            .and_then(|v| {
                v.pointer(pointer)
                    .and_then(|s| s.as_str())
                    .map(str::to_string)
            })
            .filter(|s| !s.is_empty());
        match found {
            Some(value) => return Ok(value),
            None if Instant::now() > deadline => {
                return Err(format!("{kind}/{name} has no {pointer}"));
            }
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

pub fn run() -> Result<(), String> {
    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 3);
    let registry = Registry::start_on(
        net.host_address()
            .parse()
            .map_err(|e| format!("bridge address: {e}"))?,
    );
    let image = registry.push_busybox();
    let options = ClusterOptions {
        listen: Some(format!("{}:0", net.host_address())),
        agent_env: vec![("SKIFF_INSECURE_REGISTRIES".into(), registry.host())],
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    for (i, name) in ["node-a", "node-b", "node-c"].iter().enumerate() {
        c.add_agent_at(name, net.address(i), Some(net.namespace(i)), &[]);
    }
    for i in 0..3 {
        wait_for("the pod network routes", Duration::from_secs(30), || {
            let out = Command::new("ip")
                .args(["-n", net.namespace(i), "-o", "route", "show", "proto", "77"])
                .output()
                .ok()?;
            (stdout(&out).lines().count() == 2).then_some(())
        });
    }
    // Tens of thousands of connections from one client: a client port comes back while the pod
    // still holds that port's last connection in TIME-WAIT, and a SYN whose sequence number (and
    // timestamp) the client drew for another destination address is refused there and waits 1 s
    // for its retransmission. The pod address and a NodePort of the pod's own node (not
    // masqueraded) reach the pod from the same client address and ports: the client's namespace
    // gets the widest port range, and a second address for what it sends to node-b's address,
    // so that the two paths do not reuse each other's TIME-WAITs. The bench's artifact, not a
    // path's cost.
    let extra = slot_address(&net, 0, 100);
    for args in [
        vec![
            "netns",
            "exec",
            net.namespace(0),
            "sysctl",
            "-qw",
            "net.ipv4.ip_local_port_range=1024 65000",
        ],
        vec!["-n", net.namespace(0), "addr", "add", &extra, "dev", "eth0"],
        vec![
            "-n",
            net.namespace(0),
            "route",
            "replace",
            net.address(1),
            "dev",
            "eth0",
            "src",
            extra.split('/').next().unwrap_or_default(),
        ],
    ] {
        let status = Command::new("ip")
            .args(&args)
            .status()
            .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
        if !status.success() {
            return Err(format!("ip {}: {status}", args.join(" ")));
        }
    }
    c.apply(&web("web-1", &image, "node-b"));
    c.apply(&web("web-2", &image, "node-c"));
    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: NodePort\n  selector: {app: web-1}\n  ports:\n  - {port: 80, targetPort: 8080}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: flip}\nspec:\n  ports:\n  - {port: 80, targetPort: 8080}\n",
    );
    c.apply(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec:\n  rules:\n  - http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n",
    );
    let pod_ip = |name: &str| {
        wait_for(&format!("{name} running"), Duration::from_secs(90), || {
            c.get_json("pod", name)
                .filter(|p| p["status"]["phase"] == "Running")
                .and_then(|p| p["status"]["podIP"].as_str().map(str::to_string))
                .filter(|ip| !ip.is_empty())
        })
    };
    let (ip_1, ip_2) = (pod_ip("web-1"), pod_ip("web-2"));
    c.apply(&format!(
        "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: flip}}\nsubsets:\n- addresses: [{{ip: {ip_1}}}]\n  ports: [{{port: 8080}}]\n"
    ));
    let cluster_ip = json_str(&c, "service", "web", "/spec/clusterIP")?;
    let node_port = c
        .get_json("service", "web")
        .and_then(|s| s["spec"]["ports"][0]["nodePort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .ok_or("service/web has no nodePort")?;
    let paths = paths(&ip_1, &cluster_ip, node_port, &net);
    let ns = net.namespace(0).to_string();
    for (name, addr) in &paths {
        let addr = *addr;
        let ok = in_netns(&ns, move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match get(addr) {
                    Ok(body) if body == "web-1" => return Ok(()),
                    other if Instant::now() > deadline => {
                        return Err(format!("{addr}: {other:?}"));
                    }
                    _ => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ok.join()
            .map_err(|_| "thread panicked")?
            .map_err(|e| format!("{name}: {e}"))?;
    }

    let mut results: Vec<(Vec<Duration>, usize)> = vec![(Vec::new(), 0); paths.len()];
    for _ in 0..ROUNDS {
        for (i, (_, addr)) in paths.iter().enumerate() {
            let (samples, errors) = load(&ns, *addr)?;
            results[i].0.extend(samples);
            results[i].1 += errors;
        }
    }
    println!("## service\n");
    println!(
        "{THREADS} clients in node-a's namespace, a new connection per request, {ROUNDS} rounds of {SLICE:?} per path, busybox httpd on node-b.\n"
    );
    println!(
        "| path | requests/s | p50 | p99 | max | errors | requests/s vs direct | direct's p50 / p50 |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let seconds = (ROUNDS as f64) * SLICE.as_secs_f64();
    let rate = |samples: &Vec<Duration>| samples.len() as f64 / seconds;
    let direct = rate(&results[0].0);
    let mut direct_p50 = results[0].0.clone();
    direct_p50.sort();
    let direct_p50 = percentile(&direct_p50, 0.5).as_secs_f64();
    let mut summary = Vec::new();
    for ((name, _), (samples, errors)) in paths.iter().zip(results.iter_mut()) {
        samples.sort();
        if samples.is_empty() {
            return Err(format!("{name}: no request answered"));
        }
        let r = rate(samples);
        let p50 = percentile(samples, 0.5);
        // Requests/s swing with the machine's other work; the median latency much less.
        let by_latency = direct_p50 / p50.as_secs_f64();
        println!(
            "| {name} | {r:.0} | {} | {} | {} | {errors} | {:.2}x | {by_latency:.2}x |",
            fmt(p50),
            fmt(percentile(samples, 0.99)),
            fmt(samples[samples.len() - 1]),
            r / direct
        );
        summary.push(format!(
            "{name} {:.2}x ({by_latency:.2}x by p50)",
            r / direct
        ));
    }

    // Endpoints change → traffic follows.
    let flip_ip = json_str(&c, "service", "flip", "/spec/clusterIP")?;
    let flip: SocketAddr = format!("{flip_ip}:80")
        .parse()
        .map_err(|e| format!("flip address: {e}"))?;
    let config = c.config_path();
    let skiff = skiff_tests::skiff_bin();
    let (a, b) = (ip_1.clone(), ip_2.clone());
    let followed = in_netns(&ns, move || {
        let mut samples = Vec::new();
        for i in 0..FLIPS {
            let (ip, want) = if i % 2 == 0 {
                (&b, "web-2")
            } else {
                (&a, "web-1")
            };
            let yaml = format!(
                "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: flip}}\nsubsets:\n- addresses: [{{ip: {ip}}}]\n  ports: [{{port: 8080}}]\n"
            );
            let mut child = Command::new(&skiff)
                .arg("--config")
                .arg(&config)
                .args(["apply", "-f", "-"])
                .env_remove("SKIFF_CONFIG")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .map_err(|e| format!("skiff apply: {e}"))?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin
                    .write_all(yaml.as_bytes())
                    .map_err(|e| e.to_string())?;
            }
            let status = child.wait().map_err(|e| e.to_string())?;
            if !status.success() {
                return Err(format!("skiff apply of the Endpoints: {status}"));
            }
            let t = Instant::now();
            loop {
                if get(flip).is_ok_and(|body| body == want) {
                    samples.push(t.elapsed());
                    break;
                }
                if t.elapsed() > Duration::from_secs(10) {
                    return Err(format!("traffic did not follow to {want} in 10 s"));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(samples)
    });
    let mut samples = followed.join().map_err(|_| "thread panicked")??;
    samples.sort();
    println!(
        "\n| Endpoints change → traffic follows | n | p50 | p99 | max |\n| --- | ---: | ---: | ---: | ---: |"
    );
    println!(
        "| `skiff apply` acknowledged → first answer from the new endpoint through the cluster IP | {} | {} | {} | {} |",
        samples.len(),
        fmt(percentile(&samples, 0.5)),
        fmt(percentile(&samples, 0.99)),
        fmt(samples[samples.len() - 1])
    );
    let (proxy, ingress) = summary[1..].split_at(3);
    println!(
        "\nservice: {} (goal >= 0.9x), {}; Endpoints change followed in p99 {} (goal < 1 s)",
        proxy.join(", "),
        ingress.join(", "),
        fmt(percentile(&samples, 0.99))
    );
    drop(c);
    drop(registry);
    drop(net);
    Ok(())
}
