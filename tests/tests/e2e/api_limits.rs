//! API limits over a real server: a flood of writes and watches from one identity is held to
//! its rate and watch cap (ResourceExhausted with a retry hint) while another identity is served,
//! and every call, refused ones included, is in the audit log.

use std::time::Duration;

use skiff_api::client::{Api, ClientConfig, ListParams};
use skiff_api::v1::{ConfigMap, ObjectMeta, Pod};
use skiff_tests::{Cluster, ClusterOptions, wait_for};

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: Some(ObjectMeta {
            name: name.into(),
            ..Default::default()
        }),
        data: [("k".to_string(), "v".to_string())].into(),
        ..Default::default()
    }
}

#[test]
fn a_flood_of_watches_and_writes_from_one_identity_is_limited_while_another_is_served() {
    // Two users of the static token file, both bound to the `edit` ClusterRole.
    let tokens = tempfile::tempdir().unwrap();
    let token_file = tokens.path().join("tokens.csv");
    std::fs::write(
        &token_file,
        "flooder-token-0123456789,alice,u-alice\npatient-token-0123456789,bob,u-bob\n",
    )
    .unwrap();
    let c = Cluster::start_with(ClusterOptions {
        server_args: vec![
            "--max-requests-per-identity-qps".into(),
            "5".into(),
            "--max-requests-per-identity-burst".into(),
            "10".into(),
            "--max-watches-per-identity".into(),
            "3".into(),
            "--token-auth-file".into(),
            token_file.display().to_string(),
        ],
        ..Default::default()
    });
    c.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: flood-edit}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}\nsubjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}\n- {apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}\n",
    );
    let flooder = ClientConfig {
        token: "flooder-token-0123456789".into(),
        ..c.config()
    };
    let patient = ClientConfig {
        token: "patient-token-0123456789".into(),
        ..c.config()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pods = Api::<Pod>::new(flooder.connect().unwrap(), "default");
        // The binding reaches the authorizer's index.
        for _ in 0..100 {
            if pods.list(ListParams::default()).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Refill the bucket the polling may have drawn on.
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Watches: three are let in, the fourth is refused with a retry hint.
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(pods.watch(ListParams::default(), "").await.unwrap());
        }
        let refused = pods
            .watch(ListParams::default(), "")
            .await
            .err()
            .expect("a fourth watch is refused");
        assert_eq!(
            refused.code(),
            tonic::Code::ResourceExhausted,
            "{refused:?}"
        );
        assert!(
            refused.message().contains("too many watches"),
            "{refused:?}"
        );
        assert!(refused.metadata().get("retry-after").is_some());
        // The other identity watches meanwhile.
        let patient_pods = Api::<Pod>::new(patient.connect().unwrap(), "default");
        let mut patient_watches = Vec::new();
        for _ in 0..3 {
            patient_watches.push(patient_pods.watch(ListParams::default(), "").await.unwrap());
        }
        // A closed watch frees its place.
        drop(held.pop());
        let mut reopened = None;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            match pods.watch(ListParams::default(), "").await {
                Ok(w) => {
                    reopened = Some(w);
                    break;
                }
                Err(e) if e.code() == tonic::Code::ResourceExhausted => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(reopened.is_some(), "a closed watch's place was never freed");
        tokio::time::sleep(Duration::from_secs(2)).await;

        // Writes: 60 at once from the flooder; the burst passes, the rest are refused.
        let flood = Api::<ConfigMap>::new(flooder.connect().unwrap(), "default");
        let mut tasks = Vec::new();
        for i in 0..60 {
            let flood = flood.clone();
            tasks.push(tokio::spawn(async move {
                flood.create(config_map(&format!("flood-{i}"))).await
            }));
        }
        // The other identity is served during the flood, at its own pace.
        let served = Api::<ConfigMap>::new(patient.connect().unwrap(), "default");
        for i in 0..5 {
            served
                .create(config_map(&format!("served-{i}")))
                .await
                .expect("the patient identity is served");
        }
        let (mut ok, mut limited) = (0, 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) if e.code() == tonic::Code::ResourceExhausted => {
                    let retry: u64 = e
                        .metadata()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .expect("a retry-after hint");
                    assert!((1..=10).contains(&retry), "retry-after {retry}");
                    assert!(e.message().contains("too many requests"), "{e:?}");
                    limited += 1;
                }
                Err(e) => panic!("unexpected refusal: {e:?}"),
            }
        }
        // A burst of 10 (refilling at 5/s while the flood ran) passed; most were refused.
        assert!((5..30).contains(&ok), "{ok} writes passed");
        assert!(limited >= 30, "{limited} writes limited");
        // After a pause, the flooder is served again.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        flood.create(config_map("after-pause")).await.unwrap();
        drop(patient_watches);
    });
    // The audit log has the refusals (429) and the writes, with who made them.
    let audit = c.dir.path().join("audit.log");
    let lines = wait_for("audit lines", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&audit).ok()?;
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect();
        (lines
            .iter()
            .filter(|l| l["responseStatus"]["code"] == 429)
            .count()
            >= 30)
            .then_some(lines)
    });
    let limited = lines
        .iter()
        .find(|l| l["responseStatus"]["code"] == 429)
        .unwrap();
    assert_eq!(limited["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(limited["user"]["username"], "alice");
    assert!(
        !lines
            .iter()
            .any(|l| l["user"]["username"] == "bob" && l["responseStatus"]["code"] == 429),
        "bob was never limited"
    );
    let created = lines
        .iter()
        .find(|l| l["objectRef"]["name"] == "served-3")
        .expect("bob's create is audited");
    assert_eq!(created["verb"], "create");
    assert_eq!(created["user"]["username"], "bob");
    assert_eq!(created["objectRef"]["resource"], "configmaps");
    assert_eq!(created["objectRef"]["namespace"], "default");
    assert_eq!(created["responseStatus"]["code"], 200);
    assert!(created["auditID"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(created["sourceIPs"][0], "127.0.0.1");
}

#[test]
fn events_expire_after_the_event_ttl() {
    let c = Cluster::start_with(ClusterOptions {
        server_args: vec!["--event-ttl".into(), "2s".into()],
        ..Default::default()
    });
    c.apply(
        "apiVersion: v1\nkind: Event\nmetadata: {name: short-lived}\ninvolvedObject: {kind: Pod, name: p, namespace: default}\nreason: Testing\nmessage: gone soon\ntype: Normal\n",
    );
    assert!(c.get_json("event", "short-lived").is_some());
    // Swept within a few periods of the TTL (the sweep runs every ttl/12, at least every second).
    wait_for("the event to expire", Duration::from_secs(20), || {
        c.get_json("event", "short-lived").is_none().then_some(())
    });
    // A fresh one is there until its own TTL has passed.
    c.apply(
        "apiVersion: v1\nkind: Event\nmetadata: {name: fresh}\ninvolvedObject: {kind: Pod, name: p, namespace: default}\nreason: Testing\nmessage: new\ntype: Normal\n",
    );
    assert!(c.get_json("event", "fresh").is_some());
}

#[test]
fn a_source_guessing_tokens_is_held_while_nodes_are_served() {
    let mut c = Cluster::start_with(ClusterOptions {
        server_args: vec![
            "--max-failed-authentications-burst".into(),
            "3".into(),
            "--failed-authentications-qps".into(),
            "0.5".into(),
        ],
        ..Default::default()
    });
    let node = c.add_agent("n1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _enter = rt.enter();
    let guesser = ClientConfig {
        token: "abcdef.0123456789abcdef".into(),
        ..c.config()
    };
    let guesses: Api<ConfigMap> = Api::new(guesser.connect().unwrap(), "default");
    let admin: Api<ConfigMap> = c.api("default");
    rt.block_on(async {
        // Three wrong guesses are each refused as such ...
        for _ in 0..3 {
            let refused = guesses.get("x").await.unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
        }
        // ... then the address is held: a fourth guess, and the admin's good token beside it.
        for api in [&guesses, &admin] {
            let held = api.get("x").await.unwrap_err();
            assert_eq!(held.code(), tonic::Code::ResourceExhausted, "{held}");
            assert!(
                held.message()
                    .contains("too many failed authentications from 127.0.0.1"),
                "{held}"
            );
            assert!(held.metadata().get("retry-after").is_some());
        }
        // A node's certificate is no guess: it is served.
        Api::<skiff_api::v1::Node>::new(super::node_identity::as_node(&c, node), "")
            .get("n1")
            .await
            .unwrap();
    });
    // Two seconds on (0.5 a second), one try is earned back and the admin's token works.
    wait_for("the address let go", Duration::from_secs(10), || {
        match rt.block_on(admin.get("x")) {
            Err(s) if s.code() == tonic::Code::NotFound => Some(()),
            _ => None,
        }
    });
    let audit = std::fs::read_to_string(c.dir.path().join("audit.log")).unwrap();
    assert!(
        audit.contains("too many failed authentications"),
        "the holds are audited"
    );
}
