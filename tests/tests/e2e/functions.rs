//! Functions end to end (issue 21): a Wasm Deployment whose component exports
//! `wasi:http/incoming-handler` (the C guest `tests/guests/http.c`) is served by its node with an
//! instance per request, reached like any pod — pod IP and port, a Service's cluster IP, a
//! NodePort on either node, the Ingress — on two nodes living in network namespaces the test
//! made. Its pod annotations set the limits: 413 past the body limit, 504 past the timeout (a
//! guest that loops is stopped there while other requests are served), 503 with Retry-After past
//! the concurrency cap, a trap is a 500 and the next request a 200, outgoing requests reach only
//! the allowed host (its own loopback) and are refused elsewhere; its stdout is in `skiff logs`.
//! A command deployed as a function and a malformed component fail their pods naming why while
//! the function keeps serving; a rolling update under a bounded load loop fails no request.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use skiff_tests::guests::{component, function_component};
use skiff_tests::netns::NodeNetwork;
use skiff_tests::netslot::NetSlot;
use skiff_tests::{Cluster, ClusterOptions, stdout, text, wait_for};

/// curl `args` (from node namespace `ns`, or the host's with `None`): (HTTP status, body,
/// response headers). Status 0: no HTTP answer.
fn curl(ns: Option<&str>, args: &[&str]) -> (u16, String, String) {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).args(["--", "curl"]);
            c
        }
        None => Command::new("curl"),
    };
    let out = cmd
        .args([
            "-s",
            "--max-time",
            "20",
            "-D",
            "/dev/stderr",
            "-w",
            "\n%{http_code}",
        ])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim().parse().unwrap_or(0),
        body.to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn get(ns: Option<&str>, url: &str) -> (u16, String) {
    let (code, body, _) = curl(ns, &[url]);
    (code, body)
}

fn deployment(name: &str, image: &str, version: &str, replicas: u32, annotations: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  strategy:\n    type: RollingUpdate\n    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n      annotations: {{{annotations}}}\n    spec:\n      runtimeClassName: wasm\n      terminationGracePeriodSeconds: 10\n      containers:\n      - name: fn\n        image: {image}\n        env: [{{name: VERSION, value: {version}}}]\n        ports: [{{containerPort: 8080}}]\n        readinessProbe:\n          tcpSocket: {{port: 8080}}\n          periodSeconds: 1\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  type: NodePort\n  selector: {{app: {name}}}\n  ports: [{{port: 80, targetPort: 8080}}]\n"
    )
}

const INGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: hello}\nspec:\n  rules:\n  - host: fn.test\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: hello, port: {number: 80}}}}\n";

