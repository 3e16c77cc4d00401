//! A function's request rate, latency and cold starts through the Kubernetes API
//! (`custom.metrics.k8s.io/v1beta2`, prometheus-adapter's shape) end to end: a real server and
//! agent (in a network namespace of the test's), a `wasi:http` function (the C guest
//! `tests/guests/http.c`) behind a Service, requests sent to it from the node's namespace while
//! the test reads the API over HTTPS with curl and the callers' own tokens — discovery, a pod's
//! figures by name and by label selector, the Service's sum, NotFound in prometheus-adapter's
//! words, a `view` user allowed and a user without a role refused with 403.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use skiff_tests::dashboard::Dashboard;
use skiff_tests::guests::function_component;
use skiff_tests::netns::NodeNetwork;
use skiff_tests::netslot::NetSlot;
use skiff_tests::{Cluster, ClusterOptions, stdout, wait_for};

const API: &str = "/apis/custom.metrics.k8s.io/v1beta2";

/// GET `path` of the API as the bearer of `token`: (status, JSON body, or Null).
fn get(c: &Cluster, token: &str, path: &str) -> (u16, Value) {
    let ca = c.data_dir().join("custom-metrics-ca.pem");
    std::fs::write(&ca, c.config().certificate_authority_data).unwrap();
    // The server's certificate names skiff-apiserver (what skiff's clients verify), not the
    // address of the test's network.
    let server = c.config().server;
    let address = server
        .split(',')
        .next()
        .unwrap_or_default()
        .trim_start_matches("https://")
        .to_string();
    let (host, port) = address.rsplit_once(':').unwrap();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(&ca)
        .args(["--resolve", &format!("skiff-apiserver:{port}:{host}")])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("https://skiff-apiserver:{port}{path}"))
        .output()
        .expect("run curl");
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// The figure of a MetricValueList's only item, or None.
fn value(list: &Value) -> Option<f64> {
    let items = list["items"].as_array()?;
    let text = items.first()?["value"].as_str()?;
    let split = text
        .find(|ch: char| ch.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (n, suffix) = text.split_at(split);
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "u" => 1e-6,
        "n" => 1e-9,
        "k" => 1e3,
        _ => return None,
    };
    n.parse::<f64>().ok().map(|n| n * scale)
}

/// A one-node cluster (the agent in a network namespace of the test's) whose server also knows
/// `jane` (bound to `view`) and `bob` (no binding), running the function `hello` (a Deployment of
/// one pod and a Service); the function's pod is Ready. Returns its pod's name and IP.
fn function_cluster(
    server_args: &[&str],
) -> (Cluster, NodeNetwork, tempfile::TempDir, String, String) {
    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 1);
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "jane-t0ken,jane,1001\nbob-t0ken,bob,1002\n").unwrap();
    let options = ClusterOptions {
        listen: Some(format!("{}:0", net.host_address())),
        server_args: ["--token-auth-file", &tokens.display().to_string()]
            .iter()
            .chain(server_args)
            .map(|a| a.to_string())
            .collect(),
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    c.add_agent_at("node-a", net.address(0), Some(net.namespace(0)), &[]);
    c.apply("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: jane-views}\nsubjects:\n- {kind: User, name: jane, apiGroup: rbac.authorization.k8s.io}\nroleRef: {kind: ClusterRole, name: view, apiGroup: rbac.authorization.k8s.io}\n");
    let image = format!("file:{}", function_component("http").display());
    c.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: hello}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: hello}}}}\n  template:\n    metadata: {{labels: {{app: hello}}}}\n    spec:\n      runtimeClassName: wasm\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: fn\n        image: {image}\n        ports: [{{containerPort: 8080}}]\n        readinessProbe:\n          tcpSocket: {{port: 8080}}\n          periodSeconds: 1\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: hello}}\nspec:\n  selector: {{app: hello}}\n  ports: [{{port: 80, targetPort: 8080}}]\n"
    ));
    let (pod, ip) = wait_for("the function's pod", Duration::from_secs(90), || {
        let out = c.skiff(&["get", "pods", "-o", "json"]);
        let pods: Value = serde_json::from_slice(&out.stdout).ok()?;
        pods["items"].as_array()?.iter().find_map(|p| {
            let ready = p["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            ready.then(|| {
                Some((
                    p["metadata"]["name"].as_str()?.to_string(),
                    p["status"]["podIP"].as_str()?.to_string(),
                ))
            })?
        })
    });
    (c, net, dir, pod, ip)
}

