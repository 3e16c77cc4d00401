//! Prometheus metrics end to end (issue 25's must-show): a real `skiff server` and a real
//! `skiff agent` (in a network namespace the test made) with `--metrics-addr`, scraped with
//! curl and parsed line by line: every sample belongs to a family with a `# TYPE`, the names and
//! types are Kubernetes'/cAdvisor's, the OpenMetrics form is served when asked for and ends with
//! `# EOF`. A create over gRPC and a list over REST each grow `apiserver_request_total`; the
//! scheduler, work queues, store and watches have their figures; a Wasm memory hog's
//! `container_memory_working_set_bytes` rises on the agent and its pod's figure shows on the
//! server; a function's request count, cold starts and duration histogram follow the requests
//! sent to it; a pod's start is in `kubelet_pod_start_total_duration_seconds{runtime="wasm"}`.
//! `skiff up --metrics-addr` serves the server's and its node's families on one endpoint. A bad
//! `--metrics-addr` exits 2 naming the flag.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use skiff_tests::guests::{function_component, guest};
use skiff_tests::netns::NodeNetwork;
use skiff_tests::netslot::NetSlot;
use skiff_tests::{Cluster, ClusterOptions, skiff_bin, stdout, text, wait_for};

/// A sample: its name, its labels, its value.
type Sample = (String, Vec<(String, String)>, f64);

/// One parsed exposition: each family's type, and the samples.
struct Exposition {
    types: HashMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// Parses Prometheus' text format (or OpenMetrics), panicking on any line that is neither a
    /// comment nor `name{labels} value`, and on a sample whose family has no `# TYPE`.
    fn parse(text: &str) -> Self {
        let mut types = HashMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample's value");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("value of {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("labels end with }");
                    let mut labels = Vec::new();
                    for pair in split_labels(body) {
                        let (k, v) = pair.split_once('=').expect("label k=v");
                        let v = v
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .expect("quoted label value");
                        labels.push((k.to_string(), v.to_string()));
                    }
                    (name.to_string(), labels)
                }
                None => (series.to_string(), Vec::new()),
            };
            samples.push((name, labels, value));
        }
        let e = Exposition { types, samples };
        for (name, _, _) in &e.samples {
            assert!(
                e.family_of(name).is_some(),
                "sample {name} has no # TYPE line"
            );
        }
        e
    }

    /// The family a sample name belongs to (`x_bucket` → `x` for a histogram, `x_total` → `x`
    /// in OpenMetrics).
    fn family_of(&self, sample: &str) -> Option<&str> {
        if let Some(t) = self.types.get(sample) {
            return Some(t);
        }
        ["_bucket", "_sum", "_count", "_total", "_created"]
            .iter()
            .filter_map(|s| sample.strip_suffix(s))
            .find_map(|base| self.types.get(base))
            .map(String::as_str)
    }

    /// The sum of the samples named `name` whose labels include all of `want`.
    fn value(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && want
                        .iter()
                        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    fn has(&self, name: &str, want: &[(&str, &str)]) -> bool {
        self.samples.iter().any(|(n, labels, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
    }
}

/// `a="x",b="y,z"` → its pairs (commas inside quotes kept).
fn split_labels(body: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, ch) in body.char_indices() {
        match ch {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < body.len() {
        out.push(&body[start..]);
    }
    out
}

/// `GET http://ADDR/metrics` with curl, with `accept` if given: (content type, body).
fn scrape_raw(addr: &str, accept: Option<&str>) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "10",
        "-o",
        "-",
        "-w",
        "\n%{content_type}",
    ]);
    if let Some(a) = accept {
        cmd.args(["-H", &format!("Accept: {a}")]);
    }
    let out = cmd
        .arg(format!("http://{addr}/metrics"))
        .output()
        .expect("curl (apt-get install curl)");
    assert!(out.status.success(), "scraping {addr}: {}", text(&out));
    let all = stdout(&out);
    let (body, content_type) = all.rsplit_once('\n').expect("content type line");
    (content_type.to_string(), body.to_string())
}

fn scrape(addr: &str) -> Exposition {
    let (content_type, body) = scrape_raw(addr, None);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Exposition::parse(&body)
}

/// The address a process printed for its metrics (`...: metrics at http://ADDR/metrics`).
fn metrics_addr(log: &str) -> Option<String> {
    log.lines()
        .find_map(|l| l.split_once("metrics at http://"))
        .and_then(|(_, rest)| rest.strip_suffix("/metrics"))
        .map(str::to_string)
}

