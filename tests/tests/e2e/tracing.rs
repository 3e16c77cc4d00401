//! Logs and traces end to end (issue 25): a server and an agent started with `--otlp-endpoint`
//! (an OTLP/gRPC receiver this test runs, `skiff_tests::otlp`) and `--log-format json`.
//!
//! A Wasm function pod's start is one trace: the create request's span (API server), the
//! scheduler's bind, the agent's pod sync and the shim's task create and start with the guest's
//! instantiation, tied together by the pod's `skiff.dev/traceparent` annotation. A request to the
//! function carrying a W3C `traceparent` gets its span in the caller's trace. Every JSON log
//! line parses, lines inside spans name their trace, and a Secret's value (a canary the pod gets
//! as an environment variable) appears in no span and no log line.

use std::process::Command;
use std::time::Duration;

use skiff_tests::guests::function_component;
use skiff_tests::netns::NodeNetwork;
use skiff_tests::netslot::NetSlot;
use skiff_tests::otlp::{Receiver, Span};
use skiff_tests::{Cluster, ClusterOptions, stdout, wait_for};

const CANARY: &str = "canary-7f3a9c41d2e8b5";

/// The spans of trace `trace_id`.
fn in_trace<'a>(spans: &'a [Span], trace_id: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.trace_id == trace_id).collect()
}

fn has(spans: &[&Span], service: &str, name: &str) -> bool {
    spans.iter().any(|s| s.service == service && s.name == name)
}

/// Every line of `log` that is not the start-up banner parses as one JSON object with the
/// fields `--log-format json` promises; returns them.
fn json_lines(log: &str, who: &str) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        if !line.starts_with('{') {
            // What the commands print for their user (where the API and the config are).
            assert!(
                line.starts_with("skiff") || line.starts_with("  "),
                "{who}: a log line that is not JSON: {line}"
            );
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{who}: {e}: {line}"));
        for key in ["timestamp", "level", "target", "message", "fields"] {
            assert!(v.get(key).is_some(), "{who}: no {key} in {line}");
        }
        lines.push(v);
    }
    assert!(!lines.is_empty(), "{who}: no JSON log line in:\n{log}");
    lines
}

