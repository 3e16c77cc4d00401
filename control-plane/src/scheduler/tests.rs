//! The scheduler over the real embedded store: placements, assumed binds, lost races,
//! preemption and what a waiting pod is told. Passes are driven by hand (no timers): the store is
//! read back into the scheduler with [`Harness::resync`], as its watch would deliver it.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use bytes::Bytes;
use skiff_api::v1::*;

use super::cache::ZONE_LABEL;
use super::*;
use crate::registry::key;
use crate::store::embedded::{EmbeddedOptions, EmbeddedStore};

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    nodes: Registry<Node>,
    pods: Registry<Pod>,
    scheduler: Scheduler,
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(&dir.path().join("store.redb"), EmbeddedOptions::default())
                .unwrap(),
        );
        let namespaces = Registry::<Namespace>::new(store.clone());
        namespaces
            .create(
                &Identity::Admin,
                Namespace {
                    metadata: Some(ObjectMeta {
                        name: "default".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        Self {
            nodes: Registry::new(store.clone()),
            pods: Registry::new(store.clone()),
            scheduler: Scheduler::new(store.clone()),
            store,
            _dir: dir,
        }
    }

    async fn node(&self, name: &str, cpu: &str, zone: Option<&str>) {
        let node = super::cache::tests::node(name, cpu, "8Gi", zone);
        self.nodes.create(&Identity::Admin, node).await.unwrap();
    }

    async fn pod(&self, p: Pod) -> Pod {
        self.pods.create(&Identity::Admin, p).await.unwrap()
    }

    async fn get(&self, name: &str) -> Option<Pod> {
        self.pods.get("default", name).await.ok()
    }

    /// Brings the scheduler's cache up to the store, as its watch would.
    async fn resync(&mut self) {
        let mut seen = HashSet::new();
        for prefix in [prefix::<Node>(""), prefix::<Pod>("")] {
            let page = self.store.list(&prefix, None, 0).await.unwrap();
            for kv in &page.items {
                seen.insert(kv.key.clone());
                self.scheduler.apply(EventKind::Put, kv);
            }
        }
        let gone: Vec<String> = self
            .scheduler
            .cache
            .pod_keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            let kv = KeyValue {
                key,
                value: Bytes::new(),
                create_revision: 0,
                mod_revision: 0,
            };
            self.scheduler.apply(EventKind::Delete, &kv);
        }
    }

    /// One scheduling pass over what the store holds, waiting for its binds.
    async fn pass(&mut self) {
        self.resync().await;
        self.scheduler.schedule_pending().await;
        self.scheduler.drain_binds().await;
    }

    async fn placement(&self) -> BTreeMap<String, usize> {
        let (pods, _) = self.pods.list(&Default::default()).await.unwrap();
        let mut per_node = BTreeMap::new();
        for p in pods {
            let node = p.spec.unwrap().node_name;
            *per_node.entry(node).or_default() += 1;
        }
        per_node
    }

    async fn events(&self, reason: &str) -> Vec<Event> {
        let (events, _) = Registry::<Event>::new(self.store.clone())
            .list(&Default::default())
            .await
            .unwrap();
        events.into_iter().filter(|e| e.reason == reason).collect()
    }
}

fn pod(name: &str, cpu: &str, app: &str) -> Pod {
    let mut res = ResourceRequirements::default();
    res.requests.insert("cpu".into(), cpu.into());
    res.requests.insert("memory".into(), "64Mi".into());
    Pod {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: "default".into(),
            labels: [("app".to_string(), app.to_string())].into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            runtime_class_name: "wasm".into(),
            containers: vec![Container {
                name: "app".into(),
                image: "file:/srv/app.wasm".into(),
                resources: Some(res),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

fn counts(placement: &BTreeMap<String, usize>) -> Vec<usize> {
    placement.values().copied().collect()
}

#[tokio::test]
async fn three_replicas_spread_over_three_empty_nodes() {
    let mut h = Harness::new().await;
    for n in ["n1", "n2", "n3"] {
        h.node(n, "32", None).await;
    }
    for i in 0..3 {
        h.pod(pod(&format!("web-{i}"), "100m", "web")).await;
    }
    h.pass().await;
    let placement = h.placement().await;
    assert_eq!(placement.keys().collect::<Vec<_>>(), ["n1", "n2", "n3"]);
    assert_eq!(counts(&placement), [1, 1, 1]);
}

#[tokio::test]
async fn nine_replicas_go_three_per_node() {
    let mut h = Harness::new().await;
    for n in ["n1", "n2", "n3"] {
        h.node(n, "32", None).await;
    }
    for i in 0..9 {
        h.pod(pod(&format!("web-{i}"), "100m", "web")).await;
    }
    h.pass().await;
    let placement = h.placement().await;
    assert_eq!(placement.get(""), None, "{placement:?}");
    assert_eq!(counts(&placement), [3, 3, 3], "{placement:?}");
}

#[tokio::test]
async fn replicas_spread_over_zones_before_nodes() {
    let mut h = Harness::new().await;
    h.node("a1", "32", Some("a")).await;
    h.node("a2", "32", Some("a")).await;
    h.node("b1", "32", Some("b")).await;
    for i in 0..4 {
        h.pod(pod(&format!("web-{i}"), "100m", "web")).await;
    }
    h.pass().await;
    let placement = h.placement().await;
    let zone_a = placement.get("a1").unwrap_or(&0) + placement.get("a2").unwrap_or(&0);
    let zone_b = *placement.get("b1").unwrap_or(&0);
    assert_eq!((zone_a, zone_b), (2, 2), "{placement:?}");
    // Pods of another owner are counted apart: the first goes to the first node again.
    h.pod(pod("db-0", "100m", "db")).await;
    h.pass().await;
    let db = h.get("db-0").await.unwrap();
    assert!(!db.spec.unwrap().node_name.is_empty());
}

#[tokio::test]
async fn an_assumed_pod_counts_before_its_bind_lands() {
    let mut h = Harness::new().await;
    h.node("n1", "1", None).await;
    h.pod(pod("a", "600m", "web")).await;
    h.pod(pod("b", "600m", "web")).await;
    h.pass().await;
    let placement = h.placement().await;
    assert_eq!(placement.get("n1"), Some(&1), "{placement:?}");
    assert_eq!(placement.get(""), Some(&1), "{placement:?}");
    let waiting = if h.get("a").await.unwrap().spec.unwrap().node_name.is_empty() {
        "a"
    } else {
        "b"
    };
    let status = h.get(waiting).await.unwrap().status.unwrap();
    let scheduled = status
        .conditions
        .iter()
        .find(|c| c.r#type == "PodScheduled")
        .unwrap();
    assert_eq!(scheduled.status, "False");
    assert_eq!(
        scheduled.message,
        "0/1 nodes are available: 1 Insufficient cpu."
    );
    assert_eq!(h.events("FailedScheduling").await.len(), 1);
}

#[tokio::test]
async fn a_lost_bind_is_forgotten_and_retried_on_the_new_version() {
    let mut h = Harness::new().await;
    h.node("n1", "1", None).await;
    let created = h.pod(pod("a", "600m", "web")).await;
    h.resync().await;
    // Someone changes the pod after the scheduler read it: its bind's compare-and-swap fails.
    let mut changed = created.clone();
    changed
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .insert("tier".into(), "front".into());
    h.pods.update(&Identity::Admin, changed).await.unwrap();
    h.scheduler.schedule_pending().await;
    assert!(h.scheduler.cache.is_assumed(&key::<Pod>("default", "a")));
    assert_eq!(
        h.scheduler.cache.node("n1").unwrap().requested.cpu_millis,
        600
    );
    h.scheduler.drain_binds().await;
    assert!(!h.scheduler.cache.is_assumed(&key::<Pod>("default", "a")));
    assert_eq!(
        h.scheduler.cache.node("n1").unwrap().requested.cpu_millis,
        0,
        "the lost bind no longer holds room"
    );
    assert!(h.get("a").await.unwrap().spec.unwrap().node_name.is_empty());
    // The stale version is not retried...
    h.scheduler.schedule_pending().await;
    assert_eq!(h.scheduler.binds.len(), 0);
    // ...the new one is.
    h.pass().await;
    let bound = h.get("a").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name, "n1");
    assert_eq!(bound.metadata.unwrap().labels.get("tier").unwrap(), "front");
}

#[tokio::test]
async fn readiness_is_the_ready_condition() {
    // A heartbeat stamped an hour ago by the agent's clock does not keep pods off a Ready node
    // (the lifecycle controller judges heartbeats, by the server's clock); Ready=Unknown does.
    for (status, bound) in [("True", true), ("Unknown", false)] {
        let mut h = Harness::new().await;
        h.node("n1", "4", None).await;
        let mut node = h.nodes.get("", "n1").await.unwrap();
        let mut stale = skiff_api::time::now();
        stale.seconds -= 3600;
        let ready = &mut node.status.as_mut().unwrap().conditions[0];
        ready.last_heartbeat_time = Some(stale);
        ready.status = status.into();
        h.nodes.update_status(&Identity::Admin, node).await.unwrap();
        h.pod(pod("a", "100m", "web")).await;
        h.pass().await;
        let a = h.get("a").await.unwrap();
        assert_eq!(
            !a.spec.unwrap().node_name.is_empty(),
            bound,
            "Ready={status}"
        );
        if !bound {
            let status = a.status.unwrap();
            assert!(
                status
                    .conditions
                    .iter()
                    .any(|c| c.message == "0/1 nodes are available: 1 node(s) were not ready."),
                "{status:?}"
            );
        }
    }
}

#[tokio::test]
async fn host_port_conflicts_keep_a_pod_off_the_node() {
    let mut h = Harness::new().await;
    h.node("n1", "4", None).await;
    let with_port = |name: &str| {
        let mut p = pod(name, "100m", name);
        p.spec.as_mut().unwrap().containers[0]
            .ports
            .push(ContainerPort {
                container_port: 8080,
                host_port: 80,
                ..Default::default()
            });
        p
    };
    // Validation refuses hostPort now (no node forwards it), but pods stored before that
    // still hold their ports: written to the store directly. Their status stays writable
    // (validation is ratcheted), so the scheduler's condition and event are recorded.
    for name in ["a", "b"] {
        let mut p = with_port(name);
        let meta = p.metadata.as_mut().unwrap();
        meta.uid = format!("uid-{name}");
        meta.creation_timestamp = Some(skiff_api::time::now());
        let bytes = Bytes::from(prost::Message::encode_to_vec(&p));
        h.store
            .create(&key::<Pod>("default", name), bytes)
            .await
            .unwrap();
    }
    h.pass().await;
    assert_eq!(h.placement().await.get("n1"), Some(&1));
    let failed = h.events("FailedScheduling").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].message,
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
    );
}

#[tokio::test]
async fn required_affinity_is_enforced() {
    let mut h = Harness::new().await;
    h.node("a1", "4", Some("a")).await;
    h.node("b1", "4", Some("b")).await;
    let mut p = pod("pinned", "100m", "web");
    p.spec.as_mut().unwrap().affinity = Some(Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: vec![NodeSelectorRequirement {
                        key: ZONE_LABEL.into(),
                        operator: "In".into(),
                        values: vec!["b".into()],
                    }],
                    ..Default::default()
                }],
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    h.pod(p).await;
    h.pass().await;
    assert_eq!(h.get("pinned").await.unwrap().spec.unwrap().node_name, "b1");
}

#[tokio::test]
async fn preemption_evicts_lower_priority_pods_and_binds_after() {
    let mut h = Harness::new().await;
    h.node("n1", "1", None).await;
    let mut low = pod("low", "1", "batch");
    low.spec.as_mut().unwrap().priority = Some(1);
    h.pod(low).await;
    h.pass().await;
    assert_eq!(h.get("low").await.unwrap().spec.unwrap().node_name, "n1");

    // A higher-priority pod preempts it.
    let mut high = pod("high", "1", "web");
    high.spec.as_mut().unwrap().priority = Some(1000);
    h.pod(high).await;
    h.pass().await;
    let victim = h.get("low").await.unwrap();
    assert!(
        victim
            .metadata
            .as_ref()
            .unwrap()
            .deletion_timestamp
            .is_some(),
        "the victim is deleted gracefully"
    );
    let preempted = h.events("Preempted").await;
    assert_eq!(preempted.len(), 1);
    assert_eq!(preempted[0].message, "Preempted by default/high on node n1");
    let high = h.get("high").await.unwrap();
    assert!(high.spec.as_ref().unwrap().node_name.is_empty());
    assert_eq!(high.status.as_ref().unwrap().nominated_node_name, "n1");

    // While the victim terminates, nothing more is evicted and the pod waits.
    h.pass().await;
    assert_eq!(h.events("Preempted").await.len(), 1);
    assert!(
        h.get("high")
            .await
            .unwrap()
            .spec
            .unwrap()
            .node_name
            .is_empty()
    );

    // A lower-priority newcomer neither takes the freed room nor preempts the preemptor.
    let mut late = pod("late", "1", "late");
    late.spec.as_mut().unwrap().priority = Some(0);
    h.pod(late).await;

    // The node's agent finishes the victim: the preemptor binds, the newcomer waits.
    // (Its finished status completes the graceful deletion the preemption began.)
    let mut low = h.get("low").await.unwrap();
    low.status.as_mut().unwrap().phase = "Succeeded".into();
    h.pods.update_status(&Identity::Admin, low).await.unwrap();
    assert!(h.get("low").await.is_none());
    h.pass().await;
    let high = h.get("high").await.unwrap();
    assert_eq!(high.spec.unwrap().node_name, "n1");
    assert!(high.status.unwrap().nominated_node_name.is_empty());
    assert!(
        h.get("late")
            .await
            .unwrap()
            .spec
            .unwrap()
            .node_name
            .is_empty()
    );
    assert_eq!(
        h.events("Preempted").await.len(),
        1,
        "late cannot preempt high"
    );
}

#[tokio::test]
async fn equal_priority_never_preempts() {
    let mut h = Harness::new().await;
    h.node("n1", "1", None).await;
    h.pod(pod("first", "1", "a")).await;
    h.pass().await;
    h.pod(pod("second", "1", "b")).await;
    h.pass().await;
    assert!(h.events("Preempted").await.is_empty());
    let first = h.get("first").await.unwrap();
    assert!(first.metadata.unwrap().deletion_timestamp.is_none());
}

#[tokio::test]
async fn a_bound_pod_gets_a_scheduled_event() {
    let mut h = Harness::new().await;
    h.node("n1", "1", None).await;
    h.pod(pod("a", "100m", "web")).await;
    h.pass().await;
    assert_eq!(h.get("a").await.unwrap().spec.unwrap().node_name, "n1");
    // Written off the bind path: wait for the writer.
    let mut scheduled = Vec::new();
    for _ in 0..100 {
        scheduled = h.events("Scheduled").await;
        if !scheduled.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(scheduled.len(), 1, "one Scheduled event");
    let e = &scheduled[0];
    assert_eq!(e.message, "Successfully assigned default/a to n1");
    assert_eq!(e.r#type, "Normal");
    assert_eq!(e.source.as_ref().unwrap().component, COMPONENT);
    assert_eq!(e.involved_object.as_ref().unwrap().name, "a");
}
