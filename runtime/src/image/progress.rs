//! Pull progress: what a caller's callback is told, and how often.
//!
//! The callback hears about each blob that is downloaded (not about cache hits): once when it
//! starts, then at most every [`INTERVAL`] while bytes arrive, and once when it is complete.

use std::time::{Duration, Instant};

/// The shortest time between two reports of the same blob.
pub const INTERVAL: Duration = Duration::from_millis(250);

/// One report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The blob being downloaded (`sha256:...`).
    pub digest: String,
    /// `"module"` (a Wasm artifact's layer), `"layer"` (an OCI image layer) or `"config"`.
    pub what: &'static str,
    /// 1-based position among the blobs this pull may download, and their number.
    pub index: usize,
    pub count: usize,
    /// Bytes received so far, and the blob's size.
    pub done: u64,
    pub total: u64,
}

/// The callback type [`super::ImageStore::pull`] takes.
pub type ProgressFn<'a> = dyn Fn(&Progress) + Send + Sync + 'a;

/// Calls the callback at most every [`INTERVAL`], always for the first and the last report.
pub(super) struct Throttle<'a> {
    callback: &'a ProgressFn<'a>,
    report: Progress,
    last: Option<Instant>,
}

impl<'a> Throttle<'a> {
    pub fn new(callback: &'a ProgressFn<'a>, report: Progress) -> Self {
        let mut t = Self {
            callback,
            report,
            last: None,
        };
        t.update(0);
        t
    }

    pub fn update(&mut self, done: u64) {
        self.report.done = done;
        let now = Instant::now();
        let due = self.last.is_none_or(|l| now.duration_since(l) >= INTERVAL);
        if due || done == self.report.total {
            (self.callback)(&self.report);
            self.last = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn reports_first_last_and_little_in_between() {
        let seen = Mutex::new(Vec::new());
        let callback = |p: &Progress| seen.lock().unwrap().push(p.done);
        let mut t = Throttle::new(
            &callback,
            Progress {
                digest: "sha256:x".into(),
                what: "layer",
                index: 1,
                count: 1,
                done: 0,
                total: 1000,
            },
        );
        for done in 1..=1000 {
            t.update(done);
        }
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.first(), Some(&0));
        assert_eq!(seen.last(), Some(&1000));
        // A fast loop is over well within one interval: nothing in between.
        assert!(seen.len() <= 3, "{seen:?}");
    }
}
