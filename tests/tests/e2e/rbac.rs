//! RBAC end to end: users from `--token-auth-file` bound to the default roles, `skiff auth
//! can-i`, and a ServiceAccount token read from inside a pod and used with its role and nothing
//! more.

use std::path::{Path, PathBuf};
use std::time::Duration;

use skiff_api::client::ClientConfig;
use skiff_tests::guests::guest;
use skiff_tests::{Cluster, ClusterOptions, stderr, stdout, text, wait_for};

/// A cluster whose server knows users `jane` and `bob` by token, and the tokens' file's dir.
fn cluster_with_users() -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.csv");
    std::fs::write(
        &file,
        "jane-t0ken,jane,1001\nbob-t0ken,bob,1002,\"devs,readers\"\n",
    )
    .unwrap();
    let c = Cluster::start_with(ClusterOptions {
        server_args: vec!["--token-auth-file".into(), file.display().to_string()],
        ..Default::default()
    });
    (c, dir)
}

/// A client config for `token`, written beside the cluster's own.
fn config_for(c: &Cluster, name: &str, token: &str) -> PathBuf {
    let path = c.data_dir().join(format!("{name}.yaml"));
    let config = ClientConfig {
        token: token.into(),
        ..c.config()
    };
    std::fs::write(&path, config.to_yaml()).unwrap();
    path
}

/// `skiff --config CONFIG ARGS` with `stdin`.
fn skiff_as(config: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(skiff_tests::skiff_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("SKIFF_CONFIG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn config_map(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}}}\ndata: {{k: v}}\n"
    )
}

/// Asserts a refusal: exit 1, `Forbidden`, and Kubernetes' message naming verb, resource and
/// namespace.
fn assert_forbidden(out: &std::process::Output, message: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    assert!(stderr(out).contains("Forbidden"), "{}", text(out));
    assert!(
        stderr(out).contains(message),
        "want {message:?} in {}",
        text(out)
    );
}

const RBAC: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: jane-views}\nsubjects:\n- {kind: User, name: jane, apiGroup: rbac.authorization.k8s.io}\nroleRef: {kind: ClusterRole, name: view, apiGroup: rbac.authorization.k8s.io}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: devs-edit, namespace: dev}\nsubjects:\n- {kind: Group, name: devs, apiGroup: rbac.authorization.k8s.io}\nroleRef: {kind: ClusterRole, name: edit, apiGroup: rbac.authorization.k8s.io}\n";

