//! Cgroups a test leaves behind: killed and removed, on cgroup v1 (each hierarchy) and v2.

use std::path::Path;
use std::time::Duration;

/// Kills every process in cgroup `relative` (e.g. `skiff/<id>`) and removes it, in every
/// hierarchy that has it.
pub fn remove(relative: &str) {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join(relative)];
    if let Ok(entries) = std::fs::read_dir(root) {
        dirs.extend(entries.flatten().map(|e| e.path().join(relative)));
    }
    for dir in dirs.into_iter().filter(|d| d.is_dir()) {
        for _ in 0..50 {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            if procs.trim().is_empty() {
                break;
            }
            for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir(&dir);
    }
}
