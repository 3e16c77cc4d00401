//! The real `kubectl`'s everyday identity switches against skiff: impersonation (`--as`,
//! `--as-group`, checked with the `impersonate` verb as Kubernetes does) and `kubectl create
//! token` (the `serviceaccounts/token` subresource), each token then acting as its
//! ServiceAccount with that account's role and nothing more.

use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use skiff_tests::kubectl::{ok, run, run_stdin};

use super::kubectl::curl;
use skiff_tests::{Cluster, ClusterOptions, stderr, stdout, text, wait_for};

/// A cluster whose token file knows jane and bob (neither bound to anything yet).
fn cluster() -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "jane-t0ken,jane,1001\nbob-t0ken,bob,1002\n").expect("tokens");
    let c = Cluster::start_with(ClusterOptions {
        server_args: vec!["--token-auth-file".into(), tokens.display().to_string()],
        ..Default::default()
    });
    (c, dir)
}

fn apply(c: &Cluster, manifest: &str) {
    let out = run_stdin(c, &["apply", "-f", "-"], manifest);
    assert!(out.status.success(), "{}", text(&out));
}

/// The `message` of a `metav1.Status` body.
fn message(body: &str) -> String {
    let status: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    status["message"].as_str().unwrap_or_default().to_string()
}

fn can_i(c: &Cluster, args: &[&str]) -> String {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    stdout(&run(c, &all)).trim().to_string()
}