/// A cluster whose server and one agent (in a namespace) serve metrics.
fn cluster() -> (Cluster, NodeNetwork, String, String) {
    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 1);
    let host = net.host_address().to_string();
    let options = ClusterOptions {
        listen: Some(format!("{host}:0")),
        server_args: vec!["--metrics-addr".into(), format!("{host}:0")],
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    let node_ip = net.address(0).to_string();
    let agent_metrics = format!("{node_ip}:0");
    c.add_agent_at(
        "node-a",
        &node_ip,
        Some(net.namespace(0)),
        &["--metrics-addr", &agent_metrics],
    );
    let server = wait_for(
        "the server's metrics address",
        Duration::from_secs(10),
        || metrics_addr(&c.server_log()),
    );
    let agent = wait_for(
        "the agent's metrics address",
        Duration::from_secs(10),
        || metrics_addr(&c.agent(0).log()),
    );
    (c, net, server, agent)
}

const CM_POST: [(&str, &str); 4] = [
    ("verb", "POST"),
    ("resource", "configmaps"),
    ("subresource", ""),
    ("code", "201"),
];
const CM_LIST: [(&str, &str); 3] = [
    ("verb", "LIST"),
    ("resource", "configmaps"),
    ("code", "200"),
];

#[test]
fn server_metrics_are_kubernetes_and_count_grpc_and_rest_requests() {
    // On loopback: curl reaches the API at the address its certificate names.
    let mut c = Cluster::start_with(ClusterOptions {
        server_args: vec!["--metrics-addr".into(), "127.0.0.1:0".into()],
        ..Default::default()
    });
    c.add_agent("node-1");
    let server = wait_for(
        "the server's metrics address",
        Duration::from_secs(10),
        || metrics_addr(&c.server_log()),
    );
    let before = scrape(&server);
    for (family, kind) in [
        ("apiserver_request_total", "counter"),
        ("apiserver_request_duration_seconds", "histogram"),
        ("apiserver_registered_watchers", "gauge"),
        ("skiff_store_request_duration_seconds", "histogram"),
        ("skiff_store_write_batch_size", "histogram"),
        ("scheduler_schedule_attempts_total", "counter"),
        ("workqueue_depth", "gauge"),
        ("workqueue_work_duration_seconds", "histogram"),
    ] {
        assert_eq!(
            before.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    // The agent's and the controllers' watches are open.
    assert!(before.value("apiserver_registered_watchers", &[("kind", "Pod")]) >= 1.0);
    assert!(before.has("workqueue_depth", &[("name", "deployment")]));
    assert!(
        before.value(
            "skiff_store_request_duration_seconds_count",
            &[("operation", "create")]
        ) > 0.0
    );

    // A create over gRPC.
    c.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: counted}\ndata: {a: b}\n");
    // A list over REST, with the admin token.
    let config = c.config();
    let ca = c.data_dir().join("metrics-ca.pem");
    std::fs::write(&ca, &config.certificate_authority_data).expect("ca");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
        ])
        .arg(&ca)
        .args(["-H", &format!("Authorization: Bearer {}", config.token)])
        .arg(format!(
            "{}/api/v1/namespaces/default/configmaps",
            config.server
        ))
        .output()
        .expect("curl");
    assert_eq!(stdout(&out).trim(), "200", "{}", text(&out));
    // A request with a wrong token is counted as the 401 it got.
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
        ])
        .arg(&ca)
        .args(["-H", "Authorization: Bearer not-a-token"])
        .arg(format!(
            "{}/api/v1/namespaces/default/configmaps",
            config.server
        ))
        .output()
        .expect("curl");
    assert_eq!(stdout(&out).trim(), "401", "{}", text(&out));

    let after = scrape(&server);
    assert_eq!(
        after.value("apiserver_request_total", &CM_POST),
        before.value("apiserver_request_total", &CM_POST) + 1.0
    );
    assert!(
        after.value("apiserver_request_total", &CM_LIST)
            >= before.value("apiserver_request_total", &CM_LIST) + 1.0
    );
    assert!(
        after.value("apiserver_request_total", &[("code", "401")])
            >= before.value("apiserver_request_total", &[("code", "401")]) + 1.0
    );
    let posts = [
        ("verb", "POST"),
        ("resource", "configmaps"),
        ("subresource", ""),
    ];
    assert!(
        after.value("apiserver_request_duration_seconds_count", &posts)
            > before.value("apiserver_request_duration_seconds_count", &posts)
    );
    // No token, and nothing the caller invented, in any label.
    let (_, raw) = scrape_raw(&server, None);
    assert!(!raw.contains(&config.token) && !raw.contains("not-a-token"));

    // A pod is scheduled: an attempt counted as scheduled.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: sleeper}}\nspec:\n  runtimeClassName: wasm\n  containers:\n  - name: main\n    image: file:{}\n    command: [probe]\n    args: [sleep, \"0\"]\n",
        guest("probe").display()
    ));
    wait_for("a scheduled attempt", Duration::from_secs(30), || {
        let e = scrape(&server);
        (e.value(
            "scheduler_schedule_attempts_total",
            &[("result", "scheduled")],
        ) > before.value(
            "scheduler_schedule_attempts_total",
            &[("result", "scheduled")],
        ))
        .then_some(())
    });

    // OpenMetrics when asked for: its content type, `_total` outside the TYPE name, one # EOF.
    let (content_type, body) =
        scrape_raw(&server, Some("application/openmetrics-text; version=1.0.0"));
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(
        body.ends_with("# EOF\n"),
        "{}",
        &body[body.len().saturating_sub(200)..]
    );
    assert_eq!(body.matches("# EOF").count(), 1);
    let om = Exposition::parse(&body);
    assert_eq!(
        om.types.get("apiserver_request").map(String::as_str),
        Some("counter")
    );
    assert!(om.value("apiserver_request_total", &CM_POST) >= 1.0);
}

