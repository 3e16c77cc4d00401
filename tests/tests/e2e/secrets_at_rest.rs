//! Secrets at rest and in use: a canary Secret pushed through create, use by a pod (env and
//! file), update, delete and error paths appears in plaintext in no log, event, describe output,
//! store file or node disk file; key rotation keeps old Secrets readable; a missing or wrong key
//! file stops the server naming the file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use skiff_tests::guests::guest;
use skiff_tests::{Cluster, skiff_bin, stderr, stdout, text, wait_for};

/// A value no other test or file has: the canary.
fn canary() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("cnry{:x}{:x}", std::process::id(), nanos)
}

/// Every regular file under `dir`, skipping directories for which `skip` says so.
fn files(dir: &Path, skip: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if !skip(&path) {
                files(&path, skip, out);
            }
        } else if kind.is_file() {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Whether `path` is on a tmpfs (the agent's `run` dir holds Secret volumes and bundles there).
fn on_tmpfs(path: &Path) -> bool {
    Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(path)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "tmpfs")
        .unwrap_or(false)
}

/// Reads every file of the server's data dir and of the node's outside its tmpfs, asserting
/// none holds `canary`; returns the ones holding `visible-value`, by path and content.
fn scan(server_dir: &Path, agent_dir: &Path, canary: &str) -> Vec<String> {
    let mut all = Vec::new();
    // The agents' data dirs may lie inside the server's (the harness puts them there).
    files(server_dir, &|p| on_tmpfs(p) || p == agent_dir, &mut all);
    files(agent_dir, &|p| on_tmpfs(p), &mut all);
    assert!(
        all.iter().any(|p| p.ends_with("store.redb")),
        "the store file is among the files read"
    );
    assert!(
        all.iter().any(|p| p.ends_with("audit.log")),
        "the audit log is among the files read"
    );
    let mut seen = Vec::new();
    for path in &all {
        let bytes = std::fs::read(path).unwrap_or_default();
        assert!(
            !contains(&bytes, canary),
            "{} holds the canary in plaintext (filesystem: {})",
            path.display(),
            String::from_utf8_lossy(
                &Command::new("findmnt")
                    .arg("-T")
                    .arg(path)
                    .output()
                    .map(|o| o.stdout)
                    .unwrap_or_default()
            )
        );
        if contains(&bytes, "visible-value") {
            seen.push(format!("{}: visible-value", path.display()));
        }
    }
    seen
}

fn pod_yaml(name: &str, key: &str, args: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: file:{image}\n    command: [probe]\n    args: [{args}]\n    env:\n    - name: TOKEN\n      valueFrom: {{secretKeyRef: {{name: canary, key: {key}}}}}\n    - name: SHOWN\n      valueFrom: {{secretKeyRef: {{name: canary, key: shown}}}}\n    volumeMounts:\n    - {{name: secret, mountPath: /run/secret}}\n  volumes:\n  - name: secret\n    secret: {{secretName: canary}}\n",
        image = guest("probe").display()
    )
}

