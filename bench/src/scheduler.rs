//! `bench/run scheduler`: how fast a real `skiff server` binds pods to many nodes.
//!
//! For 1,000 and then 5,000 nodes (a fresh server each): register the nodes through the API (64
//! concurrent creators; 32 cpu, 128Gi, 110 pods, runtime `wasm`, Ready, spread over 3 zones) and
//! start their heartbeats as agents send them ([`crate::heartbeats`]: each node's Lease renewed
//! and its Node read every 10 s, spread over the period); after 20 s of heartbeats, open a watch
//! on pods, then create 10,000 Wasm pods (100m, 64Mi, 4 owners) with 64 concurrent creators. Per
//! pod, the latency is create acknowledged → first watch event with `spec.nodeName` set; the rate
//! is pods over first create → last bind (the table also gives first create → last create
//! acknowledged, to tell a slow create path from a slow scheduler). The 5,000 nodes go on heartbeating until 2 minutes have
//! passed, and must all still be Ready then (the lifecycle controller judged them by their
//! Leases). No agents run: nothing starts, so only the control plane is measured.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use skiff_api::v1::{
    Condition, Container, Lease, Node, NodeRuntimeHandler, NodeSpec, NodeStatus, ObjectMeta, Pod,
    PodSpec, ResourceRequirements,
};
use skiff_tests::Cluster;
use tokio_stream::StreamExt;

const PODS: usize = 10_000;
const CREATORS: usize = 64;
const ZONES: usize = 3;
const OWNERS: usize = 4;

/// How often each node renews its Lease (the agent's default).
const HEARTBEAT_PERIOD: Duration = Duration::from_secs(10);
/// Heartbeats run this long before the pods are created.
const HEARTBEAT_WARMUP: Duration = Duration::from_secs(20);

/// kube-scheduler's scheduler_perf regression threshold for SchedulingBasic/5000Nodes_10000Pods
/// (test/integration/scheduler_perf/misc/performance-config.yaml, `threshold: 270`): the
/// SchedulingThroughput average its CI job must reach — a floor, not a measured figure.
const ANCHOR_PODS_PER_S: f64 = 270.0;

fn node(i: usize) -> Node {
    let mut status = NodeStatus {
        conditions: vec![Condition {
            r#type: "Ready".into(),
            status: "True".into(),
            reason: "KubeletReady".into(),
            last_heartbeat_time: None,
            ..Default::default()
        }],
        runtime_handlers: vec![NodeRuntimeHandler {
            name: "wasm".into(),
        }],
        ..Default::default()
    };
    for (k, v) in [("cpu", "32"), ("memory", "128Gi"), ("pods", "110")] {
        status.allocatable.insert(k.to_string(), v.to_string());
        status.capacity.insert(k.to_string(), v.to_string());
    }
    Node {
        metadata: Some(ObjectMeta {
            name: format!("node-{i:05}"),
            labels: [
                (
                    "topology.kubernetes.io/zone".to_string(),
                    format!("zone-{}", i % ZONES),
                ),
                ("kubernetes.io/hostname".to_string(), format!("node-{i:05}")),
            ]
            .into(),
            ..Default::default()
        }),
        spec: Some(NodeSpec::default()),
        status: Some(status),
    }
}

