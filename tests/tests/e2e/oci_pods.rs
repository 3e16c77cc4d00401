//! OCI pods end to end: a busybox image the test builds, pushed to a real loopback
//! `docker-registry`, pulled and unpacked by a real agent and run by the runtime host's Linux
//! executor. Exit codes, pid 1, the hostname, env, logs, the kernel's view of the sandbox
//! (NoNewPrivs, seccomp, reduced capabilities), OOMKilled under a 64Mi limit, and two
//! containers of one pod talking over localhost.

use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::guests::guest;
use skiff_tests::images::busybox_oci_archive;
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, stdout, text, wait_for};

struct Setup {
    cluster: Cluster,
    image: String,
    _registry: Registry,
}

fn setup() -> Setup {
    setup_with(&[])
}

/// A registry holding the busybox image, and a cluster of one agent started with `agent_args`.
fn setup_with(agent_args: &[&str]) -> Setup {
    let registry = Registry::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("busybox.tar");
    busybox_oci_archive(&archive).expect("busybox image");
    let image = registry.push_layout(&archive, "busybox", "v1").reference;
    let mut cluster = Cluster::start();
    cluster.add_agent_with("node-1", agent_args);
    Setup {
        cluster,
        image,
        _registry: registry,
    }
}

fn pod(name: &str, image: &str, script: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, {script:?}]\n    env:\n    - name: GREETING\n      value: hello\n{extra}"
    )
}

