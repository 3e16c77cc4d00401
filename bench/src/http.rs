//! `bench/run http`: requests per second and latency of one wasi:http component, the hello
//! function of `examples/hello-http`, served by skiff and by `wasmtime serve`: same machine, same
//! load generator, same run.
//!
//! - skiff: one agent in a network namespace the bench makes, the function as a one-replica
//!   Deployment behind a Service (default settings: 30 s timeout, no concurrency cap). Clients in
//!   the node's namespace send to the Service's cluster IP: the node proxy's DNAT, the pod's veth,
//!   the shim's HTTP server, a fresh instance per request.
//! - anchor: `wasmtime serve` (48.0.8, which `bench/run` installs with cargo when missing; its
//!   default options) on 127.0.0.1 in the same namespace: an instance per request as well, no
//!   proxy hop, no veth.
//!
//! Load: `CONNS` keep-alive HTTP/1.1 connections, a thread each, each sending `GET /` and
//! reading the whole response before the next. The servers take turns, `ROUNDS` rounds of
//! `SLICE` each, so that machine noise falls on both alike.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_tests::netns::NodeNetwork;
use skiff_tests::netslot::NetSlot;
use skiff_tests::{Cluster, ClusterOptions, wait_for};

use crate::client::{Conn, in_netns};
use crate::stats::{fmt, percentile};

const CONNS: usize = 4;
const ROUNDS: usize = 3;
const SLICE: Duration = Duration::from_secs(4);
/// `wasmtime serve`'s port inside the node's namespace.
const ANCHOR_PORT: u16 = 18080;

fn manifest(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: hello}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: hello}}}}\n  template:\n    metadata: {{labels: {{app: hello}}}}\n    spec:\n      runtimeClassName: wasm\n      containers:\n      - name: hello\n        image: {image}\n        ports: [{{containerPort: 8080}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: hello}}\nspec:\n  selector: {{app: hello}}\n  ports: [{{port: 80, targetPort: 8080}}]\n"
    )
}

/// Latencies of every request answered 200 by `addr` over `CONNS` connections for `SLICE`, and
/// the count of failed ones.
fn load(ns: &str, addr: SocketAddr) -> Result<(Vec<Duration>, usize), String> {
    let deadline = Instant::now() + SLICE;
    let threads: Vec<_> = (0..CONNS)
        .map(|_| {
            in_netns(ns, move || {
                let (mut samples, mut errors) = (Vec::with_capacity(1 << 16), 0);
                let mut conn = Conn::open(addr, "/")?;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match conn.get() {
                        Ok(200) => samples.push(t.elapsed()),
                        Ok(_) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            conn = Conn::open(addr, "/")?;
                        }
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

/// `wasmtime serve` of `component` on 127.0.0.1:ANCHOR_PORT in namespace `ns`.
struct Anchor(Child);

impl Anchor {
    fn start(ns: &str, component: &std::path::Path) -> Result<Self, String> {
        let version = Command::new("wasmtime")
            .arg("--version")
            .output()
            .map_err(|e| {
                format!(
                    "wasmtime is not installed ({e}): cargo install wasmtime-cli@48.0.8 --locked"
                )
            })?;
        println!(
            "anchor: {}",
            String::from_utf8_lossy(&version.stdout).trim()
        );
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(["--", "wasmtime", "serve", "--addr"])
            .arg(format!("127.0.0.1:{ANCHOR_PORT}"))
            .arg(component)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting wasmtime serve: {e}"))?;
        Ok(Anchor(child))
    }
}

impl Drop for Anchor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `addr` answers `GET /` with 200 from namespace `ns`.
fn wait_serving(ns: &str, addr: SocketAddr, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = in_netns(ns, move || Conn::open(addr, "/")?.get())
            .join()
            .map_err(|_| "a client thread panicked")?;
        match ok {
            Ok(200) => return Ok(()),
            other if Instant::now() > deadline => {
                return Err(format!("{what} at {addr} does not answer 200: {other:?}"));
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

pub fn run() -> Result<(), String> {
    let component = skiff_tests::guests::hello_http();
    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 1);
    let options = ClusterOptions {
        listen: Some(format!("{}:0", net.host_address())),
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    c.add_agent_at("node-a", net.address(0), Some(net.namespace(0)), &[]);
    c.apply(&manifest(&format!("file:{}", component.display())));
    let cluster_ip = wait_for(
        "service/hello's cluster IP",
        Duration::from_secs(30),
        || {
            c.get_json("service", "hello")
                .and_then(|s| s["spec"]["clusterIP"].as_str().map(str::to_string))
                .filter(|ip| !ip.is_empty())
        },
    );
    let ns = net.namespace(0).to_string();
    let paths: [(&str, SocketAddr); 2] = [
        (
            "skiff, Service cluster IP",
            format!("{cluster_ip}:80")
                .parse()
                .map_err(|e| format!("cluster IP {cluster_ip}: {e}"))?,
        ),
        (
            "anchor: wasmtime serve",
            SocketAddr::from(([127, 0, 0, 1], ANCHOR_PORT)),
        ),
    ];
    let _anchor = Anchor::start(&ns, &component)?;
    for (name, addr) in paths {
        wait_serving(&ns, addr, name)?;
    }

    println!("## http\n");
    println!(
        "{CONNS} keep-alive connections, `GET /` of examples/hello-http; {ROUNDS} rounds of {} s per server, taking turns\n",
        SLICE.as_secs()
    );
    let mut results: Vec<(Vec<Duration>, usize)> = vec![(Vec::new(), 0); paths.len()];
    for round in 0..=ROUNDS {
        for (i, (_, addr)) in paths.iter().enumerate() {
            let (samples, errors) = load(&ns, *addr)?;
            if round > 0 {
                // Round 0 warms both up (compiled code, caches, connections).
                results[i].0.extend(samples);
                results[i].1 += errors;
            }
        }
    }

    println!("| server | requests | req/s | p50 | p99 | failed |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let measured = SLICE.as_secs_f64() * ROUNDS as f64;
    let mut rates = Vec::new();
    let mut p99s = Vec::new();
    for ((name, _), (samples, errors)) in paths.iter().zip(results.iter_mut()) {
        samples.sort();
        if samples.is_empty() {
            return Err(format!("{name}: no request answered"));
        }
        let rate = samples.len() as f64 / measured;
        let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
        println!(
            "| {name} | {} | {rate:.0} | {} | {} | {errors} |",
            samples.len(),
            fmt(p50),
            fmt(p99)
        );
        rates.push(rate);
        p99s.push(p99);
    }
    drop(c);
    println!(
        "\nhttp: {:.0} req/s through a Service, p99 {} ({:.2}x wasmtime serve's {:.0} req/s, p99 {})",
        rates[0],
        fmt(p99s[0]),
        rates[0] / rates[1],
        rates[1],
        fmt(p99s[1])
    );
    Ok(())
}
