//! Node maintenance as Kubernetes users do it (issue 24): label, taint, cordon, uncordon and
//! drain a node with the real `kubectl` (through the REST API) and with `skiff` (gRPC), and a
//! PodDisruptionBudget that makes drain wait: an eviction that would leave fewer than
//! `minAvailable` Ready pods is refused (429) and retried until the Deployment's replacement on
//! another node is Ready.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use skiff_tests::guests::guest;
use skiff_tests::{Cluster, stdout, text, wait_for};

use skiff_tests::kubectl::{ok as kubectl_ok, run as kubectl};

fn skiff_ok(c: &Cluster, args: &[&str]) -> String {
    let out = c.skiff(args);
    assert!(out.status.success(), "skiff {args:?}: {}", text(&out));
    stdout(&out)
}

/// Two Wasm pods that run until stopped, and a budget that keeps one of them Ready.
fn web_and_budget() -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      runtimeClassName: wasm\n      terminationGracePeriodSeconds: 2\n      containers:\n      - name: main\n        image: file:{image}\n        command: [probe]\n        args: [sleep, \"0\"]\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: web}}\nspec:\n  minAvailable: 1\n  selector: {{matchLabels: {{app: web}}}}\n",
        image = guest("probe").display(),
    )
}

fn node(c: &Cluster, name: &str) -> Value {
    c.get_json("node", name).expect("node")
}

/// The nodes of the Running, not terminating, pods of app=web.
fn web_nodes(c: &Cluster) -> Vec<String> {
    let out = skiff_ok(c, &["get", "pods", "-l", "app=web", "-o", "json"]);
    let list: Value = serde_json::from_str(&out).expect("pod list");
    let mut nodes: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
        })
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
        .collect();
    nodes.sort();
    nodes
}

fn budget_allows(c: &Cluster) -> i64 {
    c.get_json("pdb", "web")
        .and_then(|b| b["status"]["disruptionsAllowed"].as_i64())
        .unwrap_or(-1)
}

#[test]
fn kubectl_and_skiff_label_taint_cordon_and_drain_nodes_within_a_disruption_budget() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    c.add_agent("node-2");

    // Labels, by both clients; the agent keeps what admins set.
    assert_eq!(
        skiff_ok(&c, &["label", "node", "node-1", "disk=ssd"]).trim(),
        "node/node-1 labeled"
    );
    assert_eq!(
        kubectl_ok(&c, &["label", "node", "node-1", "tier=gold"]).trim(),
        "node/node-1 labeled"
    );
    let labels = &node(&c, "node-1")["metadata"]["labels"];
    assert_eq!(
        (labels["disk"].as_str(), labels["tier"].as_str()),
        (Some("ssd"), Some("gold"))
    );
    let refused = c.skiff(&["label", "node", "node-1", "disk=hdd"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("'disk' already has a value (ssd), and --overwrite is false"),
        "{}",
        text(&refused)
    );
    assert_eq!(
        kubectl_ok(&c, &["label", "node", "node-1", "tier-"]).trim(),
        "node/node-1 unlabeled"
    );

    // A NoSchedule taint keeps the Deployment's pods off node-2.
    assert_eq!(
        kubectl_ok(
            &c,
            &["taint", "nodes", "node-2", "dedicated=gpu:NoSchedule"]
        )
        .trim(),
        "node/node-2 tainted"
    );
    let taints = &node(&c, "node-2")["spec"]["taints"];
    assert_eq!(taints[0]["key"], "dedicated", "{taints}");
    let applied = c.skiff_stdin(&["apply", "-f", "-"], &web_and_budget());
    assert!(applied.status.success(), "{}", text(&applied));
    wait_for("two web pods on node-1", Duration::from_secs(60), || {
        (web_nodes(&c) == ["node-1", "node-1"]).then_some(())
    });
    wait_for(
        "the budget to allow one disruption",
        Duration::from_secs(30),
        || (budget_allows(&c) == 1).then_some(()),
    );
    let table = skiff_ok(&c, &["get", "pdb", "web"]);
    assert!(table.contains("ALLOWED DISRUPTIONS"), "{table}");
    let pdb = kubectl_ok(
        &c,
        &[
            "get",
            "pdb",
            "web",
            "-o",
            "jsonpath={.status.currentHealthy}/{.status.desiredHealthy}/{.status.expectedPods}",
        ],
    );
    assert_eq!(pdb, "2/1/2");
    assert_eq!(
        skiff_ok(&c, &["taint", "nodes", "node-2", "dedicated:NoSchedule-"]).trim(),
        "node/node-2 untainted"
    );

    // kubectl drain: the second eviction is refused until the first pod's replacement is Ready
    // on node-2; then node-1 is empty and stays cordoned.
    let drained = kubectl(
        &c,
        &["drain", "node-1", "--ignore-daemonsets", "--timeout=120s"],
    );
    let out = text(&drained);
    assert!(drained.status.success(), "{out}");
    assert!(out.contains("node/node-1 cordoned"), "{out}");
    assert!(out.contains("evicting pod default/web-"), "{out}");
    assert!(
        out.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "no eviction was refused: {out}"
    );
    assert!(out.contains("node/node-1 drained"), "{out}");
    assert_eq!(node(&c, "node-1")["spec"]["unschedulable"], true);
    wait_for("both web pods on node-2", Duration::from_secs(60), || {
        (web_nodes(&c) == ["node-2", "node-2"]).then_some(())
    });
    let nodes = kubectl_ok(&c, &["get", "nodes"]);
    assert!(nodes.contains("SchedulingDisabled"), "{nodes}");
    assert_eq!(
        kubectl_ok(&c, &["uncordon", "node-1"]).trim(),
        "node/node-1 uncordoned"
    );
    assert_eq!(
        skiff_ok(&c, &["uncordon", "node-1"]).trim(),
        "node/node-1 already uncordoned"
    );

    // skiff drain (gRPC eviction) back the other way, and kubectl cordon.
    wait_for(
        "the budget to allow one disruption again",
        Duration::from_secs(30),
        || (budget_allows(&c) == 1).then_some(()),
    );
    let drained = c.skiff(&["drain", "node-2", "--timeout", "120s"]);
    let out = text(&drained);
    assert!(drained.status.success(), "{out}");
    assert!(out.contains("node/node-2 cordoned"), "{out}");
    assert!(
        out.contains("(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."),
        "{out}"
    );
    assert!(out.contains("node/node-2 drained"), "{out}");
    wait_for("both web pods on node-1", Duration::from_secs(60), || {
        (web_nodes(&c) == ["node-1", "node-1"]).then_some(())
    });
    assert_eq!(
        kubectl_ok(&c, &["cordon", "node-1"]).trim(),
        "node/node-1 cordoned"
    );
    assert_eq!(node(&c, "node-1")["spec"]["unschedulable"], true);
}

