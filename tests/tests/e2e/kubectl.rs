//! The real `kubectl` (1.32 at /usr/bin/kubectl, or `$KUBECTL`; the tests fail loudly without
//! one) against a skiff cluster through the Kubernetes REST API, with the kubeconfig `skiff
//! server` writes: apply, get (table, wide, yaml, json, jsonpath, `-w`), scale, label, rollout
//! status/restart/undo, delete (cascade, grace period), `auth can-i`, errors as kubectl prints
//! Kubernetes' (NotFound, AlreadyExists), and strict field validation naming an unknown field.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use skiff_tests::guests::guest;
use skiff_tests::kubectl::{Running, kubectl, ok, run, run_stdin};
use skiff_tests::{Cluster, ClusterOptions, stderr, stdout, text, wait_for};

/// A Deployment of `replicas` Wasm pods that sleep until stopped.
fn deployment(name: &str, replicas: u32, extra_field: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n  replicas: {replicas}\n{extra_field}  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      runtimeClassName: wasm\n      terminationGracePeriodSeconds: 2\n      containers:\n      - name: main\n        image: file:{image}\n        command: [probe]\n        args: [sleep, \"0\"]\n        resources:\n          limits: {{cpu: 500m, memory: 64Mi}}\n",
        image = guest("probe").display(),
    )
}

