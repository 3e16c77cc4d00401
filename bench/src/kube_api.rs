//! `bench/run kube-api`: the Kubernetes REST API beside skiff's gRPC API on one server, same run.
//!
//! - List: `kubectl get pods -A` of 10,000 pods (the real kubectl: a Table through REST, its
//!   discovery cache warm) beside `skiff get pods -A` (gRPC, pages of 500): median wall time of 5
//!   runs each, the first of each not counted. kubectl's own share is split out: the time its
//!   client-side rate limiter (client-go's default 5 requests/s, burst 10, which kubectl keeps
//!   for everything but discovery) holds its 21 page requests, read from `-v=6`.
//! - List pages, the server's side: the same 20 Table pages kubectl asks for (`limit=500`, its
//!   Accept header) fetched by this bench over one HTTP/1.1 TLS connection without a rate limit,
//!   beside the same pages of 500 over gRPC (one HTTP/2 connection): median of 5.
//! - Watch fan-out: 100 watchers of pods across namespaces, then a burst of 100 pod creates; the
//!   time from the burst's start until each watcher has seen all 100 ADDED events. REST: 100
//!   HTTP/1.1 streams over TLS (`?watch=1&resourceVersion=…`, as a client library opens them);
//!   gRPC: 100 `PodApi/Watch` streams on one HTTP/2 connection (as skiff's agents and CLI do).
//!
//! Goal (issue 24): REST within 1.5x of gRPC. Must not: be run as a timed test.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_api::client::ListParams;
use skiff_api::v1::Pod;
use skiff_tests::Cluster;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::objects::pod;

const PODS: usize = 10_000;
const WATCHERS: usize = 100;
const BURST: usize = 100;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median wall time of `runs` runs of `command` (stdout discarded), after one not counted.
fn timed(mut command: impl FnMut() -> Command, runs: usize) -> Result<Duration, String> {
    let mut times = Vec::new();
    for i in 0..=runs {
        let t = Instant::now();
        let status = command()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| e.to_string())?;
        if !status.status.success() {
            return Err(String::from_utf8_lossy(&status.stderr).into_owned());
        }
        if i > 0 {
            times.push(t.elapsed());
        }
    }
    Ok(median(times))
}

