//! Resource limits of one instance: memory (a `ResourceLimiter`) and CPU (the epoch callback).
//!
//! Owns [`Limits`]: it denies linear-memory growth past the spec's memory limit (and records that
//! it did, so that a guest that then dies is reported OOMKilled), bounds table growth, and decides
//! at every epoch tick whether the guest yields at once (fairness) or sleeps first (CPU limit).
//! Must not: classify exits or touch WASI.

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
        match self.cpu.as_mut().and_then(|c| c.pause(Instant::now())) {
            Some(pause) => UpdateDeadline::YieldCustom(1, Box::pin(tokio::time::sleep(pause))),
            None => UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now())),
        }
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
/// `ran * (1000 - m) / m` so that over time it runs `m / 1000` of the wall clock.
struct CpuThrottle {
    millicores: u32,
    tick: Duration,
    resumed_at: Instant,
}

impl CpuThrottle {
    fn new(millicores: u32, tick: Duration) -> Self {
        CpuThrottle {
            millicores: millicores.max(1),
            tick,
            resumed_at: Instant::now(),
        }
    }

    /// How long to pause now, if at all.
    fn pause(&mut self, now: Instant) -> Option<Duration> {
        if self.millicores >= 1000 {
            self.resumed_at = now;
            return None;
        }
        let ran = now
            .saturating_duration_since(self.resumed_at)
            .min(self.tick * 2);
        let pause = ran * (1000 - self.millicores) / self.millicores;
        self.resumed_at = now + pause;
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
        let start = Instant::now();
        let mut t = CpuThrottle::new(250, tick);
        t.resumed_at = start;
        // Ran 10 ms at 250m: pause 30 ms.
        assert_eq!(
            t.pause(start + Duration::from_millis(10)),
            Some(Duration::from_millis(30))
        );
        // A long gap (blocked in the host) counts as at most two ticks.
        let later = start + Duration::from_secs(5);
        assert_eq!(t.pause(later), Some(Duration::from_millis(60)));
        let mut full = CpuThrottle::new(1000, tick);
        assert_eq!(full.pause(Instant::now()), None);
    }
}