#[test]
fn a_view_role_cannot_write_and_a_namespaced_edit_role_stays_in_its_namespace() {
    let (c, _tokens) = cluster_with_users();
    c.apply(RBAC);
    c.apply(&config_map("prod", "settings"));
    let jane = config_for(&c, "jane", "jane-t0ken");
    let bob = config_for(&c, "bob", "bob-t0ken");

    // The bindings reach the server's RBAC index through its watch: the first read waits for it.
    wait_for("jane's view binding", Duration::from_secs(10), || {
        skiff_as(&jane, &["get", "configmaps", "-n", "prod"], "")
            .status
            .success()
            .then_some(())
    });
    let listed = skiff_as(&jane, &["get", "configmaps", "-n", "prod"], "");
    assert!(stdout(&listed).contains("settings"), "{}", text(&listed));
    // view writes nothing, anywhere, and reads no Secrets.
    assert_forbidden(
        &skiff_as(&jane, &["apply", "-f", "-"], &config_map("prod", "mine")),
        "User \"jane\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"prod\"",
    );
    assert_forbidden(
        &skiff_as(
            &jane,
            &["delete", "configmap", "settings", "-n", "prod"],
            "",
        ),
        "User \"jane\" cannot delete resource \"configmaps\" in API group \"\" in the namespace \"prod\"",
    );
    assert_forbidden(
        &skiff_as(&jane, &["get", "secrets", "-n", "prod"], ""),
        "cannot list resource \"secrets\" in API group \"\" in the namespace \"prod\"",
    );
    assert_forbidden(
        &skiff_as(&jane, &["get", "nodes"], ""),
        "cannot list resource \"nodes\" in API group \"\" at the cluster scope",
    );

    // bob edits dev (through his group), and nothing in prod.
    wait_for("bob's edit binding", Duration::from_secs(10), || {
        skiff_as(&bob, &["apply", "-f", "-"], &config_map("dev", "app"))
            .status
            .success()
            .then_some(())
    });
    let deleted = skiff_as(&bob, &["delete", "configmap", "app", "-n", "dev"], "");
    assert!(deleted.status.success(), "{}", text(&deleted));
    assert_forbidden(
        &skiff_as(&bob, &["apply", "-f", "-"], &config_map("prod", "app")),
        // apply reads the object first, as kubectl's does.
        "User \"bob\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"prod\"",
    );
    assert_forbidden(
        &skiff_as(&bob, &["get", "configmaps", "-n", "prod"], ""),
        "User \"bob\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"prod\"",
    );
    assert_forbidden(
        &skiff_as(&bob, &["delete", "configmap", "settings", "-n", "prod"], ""),
        "in the namespace \"prod\"",
    );
    // edit grants no roles: RoleBindings are admin's.
    let grant = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: me-admin, namespace: dev}\nsubjects:\n- {kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}\nroleRef: {kind: ClusterRole, name: admin, apiGroup: rbac.authorization.k8s.io}\n";
    assert_forbidden(
        &skiff_as(&bob, &["apply", "-f", "-"], grant),
        "cannot get resource \"rolebindings\" in API group \"rbac.authorization.k8s.io\" in the namespace \"dev\"",
    );
    // Removing the binding takes the rights away.
    let out = c.skiff(&["delete", "rolebinding", "devs-edit", "-n", "dev"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for("bob's edit binding to go", Duration::from_secs(10), || {
        (skiff_as(&bob, &["apply", "-f", "-"], &config_map("dev", "late"))
            .status
            .code()
            == Some(1))
        .then_some(())
    });
}

#[test]
fn auth_can_i_answers_yes_and_no_with_exit_codes() {
    let (c, _tokens) = cluster_with_users();
    c.apply(RBAC);
    let jane = config_for(&c, "jane", "jane-t0ken");
    let can_i = |config: &PathBuf, args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        skiff_as(config, &all, "")
    };
    wait_for("jane's view binding", Duration::from_secs(10), || {
        can_i(&jane, &["list", "pods", "-n", "prod"])
            .status
            .success()
            .then_some(())
    });
    let yes = can_i(&jane, &["get", "deployments.apps", "web", "-n", "prod"]);
    assert_eq!(
        (yes.status.code(), stdout(&yes).trim()),
        (Some(0), "yes"),
        "{}",
        text(&yes)
    );
    let no = can_i(&jane, &["create", "configmaps", "-n", "prod"]);
    assert_eq!(
        (no.status.code(), stdout(&no).trim()),
        (Some(1), "no"),
        "{}",
        text(&no)
    );
    let logs = can_i(&jane, &["get", "pods/log", "-n", "prod"]);
    assert_eq!(logs.status.code(), Some(0), "{}", text(&logs));
    let exec = can_i(&jane, &["create", "pods/exec", "-n", "prod"]);
    assert_eq!(exec.status.code(), Some(1), "{}", text(&exec));

    // The admin asks about others (a SubjectAccessReview); a user may not.
    let admin = c.config_path();
    let bob_dev = can_i(
        &admin,
        &[
            "create",
            "deployments",
            "-n",
            "dev",
            "--as",
            "bob",
            "--as-group",
            "devs",
        ],
    );
    assert_eq!(bob_dev.status.code(), Some(0), "{}", text(&bob_dev));
    let bob_prod = can_i(
        &admin,
        &[
            "create",
            "deployments",
            "-n",
            "prod",
            "--as",
            "bob",
            "--as-group",
            "devs",
        ],
    );
    assert_eq!(bob_prod.status.code(), Some(1), "{}", text(&bob_prod));
    let admin_self = can_i(&admin, &["delete", "nodes"]);
    assert_eq!(admin_self.status.code(), Some(0), "{}", text(&admin_self));
    assert_forbidden(
        &can_i(&jane, &["get", "pods", "--as", "bob"]),
        "User \"jane\" cannot create resource \"subjectaccessreviews\"",
    );
    // Bad input is exit 2, naming what is wrong.
    let bad = can_i(&jane, &["fly", "pods"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(stderr(&bad).contains("\"fly\""), "{}", text(&bad));
    let unknown = can_i(&jane, &["get", "widgets"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));

    let who = skiff_as(&jane, &["auth", "whoami"], "");
    assert!(stdout(&who).contains("jane"), "{}", text(&who));
    assert!(
        stdout(&who).contains("system:authenticated"),
        "{}",
        text(&who)
    );
}

#[test]
fn a_bad_token_auth_file_stops_the_server_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.csv");
    std::fs::write(&file, "t,jane,1\nt,bob,2\n").unwrap();
    let out = std::process::Command::new(skiff_tests::skiff_bin())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--token-auth-file")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("tokens.csv line 2: the token is given twice"),
        "{}",
        text(&out)
    );
}

