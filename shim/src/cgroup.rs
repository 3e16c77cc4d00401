//! Cgroups as the shim uses them: the one a Wasm task's shim process joins (the guest runs in
//! the shim, so the process is what a cgroup can hold).
//!
//! A Wasm task's limits are wasmtime's (memory from `linux.resources.memory.limit`, CPU from the
//! quota), as on a skiff node; the cgroup at the spec's `cgroupsPath` bounds the whole process on
//! top: pids and CPU as the spec says, memory at the guest's limit plus [`SHIM_HEADROOM`] for the
//! shim's own runtime, so that the guest meets wasmtime's limit (a failed `memory.grow`, which a
//! program can handle) before the kernel's OOM killer. Only a shim of its own (or its pod's)
//! joins one: a node group's shim serves many pods and joins none
//! ([`crate::shim::in_node_group`]). Must not: destroy a cgroup the shim is
//! still in, nor signal what is in a Wasm task's cgroup (only `rmdir`).

use std::path::{Path, PathBuf};

use crate::Locked;
use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResources};
use skiff_runtime::linux::cgroups::{self, Cgroup, Version};

/// Memory the shim process needs beside its guest's (tokio, wasmtime's engine, ttrpc).
pub const SHIM_HEADROOM: i64 = 64 << 20;

/// The cgroup a Wasm task's shim process was moved into.
pub struct Joined {
    pub cgroup: Cgroup,
    /// `/proc/self/cgroup` as it was before, to go back to.
    before: String,
}

/// Moves this process into the cgroup at `path` (made with `resources`, memory raised by the
/// headroom), unless the server joined it at start ([`join_at_start`]).
pub fn join(path: &str, resources: Option<&LinuxResources>) -> Result<Joined, String> {
    if let Some(joined) = claim_joined_at_start(path) {
        return Ok(joined);
    }
    // A cgroup the shim meant to exit in, or a leave still under way, would hold this process
    // or move it back out of the new cgroup.
    let stayed = STAYING.locked().take();
    if let Some(stayed) = stayed {
        stayed.leave();
    }
    settle();
    join_with(path, resources, Move::Process)
}

/// The cgroup this shim stays in until it exits (see [`Joined::exit_in`]).
static STAYING: std::sync::Mutex<Option<Joined>> = std::sync::Mutex::new(None);

/// How [`join_with`] moves this process.
#[derive(Clone, Copy, PartialEq)]
enum Move {
    /// Through `cgroup.procs`: every thread, whatever their number.
    Process,
    /// Through the calling thread: the whole process while it has a single thread.
    CallingThread,
}

fn join_with(path: &str, resources: Option<&LinuxResources>, how: Move) -> Result<Joined, String> {
    let cgroup = Cgroup::new(path).map_err(|e| format!("linux.cgroupsPath {path:?}: {e}"))?;
    let mut resources = resources.cloned();
    if let Some(r) = resources.as_mut()
        && let Some(limit) = r.memory().as_ref().and_then(|m| m.limit())
        && limit > 0
    {
        let memory = LinuxMemoryBuilder::default()
            .limit(limit.saturating_add(SHIM_HEADROOM))
            .build()
            .map_err(|e| e.to_string())?;
        r.set_memory(Some(memory));
    }
    let before = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("reading /proc/self/cgroup: {e}"))?;
    cgroup
        .create(resources.as_ref())
        .map_err(|e| format!("creating cgroup {path}: {e}"))?;
    let joined = Joined { cgroup, before };
    let moved = match how {
        Move::Process => joined.cgroup.join(std::process::id() as i32),
        Move::CallingThread => joined.cgroup.join_current_thread(),
    };
    if let Err(e) = moved {
        // Possibly in some v1 hierarchies already: go back before removing it.
        joined.leave();
        return Err(format!("joining cgroup {path}: {e}"));
    }
    Ok(joined)
}

