//! `skiff get -w` and gRPC watch from a resourceVersion.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use skiff_api::client::ListParams;
use skiff_api::v1::{ConfigMap, ObjectMeta};
use skiff_tests::{Cluster, text};
use tokio_stream::StreamExt;

fn cm(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: Some(ObjectMeta {
            name: name.into(),
            ..Default::default()
        }),
        data: [("v".to_string(), value.to_string())].into(),
        ..Default::default()
    }
}

#[test]
fn get_watch_prints_changes() {
    let c = Cluster::start();
    let mut child = c
        .skiff_cmd(&["get", "configmaps", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("skiff get -w");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let out = c.skiff_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched}\ndata: {a: b}\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !seen.iter().any(|l: &String| l.starts_with("watched")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no watch line for the new configmap; saw {seen:?}"),
        }
    }
    assert!(seen[0].starts_with("NAME"), "a header first: {seen:?}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn watch_from_resource_version_has_no_gaps_or_duplicates() {
    let c = Cluster::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let api = c.api::<ConfigMap>("default");
        let first = api.create(cm("w0", "0")).await.unwrap();
        let start = first.metadata.unwrap().resource_version;
        let mut versions = Vec::new();
        for i in 1..=20 {
            let obj = api.create(cm(&format!("w{i}"), "x")).await.unwrap();
            versions.push(obj.metadata.unwrap().resource_version);
        }
        let mut stream = api.watch(ListParams::default(), &start).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 20 {
            let e = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("event")
                .expect("open")
                .expect("ok");
            assert_eq!(e.kind, "ADDED");
            got.push(e.object.metadata.unwrap().resource_version);
        }
        assert_eq!(
            got, versions,
            "every change after the resourceVersion, in order, once"
        );
        // A label-selected watch sees an object leave its selector as DELETED.
        let mut selected = api
            .watch(ListParams::default().labels("keep=yes"), "")
            .await
            .unwrap();
        let mut labelled = cm("sel", "1");
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .insert("keep".into(), "yes".into());
        let created = api.create(labelled).await.unwrap();
        let e = tokio::time::timeout(Duration::from_secs(10), selected.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                e.kind.as_str(),
                e.object.metadata.as_ref().unwrap().name.as_str()
            ),
            ("ADDED", "sel")
        );
        let mut moved = created.clone();
        moved
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .insert("keep".into(), "no".into());
        api.update(moved).await.unwrap();
        let e = tokio::time::timeout(Duration::from_secs(10), selected.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(e.kind, "DELETED", "leaving the selector reads as DELETED");
        let bad = api.watch(ListParams::default(), "not-a-number").await;
        assert_eq!(
            bad.err().map(|s| s.code()),
            Some(tonic::Code::InvalidArgument)
        );
    });
}
