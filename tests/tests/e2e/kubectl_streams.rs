//! kubectl's extras against a real cluster, with the real `kubectl` (1.32 at /usr/bin/kubectl;
//! the tests fail loudly without one): `kubectl logs -f` streaming a running container until it
//! stops, `--tail` and `--timestamps`; `kubectl exec -i` feeding stdin over the WebSocket channel
//! protocol and exiting with the command's exit code; `kubectl cp` both ways (tar over exec); `kubectl attach`; `kubectl explain`
//! reading the OpenAPI v3 documents; `kubectl describe pod|deployment|node` showing Events; and
//! `kubectl port-forward` (SPDY) refused with a reason.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use skiff_tests::images::busybox_oci_archive;
use skiff_tests::kubectl::{Running, kubectl, run, run_stdin};
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, stdout, text, wait_for};

struct Setup {
    cluster: Cluster,
    image: String,
    _registry: Registry,
}

fn setup() -> Setup {
    skiff_tests::kubectl::bin();
    let registry = Registry::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("busybox.tar");
    busybox_oci_archive(&archive).expect("busybox image");
    let image = registry.push_layout(&archive, "busybox", "v1").reference;
    let mut cluster = Cluster::start();
    cluster.add_agent("node-1");
    Setup {
        cluster,
        image,
        _registry: registry,
    }
}

fn pod(name: &str, image: &str, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, {script:?}]\n"
    )
}

