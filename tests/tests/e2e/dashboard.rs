//! The web dashboard in a real headless browser (Debian's chromium through chromedriver, the
//! harness's `browser` and `dashboard` modules): a user logs in with a token, sees nodes and pods,
//! watches a scaled deployment's pods appear without reloading, reads a container's live logs,
//! scales, restarts and deletes from the page; a wrong token is refused; a view-only user's scale
//! is refused with the API's 403 shown. Every check of the cluster's state is made with the
//! test's own client, not through the page.
//!
//! `screenshots` (ignored by default; `scripts/screenshots` runs it) writes docs/dashboard/*.png
//! with the same code.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use skiff_tests::dashboard::{Dashboard, Login};
use skiff_tests::guests::guest;
use skiff_tests::{Cluster, ClusterOptions, text, wait_for};

const LIVE: Duration = Duration::from_secs(60);

/// A cluster whose server also knows the user `jane` (token `jane-t0ken`) bound to the `view`
/// ClusterRole, and the token file's dir.
fn cluster() -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.csv");
    std::fs::write(&file, "jane-t0ken,jane,1001\n").unwrap();
    let c = Cluster::start_with(ClusterOptions {
        server_args: vec!["--token-auth-file".into(), file.display().to_string()],
        ..Default::default()
    });
    c.apply("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: jane-views}\nsubjects:\n- {kind: User, name: jane, apiGroup: rbac.authorization.k8s.io}\nroleRef: {kind: ClusterRole, name: view, apiGroup: rbac.authorization.k8s.io}\n");
    (c, dir)
}

fn probe() -> String {
    format!("file:{}", guest("probe").display())
}

/// A Wasm Deployment of `replicas` pods that sleep.
fn deployment(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      runtimeClassName: wasm\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {image}\n        command: [probe]\n        args: [sleep, \"0\"]\n",
        image = probe()
    )
}

/// A Wasm pod printing `tick N` every 200 ms.
fn talker() -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: talker}}\nspec:\n  runtimeClassName: wasm\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    command: [probe]\n    args: [tick, \"200\", \"0\"]\n",
        image = probe()
    )
}

/// Opens the dashboard; a failure names what the page's console said.
fn open(c: &Cluster) -> Dashboard {
    Dashboard::open(c.addr).unwrap_or_else(|e| panic!("open the dashboard: {e}"))
}

/// Unwraps a dashboard step; a failure prints the page's console and the server's log tail.
fn step<T>(d: &Dashboard, c: &Cluster, what: &str, r: skiff_tests::browser::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}\n{}", diagnosis(d, c)))
}

/// The page's console and the tail of the server's log, for a failure's message.
fn diagnosis(d: &Dashboard, c: &Cluster) -> String {
    let console = d.browser.console().unwrap_or_default().join("\n");
    let log = c.server_log();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n");
    format!("page console:\n{console}\nserver log (tail):\n{tail}")
}

/// Asserts an action's notice: its kind, and text containing `want`.
fn assert_notice(d: &Dashboard, c: &Cluster, got: (String, String), kind: &str, want: &str) {
    assert!(
        got.0 == kind && got.1.contains(want),
        "want a notice {kind:?} saying {want:?}, got {got:?}\n{}",
        diagnosis(d, c)
    );
}

fn replicas(c: &Cluster, name: &str) -> Option<u64> {
    c.get_json("deployment", name)?["spec"]["replicas"].as_u64()
}

/// The rows of `table#pods` whose name starts with `prefix`.
fn rows_like(d: &Dashboard, prefix: &str) -> skiff_tests::browser::Result<Vec<String>> {
    Ok(d.row_names("pods")?
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect())
}