/// The names of the pods of `app` (`kubectl get pods -l app=APP -o name`).
fn pods_of(c: &Cluster, app: &str) -> Vec<String> {
    ok(
        c,
        &["get", "pods", "-l", &format!("app={app}"), "-o", "name"],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

fn running_pods(c: &Cluster, app: &str) -> usize {
    let out = ok(
        c,
        &[
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "-o",
            "jsonpath={range .items[*]}{.status.phase}{\" \"}{.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ],
    );
    out.lines().filter(|l| l.trim() == "Running").count()
}

#[test]
fn kubectl_applies_gets_scales_labels_and_rolls_out_a_deployment() {
    let mut c = Cluster::start();
    c.add_agent("node-1");

    let applied = run_stdin(&c, &["apply", "-f", "-"], &deployment("web", 2, ""));
    assert!(applied.status.success(), "{}", text(&applied));
    assert_eq!(stdout(&applied).trim(), "deployment.apps/web created");
    let status = ok(
        &c,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    );
    assert!(
        status.contains("deployment \"web\" successfully rolled out"),
        "{status}"
    );
    // Applying the same manifest again changes nothing.
    let again = run_stdin(&c, &["apply", "-f", "-"], &deployment("web", 2, ""));
    assert_eq!(
        stdout(&again).trim(),
        "deployment.apps/web unchanged",
        "{}",
        text(&again)
    );

    // The table kubectl prints from the server's columns.
    wait_for("two Running pods", Duration::from_secs(60), || {
        (running_pods(&c, "web") == 2).then_some(())
    });
    let table = ok(&c, &["get", "pods"]);
    let header = table.lines().next().unwrap_or_default().to_string();
    let columns: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        columns,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{table}"
    );
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows.iter()
            .all(|r| r.starts_with("web-") && r.contains("1/1") && r.contains("Running")),
        "{table}"
    );
    let wide = ok(&c, &["get", "pods", "-o", "wide"]);
    let header = wide.lines().next().unwrap_or_default();
    for column in ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"] {
        assert!(header.contains(column), "{wide}");
    }
    assert!(wide.lines().skip(1).all(|r| r.contains("node-1")), "{wide}");
    let deployments = ok(&c, &["get", "deployments"]);
    let columns: Vec<&str> = deployments
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        columns,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{deployments}"
    );
    assert!(deployments.contains("2/2"), "{deployments}");
    // Across namespaces, with the namespace column.
    let all = ok(&c, &["get", "pods", "-A"]);
    assert!(
        all.lines()
            .next()
            .unwrap_or_default()
            .starts_with("NAMESPACE"),
        "{all}"
    );

    // YAML, JSON, jsonpath: the object as Kubernetes writes it.
    let yaml = ok(&c, &["get", "deployment", "web", "-o", "yaml"]);
    assert!(yaml.contains("apiVersion: apps/v1"), "{yaml}");
    assert!(yaml.contains("kind: Deployment"), "{yaml}");
    assert!(yaml.contains("replicas: 2"), "{yaml}");
    let list: Value = serde_json::from_str(&ok(&c, &["get", "pods", "-o", "json"])).expect("json");
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert!(
        items
            .iter()
            .all(|p| p["kind"] == "Pod" && p["spec"]["nodeName"] == "node-1")
    );
    assert_eq!(
        ok(
            &c,
            &[
                "get",
                "deployment",
                "web",
                "-o",
                "jsonpath={.spec.replicas}"
            ]
        ),
        "2"
    );

    // `-w`: the watch shows the pod a scale-up makes.
    let before = pods_of(&c, "web");
    let mut watch = kubectl(&c)
        .args(["get", "pods", "-l", "app=web", "-w", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let (tx, lines) = mpsc::channel();
    let out = watch.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let _watch = Running(watch);
    let scaled = ok(&c, &["scale", "deployment", "web", "--replicas=3"]);
    assert_eq!(scaled.trim(), "deployment.apps/web scaled");
    let mut seen = Vec::new();
    let new_pod = wait_for(
        "the new pod in kubectl get -w",
        Duration::from_secs(60),
        || {
            while let Ok(line) = lines.try_recv() {
                seen.push(line);
            }
            seen.iter().find(|l| !before.contains(l)).cloned()
        },
    );
    assert!(new_pod.starts_with("pod/web-"), "{new_pod}");
    ok(
        &c,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    );
    assert_eq!(
        ok(
            &c,
            &[
                "get",
                "deployment",
                "web",
                "-o",
                "jsonpath={.status.readyReplicas}"
            ]
        ),
        "3"
    );

    // Labels, through a strategic merge patch.
    assert_eq!(
        ok(&c, &["label", "deployment", "web", "tier=front"]).trim(),
        "deployment.apps/web labeled"
    );
    assert_eq!(
        ok(&c, &["get", "deployment", "-l", "tier=front", "-o", "name"]).trim(),
        "deployment.apps/web"
    );
    assert_eq!(
        ok(&c, &["label", "deployment", "web", "tier-"]).trim(),
        "deployment.apps/web unlabeled"
    );

    // Restart: a new revision with kubectl's restartedAt annotation; undo goes back to the
    // first revision's template.
    assert_eq!(
        ok(&c, &["rollout", "restart", "deployment/web"]).trim(),
        "deployment.apps/web restarted"
    );
    ok(
        &c,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    );
    let restarted_at =
        "jsonpath={.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}";
    assert!(!ok(&c, &["get", "deployment", "web", "-o", restarted_at]).is_empty());
    let history = ok(&c, &["rollout", "history", "deployment/web"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");
    assert_eq!(
        ok(&c, &["rollout", "undo", "deployment/web"]).trim(),
        "deployment.apps/web rolled back"
    );
    ok(
        &c,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    );
    assert_eq!(
        ok(&c, &["get", "deployment", "web", "-o", restarted_at]),
        ""
    );

    // Errors as kubectl prints Kubernetes' Status.
    let missing = run(&c, &["get", "pod", "nope"]);
    assert!(!missing.status.success());
    assert_eq!(
        stderr(&missing).trim(),
        "Error from server (NotFound): pods \"nope\" not found"
    );
    let exists = run_stdin(&c, &["create", "-f", "-"], &deployment("web", 1, ""));
    assert!(
        stderr(&exists).contains("Error from server (AlreadyExists)")
            && stderr(&exists).contains("deployments.apps \"web\" already exists"),
        "{}",
        text(&exists)
    );
}

#[test]
fn kubectl_apply_of_an_unknown_field_names_it_and_creates_nothing() {
    let c = Cluster::start();
    let manifest = deployment("typo", 1, "  replicass: 3\n");
    let out = run_stdin(&c, &["apply", "-f", "-"], &manifest);
    assert!(!out.status.success(), "{}", text(&out));
    let err = stderr(&out);
    assert!(err.contains("replicass"), "{err}");
    assert!(err.contains("unknown field"), "{err}");
    let missing = run(&c, &["get", "deployment", "typo"]);
    assert!(!missing.status.success(), "{}", text(&missing));
    // Asked to, the server drops the field and says so.
    let out = run_stdin(&c, &["apply", "--validate=warn", "-f", "-"], &manifest);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stderr(&out).contains("unknown field \"spec.replicass\""),
        "{}",
        text(&out)
    );
}

#[test]
fn kubectl_delete_cascades_orphans_and_passes_the_grace_period() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    for name in ["gone", "kept"] {
        let out = run_stdin(&c, &["apply", "-f", "-"], &deployment(name, 1, ""));
        assert!(out.status.success(), "{}", text(&out));
    }
    for name in ["gone", "kept"] {
        ok(
            &c,
            &[
                "rollout",
                "status",
                &format!("deployment/{name}"),
                "--timeout=120s",
            ],
        );
    }
    // Background (the default): the ReplicaSet and its pods go too.
    assert_eq!(
        ok(&c, &["delete", "deployment", "gone"]).trim(),
        "deployment.apps \"gone\" deleted"
    );
    wait_for("gone's pods deleted", Duration::from_secs(60), || {
        pods_of(&c, "gone").is_empty().then_some(())
    });
    assert!(ok(&c, &["get", "replicasets", "-l", "app=gone", "-o", "name"]).is_empty());
    // Orphan: the ReplicaSet stays, its owner reference gone.
    ok(&c, &["delete", "deployment", "kept", "--cascade=orphan"]);
    let owners = "jsonpath={.items[*].metadata.ownerReferences}";
    wait_for(
        "kept's ReplicaSet orphaned",
        Duration::from_secs(30),
        || {
            let sets = ok(&c, &["get", "replicasets", "-l", "app=kept", "-o", "name"]);
            let owned = ok(&c, &["get", "replicasets", "-l", "app=kept", "-o", owners]);
            (!sets.trim().is_empty() && owned.trim().is_empty()).then_some(())
        },
    );
    assert_eq!(pods_of(&c, "kept").len(), 1);
    // A grace period reaches the pod: it is terminating with that many seconds (its node paused,
    // so that the agent does not stop it and remove it first).
    let pod = pods_of(&c, "kept").remove(0);
    c.pause_agent(0);
    ok(&c, &["delete", &pod, "--grace-period=30", "--wait=false"]);
    let grace = ok(
        &c,
        &[
            "get",
            &pod,
            "-o",
            "jsonpath={.metadata.deletionGracePeriodSeconds}",
        ],
    );
    assert_eq!(grace, "30");
    // --grace-period=0 --force removes it at once.
    let forced = run(&c, &["delete", &pod, "--grace-period=0", "--force"]);
    assert!(forced.status.success(), "{}", text(&forced));
    wait_for("the pod removed", Duration::from_secs(30), || {
        (!run(&c, &["get", &pod]).status.success()).then_some(())
    });
    c.resume_agent(0);
}

#[test]
fn kubectl_auth_can_i_answers_as_the_authorizer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "jane-t0ken,jane,1001\n").expect("tokens");
    let c = Cluster::start_with(ClusterOptions {
        server_args: vec!["--token-auth-file".into(), tokens.display().to_string()],
        ..Default::default()
    });
    let admin = run(&c, &["auth", "can-i", "create", "deployments"]);
    assert_eq!(stdout(&admin).trim(), "yes", "{}", text(&admin));
    let jane = run(
        &c,
        &[
            "--token",
            "jane-t0ken",
            "auth",
            "can-i",
            "create",
            "deployments",
        ],
    );
    assert_eq!(stdout(&jane).trim(), "no", "{}", text(&jane));
    assert!(!jane.status.success());
    // Bound to the `edit` role in `default`, jane may; not in another namespace. (Bound by a
    // manifest; `kubectl create rolebinding`, which sends protobuf, makes a second binding.)
    let binding = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: jane-edit}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}\nsubjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: jane}]\n";
    let bound = run_stdin(&c, &["apply", "-f", "-"], binding);
    assert!(bound.status.success(), "{}", text(&bound));
    let generator = run(
        &c,
        &[
            "create",
            "rolebinding",
            "other",
            "--clusterrole=edit",
            "--user=jane",
        ],
    );
    assert!(generator.status.success(), "{}", text(&generator));
    assert!(
        stdout(&generator).contains("rolebinding.rbac.authorization.k8s.io/other created"),
        "{}",
        text(&generator)
    );
    wait_for("jane's binding in force", Duration::from_secs(10), || {
        let out = run(
            &c,
            &[
                "--token",
                "jane-t0ken",
                "auth",
                "can-i",
                "patch",
                "deployments",
            ],
        );
        (stdout(&out).trim() == "yes").then_some(())
    });
    let elsewhere = run(
        &c,
        &[
            "--token",
            "jane-t0ken",
            "auth",
            "can-i",
            "create",
            "deployments",
            "-n",
            "kube-system",
        ],
    );
    assert_eq!(stdout(&elsewhere).trim(), "no", "{}", text(&elsewhere));
    // And what she is refused says who and what, as Kubernetes does.
    let refused = run(
        &c,
        &["--token", "jane-t0ken", "get", "pods", "-n", "kube-system"],
    );
    assert!(
        stderr(&refused).contains("Error from server (Forbidden)")
            && stderr(&refused).contains("User \"jane\" cannot list resource \"pods\""),
        "{}",
        text(&refused)
    );
    let whoami = ok(
        &c,
        &[
            "--token",
            "jane-t0ken",
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(whoami, "jane");
}

/// `curl` to the cluster's API with the admin token (`--http1.1` or HTTP/2 as asked).
pub(crate) fn curl(c: &Cluster, http2: bool, args: &[&str]) -> (u16, String) {
    let config = c.config();
    let ca = c.data_dir().join("curl-ca.pem");
    std::fs::write(&ca, &config.certificate_authority_data).expect("ca");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}"])
        .arg(if http2 { "--http2" } else { "--http1.1" })
        .arg("--cacert")
        .arg(&ca)
        .args(["-H", &format!("Authorization: Bearer {}", config.token)])
        .args(args.iter().map(|a| a.replace("$API", &config.server)))
        .output()
        .expect("run curl (apt-get install curl)");
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn the_rest_api_answers_as_kubernetes_does() {
    let c = Cluster::start();
    let cms = "$API/api/v1/namespaces/default/configmaps";
    for name in ["a", "b", "c"] {
        let body = format!(
            "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"{name}\",\"labels\":{{\"set\":\"x\"}}}},\"data\":{{\"k\":\"v\"}}}}"
        );
        let (code, out) = curl(
            &c,
            name == "b",
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                &body,
                cms,
            ],
        );
        assert_eq!(code, 201, "{out}");
    }
    // Pages: limit and continue.
    let (code, out) = curl(&c, true, &[&format!("{cms}?labelSelector=set%3Dx&limit=2")]);
    assert_eq!(code, 200, "{out}");
    let page = json(&out);
    assert_eq!(page["kind"], "ConfigMapList");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    let token = page["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_string();
    let (_, out) = curl(
        &c,
        true,
        &[&format!(
            "{cms}?labelSelector=set%3Dx&limit=2&continue={token}"
        )],
    );
    let rest = json(&out);
    assert_eq!(rest["items"][0]["metadata"]["name"], "c", "{out}");
    assert!(rest["metadata"].get("continue").is_none(), "{out}");

    // A stale resourceVersion is a 409 Conflict; an invalid object a 422 with its causes.
    let (_, out) = curl(&c, false, &[&format!("{cms}/a")]);
    let mut a = json(&out);
    let old = a["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    a["data"]["k"] = "w".into();
    let (code, _) = curl(
        &c,
        false,
        &[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            "-d",
            &a.to_string(),
            &format!("{cms}/a"),
        ],
    );
    assert_eq!(code, 200);
    let (code, out) = curl(
        &c,
        false,
        &[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            "-d",
            &a.to_string(),
            &format!("{cms}/a"),
        ],
    );
    assert_eq!(code, 409, "{out}");
    let status = json(&out);
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str()),
        (Some("Status"), Some("Conflict"))
    );
    assert_ne!(old, "");
    let bad = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"Bad_Name\"}}";
    let (code, out) = curl(
        &c,
        true,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            bad,
            cms,
        ],
    );
    assert_eq!(code, 422, "{out}");
    let status = json(&out);
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["details"]["causes"][0]["field"], "metadata.name",
        "{out}"
    );

    // Server-side apply is later work: a 415 naming the docs.
    let (code, out) = curl(
        &c,
        true,
        &[
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/apply-patch+yaml",
            "-d",
            "{}",
            &format!("{cms}/a"),
        ],
    );
    assert_eq!(code, 415, "{out}");
    assert!(out.contains("docs/kubernetes-api.md"), "{out}");

    // No credentials: 401, as a Status.
    let out = Command::new("curl")
        .args(["-sSk", "-w", "\n%{http_code}"])
        .arg(format!("{}/api/v1/pods", c.config().server))
        .output()
        .expect("curl");
    assert!(stdout(&out).ends_with("\n401"), "{}", text(&out));

    // A watch from the list's version: the change, a bookmark, and the end at timeoutSeconds.
    let rv = rest["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let watcher = {
        let url = format!(
            "{cms}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=13"
        );
        let c_config = (c.config(), c.data_dir().to_path_buf());
        std::thread::spawn(move || {
            let (config, dir) = c_config;
            let out = Command::new("curl")
                .args(["-sSN", "--max-time", "30", "--cacert"])
                .arg(dir.join("curl-ca.pem"))
                .args(["-H", &format!("Authorization: Bearer {}", config.token)])
                .arg(url.replace("$API", &config.server))
                .output()
                .expect("curl watch");
            stdout(&out)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let (code, out) = curl(&c, true, &["-X", "DELETE", &format!("{cms}/b")]);
    assert_eq!(code, 200, "{out}");
    let started = std::time::Instant::now();
    let events: Vec<Value> = watcher.join().expect("watcher").lines().map(json).collect();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "timeoutSeconds ends the watch"
    );
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(
        types.contains(&"MODIFIED") || types.contains(&"DELETED"),
        "{types:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "DELETED" && e["object"]["metadata"]["name"] == "b"),
        "{events:?}"
    );
    let bookmark = events
        .iter()
        .find(|e| e["type"] == "BOOKMARK")
        .unwrap_or_else(|| panic!("no bookmark in {types:?}"));
    assert_eq!(bookmark["object"]["kind"], "ConfigMap");
    assert!(
        bookmark["object"]["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|v| v != rv)
    );

    // deletecollection by label.
    let (code, out) = curl(
        &c,
        false,
        &["-X", "DELETE", &format!("{cms}?labelSelector=set%3Dx")],
    );
    assert_eq!(code, 200, "{out}");
    let (_, out) = curl(&c, false, &[&format!("{cms}?labelSelector=set%3Dx")]);
    assert_eq!(
        json(&out)["items"].as_array().map(Vec::len),
        Some(0),
        "{out}"
    );
}

/// kubectl's generators send their objects in protobuf (`application/vnd.kubernetes.protobuf`)
/// and do not retry in JSON: each is created as the flags say.
#[test]
fn kubectl_create_generators_send_protobuf_the_server_reads() {
    let c = Cluster::start();
    let created = |args: &[&str], what: &str| {
        let out = run(&c, args);
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
        assert_eq!(
            stdout(&out).trim(),
            format!("{what} created"),
            "{}",
            text(&out)
        );
    };
    created(&["create", "namespace", "shop"], "namespace/shop");
    created(
        &[
            "-n",
            "shop",
            "create",
            "deployment",
            "web",
            "--image=registry.local/web:1",
            "--replicas=2",
            "--port=8080",
        ],
        "deployment.apps/web",
    );
    created(
        &[
            "-n",
            "shop",
            "create",
            "configmap",
            "cfg",
            "--from-literal=mode=fast",
            "--from-literal=level=3",
        ],
        "configmap/cfg",
    );
    created(
        &[
            "-n",
            "shop",
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=user=admin",
        ],
        "secret/creds",
    );
    created(
        &[
            "-n",
            "shop",
            "create",
            "service",
            "clusterip",
            "web",
            "--tcp=80:8080",
        ],
        "service/web",
    );
    created(
        &["-n", "shop", "create", "serviceaccount", "bot"],
        "serviceaccount/bot",
    );
    created(
        &[
            "-n",
            "shop",
            "create",
            "role",
            "reader",
            "--verb=get,list",
            "--resource=pods,deployments.apps",
        ],
        "role.rbac.authorization.k8s.io/reader",
    );
    created(
        &[
            "-n",
            "shop",
            "create",
            "rolebinding",
            "bot-reads",
            "--role=reader",
            "--serviceaccount=shop:bot",
        ],
        "rolebinding.rbac.authorization.k8s.io/bot-reads",
    );
    created(
        &[
            "create",
            "clusterrole",
            "node-reader",
            "--verb=get",
            "--resource=nodes",
        ],
        "clusterrole.rbac.authorization.k8s.io/node-reader",
    );
    created(
        &[
            "create",
            "clusterrolebinding",
            "ops-read-nodes",
            "--clusterrole=node-reader",
            "--group=ops",
        ],
        "clusterrolebinding.rbac.authorization.k8s.io/ops-read-nodes",
    );
    created(
        &[
            "-n",
            "shop",
            "create",
            "ingress",
            "web",
            "--rule=shop.example/=web:80",
        ],
        "ingress.networking.k8s.io/web",
    );
    created(
        &[
            "-n",
            "shop",
            "create",
            "poddisruptionbudget",
            "web",
            "--selector=app=web",
            "--min-available=1",
        ],
        "poddisruptionbudget.policy/web",
    );

    let get = |what: &str| -> Value {
        serde_json::from_str(&ok(&c, &["-n", "shop", "get", what, "-o", "json"])).expect("json")
    };
    let d = get("deployment/web");
    assert_eq!(d["spec"]["replicas"], 2);
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.local/web:1");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    let cm = get("configmap/cfg");
    assert_eq!(cm["data"]["mode"], "fast");
    assert_eq!(cm["data"]["level"], "3");
    let secret = ok(
        &c,
        &[
            "-n",
            "shop",
            "get",
            "secret",
            "creds",
            "-o",
            "jsonpath={.data.user}",
        ],
    );
    assert_eq!(secret, "YWRtaW4=");
    let svc = get("service/web");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    let role = get("role/reader");
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "list"])
    );
    let binding = get("rolebinding/bot-reads");
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "bot", "namespace": "shop"}])
    );
    assert_eq!(binding["roleRef"]["name"], "reader");
    let ingress = get("ingress/web");
    assert_eq!(ingress["spec"]["rules"][0]["host"], "shop.example");
    assert_eq!(
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["number"],
        80
    );
    let pdb = get("pdb/web");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
}
