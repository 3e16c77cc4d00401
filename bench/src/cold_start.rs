//! `bench/run cold-start`: zero replicas → the first response byte through the Service, the
//! client's figure.
//!
//! One agent in a network namespace the bench makes (nothing leaves the machine); the client is a
//! thread inside that namespace connecting to the Service's cluster IP.
//!
//! - Function path (skiff's scale from zero): a wasi:http function (the `http` test guest, a
//!   fresh instance per request) under a HorizontalPodAutoscaler with `minReplicas: 0`, at zero
//!   replicas, its module already compiled and cached on the node (one warm-up try first). Each
//!   try connects, the node proxy holds the connection, the holder wakes the Deployment (one RPC),
//!   the ReplicaSet's pod is created, scheduled and started, and once it accepts (its endpoint in
//!   the node's catalog, or, sooner, the pod on this very node) the connection is spliced to it:
//!   timed from connect to the first byte of the response.
//!   The bench then scales the Deployment back to 0 and waits for its pod and endpoint to go.
//! - Anchor: the same Service path with an OCI busybox httpd Deployment (an OCI template may not
//!   scale from zero, so nothing holds the connection): timed from `skiff scale --replicas 1`'s
//!   request to the first byte of an answer through the cluster IP (the client connects again
//!   every millisecond while it is refused).
//!
//! `TRIES` timed tries of each, after one warm-up each; the goal is a function p50 ≤ 20 ms.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use skiff_tests::netns::NodeNetwork;
use skiff_tests::netslot::NetSlot;
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, ClusterOptions, text};

use crate::client::in_netns;
use crate::stats::{fmt, percentile};

const TRIES: usize = 30;
const GOAL: Duration = Duration::from_millis(20);

/// Connects once and reads the first byte (sending `request` first, if any).
fn first_byte(addr: SocketAddr, request: &[u8]) -> Result<(), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(40)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(40)))
        .map_err(|e| e.to_string())?;
    if !request.is_empty() {
        s.write_all(request).map_err(|e| e.to_string())?;
    }
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Ok(1) => Ok(()),
        Ok(_) => Err("closed before a byte".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn deployment(name: &str, template: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 0\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      terminationGracePeriodSeconds: 0\n{template}---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: {name}}}\n  ports:\n  - {{port: 80, targetPort: 8080}}\n"
    )
}

fn scale(c: &Cluster, name: &str, replicas: u32) -> Result<(), String> {
    let out = c.skiff(&[
        "scale",
        &format!("deployment/{name}"),
        "--replicas",
        &replicas.to_string(),
    ]);
    if out.status.success() {
        Ok(())
    } else {
        Err(text(&out))
    }
}