/// The cgroup the server joined before its first thread, until the task's Create claims it.
static JOINED_AT_START: std::sync::Mutex<Option<Joined>> = std::sync::Mutex::new(None);

/// Joins the first task's cgroup while this process has a single thread (the server just
/// forked by `start`, before its async runtime), where a v1 host moves it without waiting for an
/// RCU grace period (see [`Cgroup::join_current_thread`]); the threads it starts later are
/// created inside. Create then finds it joined ([`join`]). Returns whether it joined: not on v2
/// (no faster move there; Create joins in the background), not with a pids limit (the limit
/// would count the shim's own threads, so the runtime could not start), not from a process that
/// already has threads.
pub fn join_at_start(path: &str, resources: Option<&LinuxResources>) -> Result<bool, String> {
    let pids_limited = resources
        .and_then(|r| r.pids().as_ref())
        .is_some_and(|p| p.limit() > 0);
    if cgroups::version() != Version::V1
        || pids_limited
        || skiff_runtime::linux::thread_count() != Some(1)
    {
        return Ok(false);
    }
    let joined = join_with(path, resources, Move::CallingThread)?;
    *JOINED_AT_START.locked() = Some(joined);
    Ok(true)
}

/// The cgroup joined at start, if it is the one at `path`.
fn claim_joined_at_start(path: &str) -> Option<Joined> {
    let wanted = Cgroup::new(path).ok()?;
    let mut slot = JOINED_AT_START.locked();
    if slot.as_ref().is_some_and(|j| j.cgroup == wanted) {
        slot.take()
    } else {
        None
    }
}

/// What the server does with its task cgroups as it exits, after its async runtime and every
/// other thread are gone: on v1 its one thread leaves them the cheap way (as in
/// [`join_at_start`]) and removes them, so that `shim delete` finds nothing to wait for. Else a
/// cgroup joined at start that no task claimed (its Create failed early or never came) is left
/// the slow way, and the one of its last task stays until the exit empties it.
pub fn leave_at_exit() {
    let take = |slot: &std::sync::Mutex<Option<Joined>>| slot.locked().take();
    let (staying, unclaimed) = (take(&STAYING), take(&JOINED_AT_START));
    if staying.is_none() && unclaimed.is_none() {
        return;
    }
    let one_thread = cgroups::version() == Version::V1 && single_threaded_soon();
    if let Some(joined) = staying
        && one_thread
    {
        joined.leave_as_calling_thread();
    }
    if let Some(joined) = unclaimed {
        if one_thread {
            joined.leave_as_calling_thread();
        } else {
            joined.leave();
        }
    }
}

/// Whether this process is down to one thread, or gets there within a few milliseconds (a
/// joined thread may still be counted while the kernel finishes its exit).
fn single_threaded_soon() -> bool {
    for _ in 0..20 {
        match skiff_runtime::linux::thread_count() {
            Some(1) => return true,
            Some(_) => std::thread::sleep(std::time::Duration::from_micros(250)),
            None => return false,
        }
    }
    false
}

/// A file in a Wasm task's bundle: its shim, alive, is leaving the task's cgroup and removes it.
pub const LEAVING_MARKER: &str = "skiff-cgroup-leaving";

/// Leaves that run in the background (see [`Joined::leave_in_background`]).
static LEAVING: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// Waits for every background leave to finish: before joining again, and before the shim exits
/// (an exit would leave the cgroup, but not remove it).
pub fn settle() {
    let pending = std::mem::take(&mut *LEAVING.locked());
    for leave in pending {
        let _ = leave.join();
    }
}

impl Joined {
    /// Stays in the cgroup until the process exits: for a shim whose last task this was. The
    /// exiting server leaves and removes it once single-threaded ([`leave_at_exit`]); else the
    /// exit empties it and `shim delete` removes it, waiting for the exit. Should another task
    /// join a cgroup meanwhile, this one is left and removed first.
    pub fn exit_in(self) {
        *STAYING.locked() = Some(self);
    }