/// Requests to the function at `ip`, sent from the node's namespace (one every ~20 ms plus
/// curl's own time) until stopped.
struct Sender {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u32>>,
}

impl Sender {
    fn start(net: &NodeNetwork, ip: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ns = net.namespace(0).to_string();
        let url = format!("http://{ip}:8080/");
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut ok = 0u32;
            while !flag.load(Ordering::Relaxed) {
                let out = Command::new("nsenter")
                    .arg(format!("--net=/run/netns/{ns}"))
                    .args(["--", "curl", "-s", "--max-time", "10", "-o", "/dev/null"])
                    .args(["-w", "%{http_code}", &url])
                    .output()
                    .expect("nsenter curl");
                if stdout(&out).trim() == "200" {
                    ok += 1;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            ok
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops, and says how many requests were answered 200.
    fn stop(mut self) -> u32 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_functions_rate_latency_and_cold_starts_are_served_as_custom_metrics() {
    let (c, net, _tokens, pod, ip) = function_cluster(&[]);
    let admin = c.config().token;

    // Discovery: the group, and its resources as prometheus-adapter lists them.
    let (code, group) = get(&c, &admin, "/apis/custom.metrics.k8s.io");
    assert_eq!(code, 200, "{group:#}");
    assert_eq!(group["kind"], "APIGroup");
    assert_eq!(
        group["preferredVersion"]["groupVersion"],
        "custom.metrics.k8s.io/v1beta2"
    );
    let (code, list) = get(&c, &admin, API);
    assert_eq!(code, 200, "{list:#}");
    assert_eq!(list["kind"], "APIResourceList");
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for want in [
        "pods/skiff_function_requests_per_second",
        "pods/skiff_function_request_duration_seconds",
        "pods/skiff_function_cold_starts_per_minute",
        "pods/skiff_function_requests_in_flight",
        "services/skiff_function_requests_per_second",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }

    // Requests, sent from the node's namespace until the figures were read.
    let sender = Sender::start(&net, &ip);
    let pod_path = |metric: &str| format!("{API}/namespaces/default/pods/{pod}/{metric}");
    let rate = wait_for(
        "the pod's requests per second above zero",
        Duration::from_secs(60),
        || {
            let (code, list) = get(&c, &admin, &pod_path("skiff_function_requests_per_second"));
            (code == 200 && value(&list)? > 0.0).then_some(list)
        },
    );
    let item = &rate["items"][0];
    assert_eq!(rate["kind"], "MetricValueList", "{rate:#}");
    assert_eq!(rate["apiVersion"], "custom.metrics.k8s.io/v1beta2");
    assert_eq!(item["describedObject"]["kind"], "Pod", "{rate:#}");
    assert_eq!(item["describedObject"]["name"], pod.as_str());
    assert_eq!(item["metric"]["name"], "skiff_function_requests_per_second");
    assert!(item["windowSeconds"].as_i64().unwrap() >= 1, "{rate:#}");
    assert!(
        item["timestamp"].as_str().unwrap().ends_with('Z'),
        "{rate:#}"
    );
    let latency = wait_for(
        "the pod's mean latency above zero",
        Duration::from_secs(30),
        || {
            let (code, list) = get(
                &c,
                &admin,
                &pod_path("skiff_function_request_duration_seconds"),
            );
            (code == 200 && value(&list)? > 0.0).then_some(value(&list)?)
        },
    );
    assert!(latency < 10.0, "a mean of {latency} s");
    // By label selector, and the Service's figures (its one pod's).
    wait_for(
        "the selected pods' and the Service's figures",
        Duration::from_secs(30),
        || {
            let (code, selected) = get(
                &c,
                &admin,
                &format!(
                    "{API}/namespaces/default/pods/*/skiff_function_requests_per_second?labelSelector=app%3Dhello"
                ),
            );
            if code != 200 || selected["items"].as_array()?.len() != 1 || value(&selected)? <= 0.0 {
                return None;
            }
            let (code, cold) = get(
                &c,
                &admin,
                &format!(
                    "{API}/namespaces/default/services/hello/skiff_function_cold_starts_per_minute"
                ),
            );
            (code == 200
                && cold["items"][0]["describedObject"]["kind"] == "Service"
                && value(&cold)? > 0.0)
                .then_some(())
        },
    );
    let sent = sender.stop();
    // kubectl sends the `*` percent-encoded.
    let (code, encoded) = get(
        &c,
        &admin,
        &format!("{API}/namespaces/default/pods/%2A/skiff_function_requests_in_flight"),
    );
    assert_eq!(code, 200, "{encoded:#}");
    assert_eq!(
        encoded["items"].as_array().map(Vec::len),
        Some(1),
        "{encoded:#}"
    );
    assert!(sent > 0, "no request answered 200");
    let (code, in_flight) = get(
        &c,
        &admin,
        &format!("{API}/namespaces/default/services/hello/skiff_function_requests_in_flight"),
    );
    assert_eq!(code, 200, "{in_flight:#}");
    assert!(value(&in_flight).is_some(), "{in_flight:#}");

    // Not there: an unknown metric, a pod with no figures, in prometheus-adapter's words.
    let (code, missing) = get(&c, &admin, &pod_path("cpu_seconds"));
    assert_eq!(code, 404, "{missing:#}");
    assert!(
        missing["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!(
                "the server could not find the metric cpu_seconds for pods {pod}"
            )),
        "{missing:#}"
    );
    let (code, _) = get(
        &c,
        &admin,
        &format!("{API}/namespaces/default/pods/nobody/skiff_function_requests_per_second"),
    );
    assert_eq!(code, 404);

    // Authorization: the view role reads them, a user without a role is refused.
    let (code, list) = get(
        &c,
        "jane-t0ken",
        &pod_path("skiff_function_requests_in_flight"),
    );
    assert_eq!(code, 200, "jane (view): {list:#}");
    let (code, refused) = get(
        &c,
        "bob-t0ken",
        &pod_path("skiff_function_requests_in_flight"),
    );
    assert_eq!(code, 403, "{refused:#}");
    assert_eq!(refused["reason"], "Forbidden", "{refused:#}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot get resource \"pods/skiff_function_requests_in_flight\" in API group \"custom.metrics.k8s.io\""),
        "{refused:#}"
    );
}

/// The dashboard's functions view charts the function's request rate, latency and cold starts
/// from the custom metrics API, with the logged-in user's token, without a reload.
#[test]
fn the_dashboards_functions_view_charts_a_functions_requests() {
    // The browser reaches loopback only: the dashboard is also served there.
    let (c, net, _tokens, _pod, ip) = function_cluster(&["--dashboard-addr", "127.0.0.1:0"]);
    let page = wait_for("the dashboard's address", Duration::from_secs(30), || {
        c.server_log()
            .lines()
            .filter_map(|l| l.split("web dashboard at https://").nth(1))
            .filter_map(|rest| rest.split('/').next())
            .find_map(|addr| addr.parse::<std::net::SocketAddr>().ok())
            .filter(|addr| addr.ip().is_loopback())
    });
    let sender = Sender::start(&net, &ip);
    let d = Dashboard::open(page).unwrap_or_else(|e| panic!("open the dashboard: {e}"));
    let token = c.config().token;
    let step = |what: &str, r: skiff_tests::browser::Result<()>| {
        r.unwrap_or_else(|e| {
            let console = d.browser.console().unwrap_or_default().join("\n");
            panic!("{what}: {e}\npage console:\n{console}")
        })
    };
    step("log in", d.login(&token));
    step("functions view", d.show("functions"));
    // Figures come from the function's second report on and are sampled every 5 s.
    let row = d
        .wait_row(
            "functions",
            "default/hello",
            "the function's request rate, latency and cold starts",
            Duration::from_secs(60),
            |r| {
                let figure = |col: &str, unit: &str| {
                    r.get(col)
                        .and_then(|t| t.strip_suffix(unit))
                        .and_then(|n| n.trim().parse::<f64>().ok())
                        .is_some_and(|n| n > 0.0)
                };
                figure("requests", "/s")
                    && (figure("latency", "ms") || figure("latency", "s"))
                    && figure("cold-starts", "/min")
            },
        )
        .unwrap_or_else(|e| {
            let console = d.browser.console().unwrap_or_default().join("\n");
            panic!("functions row: {e}\npage console:\n{console}")
        });
    assert!(row.get("cpu").is_some_and(|t| t.ends_with('m')), "{row:?}");
    assert!(sender.stop() > 0, "no request answered 200");
}
