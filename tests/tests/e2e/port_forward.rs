//! `skiff port-forward` (kubectl's): local ports relayed through the API server and the node
//! tunnel to `localhost` inside a pod's network namespace — to an OCI pod's server bound to its
//! loopback only, to a Wasm pod's, and through a Service's named target port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::Duration;

use skiff_tests::guests::socket_component;
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, text, wait_for};

/// A running `skiff port-forward`, killed when dropped.
struct Forward {
    child: Child,
    /// The local port it listens on (127.0.0.1).
    port: u16,
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `skiff port-forward TARGET :REMOTE` and reads the local port it printed.
fn forward(c: &Cluster, target: &str, remote: &str) -> Forward {
    let mut child = c
        .skiff_cmd(&[
            "port-forward",
            target,
            &format!(":{remote}"),
            "--address",
            "127.0.0.1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("skiff port-forward");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    // Keep reading (one line per connection) so the pipe never fills.
    std::thread::spawn(move || for _ in lines {});
    let port = first
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.split_once(" -> "))
        .and_then(|(port, _)| port.parse().ok());
    let Some(port) = port else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("port-forward printed {first:?}");
    };
    Forward { child, port }
}

/// One HTTP/1.0 GET of `/` through the forward: the whole answer.
fn get(port: u16) -> Option<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    conn.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).ok()?;
    Some(answer)
}

#[test]
fn port_forward_reaches_a_pods_loopback_and_a_services_target_port() {
    let registry = Registry::start();
    let busybox = registry.push_busybox();
    let mut c = Cluster::start();
    c.add_agent("node-1");
    let net = socket_component("net");
    // The OCI server listens on the pod's loopback only: nothing but port-forward (which
    // connects inside the pod's namespace) reaches it from outside the pod.
    let script = "mkdir -p /www && echo from-httpd > /www/index.html && exec busybox httpd -f -p 127.0.0.1:8080 -h /www";
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {{app: web}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {busybox}\n    command: [sh, -c, {script:?}]\n    ports:\n    - {{name: http, containerPort: 8080}}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {{app: web}}\n  ports:\n  - {{port: 80, targetPort: http}}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: wasm-web\n  annotations:\n    skiff.dev/allow-outbound: \"true\"\nspec:\n  runtimeClassName: wasm\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: server\n    image: file:{net}\n    command: [net, serve, \"8080\", from-wasm, \"1000\"]\n    ports:\n    - containerPort: 8080\n",
        net = net.display()
    ));
    for pod in ["web", "wasm-web"] {
        wait_for(&format!("{pod} to run"), Duration::from_secs(90), || {
            let p = c.get_json("pod", pod)?;
            (p["status"]["phase"] == "Running").then_some(())
        });
    }

    let to_pod = forward(&c, "pod/web", "8080");
    let answer = wait_for("httpd through pod/web", Duration::from_secs(20), || {
        get(to_pod.port).filter(|a| a.contains("from-httpd"))
    });
    assert!(
        answer.starts_with("HTTP/1.") && answer.contains(" 200 "),
        "{answer}"
    );
    // Several connections through one forward, one after the other.
    for _ in 0..3 {
        assert!(get(to_pod.port).is_some_and(|a| a.contains("from-httpd")));
    }

    // svc/web port 80 → the pod's port named `http` (8080).
    let to_service = forward(&c, "svc/web", "80");
    let answer = wait_for("httpd through svc/web", Duration::from_secs(20), || {
        get(to_service.port).filter(|a| a.contains("from-httpd"))
    });
    assert!(
        answer.starts_with("HTTP/1.") && answer.contains(" 200 "),
        "{answer}"
    );

    let to_wasm = forward(&c, "pod/wasm-web", "8080");
    wait_for("the Wasm server", Duration::from_secs(20), || {
        get(to_wasm.port).filter(|a| a.contains("from-wasm"))
    });
}

#[test]
fn port_forward_refuses_bad_ports_and_missing_objects_by_name() {
    let c = Cluster::start();
    let out = c.skiff(&["port-forward", "pod/web", "x:80"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("\"x:80\""), "{}", text(&out));
    let out = c.skiff(&["port-forward", "pod/nope", "8080"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("pods \"nope\" not found"),
        "{}",
        text(&out)
    );
    let out = c.skiff(&["port-forward", "cronjob/x", "8080"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
