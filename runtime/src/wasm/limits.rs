//! Resource limits of one instance: memory (a `ResourceLimiter`) and CPU (the epoch callback).
//!
//! Owns [`Limits`]: it denies linear-memory growth past the spec's memory limit (and records that
//! it did, so that a guest that then dies is reported OOMKilled), bounds table growth, and decides
//! at every epoch tick whether the guest yields at once (fairness) or sleeps first (CPU limit).
//! Must not: classify exits or touch WASI.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::UpdateDeadline;

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
}

impl Limits {
    pub(crate) fn new(
        memory_limit: Option<u64>,
        cpu_limit_millicores: Option<u32>,
        tick: Duration,
    ) -> Self {
        Limits {
            memory_limit: memory_limit.map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
            denied: None,
            cpu: cpu_limit_millicores.map(|m| CpuThrottle::new(m, tick)),
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
        let pause = cpu.pause(Instant::now());
        let resumed = cpu.resumed.clone();
        let base = cpu.base;
        UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                match pause {
                    Some(p) => tokio::time::sleep(p).await,
                    None => tokio::task::yield_now().await,
                }
                resumed.store(nanos_since(base, Instant::now()), Ordering::Relaxed);
            }),
        )
    }
}

impl wasmtime::ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.memory_limit {
            Some(limit) if desired > limit => {
                self.denied.get_or_insert(DeniedGrowth { current, desired });
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Holds a guest to `millicores / 1000` of one core.
///
/// At each tick the guest has run for the time since it was last resumed (capped at two ticks:
/// a longer gap means it was blocked in the host, not computing); it then sleeps
/// `ran * (1000 - m) / m` so that over time it runs `m / 1000` of the wall clock. The resume
/// time is stamped by the yield future itself when the executor polls it again, so timer
/// rounding and scheduling delays are not counted as running.
struct CpuThrottle {
    millicores: u32,
    tick: Duration,
    base: Instant,
    /// Nanoseconds after `base` when the guest last resumed.
    resumed: Arc<AtomicU64>,
}

fn nanos_since(base: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

impl CpuThrottle {
    fn new(millicores: u32, tick: Duration) -> Self {
        CpuThrottle {
            millicores: millicores.max(1),
            tick,
            base: Instant::now(),
            resumed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How long to pause now, if at all.
    fn pause(&mut self, now: Instant) -> Option<Duration> {
        if self.millicores >= 1000 {
            return None;
        }
        let resumed = self.base + Duration::from_nanos(self.resumed.load(Ordering::Relaxed));
        let ran = now.saturating_duration_since(resumed).min(self.tick * 2);
        let pause = ran * (1000 - self.millicores) / self.millicores;
        (!pause.is_zero()).then_some(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn memory_growth_past_the_limit_is_denied_and_recorded() {
        let mut l = Limits::new(Some(64 << 20), None, Duration::from_millis(10));
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
        let mut unlimited = Limits::new(None, None, Duration::from_millis(10));
        assert!(unlimited.memory_growing(0, 1 << 32, None).unwrap());
    }

    #[test]
    fn tables_are_bounded() {
        let mut l = Limits::new(None, None, Duration::from_millis(10));
        assert!(l.table_growing(0, 10, None).unwrap());
        assert!(!l.table_growing(0, MAX_TABLE_ELEMENTS + 1, None).unwrap());
    }

    #[test]
    fn throttle_pauses_in_proportion() {
        let tick = Duration::from_millis(10);
        let mut t = CpuThrottle::new(250, tick);
        let start = t.base;
        // Ran 10 ms at 250m: pause 30 ms.
        assert_eq!(
            t.pause(start + Duration::from_millis(10)),
            Some(Duration::from_millis(30))
        );
        // Resumed at 45 ms (the pause ran late), ran 5 ms: pause 15 ms.
        t.resumed.store(45_000_000, Ordering::Relaxed);
        assert_eq!(
            t.pause(start + Duration::from_millis(50)),
            Some(Duration::from_millis(15))
        );
        // A long gap (blocked in the host) counts as at most two ticks.
        let later = start + Duration::from_secs(5);
        assert_eq!(t.pause(later), Some(Duration::from_millis(60)));
        let mut full = CpuThrottle::new(1000, tick);
        assert_eq!(full.pause(Instant::now()), None);
    }
}
