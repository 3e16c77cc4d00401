//! Health probes end to end: a real server and agent, busybox pods pulled from a real registry
//! and Wasm guests, probed by the agent over the pods' own addresses (node-local, so agents on
//! 127.0.0.x are enough). A failing readiness probe keeps an OCI pod in `notReadyAddresses`
//! until it passes (and sends it back when it fails again); a failing liveness probe restarts an
//! OCI container with kubelet's events; a startup probe holds a liveness probe that would fail
//! before the start; a Wasm pod is probed over its pod network (ready in Endpoints; restarted
//! when its liveness port does not answer), and an `exec` probe on a Wasm container is refused
//! naming the field.

use std::time::Duration;

use serde_json::Value;
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, text, wait_for};

/// A cluster of one agent and the busybox image in a registry.
struct Setup {
    cluster: Cluster,
    image: String,
    _registry: Registry,
}

fn setup() -> Setup {
    let registry = Registry::start();
    let image = registry.push_busybox();
    let mut cluster = Cluster::start();
    cluster.add_agent("node-1");
    Setup {
        cluster,
        image,
        _registry: registry,
    }
}

/// A busybox pod labelled `app: NAME` whose container `main` runs `script` and declares port
/// 8080 as `http`; `probes` is YAML under the container.
fn oci_pod(name: &str, image: &str, script: &str, probes: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, {script:?}]\n    ports:\n    - {{name: http, containerPort: 8080}}\n{probes}"
    )
}

fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{app: {name}}}\n  ports:\n  - {{port: 80, targetPort: 8080}}\n"
    )
}

fn pod_ip(p: &Value) -> String {
    p["status"]["podIP"].as_str().unwrap_or("").to_string()
}

fn running(c: &Cluster, name: &str) -> Value {
    wait_for(
        &format!("pod {name} Running with an address"),
        Duration::from_secs(90),
        || {
            c.get_json("pod", name).filter(|p| {
                p["status"]["phase"] == "Running"
                    && !pod_ip(p).is_empty()
                    && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
            })
        },
    )
}

/// The IPs of a Service's `addresses` and `notReadyAddresses`.
fn endpoints(c: &Cluster, service: &str) -> (Vec<String>, Vec<String>) {
    let Some(ep) = c.get_json("endpoints", service) else {
        return Default::default();
    };
    let ips = |field: &str| -> Vec<String> {
        ep["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s[field].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a["ip"].as_str().map(String::from))
            .collect()
    };
    (ips("addresses"), ips("notReadyAddresses"))
}

/// Waits until `ip` is among the Service's ready addresses (`ready`) or only among its not
/// ready ones.
fn wait_endpoint(c: &Cluster, service: &str, ip: &str, ready: bool) {
    let what = if ready {
        "addresses"
    } else {
        "notReadyAddresses"
    };
    wait_for(
        &format!("{ip} in {service}'s {what}"),
        Duration::from_secs(30),
        || {
            let (addresses, not_ready) = endpoints(c, service);
            let found = if ready {
                addresses.iter().any(|a| a == ip) && !not_ready.iter().any(|a| a == ip)
            } else {
                not_ready.iter().any(|a| a == ip) && !addresses.iter().any(|a| a == ip)
            };
            found.then_some(())
        },
    );
}

fn condition<'a>(p: &'a Value, kind: &str) -> &'a Value {
    p["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
}

