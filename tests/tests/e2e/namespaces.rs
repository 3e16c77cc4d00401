//! Namespace deletion and paged lists, end to end (issue 19).
//!
//! - Deleting a namespace whose OCI pods have a 5 s grace period: each pod's process sees
//!   SIGTERM and has time to finish (its trap writes to a hostPath dir), the namespace shows
//!   Terminating until the pods are gone, then it is deleted.
//! - 10,000 pods (for a scheduler nobody runs, so they cost one write each) listed by
//!   `skiff get pods -A --chunk-size 500`, and a watch that goes on from a paged list's
//!   resourceVersion seeing every change made while paging.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use skiff_api::client::ListParams;
use skiff_api::v1::{Container, ObjectMeta, Pod, PodSpec};
use skiff_api::{Resource, ResourceExt};
use skiff_tests::images::busybox_oci_archive;
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, stdout, text, wait_for};
use tokio_stream::StreamExt;

/// A pod whose shell traps SIGTERM, records it in `/data`, takes 2 s to finish, then exits.
fn graceful_pod(name: &str, image: &str, dir: &Path) -> String {
    let script = format!(
        "trap 'echo TERM > /data/{name}.term; sleep 2; echo done > /data/{name}.done; exit 0' TERM; \
         echo up > /data/{name}.up; while true; do sleep 1; done"
    );
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: graceful}}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 5\n  volumes:\n  - name: data\n    hostPath: {{path: {dir}}}\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, {script:?}]\n    volumeMounts:\n    - {{name: data, mountPath: /data}}\n",
        dir = dir.display()
    )
}

fn namespace_phase(c: &Cluster) -> Option<String> {
    c.get_json("namespace", "graceful")
        .map(|ns| ns["status"]["phase"].as_str().unwrap_or("").to_string())
}

fn pods_left(c: &Cluster) -> usize {
    let out = c.skiff(&["get", "pods", "-n", "graceful", "-o", "name"]);
    stdout(&out).lines().count()
}

#[test]
fn deleting_a_namespace_gives_its_pods_their_grace_period() {
    let registry = Registry::start();
    let work = tempfile::tempdir().expect("tempdir");
    let archive = work.path().join("busybox.tar");
    busybox_oci_archive(&archive).expect("busybox image");
    let image = registry.push_layout(&archive, "busybox", "v1").reference;
    let data = work.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    let mut c = Cluster::start();
    c.add_agent("node-1");

    let names = ["first", "second"];
    let mut manifest = "apiVersion: v1\nkind: Namespace\nmetadata: {name: graceful}\n".to_string();
    for name in names {
        manifest.push_str("---\n");
        manifest.push_str(&graceful_pod(name, &image, &data));
    }
    let out = c.skiff_stdin(&["apply", "-f", "-"], &manifest);
    assert!(out.status.success(), "{}", text(&out));
    for name in names {
        wait_for(
            &format!("pod {name} to run"),
            Duration::from_secs(90),
            || data.join(format!("{name}.up")).exists().then_some(()),
        );
    }

    let started = Instant::now();
    let out = c.skiff(&["delete", "namespace", "graceful"]);
    assert!(out.status.success(), "{}", text(&out));
    // Terminating while its pods stop; no new content meanwhile.
    assert_eq!(namespace_phase(&c).as_deref(), Some("Terminating"));
    let out = c.skiff_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: late, namespace: graceful}\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("being terminated"),
        "{}",
        text(&out)
    );
    let mut terminating_with_pods = false;
    wait_for(
        "namespace graceful to be deleted",
        Duration::from_secs(30),
        || match namespace_phase(&c) {
            Some(phase) => {
                assert_eq!(phase, "Terminating");
                terminating_with_pods |= pods_left(&c) > 0;
                None
            }
            None => Some(()),
        },
    );
    let took = started.elapsed();
    assert!(
        terminating_with_pods,
        "the namespace was seen Terminating while its pods stopped"
    );
    for name in names {
        for (what, file) in [
            ("saw SIGTERM", format!("{name}.term")),
            ("finished its 2 s of cleanup", format!("{name}.done")),
        ] {
            assert!(
                data.join(&file).exists(),
                "pod {name} {what} before it went\n{}",
                c.agent(0).log()
            );
        }
    }
    assert!(
        took >= Duration::from_secs(2),
        "the namespace went after its pods' 2 s cleanup, not before ({took:?})"
    );
    assert_eq!(pods_left(&c), 0);
}