/// The pod's account `reader` may read ConfigMaps in `shop`; its pod prints what its token
/// volume holds.
fn shop(probe: &str) -> String {
    let mount = "/var/run/secrets/kubernetes.io/serviceaccount";
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: reader, namespace: shop}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: config-reader, namespace: shop}}\nrules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: reader, namespace: shop}}\nsubjects:\n- {{kind: ServiceAccount, name: reader}}\nroleRef: {{kind: Role, name: config-reader, apiGroup: rbac.authorization.k8s.io}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: client, namespace: shop}}\nspec:\n  runtimeClassName: wasm\n  serviceAccountName: reader\n  restartPolicy: Never\n  containers:\n  - name: token\n    image: file:{probe}\n    command: [probe]\n    args: [cat, {mount}/token]\n  - name: meta\n    image: file:{probe}\n    command: [probe]\n    args: [cat, {mount}/namespace, {mount}/ca.crt]\n"
    )
}

#[test]
fn a_service_account_token_in_a_pod_works_with_its_role_and_nothing_more() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    c.apply(&shop(&guest("probe").display().to_string()));
    c.apply(&config_map("shop", "settings"));
    let logs = |container: &str| c.skiff(&["logs", "client", "-n", "shop", "-c", container]);
    let token = wait_for(
        "the pod to print its token",
        Duration::from_secs(60),
        || {
            let out = logs("token");
            let printed = stdout(&out).trim().to_string();
            (out.status.success() && printed.starts_with("eyJ")).then_some(printed)
        },
    );
    let meta = stdout(&logs("meta"));
    assert!(meta.starts_with("shop"), "{meta}");
    let ca = c.config().certificate_authority_data;
    assert!(
        meta.contains(ca.trim()),
        "the pod's ca.crt is the cluster CA: {meta}"
    );
    // The token volume lives on the agent's tmpfs, never on its disk.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let run = c.agent(0).data_dir.join("run");
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(&format!(" {} tmpfs ", run.display()))),
        "agent run dir {} is not a tmpfs",
        run.display()
    );

    let sa = config_for(&c, "reader", &token);
    let who = skiff_as(&sa, &["auth", "whoami"], "");
    assert!(
        stdout(&who).contains("system:serviceaccount:shop:reader"),
        "{}",
        text(&who)
    );
    let listed = skiff_as(&sa, &["get", "configmaps", "-n", "shop"], "");
    assert!(listed.status.success(), "{}", text(&listed));
    assert!(stdout(&listed).contains("settings"), "{}", text(&listed));
    // Its role and nothing more: no writes, no Secrets, no other namespace.
    assert_forbidden(
        &skiff_as(&sa, &["apply", "-f", "-"], &config_map("shop", "mine")),
        "User \"system:serviceaccount:shop:reader\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"shop\"",
    );
    assert_forbidden(
        &skiff_as(&sa, &["get", "secrets", "-n", "shop"], ""),
        "cannot list resource \"secrets\"",
    );
    assert_forbidden(
        &skiff_as(&sa, &["get", "configmaps", "-n", "default"], ""),
        "in the namespace \"default\"",
    );
    assert_forbidden(
        &skiff_as(&sa, &["get", "pods", "-n", "shop"], ""),
        "cannot list resource \"pods\"",
    );
    // The token is bound to its pod: deleting the pod revokes it.
    let out = c.skiff(&["delete", "pod", "client", "-n", "shop"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for("the token to be refused", Duration::from_secs(20), || {
        let out = skiff_as(&sa, &["get", "configmaps", "-n", "shop"], "");
        (out.status.code() == Some(1) && stderr(&out).contains("Unauthorized")).then_some(())
    });
    let refused = skiff_as(&sa, &["get", "configmaps", "-n", "shop"], "");
    assert!(
        stderr(&refused).contains("has been deleted"),
        "{}",
        text(&refused)
    );
}

#[test]
fn pods_run_as_default_unless_they_opt_out_and_name_existing_accounts() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    let probe = guest("probe").display().to_string();
    let pod = |name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n{extra}  containers:\n  - name: main\n    image: file:{probe}\n    command: [probe]\n    args: [ls, /var/run/secrets/kubernetes.io/serviceaccount]\n"
        )
    };
    c.apply(&pod("mounted", ""));
    let json = c.get_json("pod", "mounted").unwrap();
    assert_eq!(json["spec"]["serviceAccountName"], "default");
    let volume = json["spec"]["volumes"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(volume.starts_with("kube-api-access-"), "{json:#}");
    let listed = wait_for("the pod's listing", Duration::from_secs(60), || {
        let out = c.skiff(&["logs", "mounted"]);
        let s = stdout(&out);
        s.contains("token").then_some(s)
    });
    for file in ["ca.crt", "namespace", "token"] {
        assert!(listed.contains(file), "{listed}");
    }
    // Applying the manifest again keeps the injected volume.
    c.apply(&pod("mounted", ""));
    let again = c.get_json("pod", "mounted").unwrap();
    assert_eq!(again["spec"]["volumes"], json["spec"]["volumes"]);

    c.apply(&pod("plain", "  automountServiceAccountToken: false\n"));
    let json = c.get_json("pod", "plain").unwrap();
    assert!(json["spec"].get("volumes").is_none(), "{json:#}");

    let out = c.skiff_stdin(
        &["apply", "-f", "-"],
        &pod("ghost", "  serviceAccountName: nobody\n"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("serviceaccount \"nobody\" not found"),
        "{}",
        text(&out)
    );
    // Every namespace gets its default account and the cluster CA.
    c.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: fresh}\n");
    wait_for("fresh's default account", Duration::from_secs(10), || {
        let sa = c.skiff(&["get", "serviceaccount", "default", "-n", "fresh"]);
        let cm = c.skiff(&["get", "configmap", "kube-root-ca.crt", "-n", "fresh"]);
        (sa.status.success() && cm.status.success()).then_some(())
    });
}

