//! `bench/run api`: create/get/list latency and create throughput of pods through a real `skiff
//! server` over TLS gRPC, on the embedded store and then on etcd (one member on loopback, data on
//! the same disk), beside raw etcd puts of the same encoded pods from the same client library at
//! the same concurrency (the ratio is skiff's own overhead on etcd). On etcd twice: with the
//! watch cache (the default) and with `--watch-cache=false` (every read a round trip to etcd).

use std::time::{Duration, Instant};

use skiff_api::client::Api;
use skiff_api::v1::Pod;
use skiff_tests::etcd::EtcdCluster;
use skiff_tests::{Cluster, ClusterOptions};

use crate::objects::pod;
use crate::stats::percentile;

/// Creates pods `par-0` .. `par-{total - 1}` from `workers` tasks sharing `api`'s connection:
/// each create's latency.
async fn concurrent_creates(
    api: &Api<Pod>,
    total: usize,
    workers: usize,
) -> Result<Vec<Duration>, String> {
    let mut tasks = Vec::new();
    for w in 0..workers {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (w..total).step_by(workers) {
                let t = Instant::now();
                api.create(pod(&format!("par-{i}")))
                    .await
                    .map_err(|e| e.to_string())?;
                lat.push(t.elapsed());
            }
            Ok::<_, String>(lat)
        }));
    }
    let mut par = Vec::new();
    for t in tasks {
        par.extend(t.await.map_err(|e| e.to_string())??);
    }
    Ok(par)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Creates per second of 64 concurrent raw etcd puts (transactions creating the key, as the etcd
/// store writes) of `total` encoded pods, through etcd-client.
fn raw_etcd(etcd: &EtcdCluster, total: usize, workers: usize) -> Result<f64, String> {
    use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client = Client::connect(etcd.endpoints(), None)
            .await
            .map_err(|e| e.to_string())?;
        let value = prost::Message::encode_to_vec(&pod("raw"));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..workers {
            let mut kv = client.kv_client();
            let value = value.clone();
            tasks.push(tokio::spawn(async move {
                for i in (w..total).step_by(workers) {
                    let key = format!("/raw/pods/default/par-{i}");
                    let txn = Txn::new()
                        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(key.as_str(), value.clone(), None)]);
                    kv.txn(txn).await.map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        Ok(total as f64 / start.elapsed().as_secs_f64())
    })
}

/// Pods per second of raw etcd doing, per pod, the writes a pod create sets off in a cluster with
/// no node (the bench's): the create, the scheduler's `PodScheduled=False` status update (on the
/// create's revision) and its `FailedScheduling` Event's create — three transactions, one after
/// the other, as the server and its scheduler send them; 64 pods at once.
fn raw_etcd_with_followups(
    etcd: &EtcdCluster,
    total: usize,
    workers: usize,
) -> Result<f64, String> {
    use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client = Client::connect(etcd.endpoints(), None)
            .await
            .map_err(|e| e.to_string())?;
        let value = prost::Message::encode_to_vec(&pod("raw"));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..workers {
            let mut kv = client.kv_client();
            let value = value.clone();
            tasks.push(tokio::spawn(async move {
                for i in (w..total).step_by(workers) {
                    let key = format!("/rawmix/pods/default/par-{i}");
                    let create = Txn::new()
                        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(key.as_str(), value.clone(), None)]);
                    let created = kv.txn(create).await.map_err(|e| e.to_string())?;
                    let rev = created.header().map_or(0, |h| h.revision());
                    let status = Txn::new()
                        .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, rev)])
                        .and_then([TxnOp::put(key.as_str(), value.clone(), None)]);
                    kv.txn(status).await.map_err(|e| e.to_string())?;
                    let event = format!("/rawmix/events/default/par-{i}.1");
                    let txn = Txn::new()
                        .when([Compare::create_revision(
                            event.as_str(),
                            CompareOp::Equal,
                            0,
                        )])
                        .and_then([TxnOp::put(event.as_str(), value.clone(), None)]);
                    kv.txn(txn).await.map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        Ok(total as f64 / start.elapsed().as_secs_f64())
    })
}

