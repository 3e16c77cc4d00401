//! Sample statistics and table rows shared by the benchmarks.

use std::time::Duration;

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

/// Prints `| what | n | p50 | p99 | min |` and returns the median.
pub fn row(what: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let p50 = percentile(&samples, 0.5);
    println!(
        "| {what} | {} | {} | {} | {} |",
        samples.len(),
        fmt(p50),
        fmt(percentile(&samples, 0.99)),
        fmt(samples[0])
    );
    p50
}

/// PSS of a process in KiB (`/proc/PID/smaps_rollup`), so shared pages count once overall.
pub fn pss_kib(pid: u32) -> Result<u64, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map_err(|e| format!("reading smaps_rollup of {pid}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no Pss line for {pid}"))
}