#[test]
fn a_namespace_admin_hands_out_edit_but_not_cluster_admin() {
    let (c, _tokens) = cluster_with_users();
    c.apply(RBAC);
    c.apply("apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: bob-admin, namespace: dev}\nsubjects:\n- {kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}\nroleRef: {kind: ClusterRole, name: admin, apiGroup: rbac.authorization.k8s.io}\n");
    let bob = config_for(&c, "bob", "bob-t0ken");
    let grant = |name: &str, role: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {name}, namespace: dev}}\nsubjects:\n- {{kind: User, name: jane, apiGroup: rbac.authorization.k8s.io}}\nroleRef: {{kind: ClusterRole, name: {role}, apiGroup: rbac.authorization.k8s.io}}\n"
        )
    };
    wait_for("bob's admin binding", Duration::from_secs(10), || {
        skiff_as(&bob, &["apply", "-f", "-"], &grant("jane-edit", "edit"))
            .status
            .success()
            .then_some(())
    });
    let out = skiff_as(
        &bob,
        &["apply", "-f", "-"],
        &grant("jane-root", "cluster-admin"),
    );
    assert_forbidden(
        &out,
        "rolebindings.rbac.authorization.k8s.io \"jane-root\" is forbidden: user \"bob\"",
    );
    assert!(
        stderr(&out).contains("is attempting to bind RBAC permissions not currently held"),
        "{}",
        text(&out)
    );
    // Nor a Role of his own with rules he lacks (nodes are cluster-scoped: admin has none).
    let role = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: sneaky, namespace: dev}\nrules:\n- {apiGroups: [\"\"], resources: [nodes], verbs: [get]}\n";
    let out = skiff_as(&bob, &["apply", "-f", "-"], role);
    assert_forbidden(
        &out,
        "attempting to grant RBAC permissions not currently held",
    );
    assert!(
        c.skiff(&["get", "rolebinding", "jane-root", "-n", "dev"])
            .status
            .code()
            == Some(1)
    );
}

/// A client in a pod speaks TLS as client libraries do: the host's own `curl` (OpenSSL) and its
/// libraries laid over the test busybox, pushed to the loopback registry, run as an OCI pod.
/// busybox's own TLS client sends no `signature_algorithms` extension, which rustls refuses.
fn push_curl_image(registry: &skiff_tests::registry::Registry) -> String {
    use skiff_tests::images::{busybox_rootfs, host_binaries_layer};
    let curl = host_binaries_layer(&[Path::new("/usr/bin/curl")]).expect("curl layer");
    let config = serde_json::json!({
        "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/lib64:/lib",
        ],
        "Cmd": ["/bin/sh"],
        "WorkingDir": "/",
    });
    registry
        .push_layer_tars_as(
            "curl",
            "v1",
            &[busybox_rootfs().expect("busybox rootfs"), curl],
            config,
            skiff_tests::registry::Compress::Gzip,
        )
        .reference
}

