//! HorizontalPodAutoscalers end to end, on agents that each run in a network namespace the test
//! made (traffic only to addresses inside them and the test's bridge).
//!
//! - Admission: `minReplicas: 0` is refused for an OCI pod template, naming the field, and
//!   accepted for a Wasm one; `skiff get hpa` shows kubectl's columns.
//! - Scale from zero: a Wasm Deployment (the `net` guest serving TCP) behind a NodePort Service
//!   goes to zero when idle; a connection to the Service is held by the node proxy, wakes the
//!   Deployment and is answered by the new pod; after the idle window it is back at zero.
//! - A wasi:http function (the `http` test guest) scales up on its requests in flight (a `Pods`
//!   metric) under a load of slow requests, down to zero when idle, and from zero again on a
//!   request through its Service, and through the node's Ingress router.
//! - Scale up and down on CPU: busybox pods that burn CPU while a file exists scale from 1 to 2,
//!   and back to 1 when the load is gone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::netns::NodeNetwork;
use skiff_tests::netslot::NetSlot;
use skiff_tests::{Cluster, ClusterOptions, stdout, text, wait_for};

/// A cluster with a short HPA sync period and `count` nodes in namespaces.
fn cluster(count: usize, agent_env: Vec<(String, String)>) -> (Cluster, NodeNetwork) {
    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, count);
    let options = ClusterOptions {
        listen: Some(format!("{}:0", net.host_address())),
        server_args: vec![
            "--horizontal-pod-autoscaler-sync-period".into(),
            "1s".into(),
        ],
        agent_env,
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    for i in 0..count {
        let name = format!("node-{}", char::from(b'a' + u8::try_from(i).unwrap_or(0)));
        c.add_agent_at(&name, net.address(i), Some(net.namespace(i)), &[]);
    }
    (c, net)
}

fn replicas(c: &Cluster, deployment: &str) -> i64 {
    c.get_json("deployment", deployment).expect("deployment")["spec"]["replicas"]
        .as_i64()
        .unwrap_or(1)
}

fn pods_of(c: &Cluster, app: &str) -> Vec<Value> {
    let out = c.skiff(&["get", "pods", "-l", &format!("app={app}"), "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let list: Value = serde_json::from_slice(&out.stdout).expect("pod list");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn describe(c: &Cluster, kind: &str, name: &str) -> String {
    text(&c.skiff(&["describe", kind, name]))
}

/// Waits until `deployment` is at `want` replicas and no pod of `app` is left.
fn at_zero(c: &Cluster, deployment: &str, app: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if replicas(c, deployment) == 0 && pods_of(c, app).is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{deployment} not at zero: replicas {}, pods {}\n{}",
                replicas(c, deployment),
                pods_of(c, app).len(),
                describe(c, "hpa", deployment)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wasm_deployment(name: &str, guest: &str, text: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      runtimeClassName: wasm\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: file:{guest}\n        command: [net, serve, \"8080\", {text}, \"1000000\"]\n        ports: [{{containerPort: 8080}}]\n        resources: {{requests: {{cpu: 50m}}}}\n"
    )
}

fn hpa(name: &str, min: u32, max: u32, down_window: u32) -> String {
    format!(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: {name}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}\n  minReplicas: {min}\n  maxReplicas: {max}\n  metrics:\n  - type: Resource\n    resource:\n      name: cpu\n      target: {{type: Utilization, averageUtilization: 50}}\n  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: {down_window}\n"
    )
}

/// Connects to `addr` once the node's proxy holds it (until then nothing answers there and the
/// connection is refused, which wakes nothing), then reads everything.
fn fetch(addr: SocketAddr) -> Result<String, String> {
    let mut s = wait_for(
        &format!("{addr} held by the node's proxy"),
        Duration::from_secs(10),
        || match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => None,
            other => Some(other),
        },
    )
    .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(40)))
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("read: {e}"))?;
    Ok(out)
}

