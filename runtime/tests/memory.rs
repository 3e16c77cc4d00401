//! Memory: a guest that allocates past its limit is contained and the process does not grow;
//! idle instances cost little. A binary of its own (and one test at a time), so that the
//! process's RSS is the measuring test's alone.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use skiff_runtime::wasm::ExitReason;

use common::{Executor, probe};

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
    let ex = Executor::new();
    ex.engine.prepare(&probe()).await.unwrap();
    // Under the limit, the same guest completes.
    let mut small = ex.spec("small", &probe(), &["hog", "16"]);
    small.memory_limit = Some(64 << 20);
    let exit = ex.run(&small).await;
    assert_eq!(
        (exit.code, exit.reason),
        (0, ExitReason::Completed),
        "{exit:?}"
    );

    let mut spec = ex.spec("hog", &probe(), &["hog", "200"]);
    spec.memory_limit = Some(64 << 20);
    let base = vm_rss();
    let mut peak = base;
    let hog = ex.start(&spec).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        peak = peak.max(vm_rss());
        if let Some(exit) = hog.status() {
            break exit;
        }
        assert!(Instant::now() < deadline, "hog still running");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let grew = peak.saturating_sub(base);
    eprintln!(
        "hog 200 MiB under a 64 MiB limit: {exit:?}; process RSS grew by at most {} MiB",
        grew >> 20
    );
    assert_eq!(
        (exit.code, exit.reason),
        (137, ExitReason::OomKilled),
        "{exit:?}"
    );
    assert!(exit.oom_killed);
    assert!(exit.message.contains("memory limit"), "{}", exit.message);
    let (stdout, _) = ex.output("hog");
    let got: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("allocation failed after "))
        .and_then(|rest| rest.strip_suffix(" MiB"))
        .unwrap_or_else(|| panic!("no allocation failure reported:\n{stdout}"))
        .parse()
        .unwrap();
    assert!(got < 64, "allocated {got} MiB under a 64 MiB limit");
    assert!(grew < 100 << 20, "process RSS grew by {} MiB", grew >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_below_the_initial_memory_is_a_start_error() {
    // One slot: a refused start that kept it would show at the next start.
    let ex = Executor::with(|o| o.max_instances = 1);
    let mut spec = ex.spec("tiny", &probe(), &["exit", "0"]);
    spec.memory_limit = Some(4096);
    let e = ex.engine.start(spec).await.err().unwrap();
    assert!(e.is_invalid_input(), "{e:?}");
    assert!(
        e.to_string()
            .contains("memory limit of 4096 bytes is below the initial memory"),
        "{e}"
    );
    let exit = ex.run(&ex.spec("next", &probe(), &["exit", "0"])).await;
    assert_eq!(exit.code, 0, "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_cost_little() {
    let _serial = SERIAL.lock().await;
    const N: usize = 200;
    let ex = Executor::with(|o| o.max_instances = N as u32 + 8);
    ex.engine.prepare(&probe()).await.unwrap();
    // One first, so that per-engine costs are not counted.
    let mut instances = vec![ex.start(&ex.spec("first", &probe(), &["sleep", "0"])).await];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let base = vm_rss();
    let began = Instant::now();
    for i in 0..N {
        let spec = ex.spec(&format!("idle-{i}"), &probe(), &["sleep", "0"]);
        instances.push(ex.start(&spec).await);
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
        "{N} idle probe instances: {} KiB RSS each, started in {took:?} ({:?} each); {threads}",
        per >> 10,
        took / N as u32
    );
    let running = instances.iter().filter(|i| i.status().is_none()).count();
    assert_eq!(running, N + 1);
    assert!(per < 1 << 20, "{} KiB per idle instance", per >> 10);
}
