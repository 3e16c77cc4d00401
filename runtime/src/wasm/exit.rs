//! How an instance ended, in the terms Kubernetes users know.
//!
//! Owns [`ExitStatus`], [`ExitReason`] and [`classify`], the one place that turns what wasmtime
//! returned into an exit code and reason:
//!
//! | the guest | exit code | reason |
//! | --- | --- | --- |
//! | returned from `_start` / `wasi:cli/run` returned `ok` | 0 | `Completed` |
//! | called `proc_exit(n)` / `wasi:cli/exit` | n | `Completed` if 0, else `Error` |
//! | `wasi:cli/run` returned `err` | 1 | `Error` |
//! | trapped | 134 (as SIGABRT) | `Error`, message: the trap |
//! | died (trap or non-zero exit) after a memory growth was denied | 137 | `OOMKilled` |
//! | was killed (stop, remove) | 137 (as SIGKILL) | `Error`, message `killed` |
//!
//! Must not: run guests or keep state.

use std::time::SystemTime;

use wasmtime_wasi::I32Exit;

use super::error::chain;
use super::limits::DeniedGrowth;

/// Exit code of a trap, as a process killed by SIGABRT.
pub const TRAP_EXIT_CODE: i32 = 134;
/// Exit code of an instance killed or OOMKilled, as a process killed by SIGKILL.
pub const KILLED_EXIT_CODE: i32 = 137;

/// Why an instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitReason {
    /// Exit code 0.
    Completed,
    /// A non-zero exit, a trap, or a kill.
    Error,
    /// Died after its memory limit denied a growth.
    OomKilled,
}

impl ExitReason {
    /// The Kubernetes spelling: `Completed`, `Error`, `OOMKilled`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Completed => "Completed",
            ExitReason::Error => "Error",
            ExitReason::OomKilled => "OOMKilled",
        }
    }

    /// The reverse of [`ExitReason::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Completed" => Some(ExitReason::Completed),
            "Error" => Some(ExitReason::Error),
            "OOMKilled" => Some(ExitReason::OomKilled),
            _ => None,
        }
    }
}

/// The end of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: i32,
    pub reason: ExitReason,
    /// Detail for humans: the trap, `killed`, the denied growth.
    pub message: String,
    /// A memory growth was denied and the guest then died.
    pub oom_killed: bool,
    pub finished_at: SystemTime,
}

impl ExitStatus {
    fn new(code: i32, reason: ExitReason, message: String) -> Self {
        ExitStatus {
            code,
            reason,
            message,
            oom_killed: reason == ExitReason::OomKilled,
            finished_at: SystemTime::now(),
        }
    }

    /// Stopped on request.
    pub fn killed() -> Self {
        ExitStatus::new(KILLED_EXIT_CODE, ExitReason::Error, "killed".to_string())
    }

    /// Ended on its own terms, exit code 0 (a function that drained after a stop).
    pub(crate) fn completed() -> Self {
        ExitStatus::new(0, ExitReason::Completed, String::new())
    }

    /// The run task ended without reporting (it panicked).
    pub(crate) fn lost(detail: &str) -> Self {
        ExitStatus::new(
            TRAP_EXIT_CODE,
            ExitReason::Error,
            format!("the executor lost the instance: {detail}"),
        )
    }

    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// What the guest's entry point returned.
pub(crate) enum RunEnd {
    /// `_start` returned, or `wasi:cli/run` returned `ok`.
    Returned,
    /// `wasi:cli/run` returned `err`.
    RunFailed,
}

/// The exit status of a guest whose entry point returned `result`, given the denied growth (if
/// any) of its memory limit.
pub(crate) fn classify(
    result: &wasmtime::Result<RunEnd>,
    denied: Option<DeniedGrowth>,
) -> ExitStatus {
    let (code, trap) = match result {
        Ok(RunEnd::Returned) => (0, None),
        Ok(RunEnd::RunFailed) => (1, None),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => (*code, None),
            None => (TRAP_EXIT_CODE, Some(trap_message(e))),
        },
    };
    if let (true, Some(d)) = (code != 0, denied) {
        return ExitStatus::new(
            KILLED_EXIT_CODE,
            ExitReason::OomKilled,
            format!(
                "memory limit reached: growing linear memory from {} to {} bytes was denied{}",
                d.current,
                d.desired,
                trap.map(|t| format!("; then {t}")).unwrap_or_default()
            ),
        );
    }
    match (code, trap) {
        (0, _) => ExitStatus::new(0, ExitReason::Completed, String::new()),
        (code, Some(t)) => ExitStatus::new(code, ExitReason::Error, t),
        (code, None) => ExitStatus::new(code, ExitReason::Error, format!("exit code {code}")),
    }
}

/// `wasm trap: <what>` (without the backtrace; the log gets that).
fn trap_message(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("wasm trap: {trap}"),
        None => chain(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_and_traps() {
        let ok = classify(&Ok(RunEnd::Returned), None);
        assert_eq!((ok.code, ok.reason), (0, ExitReason::Completed));
        let run_err = classify(&Ok(RunEnd::RunFailed), None);
        assert_eq!((run_err.code, run_err.reason), (1, ExitReason::Error));
        let exit3 = classify(&Err(wasmtime::Error::new(I32Exit(3))), None);
        assert_eq!((exit3.code, exit3.reason), (3, ExitReason::Error));
        let exit0 = classify(&Err(wasmtime::Error::new(I32Exit(0))), None);
        assert_eq!((exit0.code, exit0.reason), (0, ExitReason::Completed));
        let trap = classify(
            &Err(wasmtime::Error::new(wasmtime::Trap::UnreachableCodeReached)),
            None,
        );
        assert_eq!((trap.code, trap.reason), (134, ExitReason::Error));
        assert!(trap.message.starts_with("wasm trap: "), "{}", trap.message);
    }

    #[test]
    fn dying_after_a_denied_growth_is_oomkilled() {
        let denied = Some(DeniedGrowth {
            current: 1,
            desired: 2,
        });
        let s = classify(&Err(wasmtime::Error::new(I32Exit(12))), denied);
        assert_eq!(
            (s.code, s.reason, s.oom_killed),
            (137, ExitReason::OomKilled, true)
        );
        // A guest that copes with the denial and exits 0 completed.
        let s = classify(&Err(wasmtime::Error::new(I32Exit(0))), denied);
        assert_eq!(
            (s.code, s.reason, s.oom_killed),
            (0, ExitReason::Completed, false)
        );
        assert_eq!(ExitReason::parse(s.reason.as_str()), Some(s.reason));
    }
}
