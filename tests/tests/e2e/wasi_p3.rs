//! WASI 0.3 end to end: components built from `tests/guests/p3/` (against the WASI 0.3.0 WIT
//! wasmtime 48 ships) run as pods on a real server, agent and shims: a `wasi:cli@0.3.0` command
//! to Succeeded or Failed with its output in `skiff logs`, and a `wasi:http@0.3.0` function that
//! serves requests.

use std::time::Duration;

use serde_json::Value;
use skiff_tests::guests::p3_component;
use skiff_tests::{Cluster, stderr, stdout, text, wait_for};

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