pub fn run() -> Result<(), String> {
    let embedded = measure(&Cluster::start(), "embedded store")?;
    let on_etcd_uncached = {
        let etcd = EtcdCluster::start(1);
        let cluster = Cluster::start_with(ClusterOptions {
            server_args: vec![
                "--etcd".into(),
                etcd.endpoints_arg(),
                "--watch-cache=false".into(),
            ],
            ..Default::default()
        });
        measure(&cluster, "etcd, no watch cache")?
    };
    let etcd = EtcdCluster::start(1);
    let cluster = Cluster::start_with(ClusterOptions {
        server_args: vec!["--etcd".into(), etcd.endpoints_arg()],
        ..Default::default()
    });
    let on_etcd = measure(&cluster, "etcd store, watch cache")?;
    drop(cluster);
    let raw = raw_etcd(&etcd, 10_000 - 1200, 64)?;
    println!(
        "{:<44} {:>12.0}",
        "raw etcd creates/s, 64 clients (etcd-client)", raw
    );
    println!(
        "api: create p99 {} and {:.0} creates/s ({:.2}x the 5 ms p99 goal, {:.2}x the 2,000 creates/s goal); on etcd {:.0} creates/s, {:.2}x raw etcd ({:.0}/s; goal 0.5x; {:.0}/s, {:.2}x without the watch cache)",
        ms(embedded.p99),
        embedded.rate,
        embedded.p99.as_secs_f64() / 0.005,
        embedded.rate / 2000.0,
        on_etcd.rate,
        on_etcd.rate / raw,
        raw,
        on_etcd_uncached.rate,
        on_etcd_uncached.rate / raw,
    );
    Ok(())
}

/// The figures the last line compares.
struct Figures {
    p99: Duration,
    rate: f64,
}

fn measure(cluster: &Cluster, store: &str) -> Result<Figures, String> {
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let _guard = rt.enter();
    let api = cluster.api::<Pod>("default");

    rt.block_on(async {
        // Warm up the connection and the store.
        for i in 0..200 {
            api.create(pod(&format!("warm-{i}")))
                .await
                .map_err(|e| e.to_string())?;
        }
        // Sequential creates: one client, one request in flight (latency).
        let mut create = Vec::new();
        for i in 0..1000 {
            let t = Instant::now();
            api.create(pod(&format!("seq-{i}")))
                .await
                .map_err(|e| e.to_string())?;
            create.push(t.elapsed());
        }
        create.sort();
        // Sequential gets.
        let mut get = Vec::new();
        for i in 0..1000 {
            let t = Instant::now();
            api.get(&format!("seq-{i}"))
                .await
                .map_err(|e| e.to_string())?;
            get.push(t.elapsed());
        }
        get.sort();
        // Concurrent creates: 64 clients on one HTTP/2 connection (throughput, group commit).
        let total = 10_000 - 1200;
        let workers = 64;
        let start = Instant::now();
        let mut par = concurrent_creates(&api, total, workers).await?;
        let elapsed = start.elapsed();
        par.sort();
        let rate = total as f64 / elapsed.as_secs_f64();
        // List 10,000 pods.
        let mut list = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let (items, _) = api
                .list(Default::default())
                .await
                .map_err(|e| e.to_string())?;
            list.push(t.elapsed());
            if items.len() != 10_000 {
                return Err(format!("listed {} pods, expected 10000", items.len()));
            }
        }
        list.sort();

        println!(
            "{:<44} {:>12} {:>12}",
            format!("measure (skiff, {store}, TLS gRPC)"),
            "p50",
            "p99"
        );
        println!(
            "{:<44} {:>12} {:>12}",
            "create pod, 1 client",
            ms(percentile(&create, 0.5)),
            ms(percentile(&create, 0.99))
        );
        println!(
            "{:<44} {:>12} {:>12}",
            "get pod, 1 client",
            ms(percentile(&get, 0.5)),
            ms(percentile(&get, 0.99))
        );
        println!(
            "{:<44} {:>12} {:>12}",
            format!("create pod, {workers} clients"),
            ms(percentile(&par, 0.5)),
            ms(percentile(&par, 0.99))
        );
        println!(
            "{:<44} {:>12} {:>12}",
            "list 10,000 pods",
            ms(percentile(&list, 0.5)),
            ms(list[list.len() - 1])
        );
        println!(
            "{:<44} {:>12.0}",
            format!("creates/s, {workers} clients"),
            rate
        );
        println!();
        Ok(Figures {
            p99: percentile(&create, 0.99),
            rate,
        })
    })
}

