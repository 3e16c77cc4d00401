//! The executor's only unsafe code: `fork` in the single-threaded init process.
//!
//! `skiff linux-init` is a fresh process image that has started no thread when it forks (no
//! tokio, no logging thread), and so is `skiff oci` (dispatched before the async runtime
//! starts), so the child may run arbitrary code afterwards — the condition `fork` requires in a
//! Rust program. Everything else the executor needs has a safe wrapper.

#![allow(unsafe_code)]

use nix::unistd::ForkResult;

/// Forks the calling process.
///
/// Callers must be single-threaded: the init (which creates no thread), `skiff oci`'s
/// in-process create, and the shim's `start` (both dispatched before any thread starts).
pub fn fork_single_threaded() -> nix::Result<ForkResult> {
    // After joining a container's mount namespace /proc is the container's, where this process
    // has no /proc/self: then the count cannot be read (exec checks it before joining).
    debug_assert!(
        thread_count().is_none_or(|n| n == 1),
        "fork from a multi-threaded init"
    );
    // SAFETY: the init process is single-threaded here (see the module doc), so no lock or
    // allocator state can be held by another thread in the child.
    unsafe { nix::unistd::fork() }
}

/// Threads of this process, from /proc (None if it cannot be read).
pub fn thread_count() -> Option<usize> {
    std::fs::read_dir("/proc/self/task").ok().map(|d| d.count())
}

/// Resets SIGPIPE (which Rust's runtime ignores at start-up, and an ignored signal stays ignored
/// across exec) to its default, and unblocks every signal: what a container's process expects.
pub fn default_signals() {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
    // SAFETY: installing SIG_DFL runs no handler code; nothing else in this single-threaded
    // process depends on SIGPIPE being ignored after this point (the next step is exec).
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}
