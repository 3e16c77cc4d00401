//! `skiff top`, metrics.k8s.io and events end to end (issue 25's must-show): a real server, a
//! real agent and its shims. A Wasm memory hog that grows slowly (`probe creep`) is seen rising in
//! `skiff top pods` and in `kubectl top` (metrics.k8s.io over REST); a failing image pull, an OOM
//! kill, a failing liveness probe and an unschedulable pod each leave their events, read in
//! `skiff describe pod` and in `skiff get events --for` / `skiff events`.

use std::time::Duration;

use skiff_tests::guests::guest;
use skiff_tests::images::busybox_oci_archive;
use skiff_tests::kubectl;
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, stderr, stdout, text, wait_for};

fn probe() -> String {
    format!("file:{}", guest("probe").display())
}

/// A Wasm pod running `probe ARGS...`, with extra YAML under its container.
fn wasm_pod(name: &str, args: &[&str], container_extra: &str) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    command: [probe]\n    args: [{args}]\n{container_extra}",
        image = probe(),
        args = args.join(", "),
    )
}

/// An OCI pod running a busybox shell script.
fn oci_pod(name: &str, image: &str, script: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: probed}}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, {script:?}]\n{extra}"
    )
}

fn skiff_ok(c: &Cluster, args: &[&str]) -> String {
    let out = c.skiff(args);
    assert!(out.status.success(), "skiff {args:?}: {}", text(&out));
    stdout(&out)
}

/// The row of `name` in a table (its cells), if printed.
fn row(table: &str, name: &str) -> Option<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|cells| cells.iter().any(|c| c == name))
}

/// `34Mi` → 34.
fn mebibytes(cell: &str) -> u64 {
    cell.strip_suffix("Mi")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a memory cell in Mi: {cell:?}"))
}

/// The hog's memory in `skiff top pods`, once it is listed.
fn top_memory(c: &Cluster, pod: &str) -> Option<u64> {
    let out = c.skiff(&["top", "pods"]);
    if !out.status.success() {
        return None;
    }
    let table = stdout(&out);
    let cells = row(&table, pod)?;
    // NAME CPU(cores) MEMORY(bytes)
    assert_eq!(cells.len(), 3, "{table}");
    assert!(cells[1].ends_with('m'), "{table}");
    Some(mebibytes(&cells[2]))
}

