//! What one instance uses, from wasmtime's own accounting rather than the process's: so that
//! instances sharing a process (a node's Wasm pods in one shim) each have figures of their own.
//!
//! Owns [`Usage`], the counters an instance's store and its run task update, and
//! [`InstanceUsage`], a reading of them:
//! - memory: the bytes of its linear memories and tables, as the store's limiter approves their
//!   creation and growth ([`super::limits`]); nothing once the instance has ended and its store
//!   is gone;
//! - CPU: the CPU time of the threads that ran its guest, measured around each poll of its run
//!   ([`accounted`]). An instance is a tokio task that any worker thread may poll, so a
//!   per-thread clock alone cannot tell instances apart; each poll runs the guest (and the host
//!   calls it makes) on one thread until it yields at an epoch tick or waits in the host, and
//!   that thread's CPU clock (`CLOCK_THREAD_CPUTIME_ID`) read before and after the poll is its
//!   guest's time, not counting time the thread was preempted. Work a host call hands to another
//!   thread (wasmtime-wasi's blocking file I/O) is not counted.
//!
//! Must not: limit anything (that is `limits`).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bytes per table element: wasmtime stores a pointer per element.
pub(crate) const TABLE_ELEMENT_BYTES: u64 = std::mem::size_of::<usize>() as u64;

/// An instance's counters, shared by its store's limiter, its run task and its handles.
#[derive(Debug, Default)]
pub(crate) struct Usage {
    memory_bytes: AtomicU64,
    table_bytes: AtomicU64,
    cpu_nanos: AtomicU64,
}

/// What an instance uses, read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceUsage {
    /// Bytes of its linear memories (their current size, touched or not).
    pub memory_bytes: u64,
    /// Bytes of its tables (a pointer per element).
    pub table_bytes: u64,
    /// CPU time its guest has used.
    pub cpu: Duration,
}

impl Usage {
    pub(crate) fn read(&self) -> InstanceUsage {
        InstanceUsage {
            memory_bytes: self.memory_bytes.load(Ordering::Relaxed),
            table_bytes: self.table_bytes.load(Ordering::Relaxed),
            cpu: Duration::from_nanos(self.cpu_nanos.load(Ordering::Relaxed)),
        }
    }

    /// A linear memory was made or grew by `bytes`.
    pub(crate) fn add_memory(&self, bytes: u64) {
        self.memory_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A table was made or grew by `elements`.
    pub(crate) fn add_table(&self, elements: u64) {
        self.table_bytes.fetch_add(
            elements.saturating_mul(TABLE_ELEMENT_BYTES),
            Ordering::Relaxed,
        );
    }

    /// A store that had made or grown memories by `bytes` is gone.
    pub(crate) fn sub_memory(&self, bytes: u64) {
        let _ = (self.memory_bytes).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
            Some(m.saturating_sub(bytes))
        });
    }

    /// A store that had made or grown tables by `elements` is gone.
    pub(crate) fn sub_table(&self, elements: u64) {
        let bytes = elements.saturating_mul(TABLE_ELEMENT_BYTES);
        let _ = (self.table_bytes).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
            Some(t.saturating_sub(bytes))
        });
    }

    /// The store is gone, and its memories and tables with it.
    pub(crate) fn released(&self) {
        self.memory_bytes.store(0, Ordering::Relaxed);
        self.table_bytes.store(0, Ordering::Relaxed);
    }

    fn add_cpu(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.cpu_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// The calling thread's CPU time.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Runs `fut`, adding the CPU time of each of its polls to `usage`.
pub(crate) async fn accounted<F: Future>(fut: F, usage: &Usage) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        let before = thread_cpu();
        let polled = fut.as_mut().poll(cx);
        usage.add_cpu(thread_cpu().saturating_sub(before));
        polled
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_polls_of_the_future_are_counted() {
        let usage = Usage::default();
        let spin = |d: Duration| {
            let start = thread_cpu();
            while thread_cpu().saturating_sub(start) < d {
                std::hint::black_box(0u64);
            }
        };
        accounted(
            async {
                spin(Duration::from_millis(30));
                // Waiting costs nothing.
                tokio::time::sleep(Duration::from_millis(50)).await;
                spin(Duration::from_millis(30));
            },
            &usage,
        )
        .await;
        // Not inside the future: not counted.
        spin(Duration::from_millis(30));
        let cpu = usage.read().cpu;
        assert!(
            cpu >= Duration::from_millis(60) && cpu < Duration::from_millis(85),
            "{cpu:?}"
        );
    }

    #[test]
    fn memory_and_tables_add_up_until_released() {
        let usage = Usage::default();
        usage.add_memory(64 << 10);
        usage.add_memory(128 << 10);
        usage.add_table(10);
        let read = usage.read();
        assert_eq!(read.memory_bytes, 192 << 10);
        assert_eq!(read.table_bytes, 10 * TABLE_ELEMENT_BYTES);
        usage.released();
        assert_eq!(usage.read().memory_bytes + usage.read().table_bytes, 0);
    }
}