/// `reason: message` of the events about pod `name`.
fn events(c: &Cluster, name: &str) -> Vec<String> {
    let out = c.skiff(&["get", "events", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let list: Value = serde_json::from_slice(&out.stdout).expect("events as JSON");
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["involvedObject"]["kind"] == "Pod" && e["involvedObject"]["name"] == name)
        .map(|e| {
            format!(
                "{}: {}",
                e["reason"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn wait_event(c: &Cluster, pod: &str, prefix: &str) -> String {
    wait_for(
        &format!("an event {prefix:?} about {pod}"),
        Duration::from_secs(30),
        || events(c, pod).into_iter().find(|e| e.starts_with(prefix)),
    )
}

fn exec(c: &Cluster, pod: &str, args: &[&str]) {
    let mut all = vec!["exec", pod, "--"];
    all.extend_from_slice(args);
    let out = c.skiff(&all);
    assert!(out.status.success(), "{}", text(&out));
}

/// The first container's restartCount (absent when 0: defaults are left out of the JSON).
fn restart_count(p: &Value) -> i64 {
    p["status"]["containerStatuses"][0]["restartCount"]
        .as_i64()
        .unwrap_or(0)
}

/// A boolean of the first container's status (absent when false).
fn flag(p: &Value, field: &str) -> bool {
    p["status"]["containerStatuses"][0][field]
        .as_bool()
        .unwrap_or(false)
}

#[test]
fn readiness_keeps_an_oci_pod_out_of_endpoints_until_it_passes() {
    let s = setup();
    let c = &s.cluster;
    let probes = "    readinessProbe:\n      exec:\n        command: [busybox, cat, /tmp/ready]\n      periodSeconds: 1\n      failureThreshold: 1\n";
    c.apply(&oci_pod("web", &s.image, "exec busybox sleep 3600", probes));
    c.apply(&service("web"));
    let p = running(c, "web");
    let ip = pod_ip(&p);
    wait_endpoint(c, "web", &ip, false);
    // Its probe keeps failing: it stays out, unready, for as long as that lasts.
    std::thread::sleep(Duration::from_secs(3));
    let (addresses, _) = endpoints(c, "web");
    assert!(!addresses.contains(&ip), "{addresses:?}");
    let p = c.get_json("pod", "web").expect("the pod");
    assert_eq!(condition(&p, "Ready")["status"], "False", "{p:#}");
    assert_eq!(condition(&p, "ContainersReady")["status"], "False", "{p:#}");
    assert_eq!(
        condition(&p, "Ready")["message"],
        "containers with unready status: [main]",
        "{p:#}"
    );
    assert!(!flag(&p, "ready"), "{p:#}");
    let said = wait_event(c, "web", "Unhealthy: Readiness probe failed:");
    assert!(said.contains("/tmp/ready"), "{said}");

    // It passes: in.
    exec(c, "web", &["busybox", "touch", "/tmp/ready"]);
    wait_endpoint(c, "web", &ip, true);
    let p = c.get_json("pod", "web").expect("the pod");
    assert_eq!(condition(&p, "Ready")["status"], "True", "{p:#}");
    assert!(flag(&p, "ready"), "{p:#}");

    // It fails again: out, and never restarted (readiness does not kill).
    exec(c, "web", &["busybox", "rm", "/tmp/ready"]);
    wait_endpoint(c, "web", &ip, false);
    let p = c.get_json("pod", "web").expect("the pod");
    assert_eq!(restart_count(&p), 0, "{p:#}\n{}", c.agent(0).log());
}

#[test]
fn liveness_restarts_an_oci_container_with_kubelets_events() {
    let s = setup();
    let c = &s.cluster;
    // busybox httpd serves /healthz until the test removes it; a restart makes it again.
    let script =
        "busybox mkdir -p /www && echo ok > /www/healthz && exec busybox httpd -f -p 8080 -h /www";
    let probes = "    livenessProbe:\n      httpGet: {path: /healthz, port: http}\n      periodSeconds: 1\n      failureThreshold: 2\n";
    c.apply(&oci_pod("web", &s.image, script, probes));
    let p = running(c, "web");
    // Healthy: it runs on, ready, with no restart (a first probe may have found httpd not
    // listening yet: one failure is below the threshold).
    std::thread::sleep(Duration::from_secs(4));
    let p2 = c.get_json("pod", "web").expect("the pod");
    assert_eq!(restart_count(&p2), 0, "{p2:#}\n{}", c.agent(0).log());
    assert!(flag(&p2, "ready"), "{p2:#}");
    let said = events(c, "web");
    assert!(!said.iter().any(|e| e.starts_with("Killing")), "{said:?}");

    exec(c, "web", &["busybox", "rm", "/www/healthz"]);
    wait_event(
        c,
        "web",
        "Unhealthy: Liveness probe failed: HTTP probe failed with statuscode: 404",
    );
    wait_event(
        c,
        "web",
        "Killing: Container main failed liveness probe, will be restarted",
    );
    let restarted = wait_for(
        "web restarted by its liveness probe",
        Duration::from_secs(60),
        || {
            c.get_json("pod", "web").filter(|p| {
                restart_count(p) >= 1
                    && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
            })
        },
    );
    assert_eq!(
        pod_ip(&restarted),
        pod_ip(&p),
        "a restarted container keeps its pod"
    );
    assert!(
        restarted["status"]["containerStatuses"][0]["lastState"]["terminated"].is_object(),
        "{restarted:#}"
    );
    // The new attempt serves /healthz again: it is left alone.
    std::thread::sleep(Duration::from_secs(3));
    let p = c.get_json("pod", "web").expect("the pod");
    assert_eq!(restart_count(&p), 1, "{p:#}\n{}", c.agent(0).log());
}

#[test]
fn a_startup_probe_holds_a_liveness_probe_that_would_fail_before_the_start() {
    let s = setup();
    let c = &s.cluster;
    // Starts slowly: /tmp/started appears after 6 s. The liveness probe (failureThreshold 1,
    // every second) would kill it at once if it ran before the startup probe passed.
    let script = "busybox sleep 6; busybox touch /tmp/started; exec busybox sleep 3600";
    let probes = "    startupProbe:\n      exec:\n        command: [busybox, cat, /tmp/started]\n      periodSeconds: 1\n      failureThreshold: 30\n    livenessProbe:\n      exec:\n        command: [busybox, cat, /tmp/started]\n      periodSeconds: 1\n      failureThreshold: 1\n";
    c.apply(&oci_pod("slow", &s.image, script, probes));
    let p = running(c, "slow");
    assert!(!flag(&p, "started"), "{p:#}");
    assert!(!flag(&p, "ready"), "not ready before it started: {p:#}");
    let started = wait_for("slow started", Duration::from_secs(30), || {
        c.get_json("pod", "slow").filter(|p| flag(p, "started"))
    });
    assert!(flag(&started, "ready"), "{started:#}");
    // Liveness runs now, and passes.
    std::thread::sleep(Duration::from_secs(3));
    let p = c.get_json("pod", "slow").expect("the pod");
    assert_eq!(restart_count(&p), 0, "{p:#}\n{}", c.agent(0).log());
    let said = events(c, "slow");
    assert!(
        !said.iter().any(|e| e.starts_with("Killing")),
        "never killed: {said:?}"
    );
    assert!(
        said.iter()
            .any(|e| e.starts_with("Unhealthy: Startup probe failed:")),
        "the startup probe failed while it started: {said:?}"
    );
    assert!(
        !said
            .iter()
            .any(|e| e.starts_with("Unhealthy: Liveness probe failed:")),
        "{said:?}"
    );
}

fn wasm_pod(name: &str, ports: &[u16], probes: &str) -> String {
    let net = skiff_tests::guests::socket_component("net");
    let ports: String = ports
        .iter()
        .map(|p| format!("    - containerPort: {p}\n"))
        .collect();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n  runtimeClassName: wasm\n  containers:\n  - name: server\n    image: file:{net}\n    command: [net, serve, \"8080\", ok, \"1000000\"]\n    ports:\n{ports}{probes}",
        net = net.display()
    )
}

#[test]
fn wasm_pods_are_probed_over_their_pod_network() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    // Ready once its guest answers on 8080: in the Service's addresses.
    let ready = "    readinessProbe:\n      tcpSocket: {port: 8080}\n      periodSeconds: 1\n";
    c.apply(&wasm_pod("wasm-ready", &[8080], ready));
    c.apply(&service("wasm-ready"));
    let p = running(&c, "wasm-ready");
    let ip = pod_ip(&p);
    assert_ne!(
        ip, "127.0.0.2",
        "a Wasm pod granted sockets has its own address: {p:#}"
    );
    wait_endpoint(&c, "wasm-ready", &ip, true);

    // Nothing answers on 8081: its liveness probe fails and the guest is restarted.
    let dead = "    livenessProbe:\n      tcpSocket: {port: 8081}\n      periodSeconds: 1\n      failureThreshold: 2\n";
    c.apply(&wasm_pod("wasm-dead", &[8080, 8081], dead));
    let unhealthy = wait_event(&c, "wasm-dead", "Unhealthy: Liveness probe failed:");
    assert!(
        unhealthy.contains(":8081: connect: "),
        "probed on its own address: {unhealthy}"
    );
    wait_event(
        &c,
        "wasm-dead",
        "Killing: Container server failed liveness probe, will be restarted",
    );
    wait_for(
        "wasm-dead restarted by its liveness probe",
        Duration::from_secs(60),
        || {
            c.get_json("pod", "wasm-dead")
                .filter(|p| restart_count(p) >= 1)
        },
    );
    // The ready pod was left alone all along.
    let p = c.get_json("pod", "wasm-ready").expect("the pod");
    assert_eq!(restart_count(&p), 0, "{p:#}\n{}", c.agent(0).log());

    // exec means nothing to a Wasm guest: refused, naming the field.
    let exec = "    livenessProbe:\n      exec: {command: [cat, /tmp/healthy]}\n";
    let out = c.skiff_stdin(&["apply", "-f", "-"], &wasm_pod("wasm-exec", &[8080], exec));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(
            "spec.containers[0].livenessProbe.exec: a Wasm container cannot be probed with exec"
        ),
        "{}",
        text(&out)
    );
}