#[test]
fn a_pod_start_is_one_trace_and_no_secret_reaches_a_span_or_a_log() {
    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 1);
    let receiver = Receiver::start(net.host_address());
    let endpoint = receiver.endpoint();
    let telemetry = ["--otlp-endpoint", &endpoint, "--log-format", "json"];
    let options = ClusterOptions {
        listen: Some(format!("{}:0", net.host_address())),
        server_args: telemetry.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    c.add_agent_at("node-a", net.address(0), Some(net.namespace(0)), &telemetry);

    let image = format!("file:{}", function_component("http").display());
    c.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: canary}}\nstringData: {{token: {CANARY}}}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: traced\nspec:\n  runtimeClassName: wasm\n  containers:\n  - name: fn\n    image: {image}\n    env:\n    - name: TOKEN\n      valueFrom: {{secretKeyRef: {{name: canary, key: token}}}}\n    ports: [{{containerPort: 8080}}]\n"
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let pod = loop {
        let pod = c.get_json("pod", "traced");
        if let Some(p) = pod.as_ref().filter(|p| {
            p["status"]["phase"] == "Running" && p["status"]["podIP"].as_str().is_some()
        }) {
            break p.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pod traced not Running in 90 s: {pod:#?}\nagent log:\n{}\nshim log:\n{}",
            c.agent(0).log(),
            c.agent(0).shim_log("wasm")
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let traceparent = pod["metadata"]["annotations"]["skiff.dev/traceparent"]
        .as_str()
        .expect("the pod carries its create request's traceparent")
        .to_string();
    let trace_id = traceparent.split('-').nth(1).expect("trace id").to_string();

    // API request → scheduler → agent → shim → guest, one trace.
    let spans = receiver.wait_for(
        "the pod's start, from every component",
        Duration::from_secs(60),
        |spans| {
            let t = in_trace(spans, &trace_id);
            has(&t, "skiff-server", "create pods")
                && has(&t, "skiff-server", "schedule pod")
                && has(&t, "skiff-agent", "sync pod")
                && has(&t, "skiff-shim", "create task")
                && has(&t, "skiff-shim", "start task")
                && has(&t, "skiff-shim", "start guest")
        },
    );
    let t = in_trace(&spans, &trace_id);
    let create = t
        .iter()
        .find(|s| s.name == "create pods")
        .expect("create span");
    assert_eq!(create.attribute("verb"), Some("create"));
    assert_eq!(create.attribute("resource"), Some("pods"));
    assert_eq!(create.attribute("namespace"), Some("default"));
    assert_eq!(create.attribute("name"), Some("traced"));
    assert_eq!(create.attribute("code"), Some("200"));
    // The annotation names the create request's span; the scheduler's and the agent's are its
    // children, the shim's start is a child of an agent sync.
    assert_eq!(traceparent.split('-').nth(2), Some(create.span_id.as_str()));
    for name in ["schedule pod", "sync pod"] {
        assert!(
            t.iter()
                .any(|s| s.name == name && s.parent_span_id == create.span_id),
            "{name} is not a child of the create request"
        );
    }
    let syncs: Vec<&str> = t
        .iter()
        .filter(|s| s.name == "sync pod")
        .map(|s| s.span_id.as_str())
        .collect();
    let start = t
        .iter()
        .find(|s| s.name == "start task")
        .expect("start task");
    assert!(syncs.contains(&start.parent_span_id.as_str()));
    let guest = t.iter().find(|s| s.name == "start guest").expect("guest");
    assert_eq!(guest.parent_span_id, start.span_id);

    // A function request carrying a traceparent: its span joins the caller's trace.
    let ip = pod["status"]["podIP"].as_str().expect("pod IP");
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let url = format!("http://{ip}:8080/");
    wait_for("the function answers", Duration::from_secs(30), || {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", net.namespace(0)))
            .args([
                "--",
                "curl",
                "-s",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args([
                "-H",
                &format!("traceparent: 00-{caller_trace}-{caller_span}-01"),
            ])
            .arg(&url)
            .output()
            .ok()?;
        (stdout(&out).trim() == "200").then_some(())
    });
    let spans = receiver.wait_for(
        "the function request's span",
        Duration::from_secs(30),
        |spans| {
            spans
                .iter()
                .any(|s| s.trace_id == caller_trace && s.service == "skiff-shim")
        },
    );
    let request = spans
        .iter()
        .find(|s| s.trace_id == caller_trace && s.service == "skiff-shim")
        .expect("function span");
    assert_eq!(request.parent_span_id, caller_span);
    assert_eq!(request.name, "GET");
    assert_eq!(request.attribute("http.response.status_code"), Some("200"));

    // A REST request carrying a traceparent (HTTP/1.1 and HTTP/2): its span joins the caller's
    // trace, named and described as Kubernetes names the request; the bearer token stays out.
    let config = c.config();
    let ca = c.data_dir().join("curl-ca.pem");
    std::fs::write(&ca, &config.certificate_authority_data).expect("ca");
    for (version, trace) in [
        ("--http1.1", "5bf92f3577b34da6a3ce929d0e0e4736"),
        ("--http2", "6bf92f3577b34da6a3ce929d0e0e4736"),
    ] {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "30",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg(version)
            .arg("--cacert")
            .arg(&ca)
            .args(["-H", &format!("Authorization: Bearer {}", config.token)])
            .args(["-H", &format!("traceparent: 00-{trace}-{caller_span}-01")])
            // The server's certificate names `kubernetes.default.svc`, not this test's address.
            .args([
                "--connect-to",
                &format!("kubernetes.default.svc:443:{}", c.addr),
            ])
            .arg("https://kubernetes.default.svc/api/v1/namespaces/default/pods/traced")
            .output()
            .expect("curl");
        assert_eq!(
            stdout(&out).trim(),
            "200",
            "{version} {}: {}",
            config.server,
            String::from_utf8_lossy(&out.stderr)
        );
        let spans = receiver.wait_for("the REST request's span", Duration::from_secs(30), |s| {
            s.iter().any(|s| s.trace_id == trace)
        });
        let get = spans.iter().find(|s| s.trace_id == trace).expect("span");
        assert_eq!(get.service, "skiff-server");
        assert_eq!(get.name, "get pods", "{version}");
        assert_eq!(get.parent_span_id, caller_span);
        assert_eq!(get.attribute("namespace"), Some("default"));
        assert_eq!(get.attribute("name"), Some("traced"));
        assert_eq!(get.attribute("code"), Some("200"));
        assert_eq!(get.attribute("rpc.system"), Some("http"));
    }

    // JSON logs: every line parses; lines inside a span name its trace.
    let server_log = c.server_log();
    let agent_log = c.agent(0).log();
    for (who, log) in [("server", &server_log), ("agent", &agent_log)] {
        let lines = json_lines(log, who);
        assert!(
            lines
                .iter()
                .any(|l| l["trace_id"].as_str().is_some_and(|t| t.len() == 32)),
            "{who}: no log line names a trace"
        );
    }

    // The canary is in the Secret and the guest's environment, and nowhere else.
    let secret = c.get_json("secret", "canary").expect("secret");
    assert!(secret["data"]["token"].is_string());
    for s in receiver.spans() {
        assert!(!s.text().contains(CANARY), "a span holds the secret: {s:?}");
    }
    assert!(
        !server_log.contains(CANARY),
        "the server log holds the secret"
    );
    assert!(
        !agent_log.contains(CANARY),
        "the agent log holds the secret"
    );
    // Nor the admin's bearer token, sent with every request of this test.
    for s in receiver.spans() {
        assert!(
            !s.text().contains(&config.token),
            "a span holds the token: {s:?}"
        );
    }
    assert!(
        !server_log.contains(&config.token),
        "the server log holds the token"
    );
    c.skiff(&["delete", "pod", "traced"]);
}

#[test]
fn a_collector_that_is_down_costs_the_api_nothing_and_bad_flags_exit_2() {
    // Nothing listens on the collector's port: the server serves as without one.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let endpoint = format!("http://{}", dead.local_addr().expect("address"));
    drop(dead);
    let options = ClusterOptions {
        server_args: vec!["--otlp-endpoint".into(), endpoint],
        ..Default::default()
    };
    let c = Cluster::start_with(options);
    for i in 0..20 {
        c.apply(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}}}\ndata: {{k: v}}\n"
        ));
    }
    let out = c.skiff(&["get", "configmaps", "-o", "name"]);
    assert_eq!(stdout(&out).matches("configmap/cm-").count(), 20);

    for (command, flag, value) in [
        ("server", "--log-format", "yaml"),
        ("server", "--otlp-endpoint", "127.0.0.1:4317"),
        ("agent", "--log-format", "xml"),
        ("agent", "--otlp-endpoint", "https://collector:4317"),
        ("up", "--otlp-endpoint", "http://collector"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(skiff_tests::skiff_bin());
        cmd.arg(command)
            .args(["--data-dir", &dir.path().display().to_string()]);
        if command == "agent" {
            cmd.args(["--server", "127.0.0.1:1"]);
        }
        let out = cmd.args([flag, value]).output().expect("run skiff");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{command} {flag} {value}: {err}"
        );
        assert!(err.contains(flag), "{command} {flag} {value}: {err}");
    }
}