/// curl from inside the node's namespace: the HTTP status.
fn curl_in(ns: &str, url: &str) -> u16 {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args([
            "--",
            "curl",
            "-s",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            url,
        ])
        .output()
        .expect("nsenter curl");
    stdout(&out).trim().parse().unwrap_or(0)
}

#[test]
fn agent_metrics_follow_a_memory_hog_and_a_functions_requests() {
    let (c, net, server, agent) = cluster();
    // A Wasm memory hog: 1 MiB every 150 ms up to 64 MiB, then held.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: hog}}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: file:{}\n    command: [probe]\n    args: [creep, \"64\", \"150\"]\n    resources:\n      limits: {{memory: 128Mi}}\n",
        guest("probe").display()
    ));
    let hog = [
        ("namespace", "default"),
        ("pod", "hog"),
        ("container", "main"),
    ];
    let mib =
        |e: &Exposition| e.value("container_memory_working_set_bytes", &hog) / f64::from(1 << 20);
    let first = wait_for(
        "the hog on the agent's /metrics",
        Duration::from_secs(60),
        || {
            let e = scrape(&agent);
            e.has("container_memory_working_set_bytes", &hog)
                .then(|| mib(&e))
        },
    );
    let later = wait_for(
        "the hog's memory to rise by 16 MiB",
        Duration::from_secs(60),
        || {
            let m = mib(&scrape(&agent));
            (m >= first + 16.0).then_some(m)
        },
    );
    assert!(
        later <= 128.0,
        "{later} MiB: more than the hog's own memory"
    );
    let e = scrape(&agent);
    assert_eq!(
        e.types
            .get("container_memory_working_set_bytes")
            .map(String::as_str),
        Some("gauge")
    );
    assert_eq!(
        e.types
            .get("container_cpu_usage_seconds_total")
            .map(String::as_str),
        Some("counter")
    );
    assert!(e.value("container_cpu_usage_seconds_total", &hog) > 0.0);
    // The pod started, counted by its runtime.
    assert!(
        e.value(
            "kubelet_pod_start_total_duration_seconds_count",
            &[("runtime", "wasm")]
        ) >= 1.0,
        "no pod start counted"
    );
    // The server has the hog's figure from the agent's report.
    wait_for(
        "the hog's figure on the server",
        Duration::from_secs(30),
        || {
            let s = scrape(&server);
            (s.value(
                "skiff_pod_memory_working_set_bytes",
                &[("pod", "hog"), ("node", "node-a")],
            ) >= 16.0 * f64::from(1 << 20))
            .then_some(())
        },
    );

    // A function, reached at its pod IP from inside the node's namespace.
    let image = format!("file:{}", function_component("http").display());
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: fn, labels: {{app: fn}}}}\nspec:\n  runtimeClassName: wasm\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: fn\n    image: {image}\n    ports: [{{containerPort: 8080}}]\n    readinessProbe:\n      tcpSocket: {{port: 8080}}\n      periodSeconds: 1\n"
    ));
    let ip = wait_for("the function's pod IP", Duration::from_secs(60), || {
        let p = c.get_json("pod", "fn")?;
        let ready = p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready
            .then(|| p["status"]["podIP"].as_str().map(str::to_string))
            .flatten()
    });
    let ns = net.namespace(0).to_string();
    for _ in 0..5 {
        assert_eq!(curl_in(&ns, &format!("http://{ip}:8080/")), 200);
    }
    let function = [("namespace", "default"), ("pod", "fn"), ("container", "fn")];
    let e = wait_for(
        "the function's 5 requests on /metrics",
        Duration::from_secs(30),
        || {
            let e = scrape(&agent);
            (e.value("skiff_function_requests_total", &function) >= 5.0).then_some(e)
        },
    );
    assert_eq!(
        e.types
            .get("skiff_function_requests_total")
            .map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        e.types
            .get("skiff_function_request_duration_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    assert!(e.value("skiff_function_cold_starts_total", &function) >= 5.0);
    assert!(e.value("skiff_function_request_duration_seconds_count", &function) >= 5.0);
    assert_eq!(e.value("skiff_function_requests_in_flight", &function), 0.0);
    assert!(e.has(
        "skiff_function_request_failures_total",
        &[("pod", "fn"), ("code", "503")]
    ));
    // The hog is no function: no function series of its own.
    assert!(!e.has("skiff_function_requests_total", &hog));
}

#[test]
fn a_bad_metrics_address_exits_2_naming_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        vec![
            "server",
            "--data-dir",
            "DIR",
            "--metrics-addr",
            "not-an-address",
        ],
        vec![
            "agent",
            "--server",
            "127.0.0.1:1",
            "--metrics-addr",
            "localhost",
        ],
        vec!["up", "--data-dir", "DIR", "--metrics-addr", "1.2.3.4.5:9"],
    ] {
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("DIR", &dir.path().display().to_string()))
            .collect();
        let out = Command::new(skiff_bin())
            .args(&args)
            .output()
            .expect("skiff");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("--metrics-addr"), "{}", text(&out));
    }
}

