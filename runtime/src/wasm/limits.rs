//! Resource limits of one instance: memory (a `ResourceLimiter`) and CPU (the epoch callback).
//!
//! Owns [`Limits`]: it denies linear-memory growth past the spec's memory limit (and records that
//! it did, so that a guest that then dies is reported OOMKilled), bounds table growth, counts
//! what it approves in the instance's [`Usage`], and decides at every epoch tick whether the
//! guest yields at once (fairness) or sleeps first (CPU limit). Must not: classify exits or touch
//! WASI.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use wasmtime::UpdateDeadline;

use super::usage::Usage;

/// Most table elements any table may grow to (function pointers; 8 bytes each).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// A denied linear-memory growth: sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeniedGrowth {
    pub current: usize,
    pub desired: usize,
}

/// Per-instance limits, kept in the store's data.
pub(crate) struct Limits {
    memory_limit: Option<usize>,
    /// The first denied growth, if any.
    pub(crate) denied: Option<DeniedGrowth>,
    cpu: Option<CpuThrottle>,
    usage: Arc<Usage>,
    /// The largest linear memory the engine's pool holds: a growth past it fails after
    /// approval, so it is not counted.
    pool_memory_bytes: usize,
    /// What this store added to `usage`, taken back when it is dropped (a function's stores
    /// come and go under one instance's figures).
    counted_memory: u64,
    counted_table_elements: u64,
}

impl Drop for Limits {
    fn drop(&mut self) {
        self.usage.sub_memory(self.counted_memory);
        self.usage.sub_table(self.counted_table_elements);
    }
}

impl Limits {
    /// `usage`: where approved memory and tables are counted; `pool_memory_bytes`: the engine's
    /// largest linear memory.
    pub(crate) fn new(
        memory_limit: Option<u64>,
        cpu_limit_millicores: Option<u32>,
        tick: Duration,
        usage: Arc<Usage>,
        pool_memory_bytes: u64,
    ) -> Self {
        Limits {
            memory_limit: memory_limit.map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
            denied: None,
            cpu: cpu_limit_millicores.map(|m| CpuThrottle::new(m, tick)),
            usage,
            pool_memory_bytes: usize::try_from(pool_memory_bytes).unwrap_or(usize::MAX),
            counted_memory: 0,
            counted_table_elements: 0,
        }
    }

    /// Called when the guest's epoch deadline passes (every tick while wasm runs): yield to
    /// the other tasks, or sleep first when over the CPU limit. The yield is tokio's
    /// `yield_now`, which resumes the task only after the scheduler has polled its timer and
    /// I/O driver: with wasmtime's plain `Yield`, guests that spin keep each other runnable and
    /// the driver is polled only every 61 task polls (0.6 s of 10 ms slices), starving timers.
    pub(crate) fn on_epoch(&mut self) -> UpdateDeadline {
        let Some(cpu) = self.cpu.as_mut() else {
            return UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()));
        };
        let pause = cpu.pause(Stamp::now());
        let resumed = cpu.resumed_stamp();
        UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                match pause {
                    Some(p) => tokio::time::sleep(p).await,
                    None => tokio::task::yield_now().await,
                }
                // The guest resumes on this thread, right after this poll.
                *resumed.lock().unwrap_or_else(PoisonError::into_inner) = Stamp::now();
            }),
        )
    }
}

impl wasmtime::ResourceLimiter for Limits {
    /// Also called (with `current` 0) when a memory is made.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.memory_limit {
            Some(limit) if desired > limit => {
                self.denied.get_or_insert(DeniedGrowth { current, desired });
                Ok(false)
            }
            _ => {
                // Past the memory's own maximum or the pool's, wasmtime fails the growth after
                // this approval: only a growth that takes place is counted.
                let fits =
                    desired <= self.pool_memory_bytes && maximum.is_none_or(|m| desired <= m);
                if fits {
                    let grown = desired.saturating_sub(current) as u64;
                    self.usage.add_memory(grown);
                    self.counted_memory += grown;
                }
                Ok(true)
            }
        }
    }

    /// Also called (with `current` 0) when a table is made; `maximum` includes the pool's.
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= MAX_TABLE_ELEMENTS;
        if allowed && maximum.is_none_or(|m| desired <= m) {
            let grown = desired.saturating_sub(current) as u64;
            self.usage.add_table(grown);
            self.counted_table_elements += grown;
        }
        Ok(allowed)
    }
}

/// Holds a guest to `millicores / 1000` of one core.
///
/// At each tick the guest has run for the CPU time its thread used since the guest last resumed
/// (wall time if it moved threads, e.g. after waiting on I/O; either capped at two ticks, since
/// a longer gap means it was blocked in the host, not computing); it then sleeps
/// `ran * (1000 - m) / m` so that over time it uses `m / 1000` of a core. Thread CPU time, not
/// wall time, so that a guest on a busy machine is not charged for time the OS gave to others;
/// the resume is stamped by the yield future itself when the executor polls it again, so timer
/// rounding and scheduling delays are not charged either.
struct CpuThrottle {
    millicores: u32,
    tick: Duration,
    resumed: Arc<Mutex<Stamp>>,
}

