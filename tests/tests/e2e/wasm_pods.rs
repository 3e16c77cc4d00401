//! Wasm pods end to end: a real server, a real agent and its shims, guests built from
//! `tests/guests/probe.c`. Each test names what it proves.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::guests::{component, guest};
use skiff_tests::{Cluster, stderr, stdout, text, wait_for};

/// A cluster with one Ready node.
fn cluster() -> Cluster {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    c
}

fn probe() -> String {
    format!("file:{}", guest("probe").display())
}

/// A pod manifest running `probe ARGS...` with extra YAML under the container and the pod spec.
fn pod_yaml(
    name: &str,
    policy: &str,
    args: &[&str],
    container_extra: &str,
    spec_extra: &str,
) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: {policy}\n  terminationGracePeriodSeconds: 5\n  containers:\n  - name: main\n    image: {image}\n    command: [probe]\n    args: [{args}]\n{container_extra}{spec_extra}",
        image = probe(),
        args = args.join(", "),
    )
}

fn pod_json(c: &Cluster, name: &str) -> Option<Value> {
    c.get_json("pod", name)
}

fn wait_pod(
    c: &Cluster,
    name: &str,
    what: &str,
    timeout: Duration,
    f: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let seen = pod_json(c, name);
        if let Some(p) = seen.as_ref().filter(|p| f(p)) {
            return p.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for pod {name}: {what}\nlast seen: {seen:#?}\nagent log:\n{}",
            c.agent(0).log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn phase(p: &Value) -> &str {
    p["status"]["phase"].as_str().unwrap_or("")
}

fn container(p: &Value, i: usize) -> &Value {
    &p["status"]["containerStatuses"][i]
}

/// A number field; proto3 JSON leaves out zeros.
fn num(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn logs(c: &Cluster, args: &[&str]) -> String {
    let mut all = vec!["logs"];
    all.extend_from_slice(args);
    let out = c.skiff(&all);
    assert!(out.status.success(), "{}", text(&out));
    stdout(&out)
}

#[test]
fn run_streams_output_and_propagates_exit_codes_args_env() {
    let c = cluster();
    let image = probe();
    let out = c.skiff(&["run", "--rm", &image, "--", "echo", "hello", "wasm world"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "hello wasm world\n");

    let out = c.skiff(&["run", "--rm", &image, "--", "exit", "3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(stderr(&out).contains("exiting 3"), "{}", text(&out));

    let out = c.skiff(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hi there",
        &image,
        "--",
        "env",
        "GREETING",
        "HOME",
        "PATH",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // The guest sees exactly the granted environment: nothing of the agent's or the host's.
    assert_eq!(stdout(&out), "GREETING=hi there\nHOME unset\nPATH unset\n");

    // A component (WASI preview 2 command) runs the same way.
    let comp = format!("file:{}", component("probe").display());
    let out = c.skiff(&["run", "--rm", &comp, "--", "echo", "from", "a", "component"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "from a component\n");

    // --rm left nothing behind.
    let out = c.skiff(&["get", "pods", "-o", "name"]);
    assert_eq!(stdout(&out), "", "{}", text(&out));
}

#[test]
fn secrets_and_config_maps_as_env_and_files() {
    let c = cluster();
    c.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {LEVEL: debug, motd: hello-from-configmap}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {password: hunter2}\n",
    );
    let volumes = "  volumes:\n  - name: config\n    configMap: {name: settings}\n  - name: secret\n    secret: {secretName: creds}\n";
    let env = "    env:\n    - name: LEVEL\n      valueFrom: {configMapKeyRef: {name: settings, key: LEVEL}}\n    - name: PASSWORD\n      valueFrom: {secretKeyRef: {name: creds, key: password}}\n    - name: COMBINED\n      value: \"level=$(LEVEL)\"\n    volumeMounts:\n    - {name: config, mountPath: /etc/app}\n    - {name: secret, mountPath: /run/secret}\n";
    c.apply(&pod_yaml(
        "env",
        "Never",
        &["env", "LEVEL", "PASSWORD", "COMBINED"],
        env,
        volumes,
    ));
    c.apply(&pod_yaml(
        "files",
        "Never",
        &["cat", "/etc/app/motd", "/run/secret/password"],
        env,
        volumes,
    ));
    for name in ["env", "files"] {
        let p = wait_pod(&c, name, "Succeeded", Duration::from_secs(30), |p| {
            phase(p) == "Succeeded"
        });
        assert_eq!(num(&container(&p, 0)["state"]["terminated"]["exitCode"]), 0);
    }
    assert_eq!(
        logs(&c, &["env"]),
        "LEVEL=debug\nPASSWORD=hunter2\nCOMBINED=level=debug\n"
    );
    assert_eq!(logs(&c, &["files"]), "hello-from-configmaphunter2");
    // Secret values reach no disk: the Secret volume is on the agent's tmpfs, the ConfigMap's
    // beside the pod's other volumes.
    let uid = pod_json(&c, "files").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let data = &c.agent(0).data_dir;
    let secret = data
        .join("run/pods")
        .join(&uid)
        .join("secrets/secret/password");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "hunter2");
    let fs = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(&secret)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&fs.stdout).trim(), "tmpfs");
    assert!(!data.join("pods").join(&uid).join("volumes/secret").exists());
    assert!(data.join("pods").join(&uid).join("volumes/config").is_dir());
    // A read-only mount (configMap) cannot be written.
    c.apply(&pod_yaml(
        "ro",
        "Never",
        &["write", "/etc/app/motd", "x"],
        env,
        volumes,
    ));
    let p = wait_pod(&c, "ro", "Failed", Duration::from_secs(30), |p| {
        phase(p) == "Failed"
    });
    assert_eq!(num(&container(&p, 0)["state"]["terminated"]["exitCode"]), 1);

    // A missing secret keeps the container waiting with a reason naming it.
    let missing =
        "    env:\n    - name: X\n      valueFrom: {secretKeyRef: {name: nope, key: k}}\n";
    c.apply(&pod_yaml("missing", "Never", &["env", "X"], missing, ""));
    let p = wait_pod(
        &c,
        "missing",
        "CreateContainerConfigError",
        Duration::from_secs(30),
        |p| container(p, 0)["state"]["waiting"]["reason"] == "CreateContainerConfigError",
    );
    let message = container(&p, 0)["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(message.contains("nope"), "{message}");
}

#[test]
fn guests_cannot_escape_their_preopens() {
    let c = cluster();
    let probe_ref = probe();
    let dir = tempfile::tempdir().unwrap();
    let mount = format!("{}:/data", dir.path().display());
    let out = c.skiff(&[
        "run",
        "--rm",
        "-v",
        &mount,
        &probe(),
        "--",
        "escape",
        "/data",
    ]);
    assert!(
        out.status.success(),
        "escape attempts succeeded:\n{}",
        text(&out)
    );
    let report = stdout(&out);
    assert!(!report.contains("ESCAPED"), "{report}");
    assert!(
        report.lines().filter(|l| l.contains("blocked")).count() >= 8,
        "{report}"
    );
    // Without a mount the guest sees no files at all.
    let out = c.skiff(&["run", "--rm", &probe(), "--", "cat", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // Its root holds the node's copy of its module and nothing else, read-only: a guest can
    // neither change what the node runs next nor leave anything for the next task.
    let out = c.skiff(&[
        "run",
        "--rm",
        &probe_ref,
        "--",
        "write",
        "/probe.wasm",
        "gone",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = c.skiff(&["run", "--rm", &probe_ref, "--", "write", "/new", "left"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = c.skiff(&["run", "--rm", &probe_ref, "--", "ls", "/"]);
    assert_eq!(stdout(&out), "probe.wasm\n", "{}", text(&out));
    let out = c.skiff(&["run", "--rm", &probe(), "--", "pwd"]);
    assert!(
        out.status.success(),
        "the module still runs: {}",
        text(&out)
    );
    // The mount itself works, and writes land on the host.
    let out = c.skiff(&[
        "run",
        "--rm",
        "-v",
        &mount,
        &probe(),
        "--",
        "write",
        "/data/out.txt",
        "written",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "written\n"
    );
}

/// The resident memory of the node's Wasm shim.
fn shim_rss_kib(c: &Cluster) -> u64 {
    let pid = c.agent(0).shim_pid("wasm").expect("the Wasm shim's pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn memory_hog_is_contained_by_its_limit() {
    let c = cluster();
    let limits = "    resources:\n      limits: {memory: 64Mi}\n";
    c.apply(&pod_yaml("hog", "Never", &["hog", "512"], limits, ""));
    let p = wait_pod(&c, "hog", "Failed", Duration::from_secs(60), |p| {
        phase(p) == "Failed"
    });
    let term = &container(&p, 0)["state"]["terminated"];
    let code = num(&term["exitCode"]);
    // Either the guest saw its allocation fail (probe exits 12) or it died OOMKilled.
    assert!(
        code == 12 || term["reason"] == "OOMKilled",
        "unexpected end: {term}"
    );
    let out = logs(&c, &["hog"]);
    assert!(!out.contains("allocated all"), "{out}");
    // The guest asked for 512 MiB; the shim that ran it holds far less.
    let rss = shim_rss_kib(&c);
    assert!(rss < 192 * 1024, "the Wasm shim's RSS is {rss} KiB");
}

#[test]
fn spinning_guest_dies_within_a_second_of_delete_and_the_node_stays_ready() {
    let c = cluster();
    c.apply(&pod_yaml("spin", "Always", &["spin"], "", ""));
    c.apply(&pod_yaml("ticker", "Always", &["tick", "100", "0"], "", ""));
    wait_pod(&c, "spin", "Running", Duration::from_secs(30), |p| {
        phase(p) == "Running"
    });
    wait_pod(&c, "ticker", "Running", Duration::from_secs(30), |p| {
        phase(p) == "Running"
    });
    // Let the spinner burn for a while: heartbeats and the other guest must go on.
    std::thread::sleep(Duration::from_secs(3));
    let ticks_before = logs(&c, &["ticker"]).lines().count();
    assert!(
        ticks_before >= 10,
        "the ticker was starved: {ticks_before} ticks"
    );

    // Timed over gRPC (no CLI process start in the measurement): from the delete call until
    // the pod is gone, which the agent does only after the instance was killed.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let took = rt.block_on(async {
        let pods = c.api::<skiff_api::v1::Pod>("default");
        let started = Instant::now();
        pods.delete("spin").await.unwrap();
        while pods.get_opt("spin").await.unwrap().is_some() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "pod spin still there"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        started.elapsed()
    });
    assert!(
        took < Duration::from_secs(1),
        "the spinning pod took {took:?} to stop"
    );

    let node = c.skiff(&["get", "node", "node-1", "-o", "json"]);
    let node: Value = serde_json::from_slice(&node.stdout).unwrap();
    let ready = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    assert!(ready, "{node}");
    // A Wasm pod runs no processes: exec is refused, naming why.
    let out = c.skiff(&["exec", "ticker", "--", "sh"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("Wasm container"), "{}", text(&out));
    wait_for("the ticker to keep ticking", Duration::from_secs(5), || {
        (logs(&c, &["ticker"]).lines().count() > ticks_before).then_some(())
    });
}

#[test]
fn crash_loop_backs_off_ten_then_twenty_seconds_and_keeps_previous_logs() {
    let c = cluster();
    c.apply(&pod_yaml("crash", "Always", &["exit", "7"], "", ""));
    let p = wait_pod(
        &c,
        "crash",
        "in CrashLoopBackOff",
        Duration::from_secs(30),
        |p| container(p, 0)["state"]["waiting"]["reason"] == "CrashLoopBackOff",
    );
    assert_eq!(num(&container(&p, 0)["restartCount"]), 0);
    let first_crash = Instant::now();
    wait_pod(&c, "crash", "restart 1", Duration::from_secs(20), |p| {
        num(&container(p, 0)["restartCount"]) == 1
    });
    let gap1 = first_crash.elapsed();
    let p = wait_pod(
        &c,
        "crash",
        "back-off after restart 1",
        Duration::from_secs(10),
        |p| container(p, 0)["state"]["waiting"]["reason"] == "CrashLoopBackOff",
    );
    let second_crash = Instant::now();
    assert_eq!(
        num(&container(&p, 0)["lastState"]["terminated"]["exitCode"]),
        7
    );
    let message = container(&p, 0)["state"]["waiting"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("back-off 20s"), "{message}");
    wait_pod(&c, "crash", "restart 2", Duration::from_secs(30), |p| {
        num(&container(p, 0)["restartCount"]) == 2
    });
    let gap2 = second_crash.elapsed();
    assert!(
        (8..=13).contains(&gap1.as_secs()),
        "first back-off was {gap1:?}, expected about 10 s"
    );
    assert!(
        (18..=23).contains(&gap2.as_secs()),
        "second back-off was {gap2:?}, expected about 20 s"
    );
    // The previous instance's output (its stderr) is still there.
    assert_eq!(logs(&c, &["crash", "--previous"]), "exiting 7\n");
}

#[test]
fn pvc_data_survives_pod_deletion_and_recreation() {
    let c = cluster();
    c.apply(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Mi}}\n",
    );
    let volume = "  volumes:\n  - name: data\n    persistentVolumeClaim: {claimName: data}\n";
    let mount = "    volumeMounts:\n    - {name: data, mountPath: /data}\n";
    c.apply(&pod_yaml(
        "writer",
        "Never",
        &["write", "/data/state.txt", "kept"],
        mount,
        volume,
    ));
    wait_pod(&c, "writer", "Succeeded", Duration::from_secs(30), |p| {
        phase(p) == "Succeeded"
    });
    let out = c.skiff(&["delete", "pod", "writer"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for("writer gone", Duration::from_secs(10), || {
        pod_json(&c, "writer").is_none().then_some(())
    });
    c.apply(&pod_yaml(
        "reader",
        "Never",
        &["cat", "/data/state.txt"],
        mount,
        volume,
    ));
    wait_pod(&c, "reader", "Succeeded", Duration::from_secs(30), |p| {
        phase(p) == "Succeeded"
    });
    assert_eq!(logs(&c, &["reader"]), "kept\n");
}

#[test]
fn killed_agent_leaves_pods_running_and_the_restarted_agent_adopts_them() {
    let mut c = cluster();
    c.apply(&pod_yaml("ticker", "Always", &["tick", "50", "0"], "", ""));
    let p = wait_pod(&c, "ticker", "Running", Duration::from_secs(30), |p| {
        phase(p) == "Running"
    });
    let id = container(&p, 0)["containerID"].clone();
    assert!(
        id.as_str().is_some_and(|s| s.starts_with("skiff://")),
        "{p}"
    );
    let log_dir = c
        .agent(0)
        .data_dir
        .join("pods")
        .join(p["metadata"]["uid"].as_str().unwrap());
    let log_file = log_dir.join("logs/main/0.log");
    let size = || std::fs::metadata(&log_file).map(|m| m.len()).unwrap_or(0);

    c.kill_agent(0);
    let before = size();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(size() > before, "the pod stopped when its agent was killed");

    c.start_agent(0);
    // Adopted: same container, no restart, still running, still logging.
    std::thread::sleep(Duration::from_secs(2));
    let p = pod_json(&c, "ticker").unwrap();
    assert_eq!(phase(&p), "Running");
    assert_eq!(num(&container(&p, 0)["restartCount"]), 0, "{p}");
    assert_eq!(container(&p, 0)["containerID"], id, "{p}");
    assert!(
        c.agent(0).log().matches("shim launched").count() == 1,
        "{}",
        c.agent(0).log()
    );
    // And the restarted agent still controls it.
    let out = c.skiff(&["delete", "pod", "ticker"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for("ticker gone", Duration::from_secs(5), || {
        pod_json(&c, "ticker").is_none().then_some(())
    });
    let frozen = size();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !log_dir.exists() || size() == frozen,
        "the pod still runs after deletion"
    );
}

#[test]
fn bad_modules_fail_the_pod_with_a_reason_and_the_agent_keeps_going() {
    let c = cluster();
    let dir = c.data_dir().join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("garbage.wasm"), b"\0asm\x01\0\0\0garbage").unwrap();
    std::fs::write(dir.join("world.wat"), "(component)").unwrap();
    let cases = [
        (
            "garbage",
            format!("file:{}", dir.join("garbage.wasm").display()),
            "garbage.wasm",
        ),
        (
            "world",
            format!("file:{}", dir.join("world.wat").display()),
            "wasi:cli",
        ),
        (
            "missing",
            format!("file:{}", dir.join("nope.wasm").display()),
            "nope.wasm",
        ),
        // A device reads forever: refused before a byte is read, naming the image.
        (
            "devzero",
            "file:/dev/zero".to_string(),
            "image file:/dev/zero: /dev/zero is not a regular file",
        ),
    ];
    for (name, image, _) in &cases {
        c.apply(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {image}\n"
            ),
        );
    }
    for (name, _, needle) in &cases {
        let p = wait_pod(&c, name, "Failed", Duration::from_secs(30), |p| {
            phase(p) == "Failed"
        });
        let term = &container(&p, 0)["state"]["terminated"];
        assert_eq!(term["reason"], "StartError", "{p}");
        let message = term["message"].as_str().unwrap_or("");
        assert!(
            message.contains(needle),
            "{name}: {message:?} should name {needle:?}"
        );
    }
    // The agent is alive and still runs pods.
    let out = c.skiff(&["run", "--rm", &probe(), "--", "echo", "still", "here"]);
    assert_eq!(stdout(&out), "still here\n", "{}", text(&out));
}

#[test]
fn unschedulable_pods_say_why() {
    let c = cluster();
    c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: big}\nspec:\n  runtimeClassName: wasm\n  containers:\n  - name: main\n    image: file:/x.wasm\n    resources: {requests: {cpu: \"64\"}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: oci}\nspec:\n  runtimeClassName: gvisor\n  containers:\n  - name: main\n    image: registry.invalid/app:1\n",
    );
    let p = wait_pod(&c, "big", "Unschedulable", Duration::from_secs(10), |p| {
        p["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["reason"] == "Unschedulable"))
    });
    assert_eq!(phase(&p), "Pending");
    let describe = stdout(&c.skiff(&["describe", "pod", "big"]));
    assert!(
        describe.contains("0/1 nodes are available: 1 Insufficient cpu"),
        "{describe}"
    );
    let p = wait_pod(
        &c,
        "oci",
        "Unschedulable (no node runs gvisor)",
        Duration::from_secs(10),
        |p| {
            p["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["reason"] == "Unschedulable"))
        },
    );
    assert!(p.to_string().contains("did not support runtime"), "{p}");
}

#[test]
fn the_hello_example_runs_as_a_deployment() {
    let c = cluster();
    let root = skiff_tests::guests::workspace_root();
    let out = c.skiff(&[
        "apply",
        "-f",
        &root.join("examples/hello").display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let pods = wait_for("2 hello pods Running", Duration::from_secs(30), || {
        let out = c.skiff(&["get", "pods", "-n", "demo", "-l", "app=hello", "-o", "json"]);
        let list: Value = serde_json::from_slice(&out.stdout).ok()?;
        let items = list["items"].as_array()?.clone();
        let running = items.iter().filter(|p| phase(p) == "Running").count();
        (running == 2).then_some(items)
    });
    let name = pods[0]["metadata"]["name"].as_str().unwrap();
    let greeting = wait_for("the greeting in the log", Duration::from_secs(10), || {
        let out = c.skiff(&["logs", "-n", "demo", name]);
        let text = stdout(&out);
        text.contains("hello from skiff (wasm)").then_some(text)
    });
    assert!(
        greeting.starts_with("hello from skiff (wasm)\n"),
        "{greeting}"
    );
    let deploy = c.skiff(&["get", "deployment", "hello", "-n", "demo", "-o", "json"]);
    let deploy: Value = serde_json::from_slice(&deploy.stdout).unwrap();
    assert_eq!(num(&deploy["status"]["readyReplicas"]), 2, "{deploy}");
}

#[test]
fn init_containers_run_first_and_a_failed_one_stops_the_pod() {
    let c = cluster();
    let image = probe();
    let yaml = |name: &str, init_args: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  volumes:\n  - {{name: work, emptyDir: {{}}}}\n  initContainers:\n  - name: prepare\n    image: {image}\n    command: [probe]\n    args: [{init_args}]\n    volumeMounts: [{{name: work, mountPath: /work}}]\n  containers:\n  - name: main\n    image: {image}\n    command: [probe]\n    args: [cat, /work/ready]\n    volumeMounts: [{{name: work, mountPath: /work}}]\n"
        )
    };
    c.apply(&yaml("ordered", "write, /work/ready, prepared-by-init"));
    let p = wait_pod(&c, "ordered", "Succeeded", Duration::from_secs(30), |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    });
    assert_eq!(phase(&p), "Succeeded", "{p}");
    assert_eq!(logs(&c, &["ordered", "-c", "main"]), "prepared-by-init\n");
    let init = &p["status"]["initContainerStatuses"][0];
    assert_eq!(num(&init["state"]["terminated"]["exitCode"]), 0, "{p}");

    c.apply(&yaml("blocked", "exit, \"5\""));
    let p = wait_pod(&c, "blocked", "Failed", Duration::from_secs(30), |p| {
        phase(p) == "Failed"
    });
    let init = &p["status"]["initContainerStatuses"][0];
    assert_eq!(num(&init["state"]["terminated"]["exitCode"]), 5, "{p}");
    // The app container never ran.
    assert!(container(&p, 0)["state"]["waiting"].is_object(), "{p}");
}