fn pod(i: usize) -> Pod {
    let mut resources = ResourceRequirements::default();
    resources.requests.insert("cpu".into(), "100m".into());
    resources.requests.insert("memory".into(), "64Mi".into());
    Pod {
        metadata: Some(ObjectMeta {
            name: format!("pod-{i:05}"),
            labels: [("app".to_string(), format!("app-{}", i % OWNERS))].into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            runtime_class_name: "wasm".into(),
            containers: vec![Container {
                name: "app".into(),
                image: "file:/srv/app.wasm".into(),
                resources: Some(resources),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Where the server keeps the cluster.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Embedded,
    /// A one-member etcd on loopback, the server reading through its watch cache.
    Etcd,
    /// The same with `--watch-cache=false`: every read a round trip to etcd.
    EtcdUncached,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Etcd => "etcd",
            Self::EtcdUncached => "etcd-nc",
        }
    }
}

struct Row {
    /// [`Backend::name`].
    store: &'static str,
    nodes: usize,
    rate: f64,
    /// First create → last create acknowledged, and → last bind seen.
    created: Duration,
    bound: Duration,
    p50: Duration,
    p99: Duration,
    heartbeats: crate::heartbeats::Report,
    /// How long the nodes heartbeat, and how many were Ready at the end.
    heartbeating: Duration,
    ready: usize,
}

/// Nodes whose Ready condition is True.
async fn ready_nodes(api: &skiff_api::client::Api<Node>) -> Result<usize, String> {
    let (nodes, _) = api
        .list_paged(Default::default(), 500)
        .await
        .map_err(|e| format!("list nodes: {e}"))?;
    Ok(nodes
        .iter()
        .filter(|n| {
            n.status
                .iter()
                .flat_map(|s| &s.conditions)
                .any(|c| c.r#type == "Ready" && c.status == "True")
        })
        .count())
}

/// Binds 10,000 pods on `nodes` heartbeating nodes, which go on heartbeating for `hold` in all;
/// on `backend`.
fn measure(nodes: usize, hold: Duration, backend: Backend) -> Result<Row, String> {
    let etcd = (backend != Backend::Embedded).then(|| skiff_tests::etcd::EtcdCluster::start(1));
    let mut server_args: Vec<String> = etcd
        .iter()
        .flat_map(|e| ["--etcd".to_string(), e.endpoints_arg()])
        .collect();
    if backend == Backend::EtcdUncached {
        server_args.push("--watch-cache=false".into());
    }
    let cluster = Cluster::start_with(skiff_tests::ClusterOptions {
        server_args,
        ..Default::default()
    });
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let _guard = rt.enter();
    let node_api = cluster.api::<Node>("");
    let pod_api = cluster.api::<Pod>("default");
    rt.block_on(async {
        // Register the nodes.
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..CREATORS {
            let api = node_api.clone();
            tasks.push(tokio::spawn(async move {
                for i in (w..nodes).step_by(CREATORS) {
                    api.create(node(i))
                        .await
                        .map_err(|e| format!("node {i}: {e}"))?;
                }
                Ok::<_, String>(())
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        eprintln!(
            "{nodes} nodes registered in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let heartbeats_started = Instant::now();
        let heartbeats = crate::heartbeats::Heartbeats::start(
            cluster.api::<Lease>("kube-node-lease"),
            node_api.clone(),
            (0..nodes)
                .map(|i| node(i).metadata.unwrap_or_default().name)
                .collect(),
            HEARTBEAT_PERIOD,
        )
        .await?;
        // Let the scheduler's watch catch up with the nodes, and the heartbeats settle.
        tokio::time::sleep(HEARTBEAT_WARMUP).await;

        // Watch first, so that no bind is missed.
        let mut watch = pod_api
            .watch(Default::default(), "")
            .await
            .map_err(|e| format!("watch: {e}"))?;
        let watcher = tokio::spawn(async move {
            let mut bound: HashMap<String, Instant> = HashMap::with_capacity(PODS);
            while bound.len() < PODS {
                let Some(event) = watch.next().await else {
                    return Err(format!("watch ended after {} binds", bound.len()));
                };
                let event = event.map_err(|e| format!("watch: {e}"))?;
                let pod = event.object;
                let on_node = pod.spec.as_ref().is_some_and(|s| !s.node_name.is_empty());
                if on_node {
                    let name = pod.metadata.map(|m| m.name).unwrap_or_default();
                    bound.entry(name).or_insert_with(Instant::now);
                }
            }
            Ok::<_, String>(bound)
        });

        let first_create = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..CREATORS {
            let api = pod_api.clone();
            tasks.push(tokio::spawn(async move {
                let mut acks = Vec::new();
                for i in (w..PODS).step_by(CREATORS) {
                    let created = api
                        .create(pod(i))
                        .await
                        .map_err(|e| format!("pod {i}: {e}"))?;
                    let name = created.metadata.map(|m| m.name).unwrap_or_default();
                    acks.push((name, Instant::now()));
                }
                Ok::<_, String>(acks)
            }));
        }
        let mut acks = Vec::with_capacity(PODS);
        for t in tasks {
            acks.extend(t.await.map_err(|e| e.to_string())??);
        }
        let bound = tokio::time::timeout(Duration::from_secs(600), watcher)
            .await
            .map_err(|_| "not every pod was bound within 10 minutes".to_string())?
            .map_err(|e| e.to_string())??;
        let last_ack = acks.iter().map(|(_, at)| *at).max().unwrap_or(first_create);
        let last_bind = bound.values().max().copied().unwrap_or(first_create);
        let rate = PODS as f64 / last_bind.duration_since(first_create).as_secs_f64();
        // A bind can even land before the create's answer reaches the client: that counts 0.
        let mut latency: Vec<Duration> = acks
            .iter()
            .filter_map(|(name, ack)| bound.get(name).map(|b| b.saturating_duration_since(*ack)))
            .collect();
        if latency.len() != PODS {
            return Err(format!("{} of {PODS} pods were seen bound", latency.len()));
        }
        latency.sort();
        tokio::time::sleep(hold.saturating_sub(heartbeats_started.elapsed())).await;
        let ready = ready_nodes(&node_api).await?;
        let heartbeating = heartbeats_started.elapsed();
        let heartbeats = heartbeats.stop().await?;
        Ok(Row {
            store: backend.name(),
            nodes,
            rate,
            created: last_ack.duration_since(first_create),
            bound: last_bind.duration_since(first_create),
            p50: percentile(&latency, 0.5),
            p99: percentile(&latency, 0.99),
            heartbeats,
            heartbeating,
            ready,
        })
    })
}

pub fn run() -> Result<(), String> {
    let mut rows = Vec::new();
    for (nodes, hold, backend) in [
        (1000, Duration::ZERO, Backend::Embedded),
        (5000, Duration::from_secs(120), Backend::Embedded),
        (1000, Duration::ZERO, Backend::Etcd),
    ] {
        rows.push(measure(nodes, hold, backend)?);
    }
    report(&rows)?;
    let on_etcd = rows
        .iter()
        .find(|r| r.store == "etcd")
        .map_or(0.0, |r| r.rate);
    let at_1000 = rows
        .iter()
        .find(|r| r.nodes == 1000 && r.store == "embedded")
        .map_or(0.0, |r| r.rate);
    println!(
        "scheduler on etcd: {on_etcd:.0} pods/s with 1,000 nodes ({:.2}x the embedded store's {at_1000:.0})",
        on_etcd / at_1000.max(1.0)
    );
    let at_5000 = rows
        .iter()
        .find(|r| r.nodes == 5000)
        .map_or(0.0, |r| r.rate);
    println!(
        "scheduler: {:.0} pods/s with 5,000 nodes heartbeating ({:.2}x vs kube-scheduler scheduler_perf SchedulingBasic/5000Nodes_10000Pods CI threshold of {:.0} pods/s; {:.2}x the 2,000 pods/s goal)",
        at_5000,
        at_5000 / ANCHOR_PODS_PER_S,
        ANCHOR_PODS_PER_S,
        at_5000 / 2000.0
    );
    Ok(())
}

/// Prints the rows' tables; an error when a node did not stay Ready.
fn report(rows: &[Row]) -> Result<(), String> {
    println!(
        "{:>9} {:>6} {:>7} {:>10} {:>12} {:>12} {:>12} {:>12}",
        "store", "nodes", "pods", "pods/s", "p50", "p99", "created in", "bound in"
    );
    for r in rows {
        println!(
            "{:>9} {:>6} {:>7} {:>10.0} {:>12} {:>12} {:>11.2}s {:>11.2}s",
            r.store,
            r.nodes,
            PODS,
            r.rate,
            ms(r.p50),
            ms(r.p99),
            r.created.as_secs_f64(),
            r.bound.as_secs_f64()
        );
    }
    println!();
    println!(
        "{:>6} {:>12} {:>10} {:>9} {:>12} {:>12} {:>10} {:>8}",
        "nodes", "heartbeats", "for", "failed", "renew p50", "renew p99", "max gap", "ready"
    );
    for r in rows {
        let h = &r.heartbeats;
        println!(
            "{:>6} {:>12} {:>9.0}s {:>9} {:>12} {:>12} {:>9.1}s {:>8}",
            r.nodes,
            h.renewals,
            r.heartbeating.as_secs_f64(),
            h.failures,
            ms(percentile(&h.latency, 0.5)),
            ms(percentile(&h.latency, 0.99)),
            h.max_gap.as_secs_f64(),
            r.ready
        );
        if r.ready != r.nodes || h.failures > 0 {
            return Err(format!(
                "{} nodes: {} Ready after {:.0} s of heartbeats, {} heartbeats failed",
                r.nodes,
                r.ready,
                r.heartbeating.as_secs_f64(),
                h.failures
            ));
        }
    }
    Ok(())
}

/// `skiff-bench scheduler-etcd`: 1,000 nodes on the embedded store, on etcd through the watch
/// cache and on etcd without it (`--watch-cache=false`).
pub fn run_etcd() -> Result<(), String> {
    let mut rows = Vec::new();
    for backend in [Backend::Embedded, Backend::Etcd, Backend::EtcdUncached] {
        rows.push(measure(1000, Duration::ZERO, backend)?);
    }
    report(&rows)?;
    let rate = |name: &str| {
        rows.iter()
            .find(|r| r.store == name)
            .map_or(0.0, |r| r.rate)
    };
    let (embedded, cached, uncached) = (rate("embedded"), rate("etcd"), rate("etcd-nc"));
    println!(
        "scheduler on etcd: {cached:.0} pods/s with 1,000 nodes ({:.2}x the embedded store's {embedded:.0}; {uncached:.0} pods/s, {:.2}x, without the watch cache)",
        cached / embedded.max(1.0),
        uncached / embedded.max(1.0)
    );
    Ok(())
}