fn phase(c: &Cluster, pod: &str) -> String {
    c.get_json("pod", pod)
        .and_then(|p| p["status"]["phase"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn a_canary_secret_appears_in_plaintext_in_no_log_event_describe_store_or_node_disk() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    let secret = canary();
    let updated = format!("{secret}-v2");
    let mut printed = String::new();
    let mut record = |out: &std::process::Output| {
        printed.push_str(&text(out));
    };

    // Create, and use from a pod as env and file.
    c.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: canary}}\nstringData: {{token: {secret}, shown: visible-value}}\n"
    ));
    c.apply(&pod_yaml("user", "token", "env, SHOWN"));
    wait_for("pod user Succeeded", Duration::from_secs(60), || {
        (phase(&c, "user") == "Succeeded").then_some(())
    });
    let logs = c.skiff(&["logs", "user"]);
    assert_eq!(stdout(&logs), "SHOWN=visible-value\n", "{}", text(&logs));
    // The file holds the value, on the agent's tmpfs.
    let uid = c.get_json("pod", "user").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let file = c
        .agent(0)
        .data_dir
        .join("run/pods")
        .join(&uid)
        .join("secrets/secret/token");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), secret);
    assert!(on_tmpfs(&file), "{} is not on tmpfs", file.display());

    // Update.
    c.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: canary}}\nstringData: {{token: {updated}, shown: visible-value}}\n"
    ));
    let got = c.get_json("secret", "canary").unwrap();
    let encoded = got["data"]["token"].as_str().unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
        updated.as_bytes()
    );

    // Error paths: each is refused, and says nothing of the value.
    let refusals = [
        // Not base64.
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: bad-b64}}\ndata: {{token: \"{secret}!!\"}}\n"
        ),
        // A key name that is not valid.
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: bad-key}}\nstringData: {{\"bad key\": {secret}}}\n"
        ),
        // A docker config that is not JSON.
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: bad-config}}\ntype: kubernetes.io/dockerconfigjson\nstringData: {{.dockerconfigjson: \"{{{secret}\"}}\n"
        ),
        // An unknown field beside the value.
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: bad-field}}\nstringData: {{token: {secret}}}\nsecretValue: {secret}x\n"
        ),
    ];
    for yaml in &refusals {
        let out = c.skiff_stdin(&["apply", "-f", "-"], yaml);
        assert!(!out.status.success(), "{}", text(&out));
        assert!(
            !contains(&out.stderr, &secret) && !contains(&out.stdout, &secret),
            "a refusal printed the canary: {}",
            text(&out)
        );
        record(&out);
    }
    // A pod naming a key the Secret lacks waits with a reason naming the key, not a value.
    c.apply(&pod_yaml("missing-key", "nope", "env, TOKEN"));
    wait_for(
        "pod missing-key CreateContainerConfigError",
        Duration::from_secs(30),
        || {
            let p = c.get_json("pod", "missing-key")?;
            (p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                == "CreateContainerConfigError")
                .then_some(())
        },
    );

    // What users see: describe, events, get (base64 there, as Kubernetes), the server's answers.
    for args in [
        vec!["describe", "secret", "canary"],
        vec!["describe", "pod", "user"],
        vec!["describe", "pod", "missing-key"],
        vec!["get", "events", "-A", "-o", "yaml"],
        vec!["get", "secrets", "-o", "wide"],
        vec!["get", "secret", "canary", "-o", "yaml"],
    ] {
        let out = c.skiff(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        record(&out);
    }
    assert!(
        stdout(&c.skiff(&["describe", "secret", "canary"])).contains("bytes"),
        "describe shows sizes"
    );

    // While the pods exist: the node's files hold the value the pod printed (so the scan sees
    // plaintext where it is), never the canary.
    let seen = scan(c.dir.path(), &c.agent(0).data_dir, &secret);
    assert!(
        seen.iter().any(|f| contains(f.as_bytes(), "visible-value")),
        "the pod's own log of `visible-value` was not among the files read"
    );

    // Delete.
    for (kind, name) in [
        ("pod", "user"),
        ("pod", "missing-key"),
        ("secret", "canary"),
    ] {
        let out = c.skiff(&["delete", kind, name]);
        assert!(out.status.success(), "{}", text(&out));
        record(&out);
    }
    wait_for("pods gone", Duration::from_secs(60), || {
        let out = c.skiff(&["get", "pods", "-o", "name"]);
        stdout(&out).trim().is_empty().then_some(())
    });
    assert!(
        !contains(printed.as_bytes(), &secret),
        "the CLI printed the canary:\n{printed}"
    );

    // Every file of the server's data dir (store, audit log, server log) and of the node's,
    // outside its tmpfs: no canary. The store is read after the server stopped (nothing cached).
    let agent_dir = c.agent(0).data_dir.clone();
    c.kill_agent(0);
    c.kill_server();
    scan(c.dir.path(), &agent_dir, &secret);
    // The audit log recorded the Secret's calls (Metadata level: names, never values).
    let audit = std::fs::read_to_string(c.dir.path().join("audit.log")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"resource\":\"secrets\"") && l.contains("\"name\":\"canary\"")),
        "no audit event for the Secret"
    );
}

