//! A third-party Kubernetes client library, kube-rs (the `kube` crate with `k8s-openapi`'s typed
//! objects for Kubernetes 1.32), against a skiff cluster through the REST API, configured only by
//! the kubeconfig `skiff server` writes: typed create, get, list (label selectors, pages), watch
//! (from a list's resourceVersion), merge and strategic merge patches of pods, a Deployment
//! created, awaited with kube's own condition and scaled through its scale subresource, errors
//! read as Kubernetes' (404 NotFound, 409 AlreadyExists), and kube's watcher carrying on after
//! the API server restarts.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{
    Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::watcher;
use kube::{Client, Config};
use serde_json::json;
use skiff_tests::Cluster;
use skiff_tests::guests::guest;

/// A kube client from the cluster's `DIR/kubeconfig`, as a user's program builds one.
async fn client(c: &Cluster) -> Client {
    let kubeconfig = Kubeconfig::read_from(c.data_dir().join("kubeconfig")).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kube config from the kubeconfig");
    Client::try_from(config).expect("kube client")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A Wasm pod spec that sleeps until stopped.
fn sleeper_spec() -> PodSpec {
    PodSpec {
        runtime_class_name: Some("wasm".into()),
        termination_grace_period_seconds: Some(1),
        containers: vec![Container {
            name: "main".into(),
            image: Some(format!("file:{}", guest("probe").display())),
            command: Some(vec!["probe".into()]),
            args: Some(vec!["sleep".into(), "0".into()]),
            resources: Some(ResourceRequirements {
                limits: Some(
                    [
                        ("cpu".to_string(), Quantity("200m".into())),
                        ("memory".to_string(), Quantity("32Mi".into())),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn pod(name: &str, app: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(&[("app", app)])),
            ..Default::default()
        },
        spec: Some(sleeper_spec()),
        ..Default::default()
    }
}

/// The API error of a failed call (panics on anything else).
fn api_error<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> kube::core::ErrorResponse {
    match result {
        Err(kube::Error::Api(e)) => e,
        other => panic!("expected a Kubernetes API error, got {other:?}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn kube_rs_creates_lists_watches_and_patches_pods_and_a_deployment() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    runtime().block_on(async {
        let client = client(&c).await;
        let version = client.apiserver_version().await.expect("/version");
        assert_eq!(version.major, "1", "{version:?}");

        let pods: Api<Pod> = Api::default_namespaced(client.clone());
        let created = pods
            .create(&PostParams::default(), &pod("kube-a", "kube"))
            .await
            .expect("create pod");
        assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
        assert!(created.metadata.uid.is_some(), "{created:?}");
        pods.create(&PostParams::default(), &pod("kube-b", "kube"))
            .await
            .expect("create second pod");
        pods.create(&PostParams::default(), &pod("other", "other"))
            .await
            .expect("create third pod");

        // Typed errors: Kubernetes' codes and reasons.
        let dup = api_error(
            pods.create(&PostParams::default(), &pod("kube-a", "kube"))
                .await,
        );
        assert_eq!(
            (dup.code, dup.reason.as_str()),
            (409, "AlreadyExists"),
            "{dup:?}"
        );
        let missing = api_error(pods.get("nope").await);
        assert_eq!(
            (missing.code, missing.reason.as_str()),
            (404, "NotFound"),
            "{missing:?}"
        );
        assert!(pods.get_opt("nope").await.expect("get_opt").is_none());

        // List by label, then in pages of one.
        let list = pods
            .list(&ListParams::default().labels("app=kube"))
            .await
            .expect("list");
        let mut names: Vec<_> = list
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        names.sort();
        assert_eq!(names, ["kube-a", "kube-b"]);
        let list_rv = list
            .metadata
            .resource_version
            .clone()
            .expect("a list's resourceVersion");
        let first_page = pods
            .list(&ListParams::default().labels("app=kube").limit(1))
            .await
            .expect("first page");
        assert_eq!(first_page.items.len(), 1);
        let token = first_page
            .metadata
            .continue_
            .clone()
            .expect("a continue token");
        let second_page = pods
            .list(
                &ListParams::default()
                    .labels("app=kube")
                    .limit(1)
                    .continue_token(&token),
            )
            .await
            .expect("second page");
        assert_eq!(second_page.items.len(), 1);
        assert_ne!(
            first_page.items[0].metadata.name,
            second_page.items[0].metadata.name
        );

        // A watch from the list's resourceVersion sees the patches that follow it.
        let mut watch = pods
            .watch(
                &WatchParams::default().labels("app=kube").timeout(60),
                &list_rv,
            )
            .await
            .expect("watch")
            .boxed();
        let patched = pods
            .patch(
                "kube-a",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"tier": "merge"}}})),
            )
            .await
            .expect("merge patch");
        assert_eq!(patched.metadata.labels.as_ref().unwrap()["tier"], "merge");
        let patched = pods
            .patch(
                "kube-b",
                &PatchParams::default(),
                &Patch::Strategic(json!({"metadata": {"annotations": {"kube-rs": "strategic"}}})),
            )
            .await
            .expect("strategic merge patch");
        assert_eq!(
            patched.metadata.annotations.as_ref().unwrap()["kube-rs"],
            "strategic"
        );

        let mut seen = BTreeMap::new();
        while seen.len() < 2 {
            let event = tokio::time::timeout(Duration::from_secs(30), watch.try_next())
                .await
                .expect("a watch event within 30 s")
                .expect("watch stream")
                .expect("watch not ended");
            match event {
                WatchEvent::Modified(p) => {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let tier = p.metadata.labels.unwrap_or_default().remove("tier");
                    let note = p.metadata.annotations.unwrap_or_default().remove("kube-rs");
                    if tier.is_some() || note.is_some() {
                        seen.insert(name, tier.or(note).unwrap_or_default());
                    }
                }
                WatchEvent::Bookmark(_) | WatchEvent::Added(_) => {}
                other => panic!("unexpected watch event {other:?}"),
            }
        }
        assert_eq!(seen["kube-a"], "merge");
        assert_eq!(seen["kube-b"], "strategic");

        // Delete: the watch sees it go.
        pods.delete("kube-a", &DeleteParams::default().grace_period(0))
            .await
            .expect("delete");
        let deleted = loop {
            let event = tokio::time::timeout(Duration::from_secs(60), watch.try_next())
                .await
                .expect("a Deleted event within 60 s")
                .expect("watch stream")
                .expect("watch not ended");
            if let WatchEvent::Deleted(p) = event {
                break p;
            }
        };
        assert_eq!(deleted.metadata.name.as_deref(), Some("kube-a"));

        // A Deployment, awaited with kube's own condition and scaled through its subresource.
        let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
        let selector = labels(&[("app", "kube-web")]);
        let deployment = Deployment {
            metadata: ObjectMeta {
                name: Some("kube-web".into()),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                selector: LabelSelector {
                    match_labels: Some(selector.clone()),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(selector),
                        ..Default::default()
                    }),
                    spec: Some(sleeper_spec()),
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        deployments
            .create(&PostParams::default(), &deployment)
            .await
            .expect("create deployment");
        let done = tokio::time::timeout(
            Duration::from_secs(120),
            await_condition(
                deployments.clone(),
                "kube-web",
                conditions::is_deployment_completed(),
            ),
        )
        .await
        .expect("the deployment completes within 120 s")
        .expect("await_condition")
        .expect("the deployment exists");
        assert_eq!(done.status.and_then(|s| s.ready_replicas), Some(1));

        let scale = deployments
            .patch_scale(
                "kube-web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 2}})),
            )
            .await
            .expect("patch scale");
        assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
        tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                let d = deployments.get_status("kube-web").await.expect("status");
                if d.status.and_then(|s| s.ready_replicas) == Some(2) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
        .await
        .expect("two ready replicas within 120 s");
        let scale = deployments.get_scale("kube-web").await.expect("get scale");
        assert_eq!(scale.status.map(|s| s.replicas), Some(2));
        let running = pods
            .list(&ListParams::default().labels("app=kube-web"))
            .await
            .expect("list the deployment's pods");
        assert_eq!(running.items.len(), 2, "{:?}", running.items);
    });
}

#[test]
fn kube_rs_watcher_carries_on_after_the_server_restarts() {
    let mut c = Cluster::start();
    let rt = runtime();
    let (client, pods) = rt.block_on(async {
        let client = client(&c).await;
        let pods: Api<Pod> = Api::default_namespaced(client.clone());
        (client, pods)
    });
    // kube's watcher (list, then watch; on a broken stream it watches again from the last
    // resourceVersion it saw, or lists again on 410 Gone) feeding a channel.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watched = pods.clone();
    rt.spawn(async move {
        let mut stream = watcher(watched, watcher::Config::default().labels("app=resume")).boxed();
        while let Some(event) = stream.next().await {
            let name = match event {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p.metadata.name,
                _ => None,
            };
            if let Some(name) = name
                && tx.send(name).is_err()
            {
                break;
            }
        }
    });
    let wait_name = |rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, want: &str| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), async {
                while let Some(name) = rx.recv().await {
                    if name == want {
                        return;
                    }
                }
                panic!("the watcher ended");
            })
            .await
            .unwrap_or_else(|_| panic!("the watcher did not report {want} within 60 s"))
        })
    };

    let before = rt
        .block_on(pods.create(&PostParams::default(), &pod("before", "resume")))
        .expect("create before the restart");
    let rv_before = before
        .metadata
        .resource_version
        .expect("a created pod's resourceVersion");
    wait_name(&mut rx, "before");

    c.restart_server();

    // The same client (its connection broken by the restart) and the same watcher go on.
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match pods
                    .create(&PostParams::default(), &pod("after", "resume"))
                    .await
                {
                    Ok(_) => break,
                    Err(kube::Error::Api(e)) if e.code == 409 => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        })
        .await
        .expect("the restarted server takes a create within 60 s")
    });
    wait_name(&mut rx, "after");

    // A watch resumed by hand from the resourceVersion read before the restart: the events
    // that followed it, or (as Kubernetes' watch cache after a restart) 410 Expired, which
    // tells a client to list again; never an event at or before that version.
    rt.block_on(async {
        let mut watch = pods
            .watch(
                &WatchParams::default().labels("app=resume").timeout(30),
                &rv_before,
            )
            .await
            .expect("watch from a resourceVersion")
            .boxed();
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), watch.try_next())
                .await
                .expect("an event within 30 s")
                .expect("watch stream")
                .expect("watch not ended");
            match event {
                WatchEvent::Added(p) if p.metadata.name.as_deref() == Some("after") => break,
                WatchEvent::Error(e) => {
                    assert_eq!((e.code, e.reason.as_str()), (410, "Expired"), "{e:?}");
                    break;
                }
                // The scheduler's status writes to "before" came after it: fine.
                WatchEvent::Modified(_) | WatchEvent::Bookmark(_) => {}
                other => panic!("an event at or before {rv_before}: {other:?}"),
            }
        }
    });
    drop(client);
    rt.shutdown_timeout(Duration::from_secs(1));
}
