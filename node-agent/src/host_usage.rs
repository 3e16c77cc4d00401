//! The machine's own CPU and memory, for the node's figure in `skiff top nodes` (kubelet reports
//! its root cgroup's: every process on the node, pods and system alike). Read from `/proc/stat`
//! (busy time: user, nice, system, irq, softirq, steal — guest time is already in user) and
//! `/proc/meminfo` (working set: MemTotal − MemAvailable, what the kernel could not hand out
//! without reclaiming or swapping).
//!
//! Must not: fail the report — a machine whose figures cannot be read reports its pods alone.

use std::time::Duration;

/// One reading of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostReading {
    /// CPU time spent busy since boot, over every core.
    pub busy: Duration,
    pub memory_bytes: u64,
}

/// The kernel's clock ticks per second for `/proc/stat` (USER_HZ: 100 on every Linux ABI).
const USER_HZ: u64 = 100;

/// Busy CPU time from `/proc/stat`'s first (`cpu `) line.
pub fn parse_stat(stat: &str) -> Option<Duration> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let busy: u64 = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    if ticks.len() < 4 {
        return None;
    }
    Some(Duration::from_millis(busy.saturating_mul(1000 / USER_HZ)))
}

/// MemTotal − MemAvailable from `/proc/meminfo`, in bytes.
pub fn parse_meminfo(meminfo: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib.saturating_mul(1024))
    };
    Some(field("MemTotal:")?.saturating_sub(field("MemAvailable:")?))
}

/// Reads the machine now (None when `/proc` cannot be read or parsed).
pub async fn read() -> Option<HostReading> {
    let stat = tokio::fs::read_to_string("/proc/stat").await.ok()?;
    let meminfo = tokio::fs::read_to_string("/proc/meminfo").await.ok()?;
    Some(HostReading {
        busy: parse_stat(&stat)?,
        memory_bytes: parse_meminfo(&meminfo)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat = "cpu  100 20 30 5000 40 1 2 3 7 0\ncpu0 50 10 15 2500 20 0 1 1 0 0\nintr 1 2\n";
        // 100 + 20 + 30 + 1 + 2 + 3 ticks busy: 1.56 s.
        assert_eq!(parse_stat(stat), Some(Duration::from_millis(1560)));
        assert_eq!(parse_stat("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse_stat("cpu  x 2 3 4\n"), None);
        let meminfo =
            "MemTotal:        8000000 kB\nMemFree:  100 kB\nMemAvailable:    6000000 kB\n";
        assert_eq!(parse_meminfo(meminfo), Some(2_000_000 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
    }

    #[tokio::test]
    async fn this_machine_reads() {
        let r = read().await.expect("/proc/stat and /proc/meminfo");
        assert!(r.busy > Duration::ZERO);
        assert!(r.memory_bytes > 0);
    }
}