    /// As [`Joined::leave`], on a thread of its own: moving a process between cgroups waits for
    /// an RCU grace period (milliseconds), which Delete's answer need not wait for. `shim
    /// delete` may run meanwhile: it leaves a cgroup with members alone, and this removes it.
    pub fn leave_in_background(self) {
        let leave = std::thread::Builder::new()
            .name("cgroup-leave".into())
            .spawn(move || self.leave());
        match leave {
            Ok(handle) => LEAVING.locked().push(handle),
            Err(e) => log::warn!("leaving the task's cgroup: {e}"),
        }
    }

    /// Moves this process back where it was and removes the cgroup.
    pub fn leave(self) {
        let pid = std::process::id().to_string();
        for procs in original_files(&self.before, "cgroup.procs") {
            let _ = std::fs::write(&procs, &pid);
        }
        self.remove_if_left();
    }

    /// As [`Joined::leave`] for the calling thread only (v1's `tasks`), which spares the kernel's
    /// threadgroup lock: the whole process when it has a single thread.
    fn leave_as_calling_thread(self) {
        for tasks in original_files(&self.before, "tasks") {
            let _ = std::fs::write(&tasks, "0");
        }
        self.remove_if_left();
    }

    fn remove_if_left(self) {
        let mine = self.cgroup.pids();
        if mine.contains(&(std::process::id() as i32)) {
            log::warn!(
                "still in cgroup {} after leaving it: not removed",
                self.cgroup.relative()
            );
            return;
        }
        remove_dirs(&self.cgroup, false);
    }
}

/// Removes a Wasm task's cgroup directories, without signalling what is in them: the only
/// process such a cgroup can hold is a shim (this one, or a live one serving a group). With
/// `shim_gone` false, a cgroup with members is left in place with a warning. With it true (the
/// shim that held it was killed, or exits in it, and may still be exiting), and for a cgroup
/// without members that is still busy for a moment, removal is retried every 0.5 ms for up to
/// 2 s.
pub fn remove_dirs(cgroup: &Cgroup, shim_gone: bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let mut busy = None;
        for dir in cgroup.dirs() {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => busy = Some((dir, e)),
            }
        }
        let Some((dir, e)) = busy else { return };
        if std::time::Instant::now() >= deadline || (!shim_gone && !cgroup.pids().is_empty()) {
            log::warn!("removing cgroup {}: {e}", dir.display());
            return;
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
}

/// The `file` (`cgroup.procs`, or v1's `tasks`) of each cgroup a `/proc/<pid>/cgroup` text lists.
fn original_files(text: &str, file: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        if cgroups::version() == Version::V2 {
            if controllers.is_empty() {
                out.push(root.join(rel).join(file));
            }
            continue;
        }
        for c in controllers.split(',') {
            if matches!(c, "memory" | "pids" | "cpu" | "cpuacct") && root.join(c).is_dir() {
                out.push(root.join(c).join(rel).join(file));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_cgroups_are_read_per_controller() {
        let text = "12:pids:/system.slice/containerd.service\n\
                    4:memory:/system.slice/containerd.service\n\
                    3:cpu,cpuacct:/\n\
                    1:name=systemd:/x\n\
                    0::/system.slice/containerd.service\n";
        let files = original_files(text, "cgroup.procs");
        match cgroups::version() {
            Version::V2 => assert_eq!(
                files,
                [PathBuf::from(
                    "/sys/fs/cgroup/system.slice/containerd.service/cgroup.procs"
                )]
            ),
            Version::V1 => {
                assert!(files.contains(&PathBuf::from(
                    "/sys/fs/cgroup/memory/system.slice/containerd.service/cgroup.procs"
                )));
                assert!(
                    !files
                        .iter()
                        .any(|f| f.starts_with("/sys/fs/cgroup/name=systemd"))
                );
            }
        }
    }
}
