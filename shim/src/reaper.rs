//! Reaps orphans: processes reparented to the shim (a subreaper) that nothing waits for, such as
//! what a container without its own pid namespace leaves when it double-forks, or an exec's
//! process whose helper died.
//!
//! The shim waits for each process it knows by pid (container inits, exec helpers; the linux
//! executor waits for its own helpers), so a process-wide `waitpid(-1)` would steal their exits.
//! Instead [`Reaper::sweep`] looks for zombie children of this process and reaps only those it
//! already saw as zombies at the previous sweep: a known process's waiter collects it at once,
//! so a zombie that lasts a whole period is one nobody waits for. Must not: reap a zombie on
//! first sight.

use std::collections::HashSet;
use std::time::Duration;

/// How often orphans are looked for.
pub const PERIOD: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Reaper {
    seen: HashSet<i32>,
}

impl Reaper {
    /// Reaps the zombie children seen at the previous sweep too; returns how many.
    pub fn sweep(&mut self) -> usize {
        let now = zombie_children(std::process::id() as i32);
        let mut reaped = 0;
        for pid in now.intersection(&self.seen) {
            use nix::sys::wait::{WaitPidFlag, waitpid};
            if waitpid(nix::unistd::Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG)).is_ok() {
                reaped += 1;
            }
        }
        self.seen = now;
        reaped
    }
}

/// Zombies whose parent is `parent`, from `/proc/*/stat`.
fn zombie_children(parent: i32) -> HashSet<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashSet::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
            state == Some("Z") && ppid == Some(parent)
        })
        .collect()
}

/// Sweeps every [`PERIOD`] for the life of the runtime, the first a period after the start: a
/// new shim has no orphans yet, and its first milliseconds belong to the task it starts.
pub fn spawn() {
    tokio::spawn(async {
        let mut reaper = Reaper::default();
        let first = tokio::time::Instant::now() + PERIOD;
        let mut tick = tokio::time::interval_at(first, PERIOD);
        loop {
            tick.tick().await;
            let n = tokio::task::spawn_blocking({
                let mut r = std::mem::take(&mut reaper);
                move || {
                    let n = r.sweep();
                    (r, n)
                }
            })
            .await;
            match n {
                Ok((r, n)) => {
                    reaper = r;
                    if n > 0 {
                        log::info!("reaped {n} orphaned process(es)");
                    }
                }
                Err(e) => log::warn!("reaper: {e}"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_nobody_waits_for_is_reaped_at_the_second_sweep() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not waited for: it stays a zombie child of this process.
        std::mem::forget(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !zombie_children(std::process::id() as i32).contains(&pid) {
            assert!(std::time::Instant::now() < deadline, "no zombie appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut r = Reaper::default();
        r.sweep();
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "reaped on first sight"
        );
        r.sweep();
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the zombie was not reaped"
        );
    }
}