#[test]
fn min_replicas_zero_is_for_wasm_templates_only() {
    let c = Cluster::start();
    let oci = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: main\n        image: busybox\n";
    c.apply(oci);
    let out = c.skiff_stdin(&["apply", "-f", "-"], &hpa("web", 0, 3, 5));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("spec.minReplicas") && said.contains("Invalid value: 0"),
        "{said}"
    );
    assert!(said.contains("not Wasm"), "{said}");
    // minReplicas 1 is fine for it.
    c.apply(&hpa("web", 1, 3, 5));

    let wasm = wasm_deployment("fn", "/nonexistent.wasm", "hi");
    c.apply(&wasm);
    c.apply(&hpa("fn", 0, 3, 5));
    // The Deployment keeps a Wasm template while its HPA says 0.
    let out = c.skiff_stdin(
        &["apply", "-f", "-"],
        &wasm.replace("      runtimeClassName: wasm\n", ""),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("spec.template.spec.runtimeClassName"),
        "{}",
        text(&out)
    );

    let out = c.skiff(&["get", "hpa"]);
    assert!(out.status.success(), "{}", text(&out));
    let table = stdout(&out);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ]
    );
    let fn_row = table
        .lines()
        .find(|l| l.starts_with("fn "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        fn_row.contains("Deployment/fn") && fn_row.contains("cpu: "),
        "{fn_row}"
    );
    let cells: Vec<&str> = fn_row.split_whitespace().collect();
    assert_eq!(
        &cells[cells.len() - 4..cells.len() - 2],
        ["0", "3"],
        "{fn_row}"
    );
}

#[test]
fn a_wasm_deployment_scales_from_zero_on_a_connection_and_back() {
    let (c, net) = cluster(2, Vec::new());
    let guest = skiff_tests::guests::socket_component("net");
    c.apply(&wasm_deployment(
        "fn",
        &guest.display().to_string(),
        "hello-from-zero",
    ));
    c.apply("apiVersion: v1\nkind: Service\nmetadata: {name: fn}\nspec:\n  type: NodePort\n  selector: {app: fn}\n  ports:\n  - {port: 80, targetPort: 8080}\n");
    c.apply(&hpa("fn", 0, 2, 3));
    // Idle: it goes to zero.
    at_zero(&c, "fn", "fn", Duration::from_secs(60));
    let service = c.get_json("service", "fn").expect("service");
    let node_port = service["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("nodePort");
    for round in 0..2 {
        let addr: SocketAddr = format!("{}:{node_port}", net.address(round))
            .parse()
            .expect("address");
        let started = Instant::now();
        let said = fetch(addr).unwrap_or_else(|e| {
            panic!(
                "round {round}: {e}\n{}\n{}",
                describe(&c, "hpa", "fn"),
                c.agent(round).log()
            )
        });
        let took = started.elapsed();
        assert_eq!(said, "hello-from-zero\n", "round {round}");
        eprintln!("round {round}: scale from zero answered in {took:?}");
        assert!(replicas(&c, "fn") >= 1);
        // Idle again: back to zero after the window.
        at_zero(&c, "fn", "fn", Duration::from_secs(60));
    }
    let events = describe(&c, "hpa", "fn");
    assert!(events.contains("SuccessfulRescale"), "{events}");
    assert!(events.contains("woke it from zero"), "{events}");
    assert!(events.contains("New size: 0"), "{events}");
}

#[test]
fn an_hpa_scales_a_deployment_up_under_cpu_load_and_down() {
    let slot_dir = tempfile::tempdir().expect("tempdir");
    let load = slot_dir.path().join("on");
    let registry_net = NetSlot::take();
    let net = NodeNetwork::new(&registry_net, 1);
    let registry =
        skiff_tests::registry::Registry::start_on(net.host_address().parse().expect("ip"));
    let image = registry.push_busybox();
    let options = ClusterOptions {
        listen: Some(format!("{}:0", net.host_address())),
        server_args: vec![
            "--horizontal-pod-autoscaler-sync-period".into(),
            "1s".into(),
        ],
        agent_env: vec![("SKIFF_INSECURE_REGISTRIES".into(), registry.host())],
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, registry_net);
    c.add_agent_at("node-a", net.address(0), Some(net.namespace(0)), &[]);
    // Bursts of a shell loop while /load/on exists: well past 50% of a 20m request.
    let script = "while :; do if [ -e /load/on ]; then i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; busybox sleep 0.1; else busybox sleep 0.5; fi; done";
    c.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: burn}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: burn}}}}\n  template:\n    metadata: {{labels: {{app: burn}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {image}\n        command: [sh, -c, {script:?}]\n        resources: {{requests: {{cpu: 20m}}}}\n        volumeMounts: [{{name: load, mountPath: /load}}]\n      volumes:\n      - name: load\n        hostPath: {{path: {}}}\n",
        slot_dir.path().display()
    ));
    c.apply(&hpa("burn", 1, 2, 3));
    let ready = |n: usize| {
        pods_of(&c, "burn")
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count()
            == n
    };
    wait_for("one busy pod", Duration::from_secs(60), || {
        ready(1).then_some(())
    });
    std::fs::write(&load, "").expect("load on");
    wait_for("scaled up to 2", Duration::from_secs(60), || {
        (replicas(&c, "burn") == 2).then_some(())
    });
    let hpa = c.get_json("hpa", "burn").expect("hpa");
    assert!(
        hpa["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"]
            .as_i64()
            .is_some_and(|u| u > 55),
        "{hpa:#}"
    );
    std::fs::remove_file(&load).expect("load off");
    wait_for("scaled back to 1", Duration::from_secs(60), || {
        (replicas(&c, "burn") == 1).then_some(())
    });
    let events = describe(&c, "hpa", "burn");
    assert!(
        events.contains(
            "New size: 2; reason: cpu resource utilization (percentage of request) above target"
        ),
        "{events}"
    );
    assert!(
        events.contains("New size: 1; reason: All metrics below target"),
        "{events}"
    );
    drop(c);
    drop(registry);
}

