//! `skiff get` prints what the real `kubectl get` (1.32 at /usr/bin/kubectl, or `$KUBECTL`)
//! prints against skiff's REST API — the same printers behind both: every table (plain, wide,
//! across namespaces), cell for cell, and `-o json` objects field for field.

use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::guests::guest;
use skiff_tests::{Cluster, stdout, text, wait_for};

use skiff_tests::kubectl::run as kubectl;

/// Runs `args` through both until they print the same (an AGE may tick between the two runs),
/// for up to 10 s; the two outputs of the last try.
fn both(c: &Cluster, args: &[&str]) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let k = kubectl(c, args);
        assert!(k.status.success(), "kubectl {args:?}: {}", text(&k));
        let s = c.skiff(args);
        assert!(s.status.success(), "skiff {args:?}: {}", text(&s));
        let (k, s) = (stdout(&k), stdout(&s));
        if k == s || Instant::now() > deadline {
            return (k, s);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

const MANIFESTS: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
    matchExpressions: [{key: tier, operator: In, values: [front, edge]}]
  template:
    metadata: {labels: {app: web, tier: front}}
    spec:
      runtimeClassName: wasm
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: file:IMAGE
        command: [probe]
        args: [sleep, \"0\"]
        resources:
          limits: {cpu: 0.5, memory: 64Mi}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: \"1\", b: \"2\"}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader}
rules:
- {apiGroups: [\"\"], resources: [pods], verbs: [get, list]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: readers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects:
- {kind: User, name: jane, apiGroup: rbac.authorization.k8s.io}
- {kind: ServiceAccount, name: default, namespace: default}
";

#[test]
fn skiff_get_prints_what_kubectl_prints() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    c.apply(&MANIFESTS.replace("IMAGE", &guest("probe").display().to_string()));
    wait_for("two Running pods", Duration::from_secs(90), || {
        let out = c.skiff(&["get", "pods", "-l", "app=web", "-o", "json"]);
        let list: Value = serde_json::from_str(&stdout(&out)).ok()?;
        let items = list["items"].as_array()?;
        (items.len() == 2
            && items.iter().all(|p| {
                p["status"]["phase"] == "Running"
                    && p["status"]["containerStatuses"][0]["ready"] == true
            }))
        .then_some(())
    });

    let tables: &[&[&str]] = &[
        &["get", "pods"],
        &["get", "pods", "-o", "wide"],
        &["get", "pods", "-A"],
        &["get", "nodes"],
        &["get", "nodes", "-o", "wide"],
        &["get", "deployments", "-o", "wide"],
        &["get", "replicasets", "-o", "wide"],
        &["get", "services", "-o", "wide"],
        &["get", "endpoints"],
        &["get", "configmaps"],
        &["get", "roles"],
        &["get", "rolebindings", "-o", "wide"],
        &["get", "serviceaccounts"],
        &["get", "namespaces"],
        &["get", "deployments,services"],
        &["get", "all"],
    ];
    for args in tables {
        let (k, s) = both(&c, args);
        assert_eq!(s, k, "skiff {args:?} (left) and kubectl (right) differ");
        assert!(k.lines().count() >= 2, "{args:?}: {k}");
    }

    // JSON: the same object, field for field (kubectl prints what the server sends).
    let pod = stdout(&c.skiff(&["get", "pods", "-l", "app=web", "-o", "name"]));
    let pod = pod.lines().next().expect("a pod").to_string();
    for args in [
        vec!["get", pod.as_str(), "-o", "json"],
        vec!["get", "service", "web", "-o", "json"],
        vec!["get", "node", "node-1", "-o", "json"],
        vec!["get", "deployment", "web", "-o", "json"],
    ] {
        let (k, s) = both(&c, &args);
        let k: Value = serde_json::from_str(&k).expect("kubectl json");
        let s: Value = serde_json::from_str(&s).expect("skiff json");
        assert_eq!(s, k, "{args:?}");
    }
    // Kubernetes' spellings and always-present fields, as scripts read them.
    let (k, _) = both(&c, &["get", pod.as_str(), "-o", "json"]);
    let p: Value = serde_json::from_str(&k).expect("json");
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["restartCount"], 0, "{p:#}");
    assert!(cs["containerID"].is_string(), "{p:#}");
    assert!(cs["imageID"].is_string(), "{p:#}");
    assert!(p["status"]["podIP"].is_string(), "{p:#}");
    assert!(
        p["metadata"]["creationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{p:#}"
    );
}
