//! apply / get / describe / delete of every kind through the CLI against a real server.

use std::time::Duration;

use skiff_api::v1::{Node, NodeStatus, ObjectMeta};
use skiff_tests::{Cluster, stdout, text, wait_for};

const MANIFESTS: &[(&str, &str, &str)] = &[
    (
        "namespaces",
        "team-a",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels: {owner: a}\n",
    ),
    (
        "pods",
        "web",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  containers:\n  - name: app\n    image: file:/srv/web.wasm\n    args: [serve]\n    resources:\n      limits: {cpu: 250m, memory: 64Mi}\n",
    ),
    (
        "deployments",
        "api",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: api}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: api}}\n  strategy:\n    type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 25%}\n  template:\n    metadata: {labels: {app: api}}\n    spec:\n      containers:\n      - name: api\n        image: registry.local/api:1\n        readinessProbe:\n          httpGet: {path: /healthz, port: 8080}\n",
    ),
    (
        "replicasets",
        "workers",
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: workers}\nspec:\n  replicas: 0\n  selector: {matchLabels: {app: workers}}\n  template:\n    metadata: {labels: {app: workers}}\n    spec:\n      containers:\n      - name: w\n        image: registry.local/w:1\n",
    ),
    (
        "services",
        "api",
        "apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec:\n  type: NodePort\n  selector: {app: api}\n  ports:\n  - {name: http, port: 80, targetPort: http, nodePort: 30080}\n",
    ),
    (
        "endpoints",
        "external-db",
        "apiVersion: v1\nkind: Endpoints\nmetadata: {name: external-db}\nsubsets:\n- addresses: [{ip: 10.42.0.5}]\n  ports: [{name: http, port: 8080}]\n",
    ),
    (
        "secrets",
        "creds",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\ntype: Opaque\nstringData: {password: hunter2}\n",
    ),
    (
        "configmaps",
        "settings",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata:\n  LOG_LEVEL: debug\n",
    ),
    (
        "persistentvolumeclaims",
        "data",
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n",
    ),
    (
        "events",
        "web.1",
        "apiVersion: v1\nkind: Event\nmetadata: {name: web.1}\ninvolvedObject: {kind: Pod, name: web, namespace: default}\nreason: Scheduled\nmessage: assigned to node-1\ntype: Normal\ncount: 1\n",
    ),
];