fn phase(c: &Cluster, name: &str) -> String {
    c.get_json("pod", name)
        .and_then(|p| p["status"]["phase"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn wait_phase(c: &Cluster, name: &str, phases: &[&str]) {
    wait_for(
        &format!("pod {name} to be {phases:?}"),
        Duration::from_secs(90),
        || phases.contains(&phase(c, name).as_str()).then_some(()),
    );
}

#[test]
fn kubectl_logs_follow_exec_stdin_and_exit_code_and_attach() {
    let s = setup();
    let c = &s.cluster;
    // A container that says it is ready, then talks a little later and stops.
    c.apply(&pod(
        "talker",
        &s.image,
        "echo first; sleep 4; echo second >&2; sleep 1; echo third; exit 0",
    ));
    // kubectl cp runs `tar` in the container: the image links only sh, echo and true.
    c.apply(&pod(
        "shell",
        &s.image,
        "busybox mkdir -p /usr/local/bin && busybox ln -s /bin/busybox /usr/local/bin/tar; \
         echo shell-up; exec sleep 3600",
    ));
    wait_phase(c, "talker", &["Running", "Succeeded"]);

    // logs -f streams: the first line arrives while the container still runs, and kubectl
    // ends by itself when the container stops.
    let mut follow = Running(
        kubectl(c)
            .args(["logs", "-f", "talker"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl logs -f"),
    );
    let mut lines = BufReader::new(follow.0.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(first, "first");
    assert_eq!(
        phase(c, "talker"),
        "Running",
        "the first line came before the container stopped"
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(rest, ["second", "third"], "both streams, in order");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = follow.0.try_wait().expect("wait kubectl") {
            break status;
        }
        assert!(Instant::now() < deadline, "kubectl logs -f did not end");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "kubectl logs -f: {status}");
    wait_phase(c, "talker", &["Succeeded"]);

    // --tail and --timestamps.
    let out = run(c, &["logs", "talker", "--tail=1", "--timestamps"]);
    assert!(out.status.success(), "{}", text(&out));
    let last = stdout(&out);
    let (time, line) = last.trim_end().split_once(' ').unwrap_or_default();
    assert_eq!(line, "third", "{last:?}");
    assert!(
        time.starts_with("20") && time.ends_with('Z'),
        "an RFC 3339 time first: {last:?}"
    );
    let out = run(c, &["logs", "talker", "-c", "nope"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("container nope is not valid for pod talker"),
        "{}",
        text(&out)
    );

    // exec -i: stdin reaches the command, its end is seen (cat returns), and kubectl exits
    // with the command's exit code.
    wait_phase(c, "shell", &["Running"]);
    let out = run_stdin(
        c,
        &[
            "exec",
            "-i",
            "shell",
            "--",
            "sh",
            "-c",
            "cat; echo to-stderr >&2; exit 3",
        ],
        "hello over websocket\n",
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(stdout(&out), "hello over websocket\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("to-stderr"),
        "{}",
        text(&out)
    );
    let out = run(c, &["exec", "shell", "--", "sh", "-c", "echo $((6 * 7))"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "42\n");
    // kubectl cp rides on exec (tar through stdin, then through stdout): bytes intact both ways.
    let local = tempfile::tempdir().expect("tempdir");
    let sent = local.path().join("payload.txt");
    std::fs::write(&sent, "copied both ways\n").expect("write payload");
    let sent = sent.to_string_lossy().into_owned();
    let out = run(c, &["cp", &sent, "shell:/tmp/payload.txt"]);
    assert!(out.status.success(), "{}", text(&out));
    let back = local.path().join("back.txt").to_string_lossy().into_owned();
    let out = run(c, &["cp", "shell:/tmp/payload.txt", &back]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&back).unwrap_or_default(),
        "copied both ways\n"
    );
    // A pod that is not there is named, with no talk of SPDY.
    let out = run(c, &["exec", "nope", "--", "true"]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("pods \"nope\" not found"), "{said}");
    assert!(!said.contains("SPDY"), "{said}");

    // port-forward's SPDY streams are refused with a reason that names skiff's own.
    let mut forward = Running(
        kubectl(c)
            .args(["port-forward", "pod/shell", ":8080"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl port-forward"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = forward.0.try_wait().expect("wait kubectl") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl port-forward did not give up"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut said = String::new();
    std::io::Read::read_to_string(&mut forward.0.stderr.take().expect("stderr"), &mut said)
        .expect("stderr");
    assert!(!status.success());
    assert!(said.contains("skiff port-forward"), "{said}");

    // attach: the output from now on.
    c.apply(&pod(
        "ticker",
        &s.image,
        "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.3; done",
    ));
    wait_phase(c, "ticker", &["Running"]);
    let mut attach = Running(
        kubectl(c)
            .args(["attach", "ticker"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl attach"),
    );
    let mut lines = BufReader::new(attach.0.stdout.take().expect("stdout")).lines();
    let ticks: Vec<String> = (0..2)
        .filter_map(|_| lines.next().and_then(Result::ok))
        .collect();
    assert_eq!(ticks.len(), 2, "{ticks:?}");
    assert!(ticks.iter().all(|t| t.starts_with("tick-")), "{ticks:?}");
}

#[test]
fn kubectl_explain_reads_openapi_and_describe_shows_events() {
    let s = setup();
    let c = &s.cluster;

    let out = run(c, &["explain", "deployment.spec.replicas"]);
    assert!(out.status.success(), "{}", text(&out));
    let explained = stdout(&out);
    assert!(
        explained
            .lines()
            .any(|l| l.starts_with("KIND:") && l.ends_with("Deployment")),
        "{explained}"
    );
    assert!(
        explained.contains("replicas\t<integer>") || explained.contains("replicas <integer>"),
        "{explained}"
    );
    assert!(
        explained.contains("The number of pods wanted"),
        "{explained}"
    );
    let out = run(c, &["explain", "pods.spec.containers"]);
    assert!(out.status.success(), "{}", text(&out));
    let explained = stdout(&out);
    assert!(explained.contains("<[]Container>"), "{explained}");
    assert!(explained.contains("image"), "fields listed: {explained}");
    let out = run(c, &["explain", "pods.spec.nosuchfield"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("nosuchfield"), "{}", text(&out));

    c.apply(&pod("described", &s.image, "echo hi; exec sleep 3600"));
    wait_phase(c, "described", &["Running"]);
    // The agent reports Started once the container runs; kubectl lists it under Events.
    let described = wait_for(
        "describe to show the pod's events",
        Duration::from_secs(30),
        || {
            let out = run(c, &["describe", "pod", "described"]);
            let said = stdout(&out);
            (out.status.success() && said.contains("Started")).then_some(said)
        },
    );
    let events = described
        .split("Events:")
        .nth(1)
        .unwrap_or_else(|| panic!("no Events section: {described}"));
    assert!(events.contains("Started"), "{described}");
    assert!(events.contains("Pulled"), "{described}");
    assert!(events.contains("Successfully pulled image"), "{described}");
    // A Deployment's events are its controller's (ScalingReplicaSet).
    c.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {}\n        command: [sh, -c, \"exec sleep 3600\"]\n",
        s.image
    ));
    let described = wait_for(
        "describe deployment to show its events",
        Duration::from_secs(30),
        || {
            let out = run(c, &["describe", "deployment", "web"]);
            let said = stdout(&out);
            (out.status.success() && said.contains("ScalingReplicaSet")).then_some(said)
        },
    );
    assert!(
        described.contains("Scaled up replica set web-"),
        "{described}"
    );
    let out = run(c, &["describe", "node", "node-1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("Events:"), "{}", text(&out));
}
