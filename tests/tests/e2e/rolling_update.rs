//! A rolling update behind a Service drops no request (issue "Services"): a new connection per
//! request to the Service's cluster IP, from a node, all through the rollout, with no preStop hook
//! in the manifest. Readiness keeps a new pod out of the endpoints until it listens; the agent
//! signals an old pod only once its address has left every node's proxy ([`drain`]).
//!
//! [`drain`]: skiff_node_agent's pods::drain

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use skiff_tests::netns::NodeNetwork;
use skiff_tests::netslot::NetSlot;
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, ClusterOptions, stdout, text, wait_for};

fn deployment(image: &str, version: &str) -> String {
    // Stops at once on SIGTERM, as most servers do (a PID 1 without a handler would ignore it
    // and keep serving through its grace period, hiding a premature signal).
    let script = "mkdir -p /www && echo $VERSION > /www/index.html; busybox httpd -f -p 8080 -h /www & trap 'kill $!; exit 0' TERM; wait";
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 2\n  strategy:\n    type: RollingUpdate\n    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      terminationGracePeriodSeconds: 3\n      containers:\n      - name: main\n        image: {image}\n        command: [sh, -c, {script:?}]\n        env: [{{name: VERSION, value: {version}}}]\n        ports: [{{containerPort: 8080}}]\n        readinessProbe:\n          tcpSocket: {{port: 8080}}\n          periodSeconds: 1\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  selector: {{app: web}}\n  ports: [{{port: 80, targetPort: 8080}}]\n"
    )
}

/// One request on a new connection, from node namespace `ns`: the body, or why it failed.
fn request(ns: &str, url: &str) -> Result<String, String> {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args(["--", "busybox", "wget", "-q", "-O", "-", url])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(stdout(&out).trim().to_string())
    } else {
        Err(text(&out))
    }
}

#[test]
fn a_rolling_update_behind_a_service_fails_no_request() {
    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 2);
    let registry = Registry::start_on(net.host_address().parse().expect("ip"));
    let image = registry.push_busybox();
    let options = ClusterOptions {
        listen: Some(format!("{}:0", net.host_address())),
        agent_env: vec![("SKIFF_INSECURE_REGISTRIES".into(), registry.host())],
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    c.add_agent_at("node-a", net.address(0), Some(net.namespace(0)), &[]);
    c.add_agent_at("node-b", net.address(1), Some(net.namespace(1)), &[]);
    c.apply(&deployment(&image, "v1"));
    let svc = c.get_json("service", "web").expect("service");
    let url = format!(
        "http://{}/",
        svc["spec"]["clusterIP"].as_str().expect("clusterIP")
    );
    let ns = net.namespace(0).to_string();
    wait_for("v1 through the Service", Duration::from_secs(90), || {
        (request(&ns, &url).ok()? == "v1").then_some(())
    });

    let stop = Arc::new(AtomicBool::new(false));
    let looping = {
        let (stop, ns, url) = (stop.clone(), ns.clone(), url.clone());
        std::thread::spawn(move || {
            let (mut answers, mut failures) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match request(&ns, &url) {
                    Ok(body) => answers.push(body),
                    Err(e) => failures.push(e),
                }
            }
            (answers, failures)
        })
    };
    c.apply(&deployment(&image, "v2"));
    let out = c.skiff(&["rollout", "status", "deployment/web", "--timeout", "120s"]);
    assert!(out.status.success(), "{}", text(&out));
    // The old pods are gone from the API only after their containers stopped.
    wait_for("only v2 pods left", Duration::from_secs(60), || {
        let out = c.skiff(&["get", "pods", "-l", "app=web", "-o", "json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let pods = list["items"].as_array()?;
        (pods.len() == 2
            && pods.iter().all(|p| {
                p["spec"]["containers"][0]["env"][0]["value"] == "v2"
                    && p["metadata"]["deletionTimestamp"].is_null()
            }))
        .then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (answers, failures) = looping.join().expect("request loop");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:#?}",
        failures.len(),
        failures.len() + answers.len()
    );
    assert!(answers.iter().any(|a| a == "v1"), "{answers:?}");
    assert!(answers.iter().any(|a| a == "v2"), "{answers:?}");
    assert!(
        answers.len() >= 20,
        "too few requests to tell: {}",
        answers.len()
    );
    assert_eq!(answers.last().map(String::as_str), Some("v2"));
}