#[test]
fn drain_refuses_bare_pods_without_force_and_eviction_honours_the_budget_over_rest() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    let bare = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: bare, labels: {{app: bare}}}}\nspec:\n  runtimeClassName: wasm\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: file:{image}\n    command: [probe]\n    args: [sleep, \"0\"]\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: bare}}\nspec:\n  maxUnavailable: 0\n  selector: {{matchLabels: {{app: bare}}}}\n",
        image = guest("probe").display(),
    );
    let applied = c.skiff_stdin(&["apply", "-f", "-"], &bare);
    assert!(applied.status.success(), "{}", text(&applied));
    wait_for("the bare pod to run", Duration::from_secs(60), || {
        c.get_json("pod", "bare")
            .filter(|p| p["status"]["phase"] == "Running")
    });

    let refused = c.skiff(&["drain", "node-1"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains(
            "cannot delete Pods that declare no controller (use --force to override): default/bare"
        ),
        "{}",
        text(&refused)
    );
    let refused = kubectl(&c, &["drain", "node-1"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("cannot delete Pods that declare no controller"),
        "{}",
        text(&refused)
    );

    // The eviction itself, as kubectl drain posts it: 429 with Kubernetes' Status.
    wait_for("the budget to be computed", Duration::from_secs(30), || {
        c.get_json("pdb", "bare")
            .filter(|b| b["status"]["expectedPods"] == 1)
    });
    let body = r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"bare","namespace":"default"}}"#;
    let file = c.data_dir().join("eviction.json");
    std::fs::write(&file, body).expect("eviction body");
    let out = kubectl(
        &c,
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/bare/eviction",
            "-f",
            file.to_str().expect("path"),
        ],
    );
    assert!(!out.status.success());
    let err = text(&out);
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{err}"
    );
    assert!(c.get_json("pod", "bare").is_some());

    // With --force and the budget gone, the pod goes.
    kubectl_ok(&c, &["delete", "pdb", "bare"]);
    let drained = c.skiff(&["drain", "node-1", "--force", "--timeout", "60s"]);
    let out = text(&drained);
    assert!(drained.status.success(), "{out}");
    assert!(
        out.contains("Warning: deleting Pods that declare no controller: default/bare"),
        "{out}"
    );
    assert!(out.contains("pod/bare evicted"), "{out}");
    assert!(c.get_json("pod", "bare").is_none());
}

