//! Pod Security admission end to end, through `skiff apply` against a real server: a namespace
//! labelled `pod-security.kubernetes.io/enforce: restricted` refuses a bare pod with Kubernetes'
//! message (exit 1) and runs a pod that meets the level; `warn: restricted` admits the pod and the
//! CLI prints the server's `Warning:`; fields skiff cannot honour (hostNetwork, privileged,
//! seccompProfile Unconfined) are refused by validation in any namespace, naming the field
//! (exit 2); a bad level label is refused.

use std::time::Duration;

use skiff_tests::{Cluster, stderr, text, wait_for};

fn namespace(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("    {k}: {v}\n"))
        .collect();
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n{}",
        labels.concat()
    )
}

/// A Wasm pod in `ns`; `security` is the container's securityContext block (YAML, indented
/// for the container), `pod_extra` lines under `spec:`.
fn pod(ns: &str, name: &str, security: &str, pod_extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 0\n{pod_extra}  containers:\n  - name: app\n    image: file:{}\n    command: [probe]\n    args: [echo, ok]\n{security}",
        skiff_tests::guests::guest("probe").display()
    )
}

const RESTRICTED: &str = "    securityContext:\n      allowPrivilegeEscalation: false\n      runAsNonRoot: true\n      capabilities: {drop: [ALL]}\n      seccompProfile: {type: RuntimeDefault}\n";

#[test]
fn namespaces_enforce_and_warn_pod_security_levels() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    c.apply(&namespace(
        "strict",
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    ));
    c.apply(&namespace(
        "watched",
        &[
            ("pod-security.kubernetes.io/enforce", "baseline"),
            ("pod-security.kubernetes.io/warn", "restricted"),
            ("pod-security.kubernetes.io/warn-version", "v1.30"),
        ],
    ));

    // Enforced: refused (PermissionDenied: exit 1) with Kubernetes' message.
    let out = c.skiff_stdin(&["apply", "-f", "-"], &pod("strict", "bare", "", ""));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = stderr(&out);
    assert!(
        shown.contains("pods \"bare\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false)")
            && shown.contains("runAsNonRoot != true"),
        "{shown}"
    );
    assert!(c.get_json("pod", "bare").is_none());

    // A pod that meets the level runs.
    let out = c.skiff_stdin(
        &["apply", "-f", "-"],
        &pod("strict", "good", RESTRICTED, ""),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!stderr(&out).contains("Warning:"), "{}", text(&out));
    wait_for("pod good Succeeded", Duration::from_secs(60), || {
        let out = c.skiff(&["get", "pod", "good", "-n", "strict", "-o", "json"]);
        let p: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (p["status"]["phase"] == "Succeeded").then_some(())
    });

    // Warned: admitted, and the CLI prints the server's warning as kubectl does.
    let out = c.skiff_stdin(&["apply", "-f", "-"], &pod("watched", "bare", "", ""));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stderr(&out).contains(
            "Warning: would violate PodSecurity \"restricted:v1.30\": allowPrivilegeEscalation != false"
        ),
        "{}",
        text(&out)
    );

    // Fields skiff cannot honour are refused everywhere, naming the field (bad input: exit 2).
    for (what, security, extra, field) in [
        (
            "hostnet",
            "",
            "  hostNetwork: true\n",
            "spec.hostNetwork: not supported",
        ),
        (
            "privileged",
            "    securityContext: {privileged: true}\n",
            "",
            "spec.containers[0].securityContext.privileged: not supported",
        ),
        (
            "unconfined",
            "    securityContext: {seccompProfile: {type: Unconfined}}\n",
            "",
            "spec.containers[0].securityContext.seccompProfile.type: \"Unconfined\" is not supported",
        ),
    ] {
        let out = c.skiff_stdin(
            &["apply", "-f", "-"],
            &pod("default", what, security, extra),
        );
        assert_eq!(out.status.code(), Some(2), "{what}: {}", text(&out));
        assert!(stderr(&out).contains(field), "{what}: {}", text(&out));
    }

    // A level that is not one.
    let out = c.skiff_stdin(
        &["apply", "-f", "-"],
        &namespace("odd", &[("pod-security.kubernetes.io/enforce", "strict")]),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains(
            "metadata.labels[pod-security.kubernetes.io/enforce]: invalid value \"strict\""
        ),
        "{}",
        text(&out)
    );
}