/// Waits for the pod to end; a timeout names the pod's last status, its log and the agent's.
fn finished(c: &Cluster, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let pod = c.get_json("pod", name);
        if let Some(p) = &pod
            && matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
        {
            return p.clone();
        }
        if Instant::now() > deadline {
            let log = c.agent(0).log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "timed out after 90s waiting for pod {name} to finish\nstatus: {:#}\nlogs: {}\nagent log (last lines):\n{}",
                pod.map(|p| p["status"].clone()).unwrap_or_default(),
                text(&c.skiff(&["logs", name])),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for the pod to finish and asserts it succeeded.
fn succeeded(c: &Cluster, name: &str) {
    let p = finished(c, name);
    assert_eq!(
        p["status"]["phase"],
        "Succeeded",
        "{p:#}\n{}",
        c.agent(0).log()
    );
}

fn logs(c: &Cluster, name: &str, container: &str) -> String {
    let out = c.skiff(&["logs", name, "-c", container]);
    assert!(out.status.success(), "{}", text(&out));
    stdout(&out)
}

#[test]
fn an_oci_pod_runs_sandboxed_with_its_exit_code_env_and_logs() {
    let s = setup();
    let c = &s.cluster;
    let script = "echo pid $$; busybox hostname; echo $GREETING; \
                  busybox grep -E '^(NoNewPrivs|Seccomp|CapEff):' /proc/self/status; exit 3";
    c.apply(&pod("probe", &s.image, script, ""));
    let p = finished(c, "probe");
    let status = &p["status"]["containerStatuses"][0];
    assert_eq!(
        p["status"]["phase"],
        "Failed",
        "{p:#}\n{}",
        c.agent(0).log()
    );
    assert_eq!(status["state"]["terminated"]["exitCode"], 3, "{p:#}");
    assert!(
        status["imageID"]
            .as_str()
            .unwrap_or("")
            .starts_with("sha256:"),
        "{p:#}"
    );
    let out = logs(c, "probe", "main");
    assert!(out.starts_with("pid 1\nprobe\nhello\n"), "{out}");
    assert!(
        out.contains("NoNewPrivs:\t1") && out.contains("Seccomp:\t2"),
        "{out}"
    );
    assert!(
        out.contains("CapEff:\t00000000a80425fb"),
        "the default set: {out}"
    );
    assert!(
        status["containerID"]
            .as_str()
            .unwrap_or("")
            .starts_with("skiff://"),
        "{p:#}"
    );
    // The pull is in the pod's events, as kubelet reports it: how long, how many bytes.
    let described = text(&c.skiff(&["describe", "pod", "probe"]));
    assert!(
        described.contains("Successfully pulled image"),
        "{described}"
    );
}

#[test]
fn memory_over_a_64mi_limit_is_oom_killed() {
    let s = setup();
    let c = &s.cluster;
    let limits = "    resources:\n      limits:\n        memory: 64Mi\n";
    c.apply(&pod("hog", &s.image, "busybox tail /dev/zero", limits));
    let p = finished(c, "hog");
    let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{p:#}\n{}", c.agent(0).log());
    assert_eq!(t["exitCode"], 137, "{p:#}");
}

#[test]
fn containers_of_one_pod_share_localhost() {
    let s = setup();
    let c = &s.cluster;
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pair\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: server\n    image: {image}\n    command: [sh, -c, \"echo from-server | busybox nc -l -p 8080\"]\n  - name: client\n    image: {image}\n    command: [sh, -c, \"for i in 1 2 3 4 5 6 7 8 9 10; do busybox nc 127.0.0.1 8080 </dev/null && exit 0; busybox sleep 0.5; done; exit 1\"]\n",
        image = s.image
    );
    c.apply(&yaml);
    succeeded(c, "pair");
    assert_eq!(logs(c, "pair", "client"), "from-server\n");
}

#[test]
fn skiff_run_runs_an_oci_image_with_its_exit_code() {
    let s = setup();
    let c = &s.cluster;
    let out = c.skiff(&[
        "run",
        "--rm",
        "-e",
        "WHO=oci",
        &s.image,
        "--",
        "sh",
        "-c",
        "echo hello $WHO; exit 5",
    ]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}\n{}",
        text(&out),
        c.agent(0).log()
    );
    assert_eq!(stdout(&out), "hello oci\n", "{}", text(&out));
    // --rm: the pod is gone.
    let pods = c.skiff(&["get", "pods", "-o", "name"]);
    assert_eq!(stdout(&pods).trim(), "", "{}", text(&pods));
}

#[test]
fn an_oci_container_outlives_its_agent_and_is_adopted() {
    let mut s = setup();
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ticker\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: IMAGE\n    command: [sh, -c, \"trap 'echo got TERM; exit 0' TERM; while :; do echo tick; busybox sleep 0.2; done\"]\n"
        .replace("IMAGE", &s.image);
    s.cluster.apply(&yaml);
    let running = wait_for("ticker Running", Duration::from_secs(60), || {
        s.cluster
            .get_json("pod", "ticker")
            .filter(|p| p["status"]["phase"] == "Running")
    });
    let id = running["status"]["containerStatuses"][0]["containerID"].clone();
    assert!(
        id.as_str().is_some_and(|i| i.starts_with("skiff://")),
        "{running:#}"
    );
    let uid = running["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    let log_file = s
        .cluster
        .agent(0)
        .data_dir
        .join(format!("pods/{uid}/logs/main/0.log"));
    let size = || std::fs::metadata(&log_file).map(|m| m.len()).unwrap_or(0);
    s.cluster.kill_agent(0);
    let before = size();
    wait_for(
        "ticks while the agent is dead",
        Duration::from_secs(5),
        || (size() > before).then_some(()),
    );
    s.cluster.start_agent(0);
    let ticks = |c: &Cluster| logs(c, "ticker", "main").matches("tick").count();
    let first = wait_for(
        "logs through the restarted agent",
        Duration::from_secs(20),
        || {
            let out = s.cluster.skiff(&["logs", "ticker"]);
            out.status.success().then(|| ticks(&s.cluster))
        },
    );
    wait_for(
        "more ticks after the restart",
        Duration::from_secs(10),
        || (ticks(&s.cluster) > first).then_some(()),
    );
    let p = s.cluster.get_json("pod", "ticker").expect("pod");
    let status = &p["status"]["containerStatuses"][0];
    assert_eq!(status["containerID"], id, "adopted, not restarted: {p:#}");
    assert_eq!(
        p["status"]["podIP"], running["status"]["podIP"],
        "the pod keeps its address: {p:#}"
    );
    let ip = p["status"]["podIP"].as_str().unwrap_or("").to_string();
    assert!(
        ip.starts_with("10.2"),
        "an address of the pod network: {p:#}"
    );
    assert_eq!(status["restartCount"].as_i64().unwrap_or(0), 0, "{p:#}");
    // Deleting it stops it gracefully: SIGTERM reaches the container first.
    let out = s.cluster.skiff(&["delete", "pod", "ticker"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for("ticker gone", Duration::from_secs(20), || {
        s.cluster.get_json("pod", "ticker").is_none().then_some(())
    });
    let pods_dir = s.cluster.agent(0).data_dir.join("pods");
    wait_for(
        "the pod's directory removed",
        Duration::from_secs(10),
        || (!pods_dir.join(&uid).exists()).then_some(()),
    );
    assert!(
        !std::path::Path::new(&format!("/run/netns/skiff-{uid}")).exists(),
        "the pod's network namespace is removed with it"
    );
    assert!(
        !s.cluster.agent(0).data_dir.join("ipam").join(&ip).exists(),
        "and its address freed"
    );
}

#[test]
fn a_non_root_container_writes_its_empty_dir() {
    let s = setup();
    let c = &s.cluster;
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: user\nspec:\n  restartPolicy: Never\n  securityContext:\n    runAsUser: 1000\n    runAsGroup: 1000\n  volumes:\n  - name: scratch\n    emptyDir: {{}}\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, \"busybox id -u; echo saved > /data/f && busybox cat /data/f; busybox touch /f 2>/dev/null; echo root=$?\"]\n    volumeMounts:\n    - name: scratch\n      mountPath: /data\n",
        image = s.image
    );
    c.apply(&yaml);
    succeeded(c, "user");
    let out = logs(c, "user", "main");
    assert_eq!(
        out, "1000\nsaved\nroot=1\n",
        "uid 1000 writes the emptyDir, not the image's root"
    );
}

/// `skiff exec` joins a running container: its pid namespace, hostname, privileges and
/// filesystem; stdout, stderr, stdin and the exit code come back; bad requests name the fault.
#[test]
fn skiff_exec_runs_a_command_inside_a_running_container() {
    let s = setup();
    let c = &s.cluster;
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: shell\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, \"echo inside > /tmp/mark; while :; do busybox sleep 1; done\"]\n    env:\n    - name: GREETING\n      value: hello\n  - name: side\n    image: {image}\n    command: [sh, -c, \"while :; do busybox sleep 1; done\"]\n",
        image = s.image
    );
    c.apply(&yaml);
    wait_for("shell Running", Duration::from_secs(60), || {
        c.get_json("pod", "shell")
            .filter(|p| p["status"]["phase"] == "Running")
    });
    let script = "busybox cat /tmp/mark; echo pid $$; busybox hostname; echo $GREETING; \
                  busybox tr '\\0' ' ' < /proc/1/cmdline; echo; echo oops >&2; \
                  busybox grep -E '^(NoNewPrivs|Seccomp|CapEff):' /proc/self/status; exit 7";
    let out = c.skiff(&["exec", "shell", "-c", "main", "--", "sh", "-c", script]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let o = stdout(&out);
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(lines[0], "inside", "the container's filesystem: {o}");
    assert_ne!(lines[1], "pid 1", "a new process: {o}");
    assert_eq!(&lines[2..4], ["shell", "hello"], "hostname and env: {o}");
    assert!(
        lines[4].starts_with("sh -c echo inside"),
        "the container's pid namespace (its pid 1): {o}"
    );
    assert!(
        o.contains("NoNewPrivs:\t1")
            && o.contains("Seccomp:\t2")
            && o.contains("CapEff:\t00000000a80425fb"),
        "the container's privileges: {o}"
    );
    assert_eq!(skiff_tests::stderr(&out), "oops\n");

    // stdin, larger than a pipe's buffer, with -i.
    let input = "x".repeat(200_000);
    let out = c.skiff_stdin(
        &[
            "exec", "-i", "shell", "-c", "side", "--", "busybox", "wc", "-c",
        ],
        &input,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out).trim(), "200000");
    // Without -i the command reads end of file at once.
    let out = c.skiff(&["exec", "shell", "-c", "side", "--", "busybox", "wc", "-c"]);
    assert_eq!(stdout(&out).trim(), "0", "{}", text(&out));

    // Two containers and none named: exit 2, naming the choices.
    let out = c.skiff(&["exec", "shell", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("main side"), "{}", text(&out));
    let out = c.skiff(&["exec", "shell", "-c", "nope", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = c.skiff(&["exec", "-t", "shell", "-c", "main", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = c.skiff(&["exec", "missing", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("missing"), "{}", text(&out));
    // A command the image lacks: 126 or 127 from inside, as runc exec reports.
    let out = c.skiff(&["exec", "shell", "-c", "main", "--", "/no/such"]);
    assert!(
        matches!(out.status.code(), Some(126 | 127)),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("/no/such"), "{}", text(&out));

    // A client that goes away takes its command with it.
    let mut child = c
        .skiff_cmd(&[
            "exec", "shell", "-c", "main", "--", "busybox", "sleep", "1234",
        ])
        .spawn()
        .expect("skiff exec");
    let ps = || {
        let out = c.skiff(&["exec", "shell", "-c", "main", "--", "busybox", "ps"]);
        assert!(out.status.success(), "{}", text(&out));
        stdout(&out)
    };
    wait_for("the exec'd sleep running", Duration::from_secs(20), || {
        ps().contains("sleep 1234").then_some(())
    });
    child.kill().expect("kill skiff exec");
    let _ = child.wait();
    wait_for("the exec'd sleep gone", Duration::from_secs(20), || {
        (!ps().contains("sleep 1234")).then_some(())
    });
}

/// subPath mounts a directory of the volume (made if missing), and a symlink a container planted
/// in the volume is never followed out of it.
#[test]
fn sub_path_mounts_stay_inside_their_volume() {
    let s = setup();
    let c = &s.cluster;
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: sub\nspec:\n  restartPolicy: Never\n  volumes:\n  - name: scratch\n    emptyDir: {{}}\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, \"echo hi > /sub/f && busybox cat /data/deep/dir/f\"]\n    volumeMounts:\n    - name: scratch\n      mountPath: /data\n    - name: scratch\n      mountPath: /sub\n      subPath: deep/dir\n",
        image = s.image
    );
    c.apply(&yaml);
    succeeded(c, "sub");
    assert_eq!(logs(c, "sub", "main"), "hi\n");

    // An init container plants a link to the host's /etc; the next container's subPath names it.
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: planted\nspec:\n  restartPolicy: Never\n  volumes:\n  - name: scratch\n    emptyDir: {{}}\n  initContainers:\n  - name: plant\n    image: {image}\n    command: [sh, -c, \"busybox ln -s /etc /data/link\"]\n    volumeMounts:\n    - name: scratch\n      mountPath: /data\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, \"busybox ls /escaped\"]\n    volumeMounts:\n    - name: scratch\n      mountPath: /escaped\n      subPath: link\n",
        image = s.image
    );
    c.apply(&yaml);
    let waiting = wait_for("planted refused", Duration::from_secs(60), || {
        let p = c.get_json("pod", "planted")?;
        let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        (w["reason"] == "CreateContainerConfigError").then_some(w)
    });
    assert!(
        waiting["message"]
            .as_str()
            .is_some_and(|m| m.contains("subPath \"link\"") && m.contains("symlink")),
        "{waiting:#}"
    );
}

/// A ConfigMap updated while an OCI pod and a Wasm pod mount it: the files both read change
/// within a minute (kubelet's sync period), each swapped whole, and the volume stays the one
/// mounted.
#[test]
fn config_map_updates_reach_running_pods() {
    let s = setup();
    let c = &s.cluster;
    let config_map = |motd: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\ndata: {{motd: {motd}, other: x}}\n"
        )
    };
    c.apply(&config_map("first"));
    let volume = "  volumes:\n  - name: config\n    configMap: {name: settings}\n";
    let mount = "    volumeMounts:\n    - {name: config, mountPath: /etc/app}\n";
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: oci\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, \"while :; do busybox cat /etc/app/motd; echo; busybox sleep 0.5; done\"]\n{mount}{volume}",
        image = s.image
    ));
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: wasm\nspec:\n  runtimeClassName: wasm\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: main\n    image: file:{probe}\n    command: [probe]\n    args: [watch, /etc/app/motd, \"500\", \"0\"]\n{mount}{volume}",
        probe = guest("probe").display()
    ));
    let saw = |pod: &str, text: &str| {
        let out = c.skiff(&["logs", pod]);
        out.status.success() && stdout(&out).lines().any(|l| l == text)
    };
    for pod in ["oci", "wasm"] {
        wait_for(
            &format!("{pod} reads first"),
            Duration::from_secs(60),
            || saw(pod, "first").then_some(()),
        );
    }

    c.apply(&config_map("second"));
    let started = Instant::now();
    for pod in ["oci", "wasm"] {
        wait_for(
            &format!("{pod} reads second"),
            Duration::from_secs(90),
            || saw(pod, "second").then_some(()),
        );
    }
    let took = started.elapsed();
    eprintln!("ConfigMap update → both pods read it: {took:?}");
    assert!(took < Duration::from_secs(60), "{took:?}");
    // Every line either pod printed is one whole version: nothing torn, nothing missing.
    for pod in ["oci", "wasm"] {
        let out = stdout(&c.skiff(&["logs", pod]));
        assert!(
            out.lines().all(|l| l == "first" || l == "second"),
            "{pod}: {out}"
        );
    }
    // Neither container restarted: the files changed under them.
    for pod in ["oci", "wasm"] {
        let p = c.get_json("pod", pod).expect("pod");
        let status = &p["status"]["containerStatuses"][0];
        assert_eq!(status["restartCount"].as_u64().unwrap_or(0), 0, "{p:#}");
        assert!(status["state"]["running"].is_object(), "{p:#}");
    }
}

/// A fork bomb in a pod meets the node's `--pod-pids-limit`: forks are refused, the container's
/// pid 1 lives on, and the node goes on running pods.
#[test]
fn a_fork_bomb_in_a_pod_is_held_by_the_pids_limit() {
    let s = setup_with(&["--pod-pids-limit", "48"]);
    let (c, image) = (&s.cluster, &s.image);
    // Every fork holds a pid for 5 s; the bomb runs in a subshell, which ends at its first
    // refused fork, so that pid 1 survives (its end would kill the pid namespace).
    let script = "bomb() { while :; do busybox sleep 5 & done; }; (bomb); \
                  set -- /proc/[0-9]*; echo procs $#; busybox sleep 5; echo survived";
    c.apply(&pod("bomb", image, script, ""));
    succeeded(c, "bomb");
    let out = logs(c, "bomb", "main");
    assert!(out.contains("can't fork"), "forks were refused: {out}");
    // The pid namespace's processes, counted without a fork: the limit, not the 4096 default.
    let procs: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("procs "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count: {out}"));
    assert!((30..=49).contains(&procs), "{procs} processes: {out}");
    assert!(out.ends_with("survived\n"), "{out}");
    c.apply(&pod("after", image, "echo fine", ""));
    succeeded(c, "after");
}