/// `skiff-bench api-etcd [N]`: the quick loop of the etcd half of `api` — N creates (default
/// 2,000) from 64 concurrent clients through a `skiff server --etcd` with its watch cache, then N
/// raw etcd create transactions at the same concurrency; and, read from etcd's own metrics, the
/// etcd RPCs the server sent per create (during the burst, and once the server has settled: the
/// scheduler's and controllers' writes the creates set off come a little later).
pub fn run_etcd(total: usize) -> Result<(), String> {
    let etcd = EtcdCluster::start(1);
    let cluster = Cluster::start_with(ClusterOptions {
        server_args: vec!["--etcd".into(), etcd.endpoints_arg()],
        ..Default::default()
    });
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let _guard = rt.enter();
    let api = cluster.api::<Pod>("default");
    let workers = 64;
    let (rate, p50, p99, during, settled) = rt.block_on(async {
        for i in 0..200 {
            api.create(pod(&format!("warm-{i}")))
                .await
                .map_err(|e| e.to_string())?;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before = etcd.rpcs();
        let start = Instant::now();
        let mut par = concurrent_creates(&api, total, workers).await?;
        let elapsed = start.elapsed();
        let during = etcd.rpcs();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let settled = etcd.rpcs();
        par.sort();
        Ok::<_, String>((
            total as f64 / elapsed.as_secs_f64(),
            percentile(&par, 0.5),
            percentile(&par, 0.99),
            per_create(&before, &during, total),
            per_create(&before, &settled, total),
        ))
    })?;
    drop(cluster);
    let raw = raw_etcd(&etcd, total, workers)?;
    let mix = raw_etcd_with_followups(&etcd, total, workers)?;
    println!(
        "api-etcd ({total} creates, {workers} clients, skiff on a one-member etcd, watch cache)"
    );
    println!("  create p50 / p99        {} / {}", ms(p50), ms(p99));
    println!("  etcd RPCs per create, during the burst: {during}");
    println!("  etcd RPCs per create, settled 5 s later: {settled}");
    println!("  raw etcd, a pod's 3 writes (create, status update, event): {mix:.0} pods/s");
    println!(
        "api-etcd: {rate:.0} creates/s on etcd, {:.2}x raw etcd ({raw:.0}/s; goal 0.5x; {:.2}x raw etcd doing a pod's 3 writes, {mix:.0}/s)",
        rate / raw,
        rate / mix
    );
    Ok(())
}

/// `Txn 1.00, Range 0.12, ...`: the messages etcd received between two readings, per create.
fn per_create(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    creates: usize,
) -> String {
    let mut rows: Vec<(String, f64)> = after
        .iter()
        .map(|(m, n)| {
            let d = n.saturating_sub(before.get(m).copied().unwrap_or(0));
            (m.clone(), d as f64 / creates as f64)
        })
        .filter(|(_, d)| *d > 0.0)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    rows.iter()
        .map(|(m, d)| format!("{m} {d:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}