const PODS: usize = 10_000;

/// A pod for a scheduler that does not run: stored, never scheduled, never run.
fn idle_pod(name: &str) -> Pod {
    Pod {
        metadata: Some(ObjectMeta {
            name: name.into(),
            labels: [("bulk".to_string(), "yes".to_string())].into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            scheduler_name: "nobody".into(),
            containers: vec![Container {
                name: "app".into(),
                image: "file:/nowhere.wasm".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn ten_thousand_pods_are_listed_in_pages_and_a_watch_goes_on_from_the_list() {
    let c = Cluster::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let api = c.api::<Pod>("default");
    let made = Instant::now();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..32 {
            let api = api.clone();
            tasks.spawn(async move {
                for i in (worker..PODS).step_by(32) {
                    api.create(idle_pod(&format!("bulk-{i:05}"))).await.unwrap();
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    });
    eprintln!("created {PODS} pods in {:?}", made.elapsed());

    // The CLI: 20 pages of 500, one table (one header), every pod once.
    let listed = Instant::now();
    let out = c.skiff(&["get", "pods", "-A", "--chunk-size", "500"]);
    assert!(out.status.success(), "{}", text(&out));
    eprintln!("skiff get pods -A --chunk-size 500: {:?}", listed.elapsed());
    let table = stdout(&out);
    let mut lines = table.lines();
    assert!(
        lines.next().unwrap_or("").starts_with("NAMESPACE"),
        "a header first"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), PODS, "one row per pod");
    assert!(
        rows.iter().all(|r| !r.starts_with("NAMESPACE")),
        "one header"
    );
    let names: BTreeSet<&str> = rows
        .iter()
        .filter_map(|r| r.split_whitespace().nth(1))
        .collect();
    assert_eq!(names.len(), PODS, "no pod twice");
    // One request (no paging) lists the same; a negative chunk size is a usage error.
    let whole = c.skiff(&["get", "pods", "-A", "--chunk-size", "0", "-o", "name"]);
    assert_eq!(stdout(&whole).lines().count(), PODS, "{}", text(&whole));
    let bad = c.skiff(&["get", "pods", "--chunk-size", "-1"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));

    // The API: page by 500, changing pods between pages; a watch from the list's
    // resourceVersion sees every change made while paging.
    rt.block_on(async {
        let mut params = ListParams {
            limit: 500,
            ..Default::default()
        };
        let mut seen = 0;
        let mut pages = 0;
        let mut version = None;
        let mut changed = Vec::new();
        loop {
            let (items, meta) = api.list(params.clone()).await.unwrap();
            assert!(items.len() <= 500);
            seen += items.len();
            pages += 1;
            let first = version.get_or_insert_with(|| meta.resource_version.clone());
            assert_eq!(
                *first, meta.resource_version,
                "every page reports the first's version"
            );
            if pages == 1 {
                // A new pod, a pod already listed changed, a pod not yet listed deleted.
                api.create(idle_pod("zz-added-while-paging")).await.unwrap();
                let mut listed = items[0].clone();
                listed
                    .metadata_mut()
                    .labels
                    .insert("touched".into(), "yes".into());
                api.update(listed.clone()).await.unwrap();
                api.delete("bulk-09999").await.unwrap();
                changed = vec![
                    ("ADDED".to_string(), "zz-added-while-paging".to_string()),
                    ("MODIFIED".to_string(), listed.name().to_string()),
                    ("DELETED".to_string(), "bulk-09999".to_string()),
                ];
            }
            if meta.r#continue.is_empty() {
                break;
            }
            params.continue_token = meta.r#continue;
        }
        // Later pages read the store as it is then: the new pod (named to sort last) is listed,
        // the deleted one is not; the watch below sees both changes all the same.
        assert_eq!(pages, PODS / 500);
        assert_eq!(seen, PODS);
        let version = version.unwrap();
        let mut stream = api.watch(ListParams::default(), &version).await.unwrap();
        let mut events = Vec::new();
        while events.len() < changed.len() {
            let e = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .unwrap_or_else(|_| panic!("no more events after {events:?}"))
                .expect("open")
                .expect("ok");
            events.push((e.kind.clone(), e.object.name().to_string()));
        }
        assert_eq!(
            events, changed,
            "the watch goes on from the list, in order, no gap"
        );
    });
}