#[test]
fn kubectl_as_acts_as_the_impersonated_user_when_the_caller_may_impersonate() {
    let (c, _dir) = cluster();
    // The admin impersonating jane, who is bound to nothing: refused as jane.
    let refused = run(&c, &["--as=jane", "get", "pods"]);
    assert!(
        !refused.status.success()
            && stderr(&refused).contains("Error from server (Forbidden)")
            && stderr(&refused).contains(
                "User \"jane\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
            ),
        "{}",
        text(&refused)
    );
    assert_eq!(can_i(&c, &["list", "pods", "--as=jane"]), "no");
    assert_eq!(can_i(&c, &["list", "pods"]), "yes", "the admin itself");
    // jane may view `default`.
    apply(
        &c,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: jane-view}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\nsubjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: jane}]\n",
    );
    wait_for("jane's binding in force", Duration::from_secs(10), || {
        (can_i(&c, &["list", "pods", "--as=jane"]) == "yes").then_some(())
    });
    let listed = run(&c, &["--as=jane", "get", "pods"]);
    assert!(listed.status.success(), "{}", text(&listed));
    assert_eq!(can_i(&c, &["create", "deployments", "--as=jane"]), "no");
    assert_eq!(
        can_i(&c, &["list", "pods", "-n", "kube-system", "--as=jane"]),
        "no"
    );
    // whoami shows the impersonated user, her groups and system:authenticated, and the uid.
    let whoami: Value = serde_json::from_str(&ok(
        &c,
        &[
            "auth",
            "whoami",
            "--as=jane",
            "--as-group=devs",
            "--as-uid=u-1",
            "-o",
            "json",
        ],
    ))
    .expect("whoami json");
    assert_eq!(whoami["status"]["userInfo"]["username"], "jane");
    assert_eq!(
        whoami["status"]["userInfo"]["groups"],
        serde_json::json!(["devs", "system:authenticated"])
    );
    assert_eq!(whoami["status"]["userInfo"]["uid"], "u-1");
    // A group grants as it would to jane herself: `devs` may edit.
    apply(
        &c,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: devs-edit}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}\nsubjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: devs}]\n",
    );
    wait_for("the devs binding in force", Duration::from_secs(10), || {
        (can_i(
            &c,
            &["create", "deployments", "--as=jane", "--as-group=devs"],
        ) == "yes")
            .then_some(())
    });
    // Groups without a user are refused (kubectl refuses them itself; the server too), never
    // read as the caller's own request.
    let no_user = run(&c, &["--as-group=devs", "get", "pods"]);
    assert!(!no_user.status.success(), "{}", text(&no_user));
    let (code, body) = curl(
        &c,
        false,
        &[
            "-H",
            "Impersonate-Group: devs",
            "$API/api/v1/namespaces/default/pods",
        ],
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        message(&body) == "requested [group \"devs\"] without impersonating a user",
        "{body}"
    );
    // The same request through both protocols' listener over HTTP/2, with a user: jane's.
    let (code, body) = curl(
        &c,
        true,
        &[
            "-H",
            "Impersonate-User: jane",
            "$API/api/v1/namespaces/kube-system/pods",
        ],
    );
    assert_eq!(code, 403, "{body}");
    assert!(
        message(&body).ends_with(
            "User \"jane\" cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\""
        ),
        "{body}"
    );
    // bob may impersonate no one.
    let bob = run(&c, &["--token", "bob-t0ken", "--as=jane", "get", "pods"]);
    assert!(
        !bob.status.success()
            && stderr(&bob).contains(
                "users \"jane\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
            ),
        "{}",
        text(&bob)
    );
    // Allowed to be jane (by name) and no one else, bob acts as her.
    apply(
        &c,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: be-jane}\nrules:\n- {apiGroups: [\"\"], resources: [users], verbs: [impersonate], resourceNames: [jane]}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: bob-be-jane}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: be-jane}\nsubjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}]\n",
    );
    wait_for("bob may be jane", Duration::from_secs(10), || {
        run(&c, &["--token", "bob-t0ken", "--as=jane", "get", "pods"])
            .status
            .success()
            .then_some(())
    });
    let whoami = ok(
        &c,
        &[
            "--token",
            "bob-t0ken",
            "--as=jane",
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(whoami, "jane");
    // can-i asks the same question of the impersonate verb, by name.
    assert_eq!(
        can_i(&c, &["--token", "bob-t0ken", "impersonate", "users/jane"]),
        "yes"
    );
    assert_eq!(
        can_i(&c, &["--token", "bob-t0ken", "impersonate", "users/alice"]),
        "no"
    );
    // The audit log names both: bob, acting as jane; and bob's refused impersonation.
    let audit = c.data_dir().join("audit.log");
    wait_for("the audit lines", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let as_jane = lines.iter().any(|l| {
            l["user"]["username"] == "bob"
                && l["impersonatedUser"]["username"] == "jane"
                && l["verb"] == "list"
                && l["responseStatus"]["code"] == 200
        });
        let refused = lines.iter().any(|l| {
            l["user"]["username"] == "bob"
                && l["verb"] == "impersonate"
                && l["objectRef"]["resource"] == "users"
                && l["objectRef"]["name"] == "jane"
                && l["responseStatus"]["code"] == 403
        });
        (as_jane && refused).then_some(())
    });
    // As jane, bob has jane's rights, not his own wider ones nor more.
    assert_eq!(
        can_i(&c, &["--token", "bob-t0ken", "create", "pods", "--as=jane"]),
        "no"
    );
    for other in [
        vec!["--as=alice"],
        vec!["--as=jane", "--as-group=devs"],
        vec!["--as=system:serviceaccount:default:default"],
    ] {
        let mut args = vec!["--token", "bob-t0ken"];
        args.extend(other.iter().copied());
        args.extend(["get", "pods"]);
        let out = run(&c, &args);
        assert!(
            !out.status.success()
                && stderr(&out).contains("is forbidden: User \"bob\" cannot impersonate resource"),
            "{args:?}: {}",
            text(&out)
        );
    }
}

/// The claims of a JWT (not checked: the server checks it).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims")
}

