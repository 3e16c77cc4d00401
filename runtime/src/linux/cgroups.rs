//! Cgroups of containers, v1 and v2: create one, apply `linux.resources` (memory, cpu quota and
//! shares/weight, pids), put a process in, read usage and OOM kills, kill everything in it,
//! remove it.
//!
//! v2 when `/sys/fs/cgroup` is a cgroup2 mount (`cgroup.controllers` at its root); otherwise v1
//! with the `memory`, `pids`, `cpu` and `cpuacct` hierarchies under `/sys/fs/cgroup/<name>` (a
//! hybrid host's empty `unified` tree is not used). A cgroup is named by a path relative to each
//! hierarchy's root (`/skiff/<id>` by default), never `..`.
//!
//! Must not: touch a cgroup outside the path it was given, or move processes it was not asked to.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

use super::error::LinuxError;

const ROOT: &str = "/sys/fs/cgroup";
const V1_CONTROLLERS: &[&str] = &["memory", "pids", "cpu", "cpuacct"];

/// Which cgroup hierarchy the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

pub fn version() -> Version {
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        Version::V2
    } else {
        Version::V1
    }
}

/// One container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    version: Version,
    /// Relative to each hierarchy root, without a leading `/`.
    relative: PathBuf,
}

fn err(path: &Path, message: impl Into<String>) -> LinuxError {
    LinuxError::Cgroup {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn write(path: &Path, value: &str) -> Result<(), LinuxError> {
    std::fs::write(path, value).map_err(|e| err(path, format!("writing {value:?}: {e}")))
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Usage figures for Stats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub memory_bytes: u64,
    pub memory_limit: u64,
    pub pids: u64,
    pub cpu_nanos: u64,
}

impl Cgroup {
    /// A cgroup named by `path` (`/skiff/web`, or relative); `..` is refused.
    pub fn new(path: &str) -> Result<Self, LinuxError> {
        let p = Path::new(path.trim_start_matches('/'));
        if p.as_os_str().is_empty() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(err(p, "must be a plain path below the cgroup root"));
        }
        Ok(Self {
            version: version(),
            relative: p.to_path_buf(),
        })
    }

    pub fn relative(&self) -> String {
        format!("/{}", self.relative.display())
    }

    /// The directories of this cgroup: one per v1 controller, or the one v2 directory.
    pub fn dirs(&self) -> Vec<PathBuf> {
        match self.version {
            Version::V2 => vec![Path::new(ROOT).join(&self.relative)],
            // Only the hierarchies this host mounts.
            Version::V1 => V1_CONTROLLERS
                .iter()
                .filter(|c| Path::new(ROOT).join(c).is_dir())
                .map(|c| Path::new(ROOT).join(c).join(&self.relative))
                .collect(),
        }
    }

    fn dir(&self, controller: &str) -> PathBuf {
        match self.version {
            Version::V2 => Path::new(ROOT).join(&self.relative),
            Version::V1 => Path::new(ROOT).join(controller).join(&self.relative),
        }
    }

    /// Creates the cgroup and applies the limits.
    pub fn create(&self, resources: Option<&LinuxResources>) -> Result<(), LinuxError> {
        if self.version == Version::V2 {
            self.enable_v2_controllers()?;
        }
        for dir in self.dirs() {
            std::fs::create_dir_all(&dir).map_err(|e| err(&dir, format!("creating: {e}")))?;
        }
        if let Some(r) = resources {
            self.apply(r)?;
        }
        Ok(())
    }

    /// v2: every ancestor must delegate memory, cpu and pids to its children.
    fn enable_v2_controllers(&self) -> Result<(), LinuxError> {
        let available = read(&Path::new(ROOT).join("cgroup.controllers")).unwrap_or_default();
        let wanted: Vec<&str> = ["memory", "cpu", "pids"]
            .into_iter()
            .filter(|c| available.split_whitespace().any(|a| a == *c))
            .collect();
        let mut dir = PathBuf::from(ROOT);
        let parents: Vec<_> = self.relative.components().collect();
        for c in &parents[..parents.len().saturating_sub(1)] {
            let control = dir.join("cgroup.subtree_control");
            for w in &wanted {
                write(&control, &format!("+{w}"))?;
            }
            dir = dir.join(c.as_os_str());
            std::fs::create_dir_all(&dir).map_err(|e| err(&dir, format!("creating: {e}")))?;
        }
        let control = dir.join("cgroup.subtree_control");
        for w in &wanted {
            write(&control, &format!("+{w}"))?;
        }
        Ok(())
    }

    fn apply(&self, r: &LinuxResources) -> Result<(), LinuxError> {
        let v2 = self.version == Version::V2;
        if let Some(limit) = r
            .memory()
            .as_ref()
            .and_then(|m| m.limit())
            .filter(|l| *l > 0)
        {
            let dir = self.dir("memory");
            if v2 {
                write(&dir.join("memory.max"), &limit.to_string())?;
                // No swap beyond the limit, as Kubernetes nodes run.
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, "0")?;
                }
            } else {
                write(&dir.join("memory.limit_in_bytes"), &limit.to_string())?;
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, &limit.to_string())?;
                }
            }
        }
        if let Some(cpu) = r.cpu() {
            let dir = self.dir("cpu");
            let period = cpu.period().unwrap_or(100_000);
            if let Some(quota) = cpu.quota().filter(|q| *q > 0) {
                if v2 {
                    write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
                } else {
                    write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
                    write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                }
            }
            if let Some(shares) = cpu.shares().filter(|s| *s > 0) {
                if v2 {
                    // The conversion runc and the kubelet use.
                    let weight = 1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
                    write(&dir.join("cpu.weight"), &weight.to_string())?;
                } else {
                    write(&dir.join("cpu.shares"), &shares.to_string())?;
                }
            }
        }
        if let Some(pids) = r.pids().as_ref().filter(|p| p.limit() > 0) {
            let dir = self.dir("pids");
            if dir.exists() {
                write(&dir.join("pids.max"), &pids.limit().to_string())?;
            }
        }
        Ok(())
    }

    /// Moves `pid` into the cgroup (every v1 hierarchy).
    pub fn join(&self, pid: i32) -> Result<(), LinuxError> {
        for dir in self.dirs().iter().filter(|d| d.exists()) {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Moves the calling thread into the cgroup (every v1 hierarchy's `tasks`, `0` for "me").
    /// Called while the process has a single thread, this moves the whole process without the
    /// kernel's global threadgroup lock, whose write side waits for an RCU grace period
    /// (milliseconds) on every `cgroup.procs` write: Linux 6.1 and later skip it for the writer's
    /// own thread. v2 has no such file outside threaded subtrees: there the whole process moves
    /// through `cgroup.procs`, as [`Cgroup::join`] does.
    pub fn join_current_thread(&self) -> Result<(), LinuxError> {
        let file = match self.version {
            Version::V1 => "tasks",
            Version::V2 => "cgroup.procs",
        };
        for dir in self.dirs().iter().filter(|d| d.exists()) {
            write(&dir.join(file), "0")?;
        }
        Ok(())
    }

    /// The processes in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let dir = self.dir("pids");
        let dir = if dir.exists() {
            dir
        } else {
            self.dir("memory")
        };
        read(&dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Sends `signal` to every process in the cgroup.
    pub fn signal_all(&self, signal: nix::sys::signal::Signal) {
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    /// Was a process of the cgroup killed for memory?
    pub fn oom_killed(&self) -> bool {
        let dir = self.dir("memory");
        let (file, key) = match self.version {
            Version::V2 => ("memory.events", "oom_kill"),
            Version::V1 => ("memory.oom_control", "oom_kill"),
        };
        read(&dir.join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .any(|(k, v)| k == key && v.trim().parse::<u64>().is_ok_and(|n| n > 0))
    }

    pub fn usage(&self) -> Usage {
        let num = |p: PathBuf| {
            read(&p)
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        match self.version {
            Version::V2 => {
                let dir = self.dir("memory");
                let cpu = read(&dir.join("cpu.stat"))
                    .unwrap_or_default()
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                Usage {
                    memory_bytes: num(dir.join("memory.current")),
                    memory_limit: num(dir.join("memory.max")),
                    pids: num(dir.join("pids.current")),
                    cpu_nanos: cpu * 1000,
                }
            }
            Version::V1 => Usage {
                memory_bytes: num(self.dir("memory").join("memory.usage_in_bytes")),
                memory_limit: num(self.dir("memory").join("memory.limit_in_bytes")),
                pids: num(self.dir("pids").join("pids.current")),
                cpu_nanos: num(self.dir("cpuacct").join("cpuacct.usage")),
            },
        }
    }

    /// Kills what is left and removes the cgroup directories (retrying while the kernel
    /// finishes reaping).
    pub fn destroy(&self) -> Result<(), LinuxError> {
        for attempt in 0..50 {
            self.signal_all(nix::sys::signal::Signal::SIGKILL);
            let mut busy = None;
            for dir in self.dirs() {
                match std::fs::remove_dir(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => busy = Some((dir, e)),
                }
            }
            match busy {
                None => return Ok(()),
                Some((dir, e)) if attempt == 49 => {
                    return Err(err(&dir, format!("removing: {e}")));
                }
                Some(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        Ok(())
    }
}
