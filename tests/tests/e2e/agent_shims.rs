//! The agent runs every container through `containerd-shim-skiff-v1` (DESIGN §5): the node's
//! Wasm pods share one shim, each OCI pod has its own, and a shim's crash touches no pod outside
//! it. A real registry, busybox image, server, agent and shims.

use std::time::{Duration, Instant};

use skiff_tests::guests::guest;
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, wait_for};

fn pod(c: &Cluster, name: &str) -> serde_json::Value {
    c.get_json("pod", name).unwrap_or_default()
}

fn running(p: &serde_json::Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
}

#[test]
fn a_crash_of_the_wasm_shim_restarts_only_its_pods_at_once() {
    let registry = Registry::start();
    let image = registry.push_busybox();
    let mut c = Cluster::start();
    c.add_agent("node-1");
    let probe = guest("probe");
    let mut manifests = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: oci\nspec:\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, \"while true; do sleep 1; done\"]\n"
    );
    for i in 0..3 {
        manifests.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: wasm-{i}\nspec:\n  runtimeClassName: wasm\n  containers:\n  - name: main\n    image: file:{}\n    args: [tick, \"1000\", \"0\"]\n",
            probe.display()
        ));
    }
    c.apply(&manifests);
    let names = ["oci", "wasm-0", "wasm-1", "wasm-2"];
    let deadline = Instant::now() + Duration::from_secs(90);
    while !names.iter().all(|n| running(&pod(&c, n))) {
        assert!(
            Instant::now() < deadline,
            "not every pod runs after 90 s:\n{}\n{}",
            skiff_tests::text(&c.skiff(&["get", "pods", "-o", "wide"]))
                + &skiff_tests::text(&c.skiff(&["get", "pod", "wasm-0", "-o", "yaml"])),
            c.agent(0).log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let oci_before = pod(&c, "oci")["status"]["containerStatuses"][0].clone();
    let oci_uid = pod(&c, "oci")["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let oci_shim = c.agent(0).shim_pid(&format!("pod-{oci_uid}"));
    assert!(oci_shim.is_some(), "the OCI pod has no shim of its own");

    let killed = c.kill_shim(0, "wasm");
    let at = Instant::now();
    let restarted = |p: &serde_json::Value| {
        running(p) && p["status"]["containerStatuses"][0]["restartCount"] == 1
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !names[1..].iter().all(|n| restarted(&pod(&c, n))) {
        assert!(
            Instant::now() < deadline,
            "the Wasm pods did not run again, restarted once:\n{}\n{}",
            skiff_tests::text(&c.skiff(&["get", "pod", "wasm-0", "-o", "yaml"])),
            c.agent(0).log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let back_in = at.elapsed();
    assert!(
        back_in < Duration::from_secs(2),
        "the Wasm pods took {back_in:?} to run again"
    );
    for n in &names[1..] {
        let p = pod(&c, n);
        let last = &p["status"]["containerStatuses"][0]["lastState"]["terminated"];
        assert_eq!(last["reason"], "ShimCrashed", "{p:#}");
        assert!(
            last["message"]
                .as_str()
                .is_some_and(|m| m.contains(&killed.to_string())),
            "{p:#}"
        );
    }
    // A new Wasm shim serves them; the OCI pod's shim and container never noticed.
    let new_shim = c.agent(0).shim_pid("wasm").expect("a new Wasm shim");
    assert_ne!(new_shim, killed);
    assert_eq!(c.agent(0).shim_pid(&format!("pod-{oci_uid}")), oci_shim);
    let oci_after = pod(&c, "oci")["status"]["containerStatuses"][0].clone();
    assert_eq!(
        oci_after["restartCount"].as_u64().unwrap_or(0),
        0,
        "{oci_after:#}"
    );
    assert_eq!(oci_after["containerID"], oci_before["containerID"]);
    assert!(oci_after["state"]["running"].is_object(), "{oci_after:#}");
    assert_eq!(
        oci_after["state"]["running"]["startedAt"],
        oci_before["state"]["running"]["startedAt"]
    );

    // A deleted pod leaves no shim behind; the node's Wasm shim stays for the next Wasm pod.
    let out = c.skiff(&[
        "delete",
        "pod",
        "oci",
        "wasm-0",
        "wasm-1",
        "wasm-2",
        "--grace-period",
        "1",
    ]);
    assert!(out.status.success(), "{}", skiff_tests::text(&out));
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.agent(0).shim_groups() != ["wasm"] {
        assert!(
            Instant::now() < deadline,
            "shims left after the pods' deletion: {:?}",
            c.agent(0).shim_groups()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = oci_shim.unwrap_or_default();
    // Gone (it may take a moment to leave its cgroup), or a zombie its (non-reaping) adoptive
    // parent has not reaped.
    wait_for(
        "the OCI pod's shim to exit",
        Duration::from_secs(10),
        || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(") ").map(|(_, r)| &r[..1]);
            matches!(state, None | Some("Z")).then_some(())
        },
    );
    assert_eq!(c.agent(0).shim_pid("wasm"), Some(new_shim));
}

/// One container's output and exit, either way it was run.
#[derive(Debug, PartialEq)]
struct Outcome {
    code: i64,
    stdout: String,
    stderr: String,
}

#[test]
fn a_bundle_the_agent_writes_runs_the_same_under_a_plain_containerd() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    let probe = guest("probe");
    let net = skiff_tests::guests::socket_component("net");
    let data = tempfile::tempdir().expect("tempdir");
    std::fs::write(data.path().join("seen.txt"), "from the host\n").expect("write");
    // Files (a volume, the root), env, and sockets: a declared port may be bound, another not.
    let containers = [
        ("files", probe.display().to_string(), "[probe, ls, /data]"),
        ("root", probe.display().to_string(), "[probe, ls, /]"),
        (
            "escape",
            probe.display().to_string(),
            "[probe, cat, /etc/passwd]",
        ),
        (
            "env",
            probe.display().to_string(),
            "[probe, env, GREETING, HOME, PATH]",
        ),
        (
            "granted",
            net.display().to_string(),
            "[net, bind, \"8080\"]",
        ),
        (
            "refused",
            net.display().to_string(),
            "[net, bind, \"9090\"]",
        ),
    ];
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: twin\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  volumes:\n  - name: data\n",
    );
    yaml.push_str(&format!(
        "    hostPath: {{path: {}}}\n  containers:\n",
        data.path().display()
    ));
    for (name, module, command) in &containers {
        yaml.push_str(&format!(
            "  - name: {name}\n    image: file:{module}\n    command: {command}\n    env: [{{name: GREETING, value: hello}}]\n    ports: [{{containerPort: 8080}}]\n    volumeMounts: [{{name: data, mountPath: /data, readOnly: true}}]\n"
        ));
    }
    c.apply(&yaml);
    let pod = wait_for("twin to finish", Duration::from_secs(60), || {
        let p = c.get_json("pod", "twin")?;
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")).then_some(p)
    });
    let uid = pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let bundles = c.agent(0).data_dir.join("run/bundles");
    let plain =
        skiff_tests::containerd::Containerd::start_with_path(&[skiff_tests::shim_dir().as_path()]);
    for (i, (name, _, _)) in containers.iter().enumerate() {
        let status = pod["status"]["containerStatuses"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == *name))
            .cloned()
            .unwrap_or_default();
        let by_agent = Outcome {
            code: status["state"]["terminated"]["exitCode"]
                .as_i64()
                .unwrap_or(0),
            stdout: agent_log(&c, name, "stdout"),
            stderr: agent_log(&c, name, "stderr"),
        };
        // The bundle the agent wrote for this container, run as it is by containerd.
        let config = bundles.join(format!("{uid}_{name}_0")).join("config.json");
        assert!(config.exists(), "no bundle at {}", config.display());
        let out = plain.ctr([
            "run",
            "--rm",
            "--runtime",
            "io.containerd.skiff.v1",
            "--config",
            config.to_str().unwrap_or_default(),
            &format!("twin-{i}"),
        ]);
        let by_containerd = Outcome {
            code: i64::from(out.status.code().unwrap_or(-1)),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert_eq!(by_agent, by_containerd, "container {name}");
    }
    // What the two ran is what the spec grants, not merely the same.
    assert!(agent_log(&c, "files", "stdout").contains("seen.txt"));
    assert_eq!(
        agent_log(&c, "env", "stdout").lines().next(),
        Some("GREETING=hello")
    );
    assert!(agent_log(&c, "env", "stdout").contains("HOME unset"));
    let code = |name: &str| {
        pod["status"]["containerStatuses"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == name))
            .map(|s| s["state"]["terminated"]["exitCode"].as_i64().unwrap_or(0))
    };
    assert_eq!(code("granted"), Some(0), "{pod:#}");
    assert_eq!(code("refused"), Some(1), "{pod:#}");
    let refused = agent_log(&c, "refused", "stdout");
    assert!(
        refused.starts_with("bind 9090: ") && !refused.contains("ok"),
        "{refused}"
    );
    assert_eq!(code("escape"), Some(1), "{pod:#}");
}

/// One stream of a container's CRI log, as written by its shim.
fn agent_log(c: &Cluster, container: &str, stream: &str) -> String {
    let uid = c.get_json("pod", "twin").unwrap_or_default()["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let log = c
        .agent(0)
        .data_dir
        .join("pods")
        .join(uid)
        .join("logs")
        .join(container)
        .join("0.log");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let mut out = String::new();
    for line in text.lines() {
        let mut parts = line.splitn(4, ' ');
        let (_, s, tag, body) = (parts.next(), parts.next(), parts.next(), parts.next());
        if s == Some(stream) {
            out.push_str(body.unwrap_or_default());
            if tag == Some("F") {
                out.push('\n');
            }
        }
    }
    out
}
