//! `bench/run metrics`: what scraping `/metrics` costs the API. A real `skiff server` (embedded
//! store, `--metrics-addr` on loopback) takes sequential pod creates over TLS gRPC, one client,
//! in rounds that alternate between no scraper and a scraper fetching `/metrics` ten times a
//! second (150 times Prometheus' default 15 s interval), so both modes see the same store size
//! and the same machine noise. The anchor is the same server unscraped; the goal is that
//! scraping adds less than 2% to the create p99. The request counters themselves are always on
//! (every figure is counted whether or not anyone scrapes), so this measures the scrapes: the
//! encoding of every family, and the locks they take against the request path.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use skiff_api::v1::Pod;
use skiff_tests::{Cluster, ClusterOptions};

use crate::objects::pod;
use crate::stats::percentile;

/// Rounds per mode, creates per round.
const ROUNDS: usize = 5;
const CREATES: usize = 1000;
/// The scraper's period.
const SCRAPE_EVERY: Duration = Duration::from_millis(100);

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// One `GET /metrics` (HTTP/1.1, a connection each, as Prometheus' scrapes of a target often
/// are): the body's size.
fn scrape(addr: &str) -> Result<usize, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&all);
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "scrape answered {:?}",
            text.lines().next().unwrap_or("")
        ));
    }
    let body = text.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
    Ok(body)
}

/// The address the server printed for its metrics.
fn metrics_addr(cluster: &Cluster) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(addr) = cluster
            .server_log()
            .lines()
            .find_map(|l| l.split_once("metrics at http://"))
            .and_then(|(_, rest)| rest.strip_suffix("/metrics"))
        {
            return Ok(addr.to_string());
        }
        if Instant::now() > deadline {
            return Err("the server printed no metrics address".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn run() -> Result<(), String> {
    let cluster = Cluster::start_with(ClusterOptions {
        server_args: vec!["--metrics-addr".into(), "127.0.0.1:0".into()],
        ..Default::default()
    });
    let addr = metrics_addr(&cluster)?;
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let _guard = rt.enter();
    let api = cluster.api::<Pod>("default");

    let mut quiet = Vec::new();
    let mut scraped = Vec::new();
    let mut scrapes = Vec::new();
    let mut size = 0;
    rt.block_on(async {
        for i in 0..200 {
            api.create(pod(&format!("warm-{i}")))
                .await
                .map_err(|e| e.to_string())?;
        }
        for round in 0..ROUNDS * 2 {
            let scraping = round % 2 == 1;
            let stop = Arc::new(AtomicBool::new(false));
            let scraper = scraping.then(|| {
                let (stop, addr) = (stop.clone(), addr.clone());
                std::thread::spawn(move || {
                    let mut took = Vec::new();
                    let mut size = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        size = scrape(&addr)?;
                        took.push(t.elapsed());
                        std::thread::sleep(SCRAPE_EVERY.saturating_sub(t.elapsed()));
                    }
                    Ok::<_, String>((took, size))
                })
            });
            for i in 0..CREATES {
                let t = Instant::now();
                api.create(pod(&format!("r{round}-{i}")))
                    .await
                    .map_err(|e| e.to_string())?;
                if scraping {
                    scraped.push(t.elapsed());
                } else {
                    quiet.push(t.elapsed());
                }
            }
            stop.store(true, Ordering::Relaxed);
            if let Some(s) = scraper {
                let (took, bytes) = s.join().map_err(|_| "the scraper panicked")??;
                scrapes.extend(took);
                size = bytes;
            }
        }
        Ok::<_, String>(())
    })?;
    quiet.sort();
    scraped.sort();
    scrapes.sort();
    if scrapes.is_empty() {
        return Err("no scrape was made".into());
    }
    println!(
        "{:<48} {:>12} {:>12}",
        "measure (skiff server, embedded store)", "p50", "p99"
    );
    println!(
        "{:<48} {:>12} {:>12}",
        format!("create pod, 1 client, unscraped ({} creates)", quiet.len()),
        ms(percentile(&quiet, 0.5)),
        ms(percentile(&quiet, 0.99))
    );
    println!(
        "{:<48} {:>12} {:>12}",
        format!(
            "create pod, 1 client, scraped 10/s ({} creates)",
            scraped.len()
        ),
        ms(percentile(&scraped, 0.5)),
        ms(percentile(&scraped, 0.99))
    );
    println!(
        "{:<48} {:>12} {:>12}",
        format!("GET /metrics ({} scrapes, {} bytes)", scrapes.len(), size),
        ms(percentile(&scrapes, 0.5)),
        ms(percentile(&scrapes, 0.99))
    );
    let (a, b) = (percentile(&scraped, 0.99), percentile(&quiet, 0.99));
    println!(
        "metrics: create p99 {} scraped 10/s ({:.3}x vs {} unscraped; goal < 1.02x)",
        ms(a),
        a.as_secs_f64() / b.as_secs_f64(),
        ms(b)
    );
    Ok(())
}
