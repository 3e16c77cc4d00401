//! Multi-node end-to-end tests: a real server and three real agents (127.0.0.2-4) — placement,
//! scaling, rollouts with a Service, rollback, node loss and control-plane restarts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_api::v1::Endpoints;
use skiff_tests::guests::guest;
use skiff_tests::{Cluster, ClusterOptions, stdout, text, wait_for};
use tokio_stream::StreamExt;

fn probe() -> String {
    format!("file:{}", guest("probe").display())
}

fn three_nodes(options: ClusterOptions) -> Cluster {
    let mut c = Cluster::start_with(options);
    c.add_agent_with("node-1", &["--labels", "disk=ssd"]);
    c.add_agent("node-2");
    c.add_agent_with("node-3", &["--taints", "dedicated=batch:NoSchedule"]);
    c
}

/// A Deployment of `probe sleep 0` pods labelled `app=NAME`, with `VERSION` in their env.
fn deployment(name: &str, replicas: u32, version: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n{extra_spec}  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      runtimeClassName: wasm\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {image}\n        command: [probe]\n        args: [sleep, \"0\"]\n        env: [{{name: VERSION, value: {version}}}]\n",
        image = probe()
    )
}

fn pods(c: &Cluster, selector: &str) -> Vec<Value> {
    let out = c.skiff(&["get", "pods", "-l", selector, "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let list: Value = serde_json::from_slice(&out.stdout).expect("pod list");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn running(pods: &[Value]) -> Vec<&Value> {
    pods.iter()
        .filter(|p| {
            p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
        })
        .collect()
}

fn node_of(p: &Value) -> String {
    p["spec"]["nodeName"].as_str().unwrap_or("").to_string()
}

fn per_node(pods: &[&Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for p in pods {
        *m.entry(node_of(p)).or_default() += 1;
    }
    m
}

/// Waits until exactly `n` pods of `selector` run (and no others exist); returns them.
fn wait_running(c: &Cluster, selector: &str, n: usize, timeout: Duration) -> Vec<Value> {
    wait_for(&format!("{n} running pods of {selector}"), timeout, || {
        let all = pods(c, selector);
        (all.len() == n && running(&all).len() == n).then_some(all)
    })
}

#[test]
fn replicas_spread_across_nodes_respect_selectors_and_taints_and_scale() {
    let c = three_nodes(ClusterOptions::default());
    // node-3 is tainted: six untolerating replicas spread over node-1 and node-2.
    c.apply(&deployment("web", 6, "v1", ""));
    let all = wait_running(&c, "app=web", 6, Duration::from_secs(60));
    let spread = per_node(&running(&all));
    assert_eq!(
        spread,
        BTreeMap::from([("node-1".to_string(), 3), ("node-2".to_string(), 3)]),
        "untolerated taint respected and replicas spread evenly"
    );

    // Tolerating the taint, nine replicas go 3/3/3.
    let toleration = "      tolerations: [{key: dedicated, operator: Equal, value: batch, effect: NoSchedule}]\n";
    let spread_yaml = deployment("spread", 9, "v1", "").replace(
        "      terminationGracePeriodSeconds: 1\n",
        &format!("      terminationGracePeriodSeconds: 1\n{toleration}"),
    );
    c.apply(&spread_yaml);
    let all = wait_running(&c, "app=spread", 9, Duration::from_secs(60));
    let spread = per_node(&running(&all));
    assert_eq!(
        spread,
        BTreeMap::from([
            ("node-1".to_string(), 3),
            ("node-2".to_string(), 3),
            ("node-3".to_string(), 3)
        ]),
        "nine replicas spread 3/3/3"
    );

    // nodeSelector: only node-1 has disk=ssd.
    let ssd = deployment("ssd", 2, "v1", "").replace(
        "      terminationGracePeriodSeconds: 1\n",
        "      terminationGracePeriodSeconds: 1\n      nodeSelector: {disk: ssd}\n",
    );
    c.apply(&ssd);
    let all = wait_running(&c, "app=ssd", 2, Duration::from_secs(60));
    assert!(all.iter().all(|p| node_of(p) == "node-1"), "{all:?}");

    // An oversized request stays Pending, and describe says why.
    let big = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: big}}\nspec:\n  runtimeClassName: wasm\n  tolerations: [{{key: dedicated, operator: Exists}}]\n  containers:\n  - name: main\n    image: {}\n    command: [probe]\n    args: [sleep, \"0\"]\n    resources: {{requests: {{cpu: \"64\"}}}}\n",
        probe()
    );
    c.apply(&big);
    let described = wait_for(
        "the FailedScheduling reason in describe",
        Duration::from_secs(20),
        || {
            let out = c.skiff(&["describe", "pod", "big"]);
            let s = stdout(&out);
            s.contains("FailedScheduling").then_some(s)
        },
    );
    assert!(
        described.contains("0/3 nodes are available") && described.contains("3 Insufficient cpu"),
        "{described}"
    );
    assert_eq!(
        c.get_json("pod", "big").unwrap()["status"]["phase"],
        "Pending"
    );

    // scale down, then up.
    let out = c.skiff(&["scale", "deployment/spread", "--replicas", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "deployment.apps/spread scaled\n");
    wait_running(&c, "app=spread", 3, Duration::from_secs(30));
    let out = c.skiff(&["scale", "deployment", "spread", "--replicas", "5"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_running(&c, "app=spread", 5, Duration::from_secs(30));
    let out = c.skiff(&["scale", "deployment/spread", "--replicas", "-1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = c.skiff(&["get", "replicasets"]);
    assert!(stdout(&out).contains("spread-"), "{}", text(&out));

    // What the controllers did is in the events.
    let out = c.skiff(&["describe", "deployment", "spread"]);
    assert!(
        stdout(&out).contains("ScalingReplicaSet") && stdout(&out).contains("from 9 to 3"),
        "{}",
        text(&out)
    );
    let out = c.skiff(&["get", "events"]);
    let events = stdout(&out);
    assert!(
        events.contains("FailedScheduling") && events.contains("SuccessfulCreate"),
        "{}",
        text(&out)
    );
}

/// Watches an Endpoints object and records the number of ready addresses after every change.
struct EndpointsWatch {
    stop: Arc<AtomicBool>,
    counts: Arc<Mutex<Vec<usize>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EndpointsWatch {
    fn start(c: &Cluster, name: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(Vec::new()));
        let config = c.config();
        let (s, k, name) = (stop.clone(), counts.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let transport = config.connect().expect("connect");
                let api = skiff_api::client::Api::<Endpoints>::new(transport, "default");
                let params = skiff_api::client::ListParams::default()
                    .fields(&format!("metadata.name={name}"));
                let mut events = api.watch(params, "").await.expect("watch endpoints");
                while !s.load(Ordering::SeqCst) {
                    let Ok(Some(Ok(e))) =
                        tokio::time::timeout(Duration::from_millis(200), events.next()).await
                    else {
                        continue;
                    };
                    let ready = if e.kind == "DELETED" {
                        0
                    } else {
                        e.object.subsets.iter().map(|s| s.addresses.len()).sum()
                    };
                    k.lock().expect("counts").push(ready);
                }
            });
        });
        Self {
            stop,
            counts,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<usize> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("watch thread");
        }
        self.counts.lock().expect("counts").clone()
    }
}

fn template_hashes(pods: &[Value]) -> Vec<String> {
    let mut h: Vec<String> = pods
        .iter()
        .map(|p| {
            p["metadata"]["labels"]["pod-template-hash"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    h.sort();
    h.dedup();
    h
}

#[test]
fn rolling_update_never_empties_the_service_and_rolls_back() {
    let c = three_nodes(ClusterOptions::default());
    let strategy = "  strategy:\n    type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}\n";
    c.apply(&deployment("api", 3, "v1", strategy));
    c.apply("apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec:\n  selector: {app: api}\n  ports: [{port: 80, targetPort: 8080}]\n");
    let v1 = wait_running(&c, "app=api", 3, Duration::from_secs(60));
    let v1_hash = template_hashes(&v1);
    assert_eq!(v1_hash.len(), 1);
    wait_for("3 ready endpoints", Duration::from_secs(20), || {
        let ep = c.get_json("endpoints", "api")?;
        let n = ep["subsets"][0]["addresses"].as_array().map_or(0, Vec::len);
        (n == 3).then_some(())
    });
    let out = c.skiff(&["rollout", "status", "deployment/api", "--timeout", "30s"]);
    assert!(out.status.success(), "{}", text(&out));

    // Roll to v2 while watching the Service's endpoints.
    let watch = EndpointsWatch::start(&c, "api");
    std::thread::sleep(Duration::from_millis(300));
    c.apply(&deployment("api", 3, "v2", strategy));
    let out = c.skiff(&["rollout", "status", "deployment/api", "--timeout", "60s"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).ends_with("deployment \"api\" successfully rolled out\n"),
        "{}",
        text(&out)
    );
    let v2 = wait_running(&c, "app=api", 3, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let counts = watch.finish();
    let v2_hash = template_hashes(&v2);
    assert_eq!(v2_hash.len(), 1);
    assert_ne!(v1_hash, v2_hash, "the pods were replaced");
    assert!(
        counts.len() >= 3,
        "the endpoints changed during the rollout: {counts:?}"
    );
    let fewest = counts.iter().copied().min().unwrap_or(0);
    assert!(
        fewest >= 3,
        "maxUnavailable 0 keeps all 3 endpoints ready (never zero); seen {counts:?}"
    );

    // History and rollback.
    let out = c.skiff(&["rollout", "history", "deployment/api"]);
    assert!(out.status.success(), "{}", text(&out));
    let history = stdout(&out);
    assert!(
        history.contains("REVISION") && history.lines().count() == 4,
        "{history}"
    );
    let out = c.skiff(&["rollout", "undo", "deployment/api"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("rolled back to revision 1"),
        "{}",
        text(&out)
    );
    let out = c.skiff(&["rollout", "status", "deployment/api", "--timeout", "60s"]);
    assert!(out.status.success(), "{}", text(&out));
    let back = wait_running(&c, "app=api", 3, Duration::from_secs(30));
    assert_eq!(template_hashes(&back), v1_hash, "back on the v1 template");
    let env: Vec<&str> = back
        .iter()
        .filter_map(|p| p["spec"]["containers"][0]["env"][0]["value"].as_str())
        .collect();
    assert_eq!(env, ["v1", "v1", "v1"]);
    // The v1 ReplicaSet was reused under a new revision.
    let rs = c
        .get_json("replicaset", &format!("api-{}", v1_hash[0]))
        .expect("the v1 replicaset");
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3",
        "{rs}"
    );
    let out = c.skiff(&["rollout", "undo", "deployment/api", "--to-revision", "9"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn a_killed_node_goes_not_ready_its_pods_move_and_come_back_without_duplicates() {
    let mut c = three_nodes(ClusterOptions {
        node_grace_period: Some("3s".into()),
        pod_eviction_timeout: Some("2s".into()),
        heartbeat_interval: Some("500ms".into()),
        ..Default::default()
    });
    let toleration = "      tolerations: [{key: dedicated, operator: Exists}]\n";
    let yaml = deployment("svc", 3, "v1", "").replace(
        "      terminationGracePeriodSeconds: 1\n",
        &format!("      terminationGracePeriodSeconds: 1\n{toleration}"),
    );
    c.apply(&yaml);
    let before = wait_running(&c, "app=svc", 3, Duration::from_secs(60));
    let on_node_1: Vec<String> = before
        .iter()
        .filter(|p| node_of(p) == "node-1")
        .map(|p| p["metadata"]["uid"].as_str().unwrap().to_string())
        .collect();
    assert!(!on_node_1.is_empty(), "a replica on node-1: {before:?}");

    let killed = Instant::now();
    c.kill_agent(0);
    wait_for("node-1 NotReady", Duration::from_secs(3 + 5), || {
        let node = c.get_json("node", "node-1")?;
        let ready = node["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")?
            .clone();
        (ready["status"] == "Unknown").then_some(())
    });
    let not_ready_after = killed.elapsed();
    let node = c.get_json("node", "node-1").unwrap();
    let taints = node["spec"]["taints"].to_string();
    assert!(taints.contains("node.kubernetes.io/unreachable"), "{node}");
    // Printed as kubectl prints a lost node: NotReady, not Unknown.
    let out = c.skiff(&["get", "nodes"]);
    let row = stdout(&out)
        .lines()
        .find(|l| l.starts_with("node-1 "))
        .map(str::to_string);
    assert!(
        row.as_deref()
            .is_some_and(|r| r.split_whitespace().nth(1) == Some("NotReady")),
        "{}",
        text(&out)
    );

    // Its pods are evicted and replaced on the other nodes.
    let after = wait_for(
        "3 replicas running off node-1",
        Duration::from_secs(30),
        || {
            let all = pods(&c, "app=svc");
            let r = running(&all);
            (all.len() == 3 && r.len() == 3 && r.iter().all(|p| node_of(p) != "node-1"))
                .then_some(all)
        },
    );
    let uids: Vec<&str> = after
        .iter()
        .filter_map(|p| p["metadata"]["uid"].as_str())
        .collect();
    assert!(on_node_1.iter().all(|u| !uids.contains(&u.as_str())));

    // The node comes back: it is Ready and untainted, and it stops the copies it no longer owns.
    c.start_agent(0);
    wait_for("node-1 untainted", Duration::from_secs(10), || {
        let node = c.get_json("node", "node-1")?;
        (!node["spec"]["taints"].to_string().contains("unreachable")).then_some(())
    });
    let dir = c.agent(0).data_dir.join("pods");
    wait_for(
        "node-1's stale copies removed",
        Duration::from_secs(10),
        || {
            on_node_1
                .iter()
                .all(|uid| !dir.join(uid).exists())
                .then_some(())
        },
    );
    assert!(
        c.agent(0)
            .log()
            .contains("removing the instance of a pod that is gone"),
        "{}",
        c.agent(0).log()
    );
    std::thread::sleep(Duration::from_secs(1));
    let all = pods(&c, "app=svc");
    assert_eq!(running(&all).len(), 3, "no duplicates: {all:?}");
    assert_eq!(all.len(), 3);
    eprintln!("node-1 NotReady {not_ready_after:?} after kill -9 (grace 3s)");

    // A partitioned agent (SIGSTOP) is noticed the same way and recovers when let back.
    c.pause_agent(1);
    wait_for(
        "node-2 NotReady while cut off",
        Duration::from_secs(8),
        || {
            let node = c.get_json("node", "node-2")?;
            node["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "Unknown")
                .then_some(())
        },
    );
    c.resume_agent(1);
    wait_for("node-2 Ready again", Duration::from_secs(10), || {
        let node = c.get_json("node", "node-2")?;
        node["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
            .then_some(())
    });
    wait_running(&c, "app=svc", 3, Duration::from_secs(30));
}

#[test]
fn control_plane_restart_restarts_nothing_and_loses_nothing() {
    let mut c = three_nodes(ClusterOptions::default());
    let toleration = "      tolerations: [{key: dedicated, operator: Exists}]\n";
    let yaml = deployment("steady", 4, "v1", "").replace(
        "      terminationGracePeriodSeconds: 1\n",
        &format!("      terminationGracePeriodSeconds: 1\n{toleration}"),
    );
    c.apply(&yaml);
    let before = wait_running(&c, "app=steady", 4, Duration::from_secs(60));
    let identity = |pods: &[Value]| {
        let mut v: Vec<(String, String, i64)> = pods
            .iter()
            .map(|p| {
                (
                    p["metadata"]["uid"].as_str().unwrap_or("").to_string(),
                    p["status"]["containerStatuses"][0]["containerID"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    p["status"]["containerStatuses"][0]["restartCount"]
                        .as_i64()
                        .unwrap_or(0),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert!(
        identity(&before)
            .iter()
            .all(|(_, id, _)| id.starts_with("skiff://")),
        "every container has an id: {before:?}"
    );
    c.kill_server();
    std::thread::sleep(Duration::from_secs(2));
    c.restart_server();
    // Give the controllers and agents time to resync.
    std::thread::sleep(Duration::from_secs(5));
    let after = wait_running(&c, "app=steady", 4, Duration::from_secs(30));
    assert_eq!(
        identity(&before),
        identity(&after),
        "same pods, same containers, no restarts"
    );
    let d = c.get_json("deployment", "steady").unwrap();
    assert_eq!(d["status"]["readyReplicas"], 4, "{d}");
    let out = c.skiff(&["get", "replicasets", "-o", "json"]);
    let sets: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sets["items"].as_array().map(Vec::len), Some(1), "{sets}");
}

#[test]
fn deleting_a_deployment_cascades_unless_orphaned() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    c.apply(&deployment("gone", 2, "v1", ""));
    c.apply(&deployment("kept", 2, "v1", ""));
    wait_running(&c, "app=gone", 2, Duration::from_secs(60));
    let kept = wait_running(&c, "app=kept", 2, Duration::from_secs(60));

    let out = c.skiff(&["delete", "deployment", "gone"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for(
        "gone's replicaset and pods deleted",
        Duration::from_secs(30),
        || {
            let out = c.skiff(&["get", "replicasets", "-o", "json"]);
            let sets: Value = serde_json::from_slice(&out.stdout).ok()?;
            let any_set = sets["items"].as_array()?.iter().any(|s| {
                s["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("gone-")
            });
            (!any_set && pods(&c, "app=gone").is_empty()).then_some(())
        },
    );

    let out = c.skiff(&["delete", "deployment", "kept", "--cascade=orphan"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for("kept's deployment deleted", Duration::from_secs(20), || {
        c.get_json("deployment", "kept").is_none().then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let out = c.skiff(&["get", "replicasets", "-o", "json"]);
    let sets: Value = serde_json::from_slice(&out.stdout).unwrap();
    let set = sets["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .starts_with("kept-")
        })
        .cloned()
        .expect("the orphaned replicaset stays");
    assert!(set["metadata"]["ownerReferences"].is_null(), "{set}");
    let still = wait_running(&c, "app=kept", 2, Duration::from_secs(10));
    let uids = |p: &[Value]| {
        let mut u: Vec<String> = p
            .iter()
            .filter_map(|x| x["metadata"]["uid"].as_str().map(String::from))
            .collect();
        u.sort();
        u
    };
    assert_eq!(
        uids(&kept),
        uids(&still),
        "orphaned pods keep running untouched"
    );
}
