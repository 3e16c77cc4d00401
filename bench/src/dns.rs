//! `bench/run dns`: the node's cluster DNS server (the agent's, on its bridge address) under a
//! steady 1,000 queries/s (latency p50/p99, open loop: a query every millisecond whatever the
//! answers do) and at its most (closed loop, 32 queries in flight), for a Service name (answered
//! from the catalog) and a name outside the cluster (forwarded once, then from the cache);
//! side by side with the anchor, a bare hickory server answering one name from a map (the
//! resolver the agent forwards to, started by the bench on loopback), which is the least a
//! hickory-based server can cost. No query leaves the machine.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use skiff_tests::Cluster;
use skiff_tests::dns::Upstream;

use crate::stats::{fmt, percentile};

/// The open-loop rate and how long it runs.
const RATE: u32 = 1_000;
const STEADY: Duration = Duration::from_secs(5);
/// Closed loop: queries in flight, and how long.
const IN_FLIGHT: usize = 32;
const FLOOD: Duration = Duration::from_secs(3);

fn query(id: u16, name: &Name) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name.clone(), RecordType::A));
    m.to_vec().unwrap_or_default()
}

/// The latencies of `RATE` queries a second for `STEADY` to `server`, and how many went
/// unanswered (or wrong).
async fn steady(server: SocketAddr, name: &Name) -> Result<(Vec<Duration>, usize), String> {
    let socket = Arc::new(
        tokio::net::UdpSocket::bind("0.0.0.0:0")
            .await
            .map_err(|e| e.to_string())?,
    );
    socket.connect(server).await.map_err(|e| e.to_string())?;
    let sent: Arc<Mutex<HashMap<u16, Instant>>> = Arc::default();
    let total = RATE * STEADY.as_secs() as u32;
    let receiver = {
        let (socket, sent) = (socket.clone(), sent.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut buf = [0u8; 1500];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf)).await
            {
                let Ok(m) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let at = sent.lock().map(|mut s| s.remove(&m.id())).ok().flatten();
                if let Some(at) = at
                    && !m.answers().is_empty()
                {
                    latencies.push(at.elapsed());
                }
            }
            latencies
        })
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..total {
        tick.tick().await;
        let id = (i % u32::from(u16::MAX)) as u16;
        if let Ok(mut s) = sent.lock() {
            s.insert(id, Instant::now());
        }
        socket
            .send(&query(id, name))
            .await
            .map_err(|e| e.to_string())?;
    }
    let latencies = receiver.await.map_err(|e| e.to_string())?;
    let lost = total as usize - latencies.len();
    Ok((latencies, lost))
}

/// Answers a second with `IN_FLIGHT` queries outstanding for `FLOOD`.
async fn flood(server: SocketAddr, name: &Name) -> Result<f64, String> {
    let deadline = Instant::now() + FLOOD;
    let mut tasks = Vec::new();
    for worker in 0..IN_FLIGHT {
        let name = name.clone();
        tasks.push(tokio::spawn(async move {
            let socket = tokio::net::UdpSocket::bind("0.0.0.0:0").await.ok()?;
            socket.connect(server).await.ok()?;
            let mut answered = 0u64;
            let mut buf = [0u8; 1500];
            let mut id = (worker as u16) << 10;
            while Instant::now() < deadline {
                id = id.wrapping_add(1);
                socket.send(&query(id, &name)).await.ok()?;
                if let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf)).await
                {
                    answered += 1;
                }
            }
            Some(answered)
        }));
    }
    let mut answered = 0;
    for t in tasks {
        answered += t.await.map_err(|e| e.to_string())?.unwrap_or(0);
    }
    Ok(answered as f64 / FLOOD.as_secs_f64())
}

/// One table row: `| what | q/s | p50 | p99 | lost |`; returns the p99.
async fn measure(what: &str, server: SocketAddr, name: &Name) -> Result<Duration, String> {
    // Warm caches (the forwarder's) and connections.
    let _ = flood(server, name).await?;
    let (mut latencies, lost) = steady(server, name).await?;
    if latencies.is_empty() {
        return Err(format!("{what}: no answers from {server}"));
    }
    latencies.sort();
    let p99 = percentile(&latencies, 0.99);
    let qps = flood(server, name).await?;
    println!(
        "| {what} | {qps:.0} | {} | {} | {lost} |",
        fmt(percentile(&latencies, 0.5)),
        fmt(p99),
    );
    Ok(p99)
}

pub fn run() -> Result<(), String> {
    let upstream_ip: std::net::IpAddr = "127.0.53.1".parse().map_err(|_| "ip")?;
    let upstream = Upstream::start(
        upstream_ip,
        &[("outside.example.", Ipv4Addr::new(192, 0, 2, 10))],
    );
    let mut cluster = Cluster::start();
    let resolv = cluster.dir.path().join("bench-resolv.conf");
    std::fs::write(&resolv, format!("nameserver {upstream_ip}\n")).map_err(|e| e.to_string())?;
    let resolv = resolv.display().to_string();
    cluster.add_agent_with("node-1", &["--resolv-conf", &resolv]);
    cluster.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports:\n  - {port: 80}\n",
    );
    let block: skiff_api::cidr::Ipv4Cidr = cluster
        .get_json("node", "node-1")
        .and_then(|n| n["spec"]["podCIDR"].as_str().and_then(|b| b.parse().ok()))
        .ok_or("node-1 has no podCIDR")?;
    let node_dns = SocketAddr::from((Ipv4Addr::from(u32::from(block.network()) + 1), 53));

    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let service = Name::from_ascii("web.default.svc.cluster.local.").map_err(|e| e.to_string())?;
    let outside = Name::from_ascii("outside.example.").map_err(|e| e.to_string())?;
    println!(
        "## dns\n\n{RATE} queries/s for {}s (open loop) for the latencies; {IN_FLIGHT} in flight for {}s for the rate.\n",
        STEADY.as_secs(),
        FLOOD.as_secs()
    );
    println!(
        "| server, name | answers/s | p50 | p99 | unanswered |\n| --- | ---: | ---: | ---: | ---: |"
    );
    let (skiff_p99, anchor_p99) = rt.block_on(async {
        // Give the agent's DNS a moment to see the Service.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let skiff = measure("skiff node DNS, Service name", node_dns, &service).await?;
        measure(
            "skiff node DNS, forwarded name (cached)",
            node_dns,
            &outside,
        )
        .await?;
        let anchor = measure("bare hickory server (anchor)", upstream.addr(), &outside).await?;
        Ok::<_, String>((skiff, anchor))
    })?;
    drop(cluster);
    println!(
        "\ndns: p99 {} at {RATE} queries/s ({:.2}x vs a bare hickory server)",
        fmt(skiff_p99),
        skiff_p99.as_secs_f64() / anchor_p99.as_secs_f64()
    );
    Ok(())
}
