//! Linux tasks: an ordinary OCI bundle run in skiff's linux executor, so that the shim stands in
//! for runc.
//!
//! The executor's state lives inside the bundle (`<bundle>/skiff/<id>`), which containerd removes
//! after Delete, and its init is this binary (`containerd-shim-skiff-v1 linux-init ...`). The
//! container's init is reparented to the shim (a subreaper) once the executor's init exits, so
//! the shim waits for it by pid. Without output FIFOs and with a log file annotation, the
//! init's stdout and stderr are pipes into that CRI log ([`LinuxLog`]), drained before its exit
//! is published. Must not: run Wasm (that is `wasm`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::Signal;
use skiff_runtime::linux::{LinuxRuntime, StdioSet, executor_id};

use crate::logfile::LinuxLog;
use crate::stdio::Opened;

/// The first argument that makes this binary the executor's container init.
pub const INIT_ARG: &str = "linux-init";

/// A Linux task of this shim.
pub struct LinuxTask {
    pub runtime: LinuxRuntime,
    /// The executor's id for the container.
    pub id: String,
    /// The init's output on its way to a CRI log file, if it goes to one.
    pub log: Option<LinuxLog>,
}

/// The executor's state root for a bundle.
pub fn state_root(bundle: &Path) -> PathBuf {
    bundle.join("skiff")
}

/// Where every shim's inits keep compiled seccomp filters: one directory for the node, since a
/// shim's state root lives and dies with one bundle (`skiff_runtime::linux::seccomp`).
pub const SECCOMP_CACHE: &str = "/run/skiff/seccomp";

/// The executor for a bundle. Its inits run from this shim's sealed binary (one per shim,
/// made at the first Linux task: `skiff_runtime::linux::sealed_exe`).
pub fn runtime(bundle: &Path) -> Result<LinuxRuntime, String> {
    let exe = skiff_runtime::linux::sealed_exe::init_program().map_err(|e| e.to_string())?;
    Ok(
        LinuxRuntime::new(state_root(bundle), vec![exe, OsString::from(INIT_ARG)])
            .map_err(|e| e.to_string())?
            .with_seccomp_cache(PathBuf::from(SECCOMP_CACHE)),
    )
}

fn stdio_set(opened: Opened) -> StdioSet {
    StdioSet {
        stdin: opened.stdin.map(Stdio::from),
        stdout: opened.stdout.map(Stdio::from),
        stderr: opened.stderr.map(Stdio::from),
    }
}

impl LinuxTask {
    /// Creates the container (set up, waiting for Start); returns it and its init's pid.
    /// `log`: where `opened`'s output pipes lead, if to a log file.
    pub fn create(
        id: &str,
        bundle: &Path,
        opened: Opened,
        log: Option<LinuxLog>,
    ) -> Result<(Self, u32), String> {
        let runtime = runtime(bundle)?;
        let exec_id = executor_id(id);
        let state = runtime
            .create(&exec_id, bundle, stdio_set(opened))
            .map_err(|e| e.to_string())?;
        Ok((
            LinuxTask {
                runtime,
                id: exec_id,
                log,
            },
            state.saved.pid as u32,
        ))
    }

    pub fn kill(&self, signal: Signal, all: bool) -> Result<(), String> {
        self.runtime
            .kill(&self.id, signal, all)
            .map_err(|e| e.to_string())
    }

    pub fn oom_killed(&self) -> bool {
        self.runtime.oom_killed(&self.id).unwrap_or(false)
    }

    pub fn pids(&self) -> Vec<u32> {
        self.runtime
            .state(&self.id)
            .ok()
            .and_then(|s| skiff_runtime::linux::cgroups::Cgroup::new(&s.saved.cgroup).ok())
            .map(|cg| cg.pids().into_iter().map(|p| p as u32).collect())
            .unwrap_or_default()
    }

    pub fn usage(&self) -> Result<skiff_runtime::linux::cgroups::Usage, String> {
        self.runtime.usage(&self.id).map_err(|e| e.to_string())
    }

    /// Runs an exec process (an OCI `process`) in the container; the child exits with it.
    pub fn exec(
        &self,
        process: &oci_spec::runtime::Process,
        opened: Opened,
    ) -> Result<std::process::Child, String> {
        self.runtime
            .exec(&self.id, process, stdio_set(opened))
            .map_err(|e| e.to_string())
    }
}

/// Waits (blocking) for a container init or exec child `pid`; its exit code.
pub fn wait(pid: u32) -> u32 {
    match skiff_runtime::linux::wait_pid(pid as i32) {
        Ok(code) => code as u32,
        Err(e) => {
            log::error!("{e}");
            255
        }
    }
}

/// Cleans what a killed shim left of a Linux task in `bundle`: kills its processes, removes its
/// cgroup and state. Nothing to do if the bundle has no executor state.
pub fn cleanup(bundle: &Path, id: &str) {
    let root = state_root(bundle);
    if !root.exists() {
        return;
    }
    // Delete runs no init: no sealed binary is needed (nor made) for it.
    let unsealed = vec![OsString::from("/proc/self/exe"), OsString::from(INIT_ARG)];
    if let Ok(runtime) = LinuxRuntime::new(root, unsealed)
        && let Err(e) = runtime.delete(&executor_id(id), true)
    {
        log::warn!("cleaning container {id}: {e}");
    }
}