#[test]
fn kubectl_create_token_gives_a_token_that_acts_as_the_service_account() {
    let (c, _dir) = cluster();
    ok(&c, &["create", "serviceaccount", "bot"]);
    ok(
        &c,
        &[
            "create",
            "role",
            "pod-reader",
            "--verb=get,list",
            "--resource=pods",
        ],
    );
    ok(
        &c,
        &[
            "create",
            "rolebinding",
            "bot-reads",
            "--role=pod-reader",
            "--serviceaccount=default:bot",
        ],
    );
    // Discovery lists the subresource kubectl looks for.
    let resources: Value = serde_json::from_str(&ok(&c, &["get", "--raw", "/api/v1"])).unwrap();
    let token = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "serviceaccounts/token")
        .cloned()
        .unwrap_or_else(|| panic!("serviceaccounts/token not discovered: {resources}"));
    assert_eq!(token["kind"], "TokenRequest");
    assert_eq!(token["group"], "authentication.k8s.io");

    let token = ok(&c, &["create", "token", "bot", "--duration", "10m"]);
    let token = token.trim().to_string();
    let got = claims(&token);
    assert_eq!(got["sub"], "system:serviceaccount:default:bot");
    assert_eq!(
        got["exp"].as_i64().unwrap() - got["iat"].as_i64().unwrap(),
        600,
        "{got}"
    );
    let default = claims(ok(&c, &["create", "token", "bot"]).trim());
    assert_eq!(
        default["exp"].as_i64().unwrap() - default["iat"].as_i64().unwrap(),
        3600
    );
    // The token is the account: its role and nothing more.
    wait_for(
        "the account's binding in force",
        Duration::from_secs(10),
        || {
            run(&c, &["--token", &token, "get", "pods"])
                .status
                .success()
                .then_some(())
        },
    );
    let whoami = ok(
        &c,
        &[
            "--token",
            &token,
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(whoami, "system:serviceaccount:default:bot");
    let secrets = run(&c, &["--token", &token, "get", "secrets"]);
    assert!(
        stderr(&secrets).contains(
            "User \"system:serviceaccount:default:bot\" cannot list resource \"secrets\""
        ),
        "{}",
        text(&secrets)
    );
    let elsewhere = run(&c, &["--token", &token, "get", "pods", "-n", "kube-system"]);
    assert!(!elsewhere.status.success(), "{}", text(&elsewhere));
    // The admin acting as the account meets the same rules.
    assert_eq!(
        can_i(
            &c,
            &["list", "pods", "--as=system:serviceaccount:default:bot"]
        ),
        "yes"
    );
    assert_eq!(
        can_i(
            &c,
            &["list", "secrets", "--as=system:serviceaccount:default:bot"]
        ),
        "no"
    );
    // Too short a lifetime: Kubernetes' validation error.
    let short = run(&c, &["create", "token", "bot", "--duration", "1m"]);
    assert!(
        !short.status.success()
            && stderr(&short).contains("may not specify a duration less than 10 minutes"),
        "{}",
        text(&short)
    );
    // A token for another audience is no API credential.
    let vault = ok(&c, &["create", "token", "bot", "--audience", "vault"]);
    assert_eq!(claims(vault.trim())["aud"], serde_json::json!(["vault"]));
    let refused = run(&c, &["--token", vault.trim(), "get", "pods"]);
    assert!(
        stderr(&refused).contains("Unauthorized"),
        "{}",
        text(&refused)
    );
    // Someone without `create serviceaccounts/token` gets none.
    let jane = run(&c, &["--token", "jane-t0ken", "create", "token", "bot"]);
    assert!(
        stderr(&jane).contains(
            "User \"jane\" cannot create resource \"serviceaccounts/token\" in API group \"\" in the namespace \"default\""
        ),
        "{}",
        text(&jane)
    );
    // A token bound to a Secret lives as long as the Secret.
    ok(
        &c,
        &[
            "create",
            "secret",
            "generic",
            "bot-key",
            "--from-literal=k=v",
        ],
    );
    let bound = ok(
        &c,
        &[
            "create",
            "token",
            "bot",
            "--bound-object-kind",
            "Secret",
            "--bound-object-name",
            "bot-key",
        ],
    );
    let bound = bound.trim().to_string();
    assert_eq!(claims(&bound)["kubernetes.io"]["secret"]["name"], "bot-key");
    let used = run(&c, &["--token", &bound, "get", "pods"]);
    assert!(used.status.success(), "{}", text(&used));
    ok(&c, &["delete", "secret", "bot-key"]);
    wait_for(
        "the Secret-bound token refused",
        Duration::from_secs(10),
        || {
            let out = run(&c, &["--token", &bound, "get", "pods"]);
            stderr(&out).contains("Unauthorized").then_some(())
        },
    );
    assert!(
        run(&c, &["--token", &token, "get", "pods"])
            .status
            .success(),
        "the unbound token lives on"
    );
    // Deleting the account revokes its tokens.
    ok(&c, &["delete", "serviceaccount", "bot"]);
    wait_for("the token refused", Duration::from_secs(10), || {
        let out = run(&c, &["--token", &token, "get", "pods"]);
        stderr(&out).contains("Unauthorized").then_some(())
    });
}