/// Waits until `name` has no pod and its Endpoints no address (and the proxy's next sync).
fn drained(c: &Cluster, name: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pods = c.skiff(&["get", "pods", "-l", &format!("app={name}"), "-o", "name"]);
        let no_pods = pods.status.success() && pods.stdout.is_empty();
        let no_endpoints = c
            .get_json("endpoints", name)
            .is_none_or(|e| e["subsets"].as_array().is_none_or(|s| s.is_empty()));
        if no_pods && no_endpoints {
            // The proxy renders the change within its minimum sync period (100 ms).
            std::thread::sleep(Duration::from_millis(300));
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{name} did not drain"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cluster_ip(c: &Cluster, name: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(ip) = c
            .get_json("service", name)
            .and_then(|s| s["spec"]["clusterIP"].as_str().map(str::to_string))
            .filter(|ip| !ip.is_empty())
        {
            return Ok(ip);
        }
        if Instant::now() > deadline {
            return Err(format!("service {name} has no cluster IP"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn summary(what: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    println!(
        "| {what} | {} | {} | {} | {} | {} |",
        samples.len(),
        fmt(p50),
        fmt(p99),
        fmt(samples[0]),
        fmt(samples[samples.len() - 1])
    );
    (p50, p99)
}

pub fn run() -> Result<(), String> {
    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 1);
    let registry = Registry::start_on(
        net.host_address()
            .parse()
            .map_err(|e| format!("bridge address: {e}"))?,
    );
    let image = registry.push_busybox();
    let options = ClusterOptions {
        listen: Some(format!("{}:0", net.host_address())),
        agent_env: vec![("SKIFF_INSECURE_REGISTRIES".into(), registry.host())],
        server_args: vec![
            "--horizontal-pod-autoscaler-sync-period".into(),
            "1s".into(),
        ],
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    c.add_agent_at("node-a", net.address(0), Some(net.namespace(0)), &[]);
    let ns = net.namespace(0).to_string();

    let function = skiff_tests::guests::function_component("http");
    c.apply(&deployment(
        "fn",
        &format!(
            "      runtimeClassName: wasm\n      containers:\n      - name: main\n        image: file:{}\n        ports: [{{containerPort: 8080}}]\n",
            function.display()
        ),
    ));
    c.apply("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: fn}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: fn}\n  minReplicas: 0\n  maxReplicas: 1\n  behavior:\n    scaleDown: {stabilizationWindowSeconds: 3600}\n");
    let script = "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && exec busybox httpd -f -p 8080 -h /tmp/www";
    c.apply(&deployment(
        "web",
        &format!(
            "      containers:\n      - name: main\n        image: {image}\n        command: [sh, -c, {script:?}]\n"
        ),
    ));
    let fn_addr: SocketAddr = format!("{}:80", cluster_ip(&c, "fn")?)
        .parse()
        .map_err(|e| format!("{e}"))?;
    let web_addr: SocketAddr = format!("{}:80", cluster_ip(&c, "web")?)
        .parse()
        .map_err(|e| format!("{e}"))?;
    // The node's proxy holds the function's Service once the controller has published it.
    std::thread::sleep(Duration::from_secs(2));

    let mut wasm = Vec::new();
    for i in 0..=TRIES {
        drained(&c, "fn")?;
        let t = in_netns(&ns, move || {
            let started = Instant::now();
            first_byte(fn_addr, b"GET / HTTP/1.0\r\n\r\n")?;
            Ok(started.elapsed())
        })
        .join()
        .map_err(|_| "a client thread panicked".to_string())?
        .map_err(|e| format!("function try {i}: {e}"))?;
        if i > 0 {
            wasm.push(t);
        }
        scale(&c, "fn", 0)?;
    }

    let mut oci = Vec::new();
    for i in 0..=TRIES {
        drained(&c, "web")?;
        let (tx, rx) = std::sync::mpsc::channel::<Instant>();
        let client = in_netns(&ns, move || {
            let started = rx.recv().map_err(|e| e.to_string())?;
            let deadline = started + Duration::from_secs(60);
            loop {
                match first_byte(web_addr, b"GET / HTTP/1.0\r\n\r\n") {
                    Ok(()) => return Ok(started.elapsed()),
                    Err(e) if Instant::now() > deadline => return Err(e),
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        let _ = tx.send(Instant::now());
        scale(&c, "web", 1)?;
        let t = client
            .join()
            .map_err(|_| "the OCI client panicked".to_string())?
            .map_err(|e| format!("OCI try {i}: {e}"))?;
        if i > 0 {
            oci.push(t);
        }
        scale(&c, "web", 0)?;
    }

    println!(
        "| path (zero replicas → first byte through the ClusterIP) | tries | p50 | p99 | min | max |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let (wasm_p50, wasm_p99) = summary("Wasm function, scale from zero (held connection)", wasm);
    let (oci_p50, _) = summary("OCI busybox httpd, scale 0 → 1 (anchor)", oci);
    println!(
        "cold-start: p50 {} p99 {} ({:.2}x the OCI pod's p50 {}; goal p50 ≤ {})",
        fmt(wasm_p50),
        fmt(wasm_p99),
        wasm_p50.as_secs_f64() / oci_p50.as_secs_f64(),
        fmt(oci_p50),
        fmt(GOAL)
    );
    drop(c);
    drop(registry);
    Ok(())
}