/// A client in a pod, as operators and client libraries run: the `default/kubernetes` Service
/// (its address in `KUBERNETES_SERVICE_HOST`/`_PORT`), the ServiceAccount token and CA at
/// Kubernetes' path, and the REST API reached through the node's proxy (busybox `wget` over TLS).
#[test]
fn a_pod_reads_the_api_through_the_kubernetes_service_with_its_token() {
    use skiff_tests::netns::NodeNetwork;
    use skiff_tests::netslot::NetSlot;
    use skiff_tests::registry::Registry;

    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 1);
    let registry = Registry::start_on(net.host_address().parse().expect("ip"));
    let image = registry.push_busybox();
    let options = skiff_tests::ClusterOptions {
        listen: Some(format!("{}:0", net.host_address())),
        agent_env: vec![("SKIFF_INSECURE_REGISTRIES".into(), registry.host())],
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    let service_ip = {
        let cidr: skiff_api::cidr::Ipv4Cidr = c.service_cidr().parse().expect("service CIDR");
        cidr.nth(1).expect("first address").to_string()
    };
    let svc = wait_for("default/kubernetes", Duration::from_secs(20), || {
        c.get_json("service", "kubernetes")
    });
    assert_eq!(svc["spec"]["clusterIP"], service_ip.as_str());
    assert_eq!(svc["spec"]["ports"][0]["port"], 443);
    let ep = wait_for("its endpoints", Duration::from_secs(20), || {
        c.get_json("endpoints", "kubernetes")
            .filter(|e| !e["subsets"][0]["addresses"].is_null())
    });
    assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], net.host_address());
    assert_eq!(
        ep["subsets"][0]["ports"][0]["port"],
        u64::from(c.addr.port())
    );
    c.add_agent_at("node-a", net.address(0), Some(net.namespace(0)), &[]);

    let mount = "/var/run/secrets/kubernetes.io/serviceaccount";
    // busybox's TLS client, run inside a pod, sends no signature_algorithms extension and the
    // server refuses its handshake (from the node it does send one): the pod proves the path and
    // hands its token out, and the API call with that token goes through the same Service from
    // its node.
    let script = format!(
        "env | grep ^KUBERNETES_ | sort; echo token=$(cat {mount}/token); echo namespace=$(cat {mount}/namespace); grep -q 'BEGIN CERTIFICATE' {mount}/ca.crt && echo ca-ok; nc -w 5 $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT </dev/null && echo reached-api; echo done"
    );
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\ndata: {{color: teal}}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: reader}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: config-reader}}\nrules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: reader}}\nsubjects:\n- {{kind: ServiceAccount, name: reader}}\nroleRef: {{kind: Role, name: config-reader, apiGroup: rbac.authorization.k8s.io}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: client}}\nspec:\n  serviceAccountName: reader\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, {script:?}]\n"
    );
    let applied = c.skiff_stdin(&["apply", "-f", "-"], &manifest);
    assert!(applied.status.success(), "{}", text(&applied));
    wait_for("the client pod to finish", Duration::from_secs(90), || {
        c.get_json("pod", "client")
            .filter(|p| matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
    });
    let log = skiff_ok(&c, &["logs", "client"]);
    assert!(
        log.contains(&format!("KUBERNETES_SERVICE_HOST={service_ip}\n")),
        "{log}"
    );
    assert!(log.contains("KUBERNETES_SERVICE_PORT=443\n"), "{log}");
    assert!(log.contains("KUBERNETES_SERVICE_PORT_HTTPS=443\n"), "{log}");
    assert!(
        log.contains(&format!("KUBERNETES_PORT=tcp://{service_ip}:443\n")),
        "{log}"
    );
    assert!(log.contains("ca-ok"), "{log}");
    assert!(log.contains("namespace=default\n"), "{log}");
    assert!(
        log.contains("reached-api"),
        "the pod reached the API's port through the Service: {log}"
    );
    let token = log
        .lines()
        .find_map(|l| l.strip_prefix("token="))
        .filter(|t| t.starts_with("eyJ"))
        .unwrap_or_else(|| panic!("no token: {log}"))
        .to_string();
    let get = |path: &str| {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", net.namespace(0)))
            .args([
                "--",
                "busybox",
                "wget",
                "-q",
                "-O",
                "-",
                "--no-check-certificate",
            ])
            .arg("--header")
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("https://{service_ip}:443{path}"))
            .output()
            .expect("nsenter");
        text(&out)
    };
    let read = get("/api/v1/namespaces/default/configmaps/settings");
    assert!(
        read.contains("\"kind\":\"ConfigMap\"") && read.contains("\"color\":\"teal\""),
        "the pod's token read its ConfigMap through the Service: {read}"
    );
    // Its token carries its own rights only.
    let refused = get("/api/v1/namespaces/default/secrets");
    assert!(refused.contains("403 Forbidden"), "{refused}");
    assert!(log.contains("done"), "{log}");
}

