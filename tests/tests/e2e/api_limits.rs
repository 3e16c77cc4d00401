//! API limits over a real server: a flood of writes and watches from one identity is held to
//! its rate and watch cap (ResourceExhausted with a retry hint) while another identity is served,
//! and every call, refused ones included, is in the audit log.

use std::time::Duration;

use skiff_api::client::{Api, ClientConfig, ListParams};
use skiff_api::v1::{ConfigMap, Event, Node, ObjectMeta, ObjectReference, Pod};
use skiff_tests::{Cluster, ClusterOptions, wait_for};

fn event(name: &str) -> Event {
    Event {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        involved_object: Some(ObjectReference {
            kind: "Pod".into(),
            name: "p".into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        reason: "Flood".into(),
        message: "one of many".into(),
        r#type: "Normal".into(),
        ..Default::default()
    }
}

#[test]
fn a_flood_of_watches_and_writes_from_one_identity_is_limited_while_another_is_served() {
    let c = Cluster::start_with(ClusterOptions {
        server_args: [
            "--max-requests-per-identity-qps",
            "5",
            "--max-requests-per-identity-burst",
            "10",
            "--max-watches-per-identity",
            "3",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    });
    // The flooding identity: the join token (a node's bootstrap credential, not system:masters).
    let flooder = ClientConfig {
        token: c.join_token(),
        ..c.config()
    };
    let admin = c.config();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let nodes = Api::<Node>::new(flooder.connect().unwrap(), "");
        // Watches: three are let in, the fourth is refused with a retry hint.
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(nodes.watch(ListParams::default(), "").await.unwrap());
        }
        let refused = nodes
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
        // The other identity watches freely meanwhile.
        let admin_pods = Api::<Pod>::new(admin.connect().unwrap(), "default");
        let mut admin_watches = Vec::new();
        for _ in 0..5 {
            admin_watches.push(admin_pods.watch(ListParams::default(), "").await.unwrap());
        }
        // A closed watch frees its place.
        drop(held.pop());
        let mut reopened = None;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            match nodes.watch(ListParams::default(), "").await {
                Ok(w) => {
                    reopened = Some(w);
                    break;
                }
                Err(e) if e.code() == tonic::Code::ResourceExhausted => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(reopened.is_some(), "a closed watch's place was never freed");

        // Writes: 60 at once from the flooder; the burst passes, the rest are refused.
        let events = Api::<Event>::new(flooder.connect().unwrap(), "default");
        let mut tasks = Vec::new();
        for i in 0..60 {
            let events = events.clone();
            tasks.push(tokio::spawn(async move {
                events.create(event(&format!("flood-{i}"))).await
            }));
        }
        // The admin is served during the flood.
        let config_maps = Api::<ConfigMap>::new(admin.connect().unwrap(), "default");
        for i in 0..20 {
            let cm = ConfigMap {
                metadata: Some(ObjectMeta {
                    name: format!("served-{i}"),
                    ..Default::default()
                }),
                ..Default::default()
            };
            config_maps.create(cm).await.expect("the admin is served");
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
        // The bucket held 10 minus the 5 watch calls, refilling at 5/s while the flood ran.
        assert!(ok >= 1 && ok < 30, "{ok} writes passed");
        assert!(limited >= 30, "{limited} writes limited");
        // After a pause, the flooder is served again.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        events.create(event("after-pause")).await.unwrap();
        drop(admin_watches);
    });
    // The audit log has the refusals (429) and the admin's writes, with who made them.
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
    assert_ne!(limited["user"]["username"], "admin");
    let created = lines
        .iter()
        .find(|l| l["objectRef"]["name"] == "served-3")
        .expect("the admin's create is audited");
    assert_eq!(created["verb"], "create");
    assert_eq!(created["user"]["username"], "admin");
    assert_eq!(created["objectRef"]["resource"], "configmaps");
    assert_eq!(created["objectRef"]["namespace"], "default");
    assert_eq!(created["responseStatus"]["code"], 200);
    assert!(created["auditID"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(created["sourceIPs"][0], "127.0.0.1");
}
