//! Memory: a guest that allocates past its limit is contained and the host does not grow; idle
//! instances cost little. A binary of its own (and one test at a time), so that the process's
//! RSS is the measuring test's alone.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use skiff_runtime::wasm::ExitReason;
use tonic::Code;

use common::{Host, probe};

/// The tests of this binary measure the process: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// This process's resident set, in bytes.
fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_is_contained() {
    let _serial = SERIAL.lock().await;
    let host = Host::start().await;
    host.client.prepare(&probe()).await.unwrap();
    // Under the limit, the same guest completes.
    let mut small = host.spec("small", &probe(), &["hog", "16"]);
    small.memory_limit = Some(64 << 20);
    let exit = host.run(&small).await.exit.unwrap();
    assert_eq!(
        (exit.code, exit.reason),
        (0, ExitReason::Completed),
        "{exit:?}"
    );

    let mut spec = host.spec("hog", &probe(), &["hog", "200"]);
    spec.memory_limit = Some(64 << 20);
    let base = vm_rss();
    let mut peak = base;
    host.client.start(&spec).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let info = loop {
        peak = peak.max(vm_rss());
        let list = host.client.list().await.unwrap();
        let info = list.into_iter().find(|i| i.id == "hog").unwrap();
        if !info.running() {
            break info;
        }
        assert!(Instant::now() < deadline, "hog still running");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let exit = info.exit.unwrap();
    let grew = peak.saturating_sub(base);
    eprintln!(
        "hog 200 MiB under a 64 MiB limit: {exit:?}; host RSS grew by at most {} MiB",
        grew >> 20
    );
    assert_eq!(
        (exit.code, exit.reason),
        (137, ExitReason::OomKilled),
        "{exit:?}"
    );
    assert!(exit.oom_killed);
    assert!(exit.message.contains("memory limit"), "{}", exit.message);
    let (stdout, _) = host.output("hog");
    let got: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("allocation failed after "))
        .and_then(|rest| rest.strip_suffix(" MiB"))
        .unwrap_or_else(|| panic!("no allocation failure reported:\n{stdout}"))
        .parse()
        .unwrap();
    assert!(got < 64, "allocated {got} MiB under a 64 MiB limit");
    assert!(grew < 100 << 20, "host RSS grew by {} MiB", grew >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_below_the_initial_memory_is_a_start_error() {
    let host = Host::start().await;
    let mut spec = host.spec("tiny", &probe(), &["exit", "0"]);
    spec.memory_limit = Some(4096);
    let e = host.client.start(&spec).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::InvalidArgument), "{e}");
    assert!(
        e.to_string()
            .contains("memory limit of 4096 bytes is below the initial memory"),
        "{e}"
    );
    assert!(host.client.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_cost_little() {
    let _serial = SERIAL.lock().await;
    const N: usize = 200;
    let host = Host::start_with(|o| o.max_instances = N as u32 + 8).await;
    host.client.prepare(&probe()).await.unwrap();
    // One first, so that per-engine costs are not counted.
    host.client
        .start(&host.spec("first", &probe(), &["sleep", "0"]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let base = vm_rss();
    let began = Instant::now();
    for i in 0..N {
        host.client
            .start(&host.spec(&format!("idle-{i}"), &probe(), &["sleep", "0"]))
            .await
            .unwrap();
    }
    let took = began.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let per = vm_rss().saturating_sub(base) / N as u64;
    let threads = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Threads:"))
        .unwrap()
        .to_string();
    eprintln!(
        "{N} idle probe instances: {} KiB RSS each, started in {took:?} ({:?} each over the socket); {threads}",
        per >> 10,
        took / N as u32
    );
    let list = host.client.list().await.unwrap();
    assert_eq!(list.iter().filter(|i| i.running()).count(), N + 1);
    assert!(per < 1 << 20, "{} KiB per idle instance", per >> 10);
}