/// `GET path` on a new connection to `addr`: (status, body).
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(40)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: fn\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("read: {e}"))?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not HTTP: {out:?}"))?;
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

#[test]
fn a_function_scales_on_requests_in_flight_down_to_zero_and_back() {
    let (c, net) = cluster(1, Vec::new());
    let image = skiff_tests::guests::function_component("http");
    c.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: fn}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: fn}}}}\n  template:\n    metadata: {{labels: {{app: fn}}}}\n    spec:\n      runtimeClassName: wasm\n      terminationGracePeriodSeconds: 5\n      containers:\n      - name: fn\n        image: file:{}\n        ports: [{{containerPort: 8080}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: fn}}\nspec:\n  type: NodePort\n  selector: {{app: fn}}\n  ports: [{{port: 80, targetPort: 8080}}]\n",
        image.display()
    ));
    c.apply("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: fn}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: fn}\n  minReplicas: 0\n  maxReplicas: 3\n  metrics:\n  - type: Pods\n    pods:\n      metric: {name: requests_in_flight}\n      target: {type: AverageValue, averageValue: \"2\"}\n  behavior:\n    scaleDown: {stabilizationWindowSeconds: 4}\n");
    let service = wait_for("the Service's NodePort", Duration::from_secs(10), || {
        c.get_json("service", "fn")?["spec"]["ports"][0]["nodePort"].as_u64()
    });
    let addr: SocketAddr = format!("{}:{service}", net.address(0))
        .parse()
        .expect("addr");
    wait_for("the function answers", Duration::from_secs(60), || {
        matches!(http_get(addr, "/"), Ok((200, _))).then_some(())
    });
    // Eight clients, each with a 1.5 s request always in flight: 8 per pod against a target of 2.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut ok = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if matches!(http_get(addr, "/sleep?ms=1500"), Ok((200, _))) {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    wait_for(
        "scaled up to 3 on requests in flight",
        Duration::from_secs(60),
        || (replicas(&c, "fn") == 3).then_some(()),
    );
    let hpa = c.get_json("hpa", "fn").expect("hpa");
    assert_eq!(
        hpa["status"]["currentMetrics"][0]["pods"]["metric"]["name"], "requests_in_flight",
        "{hpa:#}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served: i32 = clients.into_iter().map(|t| t.join().expect("client")).sum();
    assert!(served > 0);
    // Idle: down to zero after the window, then a request wakes it.
    at_zero(&c, "fn", "fn", Duration::from_secs(90));
    let started = Instant::now();
    let (code, body) = http_get(addr, "/")
        .unwrap_or_else(|e| panic!("from zero: {e}\n{}", describe(&c, "hpa", "fn")));
    eprintln!("a function from zero answered in {:?}", started.elapsed());
    assert_eq!(
        (code, body.as_str()),
        (200, "hello from a skiff function\n")
    );
    // Through the node's Ingress router too: at zero again, a request to the Ingress is held.
    c.apply("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: fn}\nspec:\n  rules:\n  - http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: fn, port: {number: 80}}}}\n");
    at_zero(&c, "fn", "fn", Duration::from_secs(90));
    let ingress: SocketAddr = format!("{}:80", net.address(0)).parse().expect("addr");
    let started = Instant::now();
    let (code, body) = http_get(ingress, "/")
        .unwrap_or_else(|e| panic!("ingress from zero: {e}\n{}", describe(&c, "hpa", "fn")));
    eprintln!(
        "a function from zero through the Ingress answered in {:?}",
        started.elapsed()
    );
    assert_eq!(
        (code, body.as_str()),
        (200, "hello from a skiff function\n")
    );
    let events = describe(&c, "hpa", "fn");
    assert!(
        events.contains("New size: 3; reason: pods metric requests_in_flight above target"),
        "{events}"
    );
}