#[test]
fn apply_get_describe_delete_every_kind() {
    let c = Cluster::start();
    for (plural, name, manifest) in MANIFESTS {
        let path = c.data_dir().join(format!("{plural}.yaml"));
        std::fs::write(&path, manifest).unwrap();
        let path = path.to_str().unwrap();

        let out = c.skiff(&["apply", "-f", path]);
        assert!(out.status.success(), "apply {plural}: {}", text(&out));
        assert!(stdout(&out).ends_with(" created\n"), "{}", text(&out));
        let again = c.skiff(&["apply", "-f", path]);
        assert!(
            stdout(&again).ends_with(" unchanged\n"),
            "apply is idempotent for {plural}: {}",
            text(&again)
        );

        let out = c.skiff(&["get", plural, name]);
        assert!(out.status.success(), "get {plural}: {}", text(&out));
        let table = stdout(&out);
        assert!(
            table.starts_with("NAME") || table.starts_with("LAST SEEN"),
            "table header: {table}"
        );
        if *plural != "events" {
            assert!(
                table.lines().nth(1).is_some_and(|l| l.starts_with(name)),
                "row for {name}: {table}"
            );
        }

        let out = c.skiff(&["get", plural, name, "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("json: {e}: {}", text(&out)));
        assert_eq!(v["metadata"]["name"], *name);
        assert!(v["apiVersion"].is_string() && v["kind"].is_string(), "{v}");
        assert!(
            !v["metadata"]["uid"].as_str().unwrap_or("").is_empty(),
            "server sets uid"
        );
        assert!(
            !v["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .is_empty()
        );

        let out = c.skiff(&["get", plural, name, "-o", "yaml"]);
        let y = stdout(&out);
        assert!(y.starts_with("apiVersion: "), "{y}");
        assert!(y.contains(&format!("name: {name}")), "{y}");

        let out = c.skiff(&["describe", plural, name]);
        assert!(out.status.success(), "describe {plural}: {}", text(&out));
        assert!(
            stdout(&out).starts_with(&format!("Name:         {name}\n")),
            "{}",
            text(&out)
        );
        if *plural == "secrets" {
            assert!(
                !stdout(&out).contains("hunter2"),
                "describe must not print secret values"
            );
            assert!(!stdout(&out).contains("aHVudGVyMg"), "nor their base64");
        }

        let out = c.skiff(&["delete", plural, name]);
        assert!(out.status.success(), "delete {plural}: {}", text(&out));
        assert!(
            stdout(&out).contains(&format!("{name:?} deleted")),
            "{}",
            text(&out)
        );
        wait_for(
            &format!("{plural}/{name} to be gone"),
            Duration::from_secs(10),
            || {
                let out = c.skiff(&["get", plural, name]);
                (out.status.code() == Some(1)
                    && String::from_utf8_lossy(&out.stderr).contains("NotFound"))
                .then_some(())
            },
        );
    }
}

#[test]
fn nodes_are_read_only_for_apply_but_listed_and_deleted() {
    let c = Cluster::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let node = Node {
        metadata: Some(ObjectMeta {
            name: "node-1".into(),
            labels: [("zone".to_string(), "a".to_string())].into(),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            capacity: [
                ("cpu".to_string(), "2".to_string()),
                ("memory".to_string(), "4Gi".to_string()),
            ]
            .into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    rt.block_on(c.api::<Node>("").create(node))
        .expect("register node through the API");

    let out = c.skiff(&["get", "nodes"]);
    assert!(stdout(&out).contains("node-1"), "{}", text(&out));
    let out = c.skiff(&["get", "no", "node-1", "-o", "yaml"]);
    assert!(stdout(&out).contains("memory: 4Gi"), "{}", text(&out));
    let out = c.skiff(&["describe", "node", "node-1"]);
    assert!(stdout(&out).contains("zone=a"), "{}", text(&out));

    let manifest = c.data_dir().join("node.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-2}\n",
    )
    .unwrap();
    let out = c.skiff(&["apply", "-f", manifest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("read-only"),
        "{}",
        text(&out)
    );

    let out = c.skiff(&["delete", "node", "node-1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(c.skiff(&["get", "node", "node-1"]).status.code(), Some(1));
}

#[test]
fn namespaces_scope_objects_and_deleting_one_deletes_its_contents() {
    let c = Cluster::start();
    let all = "apiVersion: v1\nkind: Namespace\nmetadata: {name: scratch}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, namespace: scratch}\ndata: {a: '1'}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: '2'}\n";
    let out = c.skiff_stdin(&["apply", "-f", "-"], all);
    assert!(out.status.success(), "{}", text(&out));
    let out = c.skiff(&["get", "cm", "-A"]);
    let table = stdout(&out);
    assert!(table.starts_with("NAMESPACE"), "{table}");
    assert!(
        table.contains("scratch") && table.contains("default"),
        "{table}"
    );
    let out = c.skiff(&["get", "cm", "cfg", "-n", "scratch", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["data"]["a"], "1");

    let out = c.skiff_stdin(
        &["apply", "-f", "-", "-n", "nowhere"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a missing namespace is refused: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("namespaces \"nowhere\" not found"),
        "{}",
        text(&out)
    );

    assert!(
        c.skiff(&["delete", "namespace", "scratch"])
            .status
            .success()
    );
    wait_for(
        "namespace scratch and its contents to go",
        Duration::from_secs(10),
        || {
            let ns = c.skiff(&["get", "ns", "scratch"]);
            let cm = c.skiff(&["get", "cm", "cfg", "-n", "scratch"]);
            (ns.status.code() == Some(1) && cm.status.code() == Some(1)).then_some(())
        },
    );
    assert!(
        c.skiff(&["get", "cm", "cfg"]).status.success(),
        "other namespaces untouched"
    );
}

#[test]
fn label_and_field_selectors() {
    let c = Cluster::start();
    let pods = (0..4)
        .map(|i| {
            let tier = if i % 2 == 0 { "web" } else { "db" };
            format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, labels: {{tier: {tier}}}}}\nspec:\n  containers: [{{name: c, image: x}}]\n")
        })
        .collect::<Vec<_>>()
        .join("---\n");
    assert!(c.skiff_stdin(&["apply", "-f", "-"], &pods).status.success());
    let names = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["get", "pods", "-o", "name"];
        full.extend_from_slice(args);
        stdout(&c.skiff(&full))
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(names(&["-l", "tier=web"]), ["pod/p0", "pod/p2"]);
    assert_eq!(
        names(&["-l", "tier in (db),tier!=web"]),
        ["pod/p1", "pod/p3"]
    );
    assert_eq!(names(&["--field-selector", "metadata.name=p3"]), ["pod/p3"]);
    assert_eq!(
        names(&["--field-selector", "spec.nodeName="]).len(),
        4,
        "unbound pods"
    );
    let out = c.skiff(&["get", "pods", "--field-selector", "spec.bogus=x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.bogus"),
        "{}",
        text(&out)
    );
}