#[test]
fn a_user_sees_the_cluster_live_reads_logs_and_scales_restarts_and_deletes_from_the_page() {
    let (mut c, _tokens) = cluster();
    c.add_agent("node-1");
    c.apply(&deployment("web", 1));
    c.apply(&talker());
    let token = c.config().token;

    let d = open(&c);
    step(&d, &c, "log in", d.login(&token));
    // The token lives in sessionStorage only: never in the URL.
    let url = step(&d, &c, "url", d.browser.url());
    assert!(!url.contains(&token), "the token is in the URL {url}");
    assert!(url.ends_with("#/overview"), "{url}");

    // Nodes.
    let node = step(
        &d,
        &c,
        "the node's row",
        d.wait_row("nodes", "node-1", "node-1 Ready", LIVE, |r| {
            r.get("status").is_some_and(|s| s.starts_with("Ready"))
        }),
    );
    assert!(
        node.get("runtimes").is_some_and(|r| r.contains("wasm")),
        "{node:?}"
    );

    // Pods: the talker runs on node-1 as a Wasm pod; the deployment's one pod is listed.
    step(&d, &c, "pods view", d.show("pods"));
    let pod = step(
        &d,
        &c,
        "talker running",
        d.wait_row("pods", "default/talker", "talker Running", LIVE, |r| {
            r.get("status").map(String::as_str) == Some("Running")
        }),
    );
    assert_eq!(
        pod.get("runtime").map(String::as_str),
        Some("wasm"),
        "{pod:?}"
    );
    assert_eq!(
        pod.get("node").map(String::as_str),
        Some("node-1"),
        "{pod:?}"
    );
    assert_eq!(pod.get("ready").map(String::as_str), Some("1/1"), "{pod:?}");
    step(
        &d,
        &c,
        "web's first pod",
        d.browser.wait("web's pod row", LIVE, |_| {
            Ok((rows_like(&d, "default/web-")?.len() == 1).then_some(()))
        }),
    );

    // Scaled outside the page: the new pods appear through the watch, without a reload (a
    // reload would drop the marker the test leaves in the page's global scope).
    step(
        &d,
        &c,
        "mark the page",
        d.browser.execute("window.skiffTestMark = 'kept';", &[]),
    );
    let out = c.skiff(&["scale", "deployment/web", "--replicas", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    step(
        &d,
        &c,
        "three web pods shown",
        d.browser.wait("three web pod rows", LIVE, |_| {
            Ok((rows_like(&d, "default/web-")?.len() == 3).then_some(()))
        }),
    );
    let mark = step(
        &d,
        &c,
        "read the mark",
        d.browser
            .execute("return window.skiffTestMark || null;", &[]),
    );
    assert_eq!(mark, json!("kept"), "the page was reloaded");

    // Logs: the row's logs link, then the stream keeps growing.
    step(
        &d,
        &c,
        "logs link",
        d.browser
            .get("table#pods tr[data-name=\"default/talker\"] a[data-action=logs]")
            .and_then(|a| a.click()),
    );
    step(&d, &c, "logs view", d.wait_view("logs"));
    let first = step(
        &d,
        &c,
        "first log lines",
        d.browser.wait("tick lines", LIVE, |_| {
            let logs = d.logs()?;
            Ok(last_tick(&logs).filter(|n| *n >= 2))
        }),
    );
    step(
        &d,
        &c,
        "more log lines",
        d.browser.wait("later tick lines", LIVE, |_| {
            Ok(last_tick(&d.logs()?).filter(|n| *n >= first + 3))
        }),
    );
    assert!(
        d.logs().unwrap().contains("tick 1\n"),
        "{}",
        d.logs().unwrap()
    );

    // Scale from the page: the API has the new figure, the rows follow.
    let scaled = step(&d, &c, "scale", d.scale("default/web", 2));
    assert_notice(&d, &c, scaled, "ok", "default/web");
    wait_for("web scaled to 2", LIVE, || {
        (replicas(&c, "web") == Some(2)).then_some(())
    });
    let row = step(
        &d,
        &c,
        "the deployment's row",
        d.wait_row("deployments", "default/web", "web 2/2", LIVE, |r| {
            r.get("ready").map(String::as_str) == Some("2/2")
        }),
    );
    assert!(row.contains_key("progress"), "{row:?}");

    // Restart: the pod template's restartedAt annotation, as kubectl rollout restart.
    let restarted = step(&d, &c, "restart", d.restart("default/web"));
    assert_notice(&d, &c, restarted, "ok", "default/web");
    let deployment = c.get_json("deployment", "web").unwrap();
    let at = &deployment["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"];
    assert!(
        at.as_str().is_some_and(|s| s.ends_with('Z')),
        "{deployment:#}"
    );

    // Delete a pod from its row: gone from the API and from the page.
    let deleted = step(&d, &c, "delete", d.delete_pod("default/talker"));
    assert_notice(&d, &c, deleted, "ok", "default/talker");
    wait_for("talker deleted", LIVE, || {
        c.get_json("pod", "talker").is_none().then_some(())
    });
    step(
        &d,
        &c,
        "talker's row gone",
        d.browser.wait("talker's row to go", LIVE, |_| {
            Ok(d.row("pods", "default/talker")?.is_none().then_some(()))
        }),
    );
}

/// The highest `tick N` in `logs`.
fn last_tick(logs: &str) -> Option<u64> {
    logs.lines()
        .filter_map(|l| l.strip_prefix("tick ")?.trim().parse().ok())
        .max()
}

#[test]
fn a_wrong_token_is_refused_and_a_view_only_user_cannot_scale() {
    let (c, _tokens) = cluster();
    c.apply(&deployment("web", 1));
    let d = open(&c);

    // A wrong token: the form stays with the API's message, nothing is kept.
    let refused = step(&d, &c, "wrong token", d.try_login("not-a-t0ken"));
    let Login::Refused(message) = refused else {
        panic!("a wrong token was let in");
    };
    assert!(!message.is_empty());
    assert_eq!(step(&d, &c, "view", d.view()), "login");
    let nav_hidden = step(
        &d,
        &c,
        "nav",
        d.browser.execute(
            "return [document.querySelector('nav').hidden, sessionStorage.getItem('skiff.token')];",
            &[],
        ),
    );
    assert_eq!(nav_hidden, json!([true, null]));

    // jane (view) sees the deployment; her scale is refused by the API, and the page says so.
    step(&d, &c, "jane logs in", d.login("jane-t0ken"));
    step(
        &d,
        &c,
        "jane sees web",
        d.show("deployments").and_then(|()| {
            d.browser.wait("web's row for jane", LIVE, |b| {
                if let Some(row) = d.row("deployments", "default/web")? {
                    return Ok(Some(row));
                }
                // Her binding reaches the server's RBAC index through a watch: a list refused
                // before it had is asked again by a reload.
                b.refresh()?;
                d.wait_view("deployments")?;
                d.row("deployments", "default/web")
            })
        }),
    );
    let refused = step(&d, &c, "jane scales", d.scale("default/web", 4));
    assert_notice(
        &d,
        &c,
        refused,
        "error",
        "User \"jane\" cannot patch resource \"deployments/scale\" in API group \"apps\" in the namespace \"default\"",
    );
    assert_eq!(replicas(&c, "web"), Some(1));
    // Nor may she restart it.
    let refused = step(&d, &c, "jane restarts", d.restart("default/web"));
    assert_notice(
        &d,
        &c,
        refused,
        "error",
        "User \"jane\" cannot patch resource \"deployments\" in API group \"apps\"",
    );
    let deployment = c.get_json("deployment", "web").unwrap();
    assert!(
        deployment["spec"]["template"]["metadata"]["annotations"]
            ["kubectl.kubernetes.io/restartedAt"]
            .is_null(),
        "{deployment:#}"
    );
}

/// Writes docs/dashboard/*.png: the main views of a small cluster, from the same browser code
/// the tests use. Ignored by default (CI cannot commit them): `scripts/screenshots` runs it.
#[test]
#[ignore = "writes docs/dashboard/*.png; run by scripts/screenshots"]
fn screenshots() {
    let out_dir = std::env::var_os("SKIFF_SCREENSHOTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| skiff_tests::guests::workspace_root().join("docs/dashboard"));
    std::fs::create_dir_all(&out_dir).unwrap();
    let (mut c, _tokens) = cluster();
    c.add_agent("node-1");
    c.apply(&deployment("web", 3));
    c.apply(&deployment("api", 2));
    c.apply(&talker());
    c.apply("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n");
    c.apply("apiVersion: v1\nkind: Pod\nmetadata: {name: missing-image}\nspec:\n  runtimeClassName: wasm\n  containers:\n  - name: main\n    image: file:/nonexistent/app.wasm\n");
    wait_for("the pods to run", LIVE, || {
        let out = c.skiff(&["get", "pods", "-o", "json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let running = list["items"]
            .as_array()?
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count();
        (running >= 6).then_some(())
    });
    let d = Dashboard::open_with(
        c.addr,
        skiff_tests::browser::Options {
            width: 1280,
            height: 800,
        },
    )
    .unwrap();
    let shot = |name: &str| {
        let path = out_dir.join(format!("{name}.png"));
        step(&d, &c, name, d.browser.screenshot_to(&path));
        eprintln!("wrote {}", path.display());
    };
    shot("login");
    step(&d, &c, "log in", d.login(&c.config().token));
    step(
        &d,
        &c,
        "node row",
        d.wait_row("nodes", "node-1", "node-1", LIVE, |_| true),
    );
    shot("overview");
    for view in ["pods", "deployments", "functions", "services", "events"] {
        step(&d, &c, view, d.show(view));
        shot(view);
    }
    step(&d, &c, "logs", d.show("logs/default/talker/main"));
    step(
        &d,
        &c,
        "log lines",
        d.browser.wait("tick lines", LIVE, |_| {
            Ok(last_tick(&d.logs()?).filter(|n| *n >= 5))
        }),
    );
    shot("logs");
}