/// `skiff up` in a network namespace the test made, stopped with Ctrl-C (SIGINT) at the end.
struct Up(std::process::Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn skiff_up_serves_the_servers_and_the_nodes_metrics_on_one_endpoint() {
    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 1);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("up");
    let log_path = tmp.path().join("up.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", net.namespace(0)))
        .arg("--")
        .arg(skiff_bin())
        .arg("up")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--listen", &format!("{}:0", net.address(0))])
        .args(["--cluster-cidr", &slot.cluster_cidr()])
        .args(["--service-cidr", &slot.service_cidr()])
        .args(["--ingress-addr", "off"])
        .args(["--metrics-addr", &format!("{}:0", net.address(0))])
        .current_dir(skiff_tests::guests::workspace_root())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("skiff up");
    let _up = Up(child);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let addr = wait_for(
        "skiff up's metrics address",
        Duration::from_secs(30),
        || metrics_addr(&log()),
    );
    assert!(log().contains("skiff up: metrics at"), "{}", log());
    let config = dir.join("config.yaml");
    let hog = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: hog}}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: file:{}\n    command: [probe]\n    args: [creep, \"8\", \"100\"]\n",
        guest("probe").display()
    );
    wait_for("the pod applied", Duration::from_secs(60), || {
        let mut apply = Command::new(skiff_bin())
            .arg("--config")
            .arg(&config)
            .args(["apply", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        use std::io::Write;
        apply.stdin.take()?.write_all(hog.as_bytes()).ok()?;
        apply
            .wait_with_output()
            .ok()?
            .status
            .success()
            .then_some(())
    });
    // One scrape holds both: the server's request counts and the node's container figures.
    let e = wait_for(
        "the hog on skiff up's /metrics",
        Duration::from_secs(60),
        || {
            let e = scrape(&addr);
            e.has(
                "container_memory_working_set_bytes",
                &[("namespace", "default"), ("pod", "hog")],
            )
            .then_some(e)
        },
    );
    assert!(
        e.value(
            "apiserver_request_total",
            &[("verb", "POST"), ("resource", "pods")]
        ) >= 1.0
    );
    assert_eq!(
        e.types
            .get("container_cpu_usage_seconds_total")
            .map(String::as_str),
        Some("counter")
    );
    // OpenMetrics: still one # EOF for the two sources.
    let (_, body) = scrape_raw(&addr, Some("application/openmetrics-text"));
    assert_eq!(body.matches("# EOF").count(), 1);
    assert!(body.ends_with("# EOF\n"));
}