/// When and where a guest resumed.
#[derive(Clone, Copy)]
struct Stamp {
    thread: ThreadId,
    cpu: Duration,
    wall: Instant,
}

impl Stamp {
    fn now() -> Self {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Stamp {
            thread: std::thread::current().id(),
            cpu: Duration::new(
                u64::try_from(t.tv_sec).unwrap_or(0),
                u32::try_from(t.tv_nsec).unwrap_or(0),
            ),
            wall: Instant::now(),
        }
    }
}

impl CpuThrottle {
    fn new(millicores: u32, tick: Duration) -> Self {
        CpuThrottle {
            millicores: millicores.max(1),
            tick,
            resumed: Arc::new(Mutex::new(Stamp::now())),
        }
    }

    /// How long to pause at `now`, if at all.
    fn pause(&mut self, now: Stamp) -> Option<Duration> {
        if self.millicores >= 1000 {
            return None;
        }
        let last = *self.resumed.lock().unwrap_or_else(PoisonError::into_inner);
        let ran = if last.thread == now.thread {
            now.cpu.saturating_sub(last.cpu)
        } else {
            now.wall.saturating_duration_since(last.wall)
        };
        let ran = ran.min(self.tick * 2);
        let pause = ran * (1000 - self.millicores) / self.millicores;
        (!pause.is_zero()).then_some(pause)
    }

    /// Called by the yield future when the guest resumes.
    fn resumed_stamp(&self) -> Arc<Mutex<Stamp>> {
        self.resumed.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    fn limits(memory_limit: Option<u64>) -> (Limits, Arc<Usage>) {
        let usage = Arc::new(Usage::default());
        let tick = Duration::from_millis(10);
        let l = Limits::new(memory_limit, None, tick, usage.clone(), 1 << 30);
        (l, usage)
    }

    #[test]
    fn memory_growth_past_the_limit_is_denied_and_recorded() {
        let (mut l, usage) = limits(Some(64 << 20));
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert!(l.denied.is_none());
        assert!(!l.memory_growing(60 << 20, 65 << 20, None).unwrap());
        assert_eq!(
            l.denied,
            Some(DeniedGrowth {
                current: 60 << 20,
                desired: 65 << 20
            })
        );
        // Only the approved growth is counted.
        assert_eq!(usage.read().memory_bytes, 1 << 20);
        let (mut unlimited, usage) = limits(None);
        assert!(unlimited.memory_growing(0, 1 << 20, None).unwrap());
        assert!(
            unlimited
                .memory_growing(1 << 20, 3 << 20, Some(4 << 20))
                .unwrap()
        );
        assert_eq!(usage.read().memory_bytes, 3 << 20);
        // Approved, but past the memory's maximum or the pool's: wasmtime fails it.
        assert!(
            unlimited
                .memory_growing(3 << 20, 5 << 20, Some(4 << 20))
                .unwrap()
        );
        assert!(unlimited.memory_growing(3 << 20, 1 << 32, None).unwrap());
        assert_eq!(usage.read().memory_bytes, 3 << 20);
    }

    #[test]
    fn tables_are_bounded_and_counted() {
        let (mut l, usage) = limits(None);
        assert!(l.table_growing(0, 10, None).unwrap());
        assert!(l.table_growing(10, 30, Some(20_000)).unwrap());
        assert!(!l.table_growing(0, MAX_TABLE_ELEMENTS + 1, None).unwrap());
        assert!(l.table_growing(30, 30_000, Some(20_000)).unwrap());
        assert_eq!(
            usage.read().table_bytes,
            30 * super::super::usage::TABLE_ELEMENT_BYTES
        );
    }

    #[test]
    fn throttle_pauses_in_proportion() {
        let tick = Duration::from_millis(10);
        let mut t = CpuThrottle::new(250, tick);
        let start = Stamp::now();
        *t.resumed.lock().unwrap() = start;
        let at = |cpu_ms: u64, wall_ms: u64, thread: ThreadId| Stamp {
            thread,
            cpu: start.cpu + Duration::from_millis(cpu_ms),
            wall: start.wall + Duration::from_millis(wall_ms),
        };
        let here = start.thread;
        // Used 10 ms of CPU at 250m: pause 30 ms.
        assert_eq!(t.pause(at(10, 10, here)), Some(Duration::from_millis(30)));
        // Preempted by other processes: 4 ms of CPU in 10 ms of wall time counts 4 ms.
        assert_eq!(t.pause(at(4, 10, here)), Some(Duration::from_millis(12)));
        // On another thread, wall time is all there is.
        let other = std::thread::spawn(|| std::thread::current().id())
            .join()
            .unwrap();
        assert_eq!(t.pause(at(0, 6, other)), Some(Duration::from_millis(18)));
        // A long gap (blocked in the host) counts as at most two ticks.
        assert_eq!(t.pause(at(0, 5000, other)), Some(Duration::from_millis(60)));
        let mut full = CpuThrottle::new(1000, tick);
        assert_eq!(full.pause(Stamp::now()), None);
    }
}