/// `skiff server` on `dir` that is expected to refuse to start: its exit code and stderr.
fn failed_start(dir: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(skiff_bin())
        .args(["server", "--data-dir"])
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("skiff server started on a data dir it should refuse");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The text of a log without its colour escapes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

fn secret_value(c: &Cluster, name: &str) -> String {
    let got = c
        .get_json("secret", name)
        .unwrap_or_else(|| panic!("secret {name} unreadable: {}", c.server_log()));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(got["data"]["v"].as_str().unwrap())
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn key_rotation_keeps_old_secrets_readable_and_a_missing_or_wrong_key_refuses_to_start() {
    let mut c = Cluster::start();
    let keys = c.dir.path().join("encryption-keys");
    let first = std::fs::read_to_string(&keys).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keys).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is private");
    }
    c.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: old}\nstringData: {v: old-value}\n");

    // Phase one: a second key every server can read; key-1 still writes.
    let new_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    std::fs::write(&keys, format!("{first}key-2 {new_key}\n")).unwrap();
    c.restart_server();
    assert_eq!(secret_value(&c, "old"), "old-value");
    c.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: mid}\nstringData: {v: mid-value}\n");

    // Phase two: key-2 writes; the start re-seals what key-1 sealed.
    let phase_two = format!("{}key-2 {new_key} write\n", first.replace(" write", ""));
    std::fs::write(&keys, &phase_two).unwrap();
    c.restart_server();
    c.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: new}\nstringData: {v: new-value}\n");
    // Both older Secrets (and any the server keeps itself, such as its bootstrap token) were
    // re-sealed by the start.
    let log = strip_ansi(&c.server_log());
    let rotated: usize = log
        .lines()
        .filter_map(|l| l.split("rotated=").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .next_back()
        .unwrap_or(0);
    assert!(rotated >= 2, "the start re-sealed the older Secrets: {log}");

    // Phase three: key-1 goes; every Secret still opens (else the start would refuse).
    let key_two_only = format!("key-2 {new_key} write\n");
    std::fs::write(&keys, &key_two_only).unwrap();
    c.restart_server();
    for (name, value) in [
        ("old", "old-value"),
        ("mid", "mid-value"),
        ("new", "new-value"),
    ] {
        assert_eq!(secret_value(&c, name), value);
    }

    // A missing key file: refused, naming the file; no new key is made over sealed data.
    c.kill_server();
    std::fs::remove_file(&keys).unwrap();
    let (code, err) = failed_start(c.dir.path());
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&keys.display().to_string()) && err.contains("missing"),
        "{err}"
    );
    assert!(!keys.exists());
    // A wrong key of the same name: refused, naming the file.
    let wrong = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    std::fs::write(&keys, format!("key-2 {wrong} write\n")).unwrap();
    let (code, err) = failed_start(c.dir.path());
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&keys.display().to_string()) && err.contains("does not decrypt"),
        "{err}"
    );
    // A key file that does not parse: refused, naming file and line.
    std::fs::write(&keys, "key-2 not-base64 write\n").unwrap();
    let (code, err) = failed_start(c.dir.path());
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("line 1"), "{err}");
    // The right key again: all is readable.
    std::fs::write(&keys, &key_two_only).unwrap();
    c.restart_server();
    assert_eq!(secret_value(&c, "old"), "old-value");
    let out = c.skiff(&["get", "secrets", "-o", "name"]);
    assert!(stderr(&out).is_empty(), "{}", text(&out));
}