/// The IPs of `default/kubernetes`' endpoints.
fn kubernetes_endpoint_ips(c: &Cluster) -> Vec<String> {
    let ep = kubectl_ok(
        c,
        &[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={range .subsets[*].addresses[*]}{.ip}{\"\\n\"}{end}",
        ],
    );
    ep.lines().map(str::to_string).collect()
}

/// An API server that stops renewing its endpoint lease (gone, or cut off) leaves the
/// `default/kubernetes` Endpoints once the lease runs out, as with Kubernetes' lease endpoint
/// reconciler; a lease already expired never puts its server there. The other servers are
/// played by leases written as a server writes its own.
#[test]
fn a_server_whose_endpoint_lease_runs_out_leaves_the_kubernetes_endpoints() {
    let c = Cluster::start();
    let at = |offset: i64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let out = Command::new("date")
            .args([
                "-u",
                "-d",
                &format!("@{}", now + offset),
                "+%Y-%m-%dT%H:%M:%SZ",
            ])
            .output()
            .expect("date");
        stdout(&out).trim().to_string()
    };
    let lease = |name: &str, holder: &str, renewed: &str| {
        format!(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: {name}\n  namespace: kube-system\n  labels: {{skiff.dev/apiserver-endpoint: \"true\"}}\nspec:\n  holderIdentity: \"{holder}\"\n  leaseDurationSeconds: 30\n  renewTime: \"{renewed}\"\n"
        )
    };
    c.apply(&lease(
        "apiserver-endpoint-10-255-0-7",
        "10.255.0.7:7443",
        &at(0),
    ));
    c.apply(&lease(
        "apiserver-endpoint-10-255-0-8",
        "10.255.0.8:7443",
        &at(-7200),
    ));
    wait_for("the live server listed", Duration::from_secs(30), || {
        (kubernetes_endpoint_ips(&c) == ["10.255.0.7"]).then_some(())
    });
    // Never renewed again: out within its 30 s and a round of the reconciler.
    wait_for("the silent server gone", Duration::from_secs(60), || {
        kubernetes_endpoint_ips(&c).is_empty().then_some(())
    });
    // The long-expired lease was forgotten (deleted) meanwhile.
    let leases = kubectl_ok(&c, &["get", "leases", "-n", "kube-system", "-o", "name"]);
    assert!(
        !leases.contains("apiserver-endpoint-10-255-0-8"),
        "{leases}"
    );
}

/// A Wasm pod on `node-1` that runs until stopped, with `tolerations` (YAML flow list).
fn sleeper_on_node_1(name: &str, tolerations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  nodeName: node-1\n  runtimeClassName: wasm\n  terminationGracePeriodSeconds: 1\n  tolerations: {tolerations}\n  containers:\n  - name: main\n    image: file:{image}\n    command: [probe]\n    args: [sleep, \"0\"]\n",
        image = guest("probe").display(),
    )
}

/// `kubectl taint ... :NoExecute` by an admin evicts as Kubernetes' taint manager does: a pod
/// without a matching toleration at once, one with `tolerationSeconds` that long after, one that
/// tolerates it forever never.
#[test]
fn an_admins_no_execute_taint_evicts_pods_that_do_not_tolerate_it() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    c.apply(&sleeper_on_node_1("plain", "[]"));
    c.apply(&sleeper_on_node_1(
        "brief",
        "[{key: maintenance, operator: Equal, value: \"yes\", effect: NoExecute, tolerationSeconds: 8}]",
    ));
    c.apply(&sleeper_on_node_1(
        "steady",
        "[{key: maintenance, operator: Exists, effect: NoExecute}]",
    ));
    let phase = |name: &str| {
        c.get_json("pod", name)
            .map(|p| p["status"]["phase"].as_str().unwrap_or("").to_string())
    };
    for name in ["plain", "brief", "steady"] {
        wait_for(&format!("{name} Running"), Duration::from_secs(60), || {
            (phase(name).as_deref() == Some("Running")).then_some(())
        });
    }
    let tainted = std::time::Instant::now();
    kubectl_ok(
        &c,
        &["taint", "node", "node-1", "maintenance=yes:NoExecute"],
    );
    wait_for("plain evicted", Duration::from_secs(30), || {
        phase("plain").is_none().then_some(())
    });
    assert!(phase("brief").is_some(), "brief left before its 8 s");
    wait_for("brief evicted", Duration::from_secs(60), || {
        phase("brief").is_none().then_some(())
    });
    assert!(
        tainted.elapsed() >= Duration::from_secs(8),
        "brief went after {:?}, before its tolerationSeconds",
        tainted.elapsed()
    );
    assert_eq!(phase("steady").as_deref(), Some("Running"));
    let events = kubectl_ok(
        &c,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=TaintManagerEviction",
            "-o",
            "name",
        ],
    );
    assert!(!events.trim().is_empty(), "no TaintManagerEviction event");
}
