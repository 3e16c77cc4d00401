//! Restart decisions: restartPolicy and CrashLoopBackOff timing, as Kubernetes does it.
//!
//! After a container ends, it restarts per policy (Always; OnFailure on a non-zero exit; Never
//! never) after a back-off of 10 s, doubling per consecutive crash up to 5 min; a run of 10 min
//! or more resets the back-off.

use std::time::Duration;

pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A run at least this long resets the back-off.
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// Does a container that ended with `exit_code` restart under `policy`?
pub fn restarts(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// The delay before the next start, given how many consecutive short runs preceded it
/// (`streak` 0 for the first restart).
pub fn backoff(streak: u32) -> Duration {
    BACKOFF_BASE
        .checked_mul(1u32 << streak.min(16))
        .map_or(BACKOFF_MAX, |d| d.min(BACKOFF_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(restarts("Always", 0));
        assert!(restarts("", 0));
        assert!(restarts("OnFailure", 1));
        assert!(!restarts("OnFailure", 0));
        assert!(!restarts("Never", 1));
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        let secs: Vec<u64> = (0..7).map(|s| backoff(s).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(40), BACKOFF_MAX);
    }
}
