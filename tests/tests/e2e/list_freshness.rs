//! A list at a resourceVersion the server has not reached (`resourceVersionMatch=NotOlderThan`):
//! refused as Kubernetes refuses it — REST 504 `Timeout` with the `ResourceVersionTooLarge` cause
//! and `Retry-After`, gRPC `DEADLINE_EXCEEDED` — on etcd through the watch cache (after its
//! wait) and on the embedded store (at once); one it has reached is answered.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_api::client::ResourceClient;
use skiff_api::v1::{Container, ListRequest, ObjectMeta, Pod, PodSpec};
use skiff_tests::etcd::EtcdCluster;
use skiff_tests::{Cluster, ClusterOptions, text};

/// `GET` of the default namespace's pods with `query` over REST: (code, Retry-After, body).
fn rest_list(c: &Cluster, query: &str) -> (u16, String, Value) {
    let ca = c.data_dir().join("pki").join("ca.crt");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-D", "/dev/stderr", "--cacert"])
        .arg(&ca)
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", c.config().token))
        .arg("-w")
        .arg("\n%{http_code}")
        .arg(format!(
            "https://{}/api/v1/namespaces/default/pods?{query}",
            c.addr
        ))
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    let (json, code) = body.rsplit_once('\n').unwrap_or(("", ""));
    let headers = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    let retry_after = headers
        .lines()
        .find_map(|l| l.strip_prefix("retry-after:"))
        .unwrap_or("")
        .trim()
        .to_string();
    let code = code
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no HTTP code: {}", text(&out)));
    (
        code,
        retry_after,
        serde_json::from_str(json).unwrap_or(Value::Null),
    )
}

fn pod(name: &str) -> Pod {
    Pod {
        metadata: Some(ObjectMeta {
            name: name.into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            runtime_class_name: "wasm".into(),
            containers: vec![Container {
                name: "app".into(),
                image: "file:/srv/app.wasm".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn check(c: &Cluster, waits: bool) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let created = rt
        .block_on(c.api::<Pod>("default").create(pod("fresh")))
        .unwrap();
    let at: u64 = created.metadata.unwrap().resource_version.parse().unwrap();
    // Reached: answered, at that revision or newer.
    let (code, _, list) = rest_list(
        c,
        &format!("resourceVersion={at}&resourceVersionMatch=NotOlderThan"),
    );
    assert_eq!(code, 200, "{list}");
    let listed: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(listed >= at, "{list}");
    // Not reached: Kubernetes' 504.
    let future = at + 1_000_000;
    let started = Instant::now();
    let (code, retry_after, status) = rest_list(
        c,
        &format!("resourceVersion={future}&resourceVersionMatch=NotOlderThan"),
    );
    let waited = started.elapsed();
    assert_eq!(code, 504, "{status}");
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["reason"], "Timeout", "{status}");
    assert_eq!(
        status["details"]["causes"][0]["reason"], "ResourceVersionTooLarge",
        "{status}"
    );
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "Timeout: Too large resource version: {future}, current: "
        )),
        "{message}"
    );
    assert_eq!(retry_after, "1");
    if waits {
        // The watch cache waited 3 s for the revision before asking etcd.
        assert!(waited >= Duration::from_secs(3), "answered in {waited:?}");
    }
    // The same over gRPC.
    let err = rt
        .block_on(Pod::list(
            &c.transport(),
            ListRequest {
                namespace: "default".into(),
                resource_version: future.to_string(),
                resource_version_match: "NotOlderThan".into(),
                ..Default::default()
            },
        ))
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err}");
    assert!(
        err.message()
            .contains(&format!("Too large resource version: {future}")),
        "{err}"
    );
}

#[test]
fn a_list_newer_than_the_store_times_out_on_etcd() {
    let etcd = EtcdCluster::start(1);
    let c = Cluster::start_with(ClusterOptions {
        server_args: vec!["--etcd".into(), etcd.endpoints_arg()],
        ..Default::default()
    });
    check(&c, true);
}

#[test]
fn a_list_newer_than_the_store_times_out_on_the_embedded_store() {
    let c = Cluster::start();
    check(&c, false);
}