/// From inside a pod, over TLS verified against the mounted CA, by the cluster DNS name
/// `kubernetes.default.svc` and by the Service IP: the pod's ServiceAccount token reads what its
/// Role grants (200) and is refused the rest (403), in Kubernetes' words. The Service IP is NATed
/// by the node to the server's address on the test's own bridge: nothing leaves the machine.
#[test]
fn a_pods_token_works_from_inside_the_pod_over_tls_with_its_role_and_nothing_more() {
    use skiff_tests::netns::NodeNetwork;
    use skiff_tests::netslot::NetSlot;
    use skiff_tests::registry::Registry;

    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 1);
    let registry = Registry::start_on(net.host_address().parse().expect("ip"));
    let image = push_curl_image(&registry);
    let options = ClusterOptions {
        listen: Some(format!("{}:0", net.host_address())),
        agent_env: vec![("SKIFF_INSECURE_REGISTRIES".into(), registry.host())],
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    wait_for(
        "default/kubernetes' endpoints",
        Duration::from_secs(20),
        || {
            c.get_json("endpoints", "kubernetes")
                .filter(|e| !e["subsets"][0]["addresses"].is_null())
        },
    );
    c.add_agent_at("node-a", net.address(0), Some(net.namespace(0)), &[]);

    let mount = "/var/run/secrets/kubernetes.io/serviceaccount";
    // `-w` prints the status code after the body; `-sS` keeps errors (a TLS failure) visible.
    let call = |label: &str, base: &str, path: &str| {
        format!(
            "echo \"== {label}\"; curl -sS --max-time 10 --cacert {mount}/ca.crt -H \"Authorization: Bearer $(cat {mount}/token)\" -w '\\ncode=%{{http_code}}\\n' {base}{path} 2>&1; "
        )
    };
    let by_name = "https://kubernetes.default.svc";
    let by_ip = "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT";
    let script = [
        call("get by name", by_name, "/api/v1/namespaces/shop/configmaps/settings"),
        call("get by ip", by_ip, "/api/v1/namespaces/shop/configmaps/settings"),
        call("list secrets", by_name, "/api/v1/namespaces/shop/secrets"),
        call("other namespace", by_name, "/api/v1/namespaces/default/configmaps"),
        call("create", by_name, "/api/v1/namespaces/shop/configmaps -X POST -H 'Content-Type: application/json' -d '{\"metadata\":{\"name\":\"mine\"}}'"),
        format!("echo '== no token'; curl -sS --max-time 10 --cacert {mount}/ca.crt -w '\\ncode=%{{http_code}}\\n' {by_name}/api/v1/namespaces/shop/configmaps/settings 2>&1; "),
        "echo '== end'".to_string(),
    ]
    .concat();
    let manifest = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: shop}}\ndata: {{color: teal}}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: reader, namespace: shop}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: config-reader, namespace: shop}}\nrules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: reader, namespace: shop}}\nsubjects:\n- {{kind: ServiceAccount, name: reader}}\nroleRef: {{kind: Role, name: config-reader, apiGroup: rbac.authorization.k8s.io}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: client, namespace: shop}}\nspec:\n  serviceAccountName: reader\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, {script:?}]\n"
    );
    let applied = c.skiff_stdin(&["apply", "-f", "-"], &manifest);
    assert!(applied.status.success(), "{}", text(&applied));
    wait_for("the client pod to finish", Duration::from_secs(120), || {
        let out = c.skiff(&["get", "pod", "client", "-n", "shop", "-o", "json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .filter(|p| matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
    });
    let log = stdout(&c.skiff(&["logs", "client", "-n", "shop"]));
    let section = |label: &str| -> String {
        let start = format!("== {label}\n");
        let from = log
            .find(&start)
            .unwrap_or_else(|| panic!("no {label:?} in {log}"));
        let rest = &log[from + start.len()..];
        rest[..rest.find("== ").unwrap_or(rest.len())].to_string()
    };
    for label in ["get by name", "get by ip"] {
        let got = section(label);
        assert!(got.contains("code=200"), "{label}: {got}");
        assert!(
            got.contains("\"kind\":\"ConfigMap\"") && got.contains("\"color\":\"teal\""),
            "{label}: {got}"
        );
    }
    let forbidden = |label: &str, message: &str| {
        let got = section(label);
        assert!(got.contains("code=403"), "{label}: {got}");
        assert!(got.contains("\"reason\":\"Forbidden\""), "{label}: {got}");
        assert!(got.contains(message), "{label}: want {message:?} in {got}");
    };
    forbidden(
        "list secrets",
        "User \\\"system:serviceaccount:shop:reader\\\" cannot list resource \\\"secrets\\\" in API group \\\"\\\" in the namespace \\\"shop\\\"",
    );
    forbidden("other namespace", "in the namespace \\\"default\\\"");
    forbidden("create", "cannot create resource \\\"configmaps\\\"");
    let anonymous = section("no token");
    assert!(anonymous.contains("code=401"), "{anonymous}");
    assert!(log.contains("== end"), "{log}");
    let mine = c.skiff(&["get", "configmap", "mine", "-n", "shop"]);
    assert!(!mine.status.success(), "{}", text(&mine));
}
