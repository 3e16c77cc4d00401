//! High availability on etcd (issue 23): a real 3-member etcd on loopback, three `skiff server
//! --etcd` sharing it, one agent attached to all three. The leading server is killed (another
//! leads within 10 s and a scale-up completes, with no acknowledged write lost and no duplicate
//! pod), one etcd member is killed (the cluster goes on), the whole etcd is restarted (skiff
//! recovers by itself), and logs and exec work through each server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_api::client::ClientConfig;
use skiff_tests::etcd::EtcdCluster;
use skiff_tests::guests::guest;
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, ClusterOptions, skiff_bin, stdout, text, wait_for};

const LEADER_KEY: &str = "/skiff-leader/controllers";

/// A `skiff server` beside the cluster's own, on a copy of its PKI, tokens and Secrets' key.
struct Server {
    addr: String,
    child: Option<Child>,
}

impl Server {
    fn start(c: &Cluster, etcd: &EtcdCluster, name: &str) -> Self {
        Self::start_with(c, etcd, name, &[])
    }

    /// As [`Server::start`], with more `skiff server` flags.
    fn start_with(c: &Cluster, etcd: &EtcdCluster, name: &str, extra: &[&str]) -> Self {
        let dir = c.data_dir().join("servers").join(name);
        std::fs::create_dir_all(dir.join("pki")).expect("server dir");
        copy_dir(&c.data_dir().join("pki"), &dir.join("pki"));
        for file in ["join-token", "encryption-keys"] {
            std::fs::copy(c.data_dir().join(file), dir.join(file)).expect(file);
        }
        let log = std::fs::File::create(dir.join("server.log")).expect("log");
        let child = Command::new(skiff_bin())
            .args(["server", "--data-dir"])
            .arg(&dir)
            .args(["--listen", "127.0.0.1:0", "--etcd", &etcd.endpoints_arg()])
            .args(["--cluster-cidr", &c.cluster_cidr()])
            .args(["--service-cidr", &c.service_cidr()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn skiff server");
        let config = dir.join("config.yaml");
        let addr = wait_for(
            &format!("server {name} to start"),
            Duration::from_secs(30),
            || {
                ClientConfig::load(&config)
                    .ok()
                    .map(|c| c.server.trim_start_matches("https://").to_string())
            },
        );
        Self {
            addr,
            child: Some(child),
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read pki") {
        let entry = entry.expect("pki entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy pki");
    }
}

/// A client config naming `servers` (comma-separated addresses).
fn config_for(c: &Cluster, servers: &[&str], path: &Path) -> PathBuf {
    let mut config = c.config();
    config.server = servers
        .iter()
        .map(|s| format!("https://{s}"))
        .collect::<Vec<_>>()
        .join(",");
    std::fs::write(path, config.to_yaml()).expect("write config");
    path.to_path_buf()
}

fn skiff(config: &Path, args: &[&str]) -> Output {
    Command::new(skiff_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("SKIFF_CONFIG")
        .output()
        .expect("run skiff")
}

/// The leader's identity (`HOST ADDR pid N`), or None while nobody leads.
fn leader(etcd: &EtcdCluster) -> Option<String> {
    let out = etcd.etcdctl(&["get", LEADER_KEY, "--print-value-only"]);
    let out = out.trim();
    (!out.is_empty()).then(|| out.to_string())
}

fn pods(config: &Path, selector: &str) -> Option<Vec<Value>> {
    let out = skiff(config, &["get", "pods", "-l", selector, "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    let list: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(list["items"].as_array().cloned().unwrap_or_default())
}

/// Waits until exactly `n` pods of `selector` exist, all Running.
fn wait_running(config: &Path, selector: &str, n: usize, timeout: Duration) {
    wait_for(&format!("{n} running pods of {selector}"), timeout, || {
        let all = pods(config, selector)?;
        let running = all
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        (all.len() == n && running == n).then_some(())
    });
}

fn deployment(replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      runtimeClassName: wasm\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: file:{probe}\n        command: [probe]\n        args: [sleep, \"0\"]\n",
        probe = guest("probe").display()
    )
}

/// `skiff apply -f -` of `yaml` through `config`.
fn try_apply(config: &Path, yaml: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(skiff_bin())
        .arg("--config")
        .arg(config)
        .args(["apply", "-f", "-"])
        .env_remove("SKIFF_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run skiff");
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes());
    child.wait_with_output().expect("skiff apply")
}

/// Creates ConfigMap `name`: did the server acknowledge it?
fn create_config_map(config: &Path, name: &str) -> Output {
    try_apply(
        config,
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\n"),
    )
}

fn apply(config: &Path, yaml: &str) {
    let out = try_apply(config, yaml);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn three_servers_on_etcd_survive_the_leader_an_etcd_member_and_an_etcd_restart() {
    let mut etcd = EtcdCluster::start(3);
    let registry = Registry::start();
    let busybox = registry.push_busybox();
    let mut c = Cluster::start_with(ClusterOptions {
        server_args: vec!["--etcd".into(), etcd.endpoints_arg()],
        ..Default::default()
    });
    let mut b = Server::start(&c, &etcd, "b");
    let mut d = Server::start(&c, &etcd, "c");
    let addrs = [c.addr.to_string(), b.addr.clone(), d.addr.clone()];
    let all = [addrs[0].as_str(), addrs[1].as_str(), addrs[2].as_str()];
    c.set_agent_servers(&all.join(","));
    c.add_agent("node-1");
    let ha = config_for(&c, &all, &c.data_dir().join("ha-config.yaml"));

    // One leader, one of the three.
    let first = wait_for("a leader", Duration::from_secs(15), || leader(&etcd));
    let leading = all
        .iter()
        .position(|s| first.contains(&format!(" {s} ")))
        .unwrap_or_else(|| panic!("the leader {first:?} is none of {all:?}"));

    apply(&ha, &deployment(2));
    wait_running(&ha, "app=web", 2, Duration::from_secs(60));
    // Each server reads and watches through its watch cache: one etcd watch each (and one on the
    // election key while it waits to lead), however many watches its controllers and agent hold.
    let watchers = etcd.watchers();
    assert!(
        watchers <= 6,
        "{watchers} etcd watches for 3 servers: the watch cache is not in use"
    );
    apply(
        &ha,
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: shell}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {busybox}\n    command: [sh, -c, \"echo hello-from-shell; exec sleep 3600\"]\n"
        ),
    );

    // Writes go on while the leader is killed: every acknowledged one must survive.
    let writer_config = ha.clone();
    let writer = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for i in 0..40 {
            let name = format!("w-{i}");
            if create_config_map(&writer_config, &name).status.success() {
                acked.push(name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(500));
    let killed_at = Instant::now();
    match leading {
        0 => c.kill_server(),
        1 => b.kill(),
        _ => d.kill(),
    }
    let next = wait_for("another leader", Duration::from_secs(10), || {
        leader(&etcd).filter(|l| *l != first)
    });
    eprintln!("a new leader after {:?}: {next}", killed_at.elapsed());
    let acked = writer.join().expect("writer");
    assert!(!acked.is_empty(), "no write was acknowledged");
    let survivors: Vec<&str> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leading)
        .map(|(_, s)| *s)
        .collect();
    let ha = config_for(&c, &survivors, &c.data_dir().join("ha-survivors.yaml"));
    for name in &acked {
        let out = skiff(&ha, &["get", "configmap", name]);
        assert!(
            out.status.success(),
            "acknowledged {name} lost: {}",
            text(&out)
        );
    }

    // The new leader's controllers and scheduler scale up; no pod is made twice.
    let out = skiff(&ha, &["scale", "deployment", "web", "--replicas", "4"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_running(&ha, "app=web", 4, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        pods(&ha, "app=web").map(|p| p.len()),
        Some(4),
        "no extra pod"
    );

    // logs and exec through each surviving server, one at a time.
    wait_for("the shell pod to run", Duration::from_secs(60), || {
        let out = skiff(&ha, &["get", "pod", "shell", "-o", "json"]);
        let pod: Value = serde_json::from_slice(&out.stdout).ok()?;
        (pod["status"]["phase"] == "Running").then_some(())
    });
    for (i, server) in survivors.iter().enumerate() {
        let one = config_for(&c, &[server], &c.data_dir().join(format!("one-{i}.yaml")));
        let out = wait_for(
            &format!("logs through {server}"),
            Duration::from_secs(20),
            || {
                let out = skiff(&one, &["logs", "shell"]);
                stdout(&out).contains("hello-from-shell").then_some(out)
            },
        );
        assert!(out.status.success(), "{}", text(&out));
        let out = skiff(
            &one,
            &["exec", "shell", "--", "echo", "exec-through", server],
        );
        assert_eq!(
            stdout(&out),
            format!("exec-through {server}\n"),
            "{}",
            text(&out)
        );
    }

    // One etcd member killed: reads, writes and the controllers go on.
    etcd.kill(0);
    let out = wait_for(
        "a write with a member down",
        Duration::from_secs(20),
        || {
            let out = create_config_map(&ha, "one-member-down");
            out.status.success().then_some(out)
        },
    );
    assert!(out.status.success());
    let out = skiff(&ha, &["scale", "deployment", "web", "--replicas", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_running(&ha, "app=web", 3, Duration::from_secs(60));

    // The whole etcd cluster restarted: skiff recovers with no manual step.
    etcd.restart(0);
    etcd.wait_healthy(Duration::from_secs(30));
    etcd.restart_all();
    let out = wait_for(
        "a write after etcd's restart",
        Duration::from_secs(30),
        || {
            let out = create_config_map(&ha, "after-restart");
            out.status.success().then_some(out)
        },
    );
    assert!(out.status.success());
    wait_for(
        "a leader after etcd's restart",
        Duration::from_secs(20),
        || leader(&etcd),
    );
    let out = skiff(&ha, &["scale", "deployment", "web", "--replicas", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_running(&ha, "app=web", 1, Duration::from_secs(60));
    for name in &acked {
        assert!(skiff(&ha, &["get", "configmap", name]).status.success());
    }
}

#[test]
fn etcd_flags_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, needle) in [
        (
            vec!["--etcd", "ftp://127.0.0.1:2379"],
            "--etcd ftp://127.0.0.1:2379",
        ),
        (vec!["--etcd", ","], "--etcd: no endpoint"),
        (vec!["--etcd", "https://127.0.0.1:2379"], "--etcd-cafile"),
        (
            vec![
                "--etcd",
                "http://127.0.0.1:2379",
                "--leader-elect-lease-duration",
                "1s",
            ],
            "--leader-elect-lease-duration",
        ),
        (
            vec![
                "--etcd",
                "https://127.0.0.1:2379",
                "--etcd-cafile",
                "/nonexistent/ca.pem",
            ],
            "/nonexistent/ca.pem",
        ),
        (
            vec!["--etcd", "http://127.0.0.1:2379", "--watch-cache-size", "0"],
            "--watch-cache-size",
        ),
        (
            vec!["--etcd", "http://127.0.0.1:2379", "--watch-cache=maybe"],
            "--watch-cache",
        ),
    ] {
        let out = Command::new(skiff_bin())
            .args(["server", "--data-dir"])
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .expect("run skiff server");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(needle), "{args:?}: {}", text(&out));
    }
}

/// An embedded-store cluster moved onto etcd (docs/ha.md): its objects, Secrets included, are
/// served by a server on etcd after `--import-embedded-store`, which refuses a second import.
#[test]
fn an_embedded_store_is_imported_into_etcd() {
    let etcd = EtcdCluster::start(1);
    let mut c = Cluster::start();
    c.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: moved}\ndata: {k: v}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: moved}\nstringData: {password: s3cret}\n",
    );
    c.kill_server();
    let import = || {
        Command::new(skiff_bin())
            .args(["server", "--data-dir"])
            .arg(c.data_dir())
            .args(["--etcd", &etcd.endpoints_arg(), "--import-embedded-store"])
            .output()
            .expect("run skiff server")
    };
    let out = import();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("copied"), "{}", text(&out));
    let again = import();
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("not empty"), "{}", text(&again));

    let server = Server::start(&c, &etcd, "on-etcd");
    let config = config_for(&c, &[&server.addr], &c.data_dir().join("on-etcd.yaml"));
    let out = skiff(&config, &["get", "configmap", "moved", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = skiff(&config, &["get", "secret", "moved", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let secret: Value = serde_json::from_slice(&out.stdout).expect("secret json");
    assert_eq!(secret["data"]["password"], "czNjcmV0", "{secret:#}");
}

/// The leader's HorizontalPodAutoscaler sees the figures of a node attached to another server
/// only (`server/ha_metrics.rs` shares them through etcd); lists at `resourceVersion=0` are served
/// from the watch cache, `Exact` at 0 refused in Kubernetes' words.
#[test]
fn the_leaders_hpa_sees_a_node_reporting_to_another_server() {
    let etcd = EtcdCluster::start(1);
    let sync = ["--horizontal-pod-autoscaler-sync-period", "1s"];
    let mut c = Cluster::start_with(ClusterOptions {
        server_args: [
            ["--etcd".to_string(), etcd.endpoints_arg()].as_slice(),
            &sync.map(String::from),
        ]
        .concat(),
        ..Default::default()
    });
    let b = Server::start_with(&c, &etcd, "b", &sync);
    let addrs = [c.addr.to_string(), b.addr.clone()];
    let first = wait_for("a leader", Duration::from_secs(15), || leader(&etcd));
    let leading = addrs
        .iter()
        .position(|s| first.contains(&format!(" {s} ")))
        .unwrap_or_else(|| panic!("the leader {first:?} is none of {addrs:?}"));
    // The agent reports to the server that does not lead, and only to it.
    let other = &addrs[1 - leading];
    c.set_agent_servers(other);
    c.add_agent("node-1");
    let ha = config_for(
        &c,
        &[addrs[0].as_str(), addrs[1].as_str()],
        &c.data_dir().join("ha-config.yaml"),
    );
    apply(&ha, &deployment(1));
    wait_running(&ha, "app=web", 1, Duration::from_secs(60));
    apply(
        &ha,
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  minReplicas: 1\n  maxReplicas: 3\n  metrics:\n  - type: Resource\n    resource:\n      name: memory\n      target: {type: AverageValue, averageValue: 1Gi}\n",
    );
    let hpa = wait_for(
        "the leader's HPA to read the pod's memory",
        Duration::from_secs(60),
        || {
            let out = skiff(&ha, &["get", "hpa", "web", "-o", "json"]);
            let hpa: Value = serde_json::from_slice(&out.stdout).ok()?;
            let current = &hpa["status"]["currentMetrics"][0]["resource"]["current"];
            current["averageValue"].as_str().is_some().then_some(hpa)
        },
    );
    assert_eq!(
        hpa["status"]["currentMetrics"][0]["resource"]["name"], "memory",
        "{hpa:#}"
    );
    assert!(
        first == leader(&etcd).unwrap_or_default(),
        "the leader changed during the test"
    );

    // resourceVersion=0 through REST on each server (its watch cache), and Kubernetes' refusal.
    let ca = c.data_dir().join("pki").join("ca.crt");
    let token = c.config().token;
    let get = |server: &str, query: &str| {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-w",
                "\ncode=%{http_code}\n",
                "--cacert",
            ])
            .arg(&ca)
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!(
                "https://{server}/api/v1/namespaces/default/pods?{query}"
            ))
            .output()
            .expect("curl");
        text(&out)
    };
    for server in &addrs {
        let any = get(server, "resourceVersion=0");
        assert!(any.contains("code=200"), "{any}");
        assert!(any.contains("\"kind\":\"PodList\""), "{any}");
        let refused = get(server, "resourceVersion=0&resourceVersionMatch=Exact");
        assert!(refused.contains("code=400"), "{refused}");
        assert!(
            refused.contains(
                "resourceVersionMatch \\\"exact\\\" is forbidden for resourceVersion \\\"0\\\""
            ),
            "{refused}"
        );
    }
}