#[test]
fn top_shows_a_wasm_memory_hog_rising() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    // 1 MiB every 150 ms up to 64 MiB: about ten seconds of growth, then held.
    c.apply(&wasm_pod(
        "hog",
        &["creep", "64", "150"],
        "    resources:\n      limits: {memory: 128Mi}\n",
    ));
    let first = wait_for("the hog in skiff top pods", Duration::from_secs(60), || {
        top_memory(&c, "hog")
    });
    let later = wait_for(
        "the hog's memory to rise by 16 MiB in skiff top pods",
        Duration::from_secs(60),
        || top_memory(&c, "hog").filter(|m| *m >= first + 16),
    );
    assert!(later > first, "{first} MiB then {later} MiB");
    // Its own figure, not the shared shim's: it holds at most what it allocated (and its limit).
    let held = wait_for("the hog to hold 64 MiB", Duration::from_secs(60), || {
        top_memory(&c, "hog").filter(|m| *m >= 64)
    });
    assert!(held <= 128, "{held} MiB is over the pod's own memory");

    // Per container, across namespaces, sorted, by label.
    let table = skiff_ok(&c, &["top", "pods", "--containers"]);
    let cells = row(&table, "hog").expect("the hog's container row");
    assert_eq!(&cells[..2], ["hog", "main"], "{table}");
    assert!(
        table.starts_with("POD"),
        "kubectl's header POD NAME CPU(cores) MEMORY(bytes): {table}"
    );
    let table = skiff_ok(&c, &["top", "pods", "-A", "--sort-by", "memory"]);
    assert!(table.starts_with("NAMESPACE"), "{table}");
    assert_eq!(row(&table, "hog").unwrap()[0], "default", "{table}");
    let table = skiff_ok(&c, &["top", "pods", "-l", "app=hog"]);
    assert!(row(&table, "hog").is_some(), "{table}");
    let out = c.skiff(&["top", "pods", "-l", "app=other"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stderr(&out).contains("No resources found"),
        "{}",
        text(&out)
    );
    let out = c.skiff(&["top", "pods", "--sort-by", "age"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // The node: the machine's figure, never less than its pods', as a share of allocatable.
    let table = wait_for("node-1 in skiff top nodes", Duration::from_secs(30), || {
        let out = c.skiff(&["top", "nodes"]);
        out.status.success().then(|| stdout(&out))
    });
    assert!(
        table.starts_with("NAME") && table.contains("CPU(%)") && table.contains("MEMORY(%)"),
        "{table}"
    );
    let cells = row(&table, "node-1").expect("node-1's row");
    assert_eq!(cells.len(), 5, "{table}");
    assert!(
        cells[1].ends_with('m') && cells[2].ends_with('%'),
        "{table}"
    );
    assert!(
        mebibytes(&cells[3]) >= 64,
        "the node holds the hog: {table}"
    );
    assert!(cells[4].ends_with('%'), "{table}");

    // kubectl top, through metrics.k8s.io on the REST API.
    let out = kubectl::ok(&c, &["top", "pods"]);
    let cells = row(&out, "hog").expect("kubectl top pods lists the hog");
    assert!(mebibytes(&cells[2]) >= 64, "{out}");
    let out = kubectl::ok(&c, &["top", "nodes"]);
    assert!(row(&out, "node-1").is_some(), "{out}");
    let raw = kubectl::ok(
        &c,
        &[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/hog",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["kind"], "PodMetrics", "{v:#}");
    assert_eq!(v["metadata"]["labels"]["app"], "hog", "{v:#}");
    assert_eq!(v["window"], "2s", "{v:#}");
    assert!(v["containers"][0]["usage"]["memory"].is_string(), "{v:#}");
    let missing = kubectl::run(
        &c,
        &[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nobody",
        ],
    );
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("podmetrics.metrics.k8s.io \"nobody\" not found"),
        "{}",
        text(&missing)
    );

    // Its start is told in describe, kubelet's and kube-scheduler's way.
    let described = wait_for("the hog's start events", Duration::from_secs(30), || {
        let d = skiff_ok(&c, &["describe", "pod", "hog"]);
        (d.contains("Successfully assigned default/hog to node-1")
            && d.contains("Created container: main")
            && d.contains("Started container main"))
        .then_some(d)
    });
    let events = &described[described.find("Events:").unwrap()..];
    let at = |s: &str| events.find(s).unwrap();
    assert!(
        at("Scheduled") < at("Created container") && at("Created container") < at("Started"),
        "in order: {events}"
    );
}

/// The lines of `text` that contain `s`.
fn lines_with<'a>(text: &'a str, s: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(s)).collect()
}

/// The Events section of a describe.
fn events_of(describe: &str) -> &str {
    &describe[describe.find("Events:").unwrap_or(0)..]
}

/// How many times the event whose message contains `s` happened, by describe's
/// `(xN over ...)` (summed over its lines; a line without a count is once).
fn times(describe: &str, s: &str) -> u32 {
    lines_with(events_of(describe), s)
        .iter()
        .map(|l| {
            l.split_once("(x")
                .and_then(|(_, rest)| rest.split_once(" over "))
                .and_then(|(n, _)| n.parse().ok())
                .unwrap_or(1)
        })
        .sum()
}

#[test]
fn failures_are_told_in_describe_and_events() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("busybox.tar");
    busybox_oci_archive(&archive).expect("busybox image");
    let image = registry.push_layout(&archive, "busybox", "v1").reference;
    let missing = image.replace(":v1", ":missing");
    let mut c = Cluster::start();
    c.add_agent("node-1");

    c.apply(&oci_pod("nopull", &missing, "true", ""));
    // Exits 7 at once, again and again: its back-off is one BackOff Event counted on.
    c.apply(
        &wasm_pod("crashy", &["exit", "7"], "")
            .replace("restartPolicy: Never", "restartPolicy: Always"),
    );
    c.apply(&oci_pod(
        "oom",
        &image,
        "busybox tail /dev/zero",
        "    resources:\n      limits:\n        memory: 64Mi\n",
    ));
    c.apply(&oci_pod(
        "dead",
        &image,
        "sleep 3600",
        "    livenessProbe:\n      exec:\n        command: [busybox, cat, /tmp/healthy]\n      periodSeconds: 1\n      failureThreshold: 2\n",
    ));
    c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nowhere\nspec:\n  runtimeClassName: wasm\n  nodeSelector: {disk: ssd}\n  containers:\n  - name: main\n    image: file:/nonexistent.wasm\n",
    );

    let describe_until = |pod: &str, want: &[&str]| -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let d = skiff_ok(&c, &["describe", "pod", pod]);
            if want.iter().all(|w| d.contains(w)) {
                return d;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for describe pod {pod} to say {want:?}; it says:\n{d}\nagent log:\n{}",
                c.agent(0).log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };

    // A failing pull, in kubelet's words: Pulling, Failed to pull image, Error: ErrImagePull,
    // then the back-off; the retry 10 s later counts on the same Events.
    let d = describe_until("nopull", &["Pulling", "Failed", "Error: ErrImagePull"]);
    assert!(d.contains("Warning"), "{d}");
    assert!(
        d.contains(&format!("Failed to pull image {missing:?}: ")),
        "the image is named: {d}"
    );
    let d = describe_until(
        "nopull",
        &[
            &format!("Back-off pulling image {missing:?}"),
            "Error: ImagePullBackOff",
        ],
    );
    let pull_backoff = lines_with(events_of(&d), "Back-off pulling image");
    assert!(
        pull_backoff[0].trim_start().starts_with("Normal ") && pull_backoff[0].contains("BackOff"),
        "kubelet's pull back-off is Normal: {d}"
    );
    let retried = wait_for(
        "the pull failure counted twice",
        Duration::from_secs(40),
        || {
            let d = skiff_ok(&c, &["describe", "pod", "nopull"]);
            (times(&d, "Error: ErrImagePull") >= 2).then_some(d)
        },
    );
    assert_eq!(
        lines_with(events_of(&retried), "Error: ErrImagePull").len(),
        1,
        "one Event: {retried}"
    );

    // A crash loop: one BackOff Event in kubelet's words, `(x2 over ...)` in describe, one row
    // with its COUNT in `get events -o wide`, the same interval in `skiff events`.
    let backoff = "Back-off restarting failed container main in pod crashy_default(";
    let crashy = wait_for("crashy's second back-off", Duration::from_secs(40), || {
        let d = skiff_ok(&c, &["describe", "pod", "crashy"]);
        (times(&d, backoff) >= 2).then_some(d)
    });
    let rows = lines_with(events_of(&crashy), backoff);
    assert_eq!(rows.len(), 1, "one BackOff Event: {crashy}");
    assert!(
        rows[0].contains("Warning") && rows[0].contains("BackOff") && rows[0].contains(" over "),
        "{crashy}"
    );
    let wide = skiff_ok(&c, &["get", "events", "--for", "pod/crashy", "-o", "wide"]);
    let head: Vec<&str> = wide
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let count_at = head
        .iter()
        .position(|h| *h == "COUNT")
        .expect("a COUNT column");
    let rows = lines_with(&wide, "BackOff");
    assert_eq!(rows.len(), 1, "{wide}");
    let count: u32 = rows[0]
        .split_whitespace()
        .rev()
        .nth(head.len() - 1 - count_at)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count in {wide}"));
    assert!(count >= 2, "{wide}");
    let verb = skiff_ok(&c, &["events", "--for", "pod/crashy"]);
    assert!(
        lines_with(&verb, backoff)
            .iter()
            .any(|l| l.contains(" over ") && l.contains("Pod/crashy")),
        "{verb}"
    );

    // An OOM kill: its own Warning event, beside the container's terminated reason.
    let d = describe_until("oom", &["OOMKilled", "Container main was OOMKilled"]);
    assert!(d.contains("Successfully pulled image"), "{d}");

    // A failing liveness probe: Unhealthy with the probe's output, then Killing.
    let d = describe_until(
        "dead",
        &[
            "Unhealthy",
            "Liveness probe failed:",
            "/tmp/healthy",
            "Killing",
        ],
    );
    assert!(
        d.contains("failed liveness probe, will be restarted"),
        "{d}"
    );

    // An unschedulable pod: FailedScheduling with the reason per node.
    let d = describe_until("nowhere", &["FailedScheduling", "0/1 nodes are available"]);
    assert!(d.contains("Warning"), "{d}");
    assert!(!d.contains("Successfully assigned"), "{d}");

    // `get events --for`: only that pod's, oldest first; `events --types Warning`.
    let table = skiff_ok(&c, &["get", "events", "--for", "pod/oom"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("LAST SEEN"), "{table}");
    assert!(lines[1..].iter().all(|l| l.contains("pod/oom")), "{table}");
    let at = |s: &str| table.find(s).unwrap_or_else(|| panic!("{s} in {table}"));
    assert!(at("Scheduled") < at("Pulled"), "oldest first: {table}");
    let warnings = skiff_ok(&c, &["events", "--for", "pod/dead", "--types", "Warning"]);
    assert!(warnings.contains("Unhealthy"), "{warnings}");
    assert!(!warnings.contains("Started"), "{warnings}");
    let out = c.skiff(&["get", "pods", "--for", "pod/oom"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = c.skiff(&["events", "--for", "oom"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // An eviction (drain's, through the Eviction API) is told on the pod, which is gone after.
    skiff_ok(
        &c,
        &[
            "drain",
            "node-1",
            "--force",
            "--pod-selector",
            "app=probed",
            "--timeout",
            "60s",
        ],
    );
    let evicted = wait_for("the Evicted event", Duration::from_secs(30), || {
        let t = skiff_ok(&c, &["get", "events", "--for", "pod/dead"]);
        t.contains("Evicted").then_some(t)
    });
    assert!(
        evicted.contains("Evicted through the Eviction API"),
        "{evicted}"
    );
}
