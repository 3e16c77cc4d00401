//! Private registries end to end: the loopback `docker-registry` with htpasswd (bcrypt) basic
//! auth serves a Wasm pod through its `imagePullSecrets` (a `kubernetes.io/dockerconfigjson`
//! Secret); an anonymous pull and a wrong password fail with a clear `ErrImagePull` message that
//! shows no password; a malformed pull Secret is refused at create, naming the key; an agent's own
//! `--registry-config` serves pods that name no Secret; `skiff push` logs in from a Docker config
//! (`--registry-config`) and is refused without one. With node restriction, the node running the pod
//! reads its pull Secret and another node (its own certificate) cannot.

use std::time::Duration;

use serde_json::Value;
use skiff_tests::guests::guest;
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, stderr, stdout, text, wait_for};

use super::node_identity::as_node;

const USER: &str = "alice";
const PASSWORD: &str = "pw-5f1c9a-canary";

/// A Wasm pod running `probe echo WORDS` from `image`, with the pull secrets and policy given.
fn pod_yaml(name: &str, image: &str, secrets: &[&str], policy: &str) -> String {
    let secrets = if secrets.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = secrets.iter().map(|s| format!("{{name: {s}}}")).collect();
        format!("  imagePullSecrets: [{}]\n", names.join(", "))
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 0\n{secrets}  containers:\n  - name: main\n    image: {image}\n    imagePullPolicy: {policy}\n    command: [probe]\n    args: [echo, private, {name}]\n"
    )
}

fn pull_secret_yaml(name: &str, config_json: &str) -> String {
    use base64::Engine;
    let value = base64::engine::general_purpose::STANDARD.encode(config_json);
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {value}\n"
    )
}

fn waiting_message(c: &Cluster, name: &str) -> String {
    let p: Value = wait_for(
        &format!("pod {name}: ErrImagePull or ImagePullBackOff"),
        Duration::from_secs(60),
        || {
            c.get_json("pod", name).filter(|p| {
                matches!(
                    p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str(),
                    Some("ErrImagePull" | "ImagePullBackOff")
                )
            })
        },
    );
    p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn succeeded(c: &Cluster, name: &str) {
    let p: Value = wait_for(
        &format!("pod {name}: done"),
        Duration::from_secs(60),
        || {
            c.get_json("pod", name)
                .filter(|p| matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        },
    );
    assert_eq!(
        p["status"]["phase"],
        "Succeeded",
        "{p:#}\nagent log:\n{}",
        c.agent(0).log()
    );
    let out = c.skiff(&["logs", name]);
    assert_eq!(stdout(&out), format!("private {name}\n"), "{}", text(&out));
}

#[test]
fn a_private_registry_serves_a_pod_through_its_image_pull_secret() {
    let registry = Registry::start_with_login(USER, PASSWORD);
    let image = registry
        .push_wasm_artifact("private/probe", "v1", &guest("probe"))
        .reference;
    let mut c = Cluster::start();
    c.add_agent("node-1");

    // Anonymous: refused by the registry, said plainly.
    c.apply(&pod_yaml("anonymous", &image, &[], "IfNotPresent"));
    let message = waiting_message(&c, "anonymous");
    assert!(
        message.contains(&image) && message.contains("unauthorized"),
        "{message}"
    );

    // A wrong password: every credential refused, named by user, never by password.
    c.apply(&pull_secret_yaml(
        "wrong",
        &registry.docker_config(USER, "not-the-password"),
    ));
    c.apply(&pod_yaml("wrong", &image, &["wrong"], "Always"));
    let message = waiting_message(&c, "wrong");
    assert!(
        message.contains("unauthorized") && message.contains("user \"alice\""),
        "{message}"
    );
    assert!(!message.contains("not-the-password"), "{message}");

    // The right one, named after a Secret that does not exist (left out, with an event).
    c.apply(&pull_secret_yaml(
        "login",
        &registry.docker_config(USER, PASSWORD),
    ));
    c.apply(&pod_yaml(
        "with-secret",
        &image,
        &["missing", "login"],
        "Always",
    ));
    succeeded(&c, "with-secret");
    let events = c.skiff(&["get", "events", "-o", "json"]);
    let events = stdout(&events);
    assert!(
        events.contains("FailedToRetrieveImagePullSecret") && events.contains("(missing)"),
        "{events}"
    );

    // A pull Secret that is not a Docker config is refused at create, naming the key.
    let out = c.skiff_stdin(
        &["apply", "-f", "-"],
        &pull_secret_yaml("broken", "{\"auths\": [\"pw-in-a-list\"]}"),
    );
    assert!(!out.status.success(), "{}", text(&out));
    let shown = stderr(&out);
    assert!(
        shown.contains("data[.dockerconfigjson]") && shown.contains("\"auths\" object"),
        "{shown}"
    );

    // Nothing of the password in the agent's or server's logs.
    for (who, log) in [("agent", c.agent(0).log()), ("server", c.server_log())] {
        assert!(!log.contains(PASSWORD), "{who} log shows the password");
    }
}

#[test]
fn the_agents_registry_config_and_skiff_push_log_in() {
    let registry = Registry::start_with_login(USER, PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, registry.docker_config(USER, PASSWORD)).unwrap();
    let config = config.to_str().unwrap().to_string();
    let wasm = guest("probe");
    let wasm = wasm.to_str().unwrap();
    let target = registry.reference("pushed/probe:v1");

    // skiff push: refused anonymously (no docker config in this HOME), accepted with a login.
    let home = tempfile::tempdir().unwrap();
    let push = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(skiff_tests::skiff_bin());
        cmd.env("HOME", home.path()).env_remove("DOCKER_CONFIG");
        cmd.arg("push").args(extra).args([wasm, target.as_str()]);
        cmd.output().unwrap()
    };
    let out = push(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("unauthorized"), "{}", text(&out));
    let out = push(&["--registry-config", &config]);
    assert!(out.status.success(), "{}", text(&out));
    let out = push(&["--registry-config", "/nonexistent/config.json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("--registry-config: /nonexistent/config.json"),
        "{}",
        text(&out)
    );

    // An agent with its own credentials pulls for pods that name no Secret.
    let mut c = Cluster::start();
    c.add_agent_with("node-1", &["--registry-config", &config]);
    c.apply(&pod_yaml("node-login", &target, &[], "IfNotPresent"));
    succeeded(&c, "node-login");
}

#[test]
fn only_the_node_running_the_pod_reads_its_pull_secret() {
    use skiff_api::client::Api;
    use skiff_api::v1::Secret;
    let registry = Registry::start_with_login(USER, PASSWORD);
    let image = registry
        .push_wasm_artifact("private/probe", "v1", &guest("probe"))
        .reference;
    let mut c = Cluster::start();
    c.add_agent("node-1");
    c.add_agent("node-2");
    c.apply(&pull_secret_yaml(
        "login",
        &registry.docker_config(USER, PASSWORD),
    ));
    let pinned = pod_yaml("pinned", &image, &["login"], "IfNotPresent")
        .replace("spec:\n", "spec:\n  nodeName: node-1\n");
    c.apply(&pinned);
    succeeded(&c, "pinned");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _enter = runtime.enter();
    let mine: Api<Secret> = Api::new(as_node(&c, 0), "default");
    let other: Api<Secret> = Api::new(as_node(&c, 1), "default");
    runtime.block_on(async {
        let got = mine.get("login").await;
        assert!(got.is_ok(), "node-1 runs the pod: {got:?}");
        match other.get("login").await {
            Ok(_) => panic!("node-2 read a pull secret none of its pods uses"),
            Err(s) => assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s}"),
        }
    });
}
