//! Acknowledged writes survive `kill -9` of the server; concurrent writers lose no update.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_api::v1::{ConfigMap, ObjectMeta};
use skiff_tests::Cluster;

fn cm(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: Some(ObjectMeta {
            name: name.into(),
            ..Default::default()
        }),
        data: [("n".to_string(), "0".to_string())].into(),
        ..Default::default()
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut c = Cluster::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let api = c.api::<ConfigMap>("default");
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let api = api.clone();
            let acked = acked.clone();
            rt.spawn(async move {
                for i in 0..50 {
                    let name = format!("cm-{w}-{i:02}");
                    match api.create(cm(&name)).await {
                        Ok(_) => acked.lock().unwrap().push(name),
                        Err(_) => return, // the server is gone
                    }
                }
            })
        })
        .collect();
    // Kill the server mid-stream, after some writes were acknowledged.
    skiff_tests::wait_for("80 acknowledged writes", Duration::from_secs(60), || {
        (acked.lock().unwrap().len() >= 80).then_some(())
    });
    c.kill_server();
    for w in writers {
        let _ = rt.block_on(w);
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 80 && acked.len() < 200,
        "the kill landed mid-stream ({} acked)",
        acked.len()
    );

    c.restart_server();
    let api = c.api::<ConfigMap>("default");
    let (items, _) = rt.block_on(api.list(Default::default())).unwrap();
    let present: std::collections::BTreeSet<String> = items
        .into_iter()
        .map(|o| o.metadata.unwrap().name)
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !present.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged writes lost after kill -9: {lost:?}"
    );
}

#[test]
fn concurrent_writers_conflict_and_lose_nothing() {
    let c = Cluster::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let api = c.api::<ConfigMap>("default");
    rt.block_on(api.create(cm("counter"))).unwrap();
    let conflicts = Arc::new(Mutex::new(0));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let api = api.clone();
            let conflicts = conflicts.clone();
            rt.spawn(async move {
                for _ in 0..25 {
                    loop {
                        let mut cur = api.get("counter").await.unwrap();
                        let n: u32 = cur.data["n"].parse().unwrap();
                        cur.data.insert("n".into(), (n + 1).to_string());
                        match api.update(cur).await {
                            Ok(_) => break,
                            Err(s) if s.code() == tonic::Code::Aborted => {
                                *conflicts.lock().unwrap() += 1
                            }
                            Err(s) => panic!("{s}"),
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        rt.block_on(t).unwrap();
    }
    let end = rt.block_on(api.get("counter")).unwrap();
    assert_eq!(
        end.data["n"],
        "100",
        "no lost update ({} conflicts retried)",
        conflicts.lock().unwrap()
    );

    // A stale resourceVersion is a conflict, not a silent overwrite.
    let stale = rt.block_on(api.get("counter")).unwrap();
    let mut first = stale.clone();
    first.data.insert("n".into(), "first".into());
    rt.block_on(api.update(first)).unwrap();
    let mut second = stale;
    second.data.insert("n".into(), "second".into());
    let err = rt.block_on(api.update(second)).unwrap_err();
    assert_eq!(err.code(), tonic::Code::Aborted, "{err}");
}