async fn create_pods(cluster: &Cluster, prefix: &str, total: usize) -> Result<(), String> {
    let workers = 64;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let api = cluster.api::<Pod>("default");
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            for i in (w..total).step_by(workers) {
                api.create(pod(&format!("{prefix}-{i}")))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// One REST watch over its own TLS connection (HTTP/1.1, chunked lines): a channel that gets one
/// message per ADDED event.
async fn rest_watch(
    cluster: &Cluster,
    resource_version: &str,
    seen: tokio::sync::mpsc::UnboundedSender<Instant>,
) -> Result<(), String> {
    let config = cluster.config();
    let stream = tls_connect(cluster).await?;
    let (read, mut write) = tokio::io::split(stream);
    let request = format!(
        "GET /api/v1/pods?watch=1&resourceVersion={resource_version} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\n\r\n",
        cluster.addr, config.token
    );
    write
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut lines = tokio::io::BufReader::new(read).lines();
    let status = lines
        .next_line()
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(format!("REST watch: {status}"));
    }
    tokio::spawn(async move {
        let _write = write;
        // Chunk-size lines and event lines alike: an event is a line holding `"type":"ADDED"`.
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("\"type\":\"ADDED\"") && seen.send(Instant::now()).is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// A TLS connection to the API port speaking HTTP/1.1 (no ALPN), as a client library's
/// watch or a curl opens one.
async fn tls_connect(
    cluster: &Cluster,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let config = cluster.config();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut config.certificate_authority_data.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(cluster.addr)
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::IpAddress(cluster.addr.ip().into());
    tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// kubectl's Accept header for `kubectl get`.
const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

/// One HTTP/1.1 response's body (Content-Length or chunked).
async fn read_response(
    reader: &mut tokio::io::BufReader<impl tokio::io::AsyncRead + Unpin>,
) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncReadExt;
    let mut status = String::new();
    reader
        .read_line(&mut status)
        .await
        .map_err(|e| e.to_string())?;
    if !status.contains(" 200 ") {
        return Err(format!("REST list: {}", status.trim()));
    }
    let (mut length, mut chunked) = (None, false);
    loop {
        let mut header = String::new();
        reader
            .read_line(&mut header)
            .await
            .map_err(|e| e.to_string())?;
        let header = header.trim().to_ascii_lowercase();
        if header.is_empty() {
            break;
        }
        if let Some(v) = header.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
        if header.starts_with("transfer-encoding:") && header.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if let (Some(n), false) = (length, chunked) {
        body.resize(n, 0);
        reader
            .read_exact(&mut body)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(body);
    }
    loop {
        let mut size = String::new();
        reader
            .read_line(&mut size)
            .await
            .map_err(|e| e.to_string())?;
        let n = usize::from_str_radix(size.trim(), 16).map_err(|e| format!("chunk size: {e}"))?;
        let mut chunk = vec![0; n + 2];
        reader
            .read_exact(&mut chunk)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

/// The `continue` token of a list or Table body ("" on the last page).
fn continue_token(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.split("\"continue\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string()
}

/// Every page of pods as kubectl asks for them (Table, 500 a page) over one connection: the
/// time and the rows read.
async fn rest_pages(cluster: &Cluster) -> Result<(Duration, usize), String> {
    let token = cluster.config().token;
    let stream = tls_connect(cluster).await?;
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = tokio::io::BufReader::new(read);
    let start = Instant::now();
    let (mut next, mut rows) = (String::new(), 0);
    loop {
        let continued = if next.is_empty() {
            String::new()
        } else {
            format!("&continue={next}")
        };
        let request = format!(
            "GET /api/v1/pods?limit=500{continued} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nAccept: {TABLE_ACCEPT}\r\n\r\n",
            cluster.addr
        );
        write
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let body = read_response(&mut reader).await?;
        rows += String::from_utf8_lossy(&body).matches("\"cells\":").count();
        next = continue_token(&body);
        if next.is_empty() {
            return Ok((start.elapsed(), rows));
        }
    }
}

/// Every page of pods over gRPC (500 a page, as `skiff get`): the time and the items read.
async fn grpc_pages(api: &skiff_api::client::Api<Pod>) -> Result<(Duration, usize), String> {
    let start = Instant::now();
    let (mut next, mut items) = (String::new(), 0);
    loop {
        let (page, meta) = api
            .list(ListParams {
                limit: 500,
                continue_token: next,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        items += page.len();
        next = meta.r#continue;
        if next.is_empty() {
            return Ok((start.elapsed(), items));
        }
    }
}

/// Median of `runs` runs of an async measure, after one not counted; also its count.
async fn timed_async<F, Fut>(runs: usize, mut f: F) -> Result<(Duration, usize), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(Duration, usize), String>>,
{
    let mut times = Vec::new();
    let mut count = 0;
    for i in 0..=runs {
        let (t, n) = f().await?;
        count = n;
        if i > 0 {
            times.push(t);
        }
    }
    Ok((median(times), count))
}

/// What client-go's rate limiter held kubectl's requests, from its `-v=6` lines
/// (`Waited for 165.47ms due to client-side throttling`).
fn throttled(kubectl_log: &str) -> Duration {
    kubectl_log
        .lines()
        .filter(|l| l.contains("due to client-side throttling"))
        .filter_map(|l| l.split("Waited for ").nth(1)?.split(' ').next())
        .filter_map(|d| {
            let (number, scale) = if let Some(v) = d.strip_suffix("ms") {
                (v, 1e-3)
            } else if let Some(v) = d.strip_suffix("µs") {
                (v, 1e-6)
            } else if let Some(v) = d.strip_suffix('s') {
                (v, 1.0)
            } else {
                return None;
            };
            number.parse::<f64>().ok().map(|n| n * scale)
        })
        .map(Duration::from_secs_f64)
        .sum()
}

/// One gRPC watch (on the cluster's one transport).
async fn grpc_watch(
    api: &skiff_api::client::Api<Pod>,
    resource_version: &str,
    seen: tokio::sync::mpsc::UnboundedSender<Instant>,
) -> Result<(), String> {
    use tokio_stream::StreamExt;
    let mut stream = api
        .watch(ListParams::default(), resource_version)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Some(Ok(event)) = stream.next().await {
            if event.kind == "ADDED" && seen.send(Instant::now()).is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// Each watcher's time from `start` until it saw `BURST` events, sorted.
async fn fan_out(
    receivers: Vec<tokio::sync::mpsc::UnboundedReceiver<Instant>>,
    start: Instant,
) -> Result<Vec<Duration>, String> {
    let mut done = Vec::new();
    for mut rx in receivers {
        let mut last = start;
        for _ in 0..BURST {
            last = tokio::time::timeout(Duration::from_secs(120), rx.recv())
                .await
                .map_err(|_| "a watcher missed events".to_string())?
                .ok_or("a watcher ended")?;
        }
        done.push(last.saturating_duration_since(start));
    }
    done.sort();
    Ok(done)
}

pub fn run() -> Result<(), String> {
    let cluster = Cluster::start();
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let _guard = rt.enter();
    rt.block_on(create_pods(&cluster, "bench", PODS))?;

    // List: kubectl (REST, Table) beside skiff get (gRPC).
    let kubeconfig = cluster.data_dir().join("kubeconfig");
    let home = cluster.data_dir().to_path_buf();
    let kubectl = timed(
        || {
            let mut c = Command::new("kubectl");
            c.env("KUBECONFIG", &kubeconfig)
                .env("HOME", &home)
                .args(["get", "pods", "-A"]);
            c
        },
        5,
    )?;
    let skiff = timed(|| cluster.skiff_cmd(&["get", "pods", "-A"]), 5)?;
    let verbose = Command::new("kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", &home)
        .args(["get", "pods", "-A", "-v=6"])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let throttle = throttled(&String::from_utf8_lossy(&verbose.stderr));

    // The server's side of the same list: REST Table pages beside gRPC pages, no CLI.
    let api = cluster.api::<Pod>("");
    let (rest_list, rows) = rt.block_on(timed_async(5, || rest_pages(&cluster)))?;
    let (grpc_list, items) = rt.block_on(timed_async(5, || grpc_pages(&api)))?;
    if rows != items || rows < PODS {
        return Err(format!(
            "REST pages read {rows} rows, gRPC pages {items} pods"
        ));
    }

    // Watch fan-out, REST then gRPC, each from the current version.
    let mut results = Vec::new();
    for (label, rest) in [("REST", true), ("gRPC", false)] {
        let figures = rt.block_on(async {
            let (_, meta) = api
                .list(ListParams {
                    limit: 1,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let mut receivers = Vec::new();
            for _ in 0..WATCHERS {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                if rest {
                    rest_watch(&cluster, &meta.resource_version, tx).await?;
                } else {
                    grpc_watch(&api, &meta.resource_version, tx).await?;
                }
                receivers.push(rx);
            }
            let start = Instant::now();
            create_pods(
                &cluster,
                &format!("burst-{}", label.to_ascii_lowercase()),
                BURST,
            )
            .await?;
            fan_out(receivers, start).await
        })?;
        results.push((label, figures));
    }

    println!("kube-api ({PODS} pods, {WATCHERS} watchers, bursts of {BURST} creates)");
    println!(
        "  list pods -A       kubectl (REST) {:>10}   skiff get (gRPC) {:>10}   ratio {:.2}x",
        ms(kubectl),
        ms(skiff),
        kubectl.as_secs_f64() / skiff.as_secs_f64()
    );
    println!(
        "    of kubectl's      client-side rate limiter (5/s, burst 10) {:>10}   without it {:>10}   ratio {:.2}x",
        ms(throttle),
        ms(kubectl.saturating_sub(throttle)),
        kubectl.saturating_sub(throttle).as_secs_f64() / skiff.as_secs_f64()
    );
    println!(
        "  list pages         REST Table {:>10}   gRPC {:>10}   ratio {:.2}x   ({rows} rows, pages of 500, no CLI)",
        ms(rest_list),
        ms(grpc_list),
        rest_list.as_secs_f64() / grpc_list.as_secs_f64()
    );
    for (label, f) in &results {
        println!(
            "  watch fan-out {label:<4}  all events at every watcher: p50 {:>10}  p99 {:>10}  last {:>10}",
            ms(f[f.len() / 2]),
            ms(f[(f.len() * 99) / 100]),
            ms(f[f.len() - 1])
        );
    }
    let rest_last = results[0].1[WATCHERS - 1];
    let grpc_last = results[1].1[WATCHERS - 1];
    println!(
        "kube-api: list {:.2}x ({:.2}x without kubectl's own rate limiter), list pages {:.2}x, watch fan-out {:.2}x (REST vs gRPC; goal 1.5x)",
        kubectl.as_secs_f64() / skiff.as_secs_f64(),
        kubectl.saturating_sub(throttle).as_secs_f64() / skiff.as_secs_f64(),
        rest_list.as_secs_f64() / grpc_list.as_secs_f64(),
        rest_last.as_secs_f64() / grpc_last.as_secs_f64()
    );
    Ok(())
}
