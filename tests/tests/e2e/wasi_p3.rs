//! WASI 0.3 end to end: components built from `tests/guests/p3/` (against the WASI 0.3.0 WIT
//! wasmtime 48 ships) run as pods on a real server, agent and shims: a `wasi:cli@0.3.0` command
//! to Succeeded or Failed with its output in `skiff logs`, and a `wasi:http@0.3.0` function that
//! serves requests.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use skiff_tests::guests::p3_component;
use skiff_tests::netns::NodeNetwork;
use skiff_tests::netslot::NetSlot;
use skiff_tests::{Cluster, ClusterOptions, stderr, stdout, text, wait_for};

fn cluster() -> Cluster {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    c
}

fn image(name: &str) -> String {
    format!("file:{}", p3_component(name).display())
}

fn phase(p: &Value) -> &str {
    p["status"]["phase"].as_str().unwrap_or("")
}

/// Waits (30 s) for pod `name` to end, Succeeded or Failed; returns it.
fn ended(c: &Cluster, name: &str) -> Value {
    wait_for(
        &format!("pod {name} Succeeded or Failed"),
        Duration::from_secs(30),
        || {
            c.get_json("pod", name)
                .filter(|p| matches!(phase(p), "Succeeded" | "Failed"))
        },
    )
}

fn logs(c: &Cluster, name: &str) -> String {
    let out = c.skiff(&["logs", name]);
    assert!(out.status.success(), "{}", text(&out));
    stdout(&out)
}

#[test]
fn a_p3_command_pod_succeeds_with_its_output_in_logs() {
    let c = cluster();
    let env = "    env:\n    - {name: GREETING, value: hi from the spec}\n";
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p3-echo\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {}\n    command: [cli]\n    args: [echo, hello, from WASI 0.3]\n{env}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p3-env\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {}\n    command: [cli]\n    args: [env, GREETING, HOME]\n{env}",
        image("cli"),
        image("cli"),
    ));
    let p = ended(&c, "p3-echo");
    assert_eq!(phase(&p), "Succeeded", "{p:#}");
    assert_eq!(logs(&c, "p3-echo"), "hello from WASI 0.3\n");
    let p = ended(&c, "p3-env");
    assert_eq!(phase(&p), "Succeeded", "{p:#}");
    assert_eq!(
        logs(&c, "p3-env"),
        "GREETING=hi from the spec\nHOME unset\n"
    );
}

#[test]
fn a_p3_command_exit_code_fails_the_pod_and_reaches_skiff_run() {
    let c = cluster();
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p3-exit\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {}\n    args: [exit, \"7\"]\n",
        image("cli"),
    ));
    let p = ended(&c, "p3-exit");
    assert_eq!(phase(&p), "Failed", "{p:#}");
    let terminated = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["exitCode"].as_i64(), Some(7), "{p:#}");
    assert_eq!(terminated["reason"].as_str(), Some("Error"), "{p:#}");

    let out = c.skiff(&["run", "--rm", &image("cli"), "--", "exit", "3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(stderr(&out).contains("exiting 3\n"), "{}", text(&out));
    let out = c.skiff(&["run", "--rm", &image("cli"), "--", "echo", "streamed"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "streamed\n");
}

/// GETs `paths` at once from the node's namespace `ns`, a curl each: (status, body) in order.
fn get_all(ns: &str, base: &str, paths: &[&str]) -> Vec<(u16, String)> {
    let children: Vec<_> = paths
        .iter()
        .map(|path| {
            Command::new("nsenter")
                .arg(format!("--net=/run/netns/{ns}"))
                .args([
                    "--",
                    "curl",
                    "-s",
                    "--max-time",
                    "20",
                    "-w",
                    "\n%{http_code}",
                ])
                .arg(format!("{base}{path}"))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("curl")
        })
        .collect();
    children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().expect("curl");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
            (code.trim().parse().unwrap_or(0), body.to_string())
        })
        .collect()
}

#[test]
fn a_p3_function_pod_serves_requests_on_its_pod_ip() {
    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 1);
    let options = ClusterOptions {
        listen: Some(format!("{}:0", net.host_address())),
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    c.add_agent_at("node-a", net.address(0), Some(net.namespace(0)), &[]);
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p3-fn\n  annotations: {{skiff.dev/function-timeout: 5s}}\nspec:\n  runtimeClassName: wasm\n  containers:\n  - name: fn\n    image: {}\n    env: [{{name: GREETING, value: from the pod spec}}]\n    ports: [{{containerPort: 8080}}]\n    readinessProbe:\n      tcpSocket: {{port: 8080}}\n      periodSeconds: 1\n",
        image("http"),
    ));
    let ip = wait_for("p3-fn Ready", Duration::from_secs(60), || {
        let p = c.get_json("pod", "p3-fn")?;
        let ready = p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready
            .then(|| p["status"]["podIP"].as_str().map(str::to_string))
            .flatten()
    });
    let ns = net.namespace(0);
    let base = format!("http://{ip}:8080");
    let got = get_all(ns, &base, &["/", "/env/GREETING"]);
    assert_eq!(got[0], (200, "hello from a WASI 0.3 function\n".into()));
    assert_eq!(got[1], (200, "GREETING=from the pod spec\n".into()));
    // Overlapping requests, each answered (some in one instance: the guest lifts handle async).
    let got = get_all(ns, &base, &["/sleep/300"; 4]);
    for (code, body) in &got {
        assert_eq!(*code, 200, "{got:?}");
        assert!(body.starts_with("slept 300 ms, request "), "{got:?}");
    }
    // The guest's stdout is the pod's log.
    let log = wait_for("the log lines", Duration::from_secs(10), || {
        let log = logs(&c, "p3-fn");
        log.contains("handled /env/GREETING\n").then_some(log)
    });
    assert!(log.contains("handled /\n"), "{log}");
    assert_eq!(log.matches("handled /sleep/300\n").count(), 4, "{log}");
}

#[test]
fn a_component_of_another_p3_draft_fails_its_pod_naming_the_import() {
    let c = cluster();
    let draft = skiff_tests::guests::wat(
        "e2e-p3-draft-import",
        r#"(component
            (import "wasi:cli/environment@0.3.0-rc-2025-09-16" (instance
              (export "get-arguments" (func (result (list string))))))
            (core module $m (func (export "run") (result i32) i32.const 0))
            (core instance $i (instantiate $m))
            (func $run (result (result)) (canon lift (core func $i "run")))
            (instance $cli (export "run" (func $run)))
            (export "wasi:cli/run@0.3.0" (instance $cli)))"#,
    );
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p3-draft}}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: file:{}\n",
        draft.display()
    ));
    let p = ended(&c, "p3-draft");
    assert_eq!(phase(&p), "Failed", "{p:#}");
    let terminated = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["reason"], "StartError", "{p:#}");
    let message = terminated["message"].as_str().unwrap_or("");
    assert!(
        message.contains("wasi:cli/environment@0.3.0-rc-2025-09-16")
            && message.contains("another WASI 0.3 draft"),
        "{message}"
    );
    // The node still runs 0.3 commands.
    let out = c.skiff(&["run", "--rm", &image("cli"), "--", "echo", "still", "here"]);
    assert_eq!(stdout(&out), "still here\n", "{}", text(&out));
}