/// The two-node cluster of these tests.
fn cluster(net: &NodeNetwork, slot: NetSlot) -> Cluster {
    let options = ClusterOptions {
        listen: Some(format!("{}:0", net.host_address())),
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    c.add_agent_at("node-a", net.address(0), Some(net.namespace(0)), &[]);
    c.add_agent_at("node-b", net.address(1), Some(net.namespace(1)), &[]);
    c
}

/// The pods of app `app` that are Running and Ready: (name, pod IP).
fn ready_pods(c: &Cluster, app: &str) -> Vec<(String, String)> {
    let out = c.skiff(&["get", "pods", "-l", &format!("app={app}"), "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap_or_default();
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["status"]["phase"] == "Running")
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .filter_map(|p| {
            Some((
                p["metadata"]["name"].as_str()?.to_string(),
                p["status"]["podIP"].as_str()?.to_string(),
            ))
        })
        .collect()
}

fn failed_pod_message(c: &Cluster, name: &str) -> String {
    wait_for(
        &format!("pod {name} Failed"),
        Duration::from_secs(60),
        || {
            let p = c.get_json("pod", name)?;
            (p["status"]["phase"] == "Failed").then(|| {
                let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
                format!("{} {}", t["reason"], t["message"])
            })
        },
    )
}

#[test]
fn a_function_is_served_by_pod_ip_service_nodeport_and_ingress_within_its_limits() {
    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 2);
    let c = cluster(&net, slot);
    let image = format!("file:{}", function_component("http").display());
    let annotations = "skiff.dev/function-timeout: 1500ms, skiff.dev/function-max-body: 1Ki, skiff.dev/function-concurrency: \"2\", skiff.dev/function-allowed-outbound-hosts: \"http://127.0.0.1:8080\"";
    c.apply(&format!(
        "{}---\n{INGRESS}",
        deployment("hello", &image, "v1", 1, annotations)
    ));
    let (pod, ip) = wait_for("a ready hello pod", Duration::from_secs(60), || {
        ready_pods(&c, "hello").into_iter().next()
    });
    let ns = Some(net.namespace(0));
    let hello = (200, "hello from a skiff function\n".to_string());

    // Pod IP and port, the Service's cluster IP, the NodePort on both nodes, the Ingress.
    assert_eq!(get(ns, &format!("http://{ip}:8080/")), hello);
    let svc = c.get_json("service", "hello").expect("service");
    let cluster_ip = svc["spec"]["clusterIP"]
        .as_str()
        .expect("clusterIP")
        .to_string();
    let node_port = svc["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("nodePort");
    wait_for("the Service", Duration::from_secs(30), || {
        (get(ns, &format!("http://{cluster_ip}/")) == hello).then_some(())
    });
    for i in 0..2 {
        let url = format!("http://{}:{node_port}/", net.address(i));
        wait_for(
            &format!("NodePort on node {i}"),
            Duration::from_secs(30),
            || (get(None, &url) == hello).then_some(()),
        );
    }
    let ingress = format!("http://{}:80/", net.address(1));
    wait_for("the Ingress", Duration::from_secs(30), || {
        let (code, body, _) = curl(None, &["-H", "Host: fn.test", &ingress]);
        ((code, body) == hello).then_some(())
    });

    let fn_url = |path: &str| format!("http://{ip}:8080{path}");
    // 413: a body past 1Ki, declared or streamed; a small one is echoed.
    let big = "x".repeat(2000);
    let (code, _, _) = curl(ns, &["--data-binary", &big, &fn_url("/echo")]);
    assert_eq!(code, 413);
    let (code, _, _) = curl(
        ns,
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &big,
            &fn_url("/echo"),
        ],
    );
    assert_eq!(code, 413);
    let (code, body, _) = curl(ns, &["--data-binary", "ping", &fn_url("/echo")]);
    assert_eq!((code, body.as_str()), (200, "ping"));

    // 504: a guest that loops is stopped at its timeout while another request is served.
    let looping = {
        let (ns, url) = (net.namespace(0).to_string(), fn_url("/loop"));
        std::thread::spawn(move || {
            let began = Instant::now();
            (get(Some(&ns), &url).0, began.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get(ns, &fn_url("/")), hello);
    let (code, took) = looping.join().expect("loop request");
    assert_eq!(code, 504);
    assert!(took < Duration::from_secs(10), "{took:?}");

    // 503 with Retry-After past two requests in flight.
    let sleepers: Vec<_> = (0..2)
        .map(|_| {
            let (ns, url) = (net.namespace(0).to_string(), fn_url("/sleep?ms=1000"));
            std::thread::spawn(move || get(Some(&ns), &url).0)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    let (code, _, headers) = curl(ns, &[&fn_url("/")]);
    assert_eq!(code, 503);
    assert!(
        headers.to_ascii_lowercase().contains("retry-after: 1"),
        "{headers}"
    );
    for s in sleepers {
        assert_eq!(s.join().expect("sleeper"), 200);
    }

    // A trap is a 500, and the function keeps serving.
    assert_eq!(get(ns, &fn_url("/trap")).0, 500);
    assert_eq!(get(ns, &fn_url("/")), hello);

    // Outbound: its own loopback is granted, anywhere else refused.
    let (code, body) = get(ns, &fn_url("/fetch?url=http://127.0.0.1:8080/"));
    assert_eq!(
        (code, body.as_str()),
        (200, "fetched 200: hello from a skiff function\n")
    );
    let (code, body) = get(ns, &fn_url(&format!("/fetch?url=http://{cluster_ip}:80/")));
    assert_eq!(
        (code, body.as_str()),
        (502, "fetch failed: HTTP-request-denied\n")
    );

    // Its stdout and stderr are the pod's logs.
    let out = c.skiff(&["logs", &pod]);
    let logs = stdout(&out);
    assert!(logs.contains("http: GET /\n"), "{}", text(&out));
    assert!(logs.contains("http: POST /echo\n"), "{logs}");
    assert!(logs.contains("trapping on purpose"), "{logs}");
    assert!(
        logs.contains("denied: not in the function's allowed outbound hosts"),
        "{logs}"
    );

    // Bad input fails its own pod, naming the cause; the function on that node keeps serving.
    let node = c.get_json("pod", &pod).expect("the hello pod")["spec"]["nodeName"]
        .as_str()
        .expect("nodeName")
        .to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x0d\0\x01\0not a component").expect("write");
    let bad = |name: &str, image: String| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  annotations: {{skiff.dev/function-timeout: 5s}}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  nodeSelector: {{kubernetes.io/hostname: {node}}}\n  containers:\n  - name: fn\n    image: {image}\n    ports: [{{containerPort: 8080}}]\n---\n"
        )
    };
    c.apply(&format!(
        "{}{}",
        bad(
            "not-a-function",
            format!("file:{}", component("probe").display())
        ),
        bad("malformed", format!("file:{}", garbage.display())),
    ));
    let message = failed_pod_message(&c, "not-a-function");
    assert!(
        message.contains("does not export wasi:http/incoming-handler"),
        "{message}"
    );
    let message = failed_pod_message(&c, "malformed");
    assert!(message.contains("garbage.wasm"), "{message}");
    assert_eq!(get(ns, &fn_url("/")), hello);
}

#[test]
fn a_rolling_update_of_a_function_under_load_fails_no_request() {
    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 2);
    let c = cluster(&net, slot);
    let image = format!("file:{}", function_component("http").display());
    c.apply(&deployment("roll", &image, "v1", 2, ""));
    wait_for("two ready pods", Duration::from_secs(60), || {
        (ready_pods(&c, "roll").len() == 2).then_some(())
    });
    let svc = c.get_json("service", "roll").expect("service");
    let url = format!(
        "http://{}/env",
        svc["spec"]["clusterIP"].as_str().expect("clusterIP")
    );
    let ns = net.namespace(0).to_string();
    wait_for("v1 through the Service", Duration::from_secs(30), || {
        get(Some(&ns), &url).1.contains("VERSION=v1").then_some(())
    });

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, ns, url) = (stop.clone(), ns.clone(), url.clone());
        std::thread::spawn(move || {
            let (mut answers, mut failures) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match get(Some(&ns), &url) {
                    (200, body) => answers.push(body),
                    other => failures.push(other),
                }
            }
            (answers, failures)
        })
    };
    c.apply(&deployment("roll", &image, "v2", 2, ""));
    let out = c.skiff(&["rollout", "status", "deployment/roll", "--timeout", "120s"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for("only v2 pods", Duration::from_secs(60), || {
        let pods = ready_pods(&c, "roll");
        (pods.len() == 2 && get(Some(&ns), &url).1.contains("VERSION=v2")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let (answers, failures) = load.join().expect("load loop");
    assert!(
        failures.is_empty(),
        "failed requests during the rollout: {failures:?}"
    );
    assert!(answers.iter().any(|b| b.contains("VERSION=v1")));
    assert!(answers.iter().any(|b| b.contains("VERSION=v2")));
    eprintln!(
        "{} requests through the rollout, none failed",
        answers.len()
    );
}
