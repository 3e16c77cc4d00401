//! The host interfaces of `wit/` end to end, with `tests/guests/host.c` (built against `wit/`):
//! wasi:config from a ConfigMap the pod names, wasi:logging into `skiff logs`, wasi:keyvalue
//! kept in the cluster's store across an instance restart and a pod's replacement (scoped to
//! the namespace), its batches and key listing, its calls across an agent restart, and an import
//! the pod does not grant failing it with a reason naming it.

use std::time::Duration;

use serde_json::Value;
use skiff_tests::guests::host_component;
use skiff_tests::{Cluster, stdout, text, wait_for};

fn cluster() -> Cluster {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    c
}

fn image() -> String {
    format!("file:{}", host_component("host").display())
}

/// A Wasm pod running `host ARGS...` with the given grant and config sources.
fn pod(name: &str, namespace: &str, grants: &str, config_from: &str, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    let config_from = if config_from.is_empty() {
        String::new()
    } else {
        format!("\n    skiff.dev/wasi-config-from: {config_from:?}")
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  annotations:\n    skiff.dev/wasi-interfaces: {grants:?}{config_from}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {image}\n    command: [host]\n    args: [{args}]\n",
        image = image(),
        args = args.join(", "),
    )
}

fn pod_json(c: &Cluster, namespace: &str, name: &str) -> Option<Value> {
    let out = c.skiff(&["get", "pod", name, "-n", namespace, "-o", "json"]);
    serde_json::from_slice(&out.stdout).ok()
}

/// Waits for the pod to end (Succeeded or Failed); returns it.
fn finished(c: &Cluster, namespace: &str, name: &str) -> Value {
    wait_for(
        &format!("pod {namespace}/{name} to finish"),
        Duration::from_secs(60),
        || {
            pod_json(c, namespace, name)
                .filter(|p| matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        },
    )
}

fn logs(c: &Cluster, namespace: &str, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["logs", name, "-n", namespace];
    args.extend_from_slice(extra);
    stdout(&c.skiff(&args))
}

#[test]
fn wasi_config_reads_a_configmap_value_and_wasi_logging_lines_reach_skiff_logs() {
    let c = cluster();
    c.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app-settings}\ndata: {greeting: hello, colour: teal}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: app-secrets}\nstringData: {colour: navy}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: not-named}\ndata: {hidden: value}\n",
    );
    let all = "config,keyvalue,logging";
    let sources = "configmap:app-settings,secret:app-secrets";
    c.apply(&pod(
        "greet",
        "default",
        all,
        sources,
        &["config", "greeting"],
    ));
    c.apply(&pod(
        "colour",
        "default",
        all,
        sources,
        &["config", "colour"],
    ));
    c.apply(&pod(
        "hidden",
        "default",
        all,
        sources,
        &["config", "hidden"],
    ));
    c.apply(&pod(
        "logger",
        "default",
        all,
        "",
        &["log", "info", "e2e", "hello from wasi:logging"],
    ));
    for name in ["greet", "colour", "hidden", "logger"] {
        let p = finished(&c, "default", name);
        assert_eq!(p["status"]["phase"], "Succeeded", "{name}: {p:#}");
    }
    assert!(logs(&c, "default", "greet", &[]).contains("greeting=hello"));
    // Later sources win, as with envFrom: the Secret's value over the ConfigMap's.
    assert!(logs(&c, "default", "colour", &[]).contains("colour=navy"));
    // A ConfigMap of the namespace that the pod does not name is not readable.
    assert!(logs(&c, "default", "hidden", &[]).contains("hidden: not set"));
    let out = logs(&c, "default", "logger", &[]);
    assert!(out.contains("INFO e2e: hello from wasi:logging"), "{out}");
}

#[test]
fn an_import_the_pod_does_not_grant_fails_it_with_a_reason_naming_the_import() {
    let c = cluster();
    c.apply(&pod(
        "ungranted",
        "default",
        "config,logging",
        "",
        &["incr", "b", "k"],
    ));
    let p = finished(&c, "default", "ungranted");
    assert_eq!(p["status"]["phase"], "Failed", "{p:#}");
    let state = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    let message = state["message"].as_str().unwrap_or_default();
    assert!(message.contains("imports wasi:keyvalue/"), "{p:#}");
    assert!(message.contains("not granted"), "{p:#}");
    assert!(message.contains("skiff.dev/wasi-interfaces"), "{p:#}");
    // Refused at validation: an unknown interface, named with its annotation.
    let out = c.skiff_stdin(
        &["apply", "-f", "-"],
        &pod("typo", "default", "config,keyvalues", "", &["config", "x"]),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("skiff.dev/wasi-interfaces") && text(&out).contains("keyvalues"),
        "{}",
        text(&out)
    );
}

/// The number the counter's current attempt printed (`count=N`).
fn count_in(log: &str) -> Option<u64> {
    count_of(log, "count=")
}

/// The counter Deployment's live pod, by name.
fn counter_pod(c: &Cluster, not: Option<&str>) -> Option<String> {
    let out = c.skiff(&["get", "pods", "-l", "app=counter", "-o", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout).ok()?;
    list["items"]
        .as_array()?
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["metadata"]["name"].as_str())
        .find(|n| Some(*n) != not)
        .map(str::to_string)
}

