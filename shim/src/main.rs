//! containerd-shim-skiff-v1: a containerd shim v2 (runtime `io.containerd.skiff.v1`) over
//! skiff-runtime, so that a plain containerd runs skiff's Wasm and OCI workloads.
//!
//! `ctr run --runtime io.containerd.skiff.v1 IMAGE ID [ARGS...]`: an image whose entrypoint is a
//! `.wasm` file runs in skiff's wasm executor inside the shim process (limits from the spec's
//! `linux.resources`; a shim of its own, or its pod's, in the task's cgroup; a node group's shim
//! in none); any other image runs in skiff's linux
//! executor, as runc would run it. The protocol (ttrpc task service, event publishing, flags)
//! comes from the `containerd-shim` crate; [`actions`] answers `start` (bind, fork the server) and
//! `delete` before any async runtime exists, [`shim`] implements the crate's lifecycle hooks and
//! [`service`] the task API over [`container`]s.
//!
//! The binary is also the linux executor's container init (`containerd-shim-skiff-v1 linux-init
//! ...`), dispatched before any thread starts.
//!
//! Must not: talk to skiff's control plane (a shim serves containerd, or a skiff agent, through
//! the same task API).

mod actions;
mod cgroup;
mod container;
mod errors;
mod events;
mod function;
mod host_interfaces;
mod linux;
mod logfile;
mod logging;
mod process;
mod reaper;
mod rootfs;
mod service;
mod shim;
mod stats;
mod stdio;
mod trace;
mod wasm;

use std::ffi::OsString;

/// A std mutex locked whether or not a thread panicked holding it: what the shim guards with one
/// stays consistent at every step.
pub trait Locked<T> {
    fn locked(&self) -> std::sync::MutexGuard<'_, T>;
}

impl<T> Locked<T> for std::sync::Mutex<T> {
    fn locked(&self) -> std::sync::MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The runtime name containerd knows this shim by.
pub const RUNTIME_ID: &str = "io.containerd.skiff.v1";

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == linux::INIT_ARG) {
        std::process::exit(skiff_runtime::linux::init_main(&args[2..]));
    }
    // `start` and `delete` run around every task: answered here, before any thread exists
    // (the server `start` forks installs the tracing subscriber itself; `delete` has nowhere to
    // send a log).
    if let Ok(flags) = containerd_shim::parse(&args[1..])
        && !flags.version
        && !flags.info
    {
        match flags.action.as_str() {
            "start" => std::process::exit(actions::start(&flags)),
            "delete" => std::process::exit(actions::delete(&flags)),
            _ => {}
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{RUNTIME_ID}: starting the async runtime: {e}");
            std::process::exit(1);
        }
    };
    // Inside the runtime: the span exporter's gRPC channel lives on it.
    let telemetry = {
        let _runtime = runtime.enter();
        logging::init()
    };
    // The shim waits for each of its processes by pid itself (exit codes, OOM), so the
    // framework must not reap children behind its back.
    let config = containerd_shim::Config {
        no_reaper: true,
        ..Default::default()
    };
    runtime.block_on(containerd_shim::asynchronous::run::<shim::SkiffShim>(
        RUNTIME_ID,
        Some(config),
    ));
    telemetry.shutdown();
}
