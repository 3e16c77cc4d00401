//! The CPU limit: a spinning guest gets about its share of one core, no more.
//! A binary of its own, so that the process's CPU time is this test's alone.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Executor, kill, probe};

/// CPU time (user + system) of this process so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the `(comm)`: state is 3rd overall, utime 14th, stime 15th.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// CPU used by this process while `spec` spins for `window`.
async fn spin_usage(ex: &Executor, id: &str, millicores: Option<u32>, window: Duration) -> f64 {
    let mut spec = ex.spec(id, &probe(), &["spin"]);
    spec.cpu_limit_millicores = millicores;
    let instance = ex.start(&spec).await;
    // Let it settle, then measure.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    tokio::time::sleep(window).await;
    let used = (cpu_time() - cpu0).as_secs_f64() / wall0.elapsed().as_secs_f64();
    kill(&instance).await;
    used
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_limit_holds_a_spinning_guest_to_its_share() {
    let ex = Executor::new();
    ex.engine.prepare(&probe()).await.unwrap();
    let window = Duration::from_secs(2);
    let unlimited = spin_usage(&ex, "free", None, window).await;
    let quarter = spin_usage(&ex, "quarter", Some(250), window).await;
    let half = spin_usage(&ex, "half", Some(500), window).await;
    eprintln!(
        "cores used by a spinning guest: unlimited {unlimited:.2}, 250m {quarter:.2}, 500m {half:.2}"
    );
    // The machine is shared: other processes may take CPU from the guest, never give it more.
    // So only the ceilings are firm; the floor checks that a limited guest still runs.
    assert!(unlimited > 0.1, "unlimited spin used {unlimited:.2} cores");
    assert!(
        (0.02..0.35).contains(&quarter),
        "250m spin used {quarter:.2} cores"
    );
    assert!(
        (0.05..0.62).contains(&half),
        "500m spin used {half:.2} cores"
    );
}