#[test]
fn wasi_keyvalue_data_survives_an_instance_restart_and_the_pod_replaced() {
    let c = cluster();
    // Each run adds one to visits/count and exits 0; the Deployment restarts it (back-off).
    c.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: counter}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: counter}}}}\n  template:\n    metadata:\n      labels: {{app: counter}}\n      annotations: {{skiff.dev/wasi-interfaces: \"config,keyvalue,logging\"}}\n    spec:\n      runtimeClassName: wasm\n      terminationGracePeriodSeconds: 2\n      containers:\n      - name: main\n        image: {image}\n        command: [host]\n        args: [incr, visits, count]\n",
        image = image()
    ));
    let first = wait_for("the counter's pod", Duration::from_secs(30), || {
        counter_pod(&c, None)
    });
    // A restart of the instance in the same pod counts on from what the first run stored.
    let before = wait_for(
        "a second run of the counter in its pod",
        Duration::from_secs(90),
        || count_in(&logs(&c, "default", &first, &[])).filter(|n| *n >= 2),
    );
    let previous = count_in(&logs(&c, "default", &first, &["--previous"]));
    assert_eq!(
        previous,
        Some(before - 1),
        "the run before counted one less"
    );
    // A new pod (the old one deleted) sees the data too.
    let out = c.skiff(&["delete", "pod", &first]);
    assert!(out.status.success(), "{}", text(&out));
    let second = wait_for("the replacement pod", Duration::from_secs(60), || {
        counter_pod(&c, Some(&first))
    });
    let after = wait_for(
        "the replacement pod's count",
        Duration::from_secs(60),
        || count_in(&logs(&c, "default", &second, &[])),
    );
    assert!(
        after > before,
        "the replacement counted {after}, after {before} in the first pod"
    );
    // The bucket is the namespace's: another namespace's pod does not see it.
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n");
    c.apply(&pod(
        "reader",
        "other",
        "config,keyvalue,logging",
        "",
        &["get", "visits", "count"],
    ));
    let p = finished(&c, "other", "reader");
    assert_eq!(p["status"]["phase"], "Succeeded", "{p:#}");
    assert!(logs(&c, "other", "reader", &[]).contains("count: not set"));
}

#[test]
fn wasi_keyvalue_batches_and_key_listing_go_through_the_control_plane() {
    let c = cluster();
    let all = "config,keyvalue,logging";
    let steps: [(&str, &[&str], &str); 4] = [
        (
            "put",
            &["setmany", "cart", "apple=3", "pear=1", "plum=7"],
            "3 set",
        ),
        (
            "read",
            &["getmany", "cart", "pear", "kiwi", "plum"],
            "pear=1\nkiwi: not set\nplum=7",
        ),
        ("drop", &["delmany", "cart", "apple", "plum"], "2 deleted"),
        ("list", &["keys", "cart"], "pear"),
    ];
    // One after another: each sees what the one before it wrote.
    for (name, args, want) in steps {
        c.apply(&pod(name, "default", all, "", args));
        let p = finished(&c, "default", name);
        assert_eq!(p["status"]["phase"], "Succeeded", "{name}: {p:#}");
        let out = logs(&c, "default", name, &[]);
        assert_eq!(out.trim_end(), want, "{name}");
    }
}

#[test]
fn wasi_keyvalue_calls_go_on_across_an_agent_restart() {
    let mut c = cluster();
    // 150 increments 200 ms apart (30 s): one instance, calling the agent's socket throughout.
    c.apply(&pod(
        "steady",
        "default",
        "config,keyvalue,logging",
        "",
        &["count", "ticks", "n", "200", "150"],
    ));
    let before = wait_for("a few counts", Duration::from_secs(30), || {
        count_of(&logs(&c, "default", "steady", &[]), "n=").filter(|n| *n >= 3)
    });
    // The agent goes (its pods keep running), and comes back: it serves the pod's socket again.
    c.kill_agent(0);
    std::thread::sleep(Duration::from_secs(1));
    c.start_agent(0);
    let after = wait_for("counts after the restart", Duration::from_secs(30), || {
        count_of(&logs(&c, "default", "steady", &[]), "n=").filter(|n| *n >= before + 10)
    });
    let out = logs(&c, "default", "steady", &[]);
    assert!(!out.contains("host count:"), "a call failed:\n{out}");
    // Every count once, in order: none lost or repeated while the agent was away.
    let counts: Vec<u64> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("n=")?.parse().ok())
        .collect();
    assert_eq!(counts, (1..=after).collect::<Vec<u64>>(), "{out}");
    let p = pod_json(&c, "default", "steady").unwrap();
    let restarts = p["status"]["containerStatuses"][0]["restartCount"].as_u64();
    assert_eq!(restarts.unwrap_or(0), 0, "{p:#}");
}

#[test]
fn a_bucket_is_the_same_from_a_pod_on_another_node() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    c.add_agent("node-2");
    let on = |node: &str, yaml: String| {
        yaml.replace(
            "  restartPolicy: Never\n",
            &format!(
                "  restartPolicy: Never\n  nodeSelector: {{kubernetes.io/hostname: {node}}}\n"
            ),
        )
    };
    let all = "config,keyvalue,logging";
    c.apply(&on(
        "node-1",
        pod("writer", "default", all, "", &["set", "shared", "k", "v1"]),
    ));
    let p = finished(&c, "default", "writer");
    assert_eq!(p["spec"]["nodeName"], "node-1", "{p:#}");
    assert_eq!(p["status"]["phase"], "Succeeded", "{p:#}");
    c.apply(&on(
        "node-2",
        pod("reader", "default", all, "", &["get", "shared", "k"]),
    ));
    let p = finished(&c, "default", "reader");
    assert_eq!(p["spec"]["nodeName"], "node-2", "{p:#}");
    assert_eq!(logs(&c, "default", "reader", &[]), "k=v1\n");
}

/// The last number printed after `prefix` on a line of `log`.
fn count_of(log: &str, prefix: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(prefix)?.parse().ok())
}
