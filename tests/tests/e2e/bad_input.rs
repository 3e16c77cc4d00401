//! Bad manifests: exit code 2, the field path named, nothing written.

use skiff_tests::{Cluster, stderr, stdout, text};

const GOOD_CM: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: innocent}\ndata: {a: b}\n---\n";

fn pod(name: &str, extra_container_field: &str, memory: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - name: app\n    image: x\n{extra_container_field}    resources: {{limits: {{memory: {memory}}}}}\n"
    )
}

fn assert_rejected(c: &Cluster, manifest: &str, path: &str) {
    let out = c.skiff_stdin(&["apply", "-f", "-"], manifest);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains(path),
        "error names {path}: {}",
        text(&out)
    );
    assert!(
        stdout(&out).is_empty(),
        "nothing reported as applied: {}",
        text(&out)
    );
    let listed = c.skiff(&["get", "configmaps,pods", "-o", "name"]);
    // Every namespace holds the cluster CA's ConfigMap, as in Kubernetes.
    let written: Vec<String> = stdout(&listed)
        .lines()
        .filter(|l| *l != "configmap/kube-root-ca.crt")
        .map(String::from)
        .collect();
    assert!(
        written.is_empty(),
        "nothing written, not even the valid document: {}",
        text(&listed)
    );
}

#[test]
fn unknown_field_bad_name_bad_quantity() {
    let c = Cluster::start();
    assert_rejected(
        &c,
        &format!(
            "{GOOD_CM}{}",
            pod("web", "    imagePullPolicyy: Always\n", "64Mi")
        ),
        "spec.containers[0].imagePullPolicyy: unknown field",
    );
    assert_rejected(
        &c,
        &format!("{GOOD_CM}{}", pod("Web_1", "", "64Mi")),
        "metadata.name",
    );
    assert_rejected(
        &c,
        &format!("{GOOD_CM}{}", pod("web", "", "64Mb")),
        "spec.containers[0].resources.limits.memory",
    );
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {app: d}}\n  template:\n    metadata: {labels: {app: d}}\n    spec:\n      containers:\n      - name: c\n        image: x\n        imagePullPolicyy: Always\n";
    assert_rejected(
        &c,
        deployment,
        "spec.template.spec.containers[0].imagePullPolicyy: unknown field",
    );
    assert_rejected(
        &c,
        "apiVersion: v1\nkind: Widget\nmetadata: {name: w}\n",
        "kind",
    );
    assert_rejected(
        &c,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: x, ports: [{containerPort: 99999}]}]}\n",
        "spec.containers[0].ports[0].containerPort",
    );
    assert_rejected(&c, "kind: Pod\nmetadata: [oops\n", "YAML");
}

#[test]
fn file_errors_and_usage_errors_exit_2() {
    let c = Cluster::start();
    let out = c.skiff(&["apply", "-f", "/nonexistent/manifest.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("/nonexistent/manifest.yaml"),
        "{}",
        text(&out)
    );
    let out = c.skiff(&["get", "widgets"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr(&out).contains("widgets"), "{}", text(&out));
    let out = c.skiff(&["get", "pods", "-o", "xml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = c.skiff(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn bad_pod_network_flags_exit_2_naming_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("never");
    let data = data.to_str().expect("utf-8 path");
    for (args, flag) in [
        (vec!["--cluster-cidr", "not-a-cidr"], "--cluster-cidr"),
        (vec!["--cluster-cidr", "10.1.2.3/16"], "--cluster-cidr"),
        (vec!["--node-cidr-mask-size", "8"], "--node-cidr-mask-size"),
    ] {
        let out = std::process::Command::new(skiff_tests::skiff_bin())
            .args(["server", "--data-dir", data, "--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .expect("run skiff");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(stderr(&out).contains(flag), "{args:?}: {}", text(&out));
    }
    assert!(!std::path::Path::new(data).exists(), "nothing written");
}

#[test]
fn server_validates_what_the_cli_would_not_catch() {
    // A gRPC client that bypasses the CLI still gets InvalidArgument with the path, and nothing stored.
    let c = Cluster::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use skiff_api::v1::{Container, ObjectMeta, Pod, PodSpec};
        let api = c.api::<Pod>("default");
        let pod = Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: String::new(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = api.create(pod).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("spec.containers[0].image: required"),
            "{}",
            err.message()
        );
        assert!(api.get_opt("p").await.unwrap().is_none());
    });
}
