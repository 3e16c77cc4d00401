//! Linux containers of the runtime host: an overlayfs rootfs over image snapshots, a bundle, the
//! [`crate::linux`] executor, stdout/stderr piped into a CRI log, and the exit awaited.
//!
//! ```text
//! <state>/bundles/<cid>/        0700, one per container (cid: the instance id, `/` → `_`)
//!   config.json                 from ContainerSpec (crate::linux::default_spec)
//!   rootfs/                     overlayfs: lowerdir = the layers, upperdir/workdir beside it
//!   upper/ work/
//! <state>/containers/<cid>/     the executor's state (crate::linux::LinuxRuntime)
//! ```
//!
//! The host is the subreaper of every container's init (the executor's short-lived init exits
//! once the container is created), so it alone reaps them: `wait` ends when pid 1 of the
//! container does. Stop is SIGTERM, then SIGKILL after the grace period. [`ContainerHost::remove`]
//! deletes the container, unmounts its rootfs and removes its directories. A host that starts
//! finds what a crashed predecessor left (containers, mounts) and removes it: the agent then sees
//! those instances as lost, as for Wasm instances.
//!
//! Must not: know about pods; decide limits (they come in the spec).

use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::linux::default_spec::{Bind, ContainerConfig, spec_json};
use crate::linux::executor_id;
use crate::linux::{self, LinuxError, LinuxRuntime, StdioSet};
use crate::logs::{LogStream, LogWriter};
use crate::wasm::{ExitReason, ExitStatus};

/// What a container runs with; everything not here is skiff's default spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The instance id (`<pod uid>/<container>/<attempt>`).
    pub id: String,
    /// Snapshot directories, bottom layer first.
    pub layers: Vec<PathBuf>,
    pub args: Vec<String>,
    /// `NAME=value`.
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    /// A network namespace to join (the pod's), else the container gets its own.
    pub netns: Option<PathBuf>,
    pub binds: Vec<Bind>,
    pub memory_limit_bytes: Option<u64>,
    pub cpu_limit_millicores: Option<u32>,
    pub cpu_request_millicores: Option<u32>,
    pub pids_limit: Option<i64>,
    pub readonly_rootfs: bool,
    /// `None`: the default set; `Some(list)`: exactly these (`CAP_...`).
    pub capabilities: Option<Vec<String>>,
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
}

/// Why a container could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("{field}: {problem}")]
    Spec { field: String, problem: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Linux(#[from] LinuxError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Io { what, source }
}

/// A running (or exited) container.
#[derive(Clone)]
pub struct Container {
    inner: Arc<Inner>,
}

struct Inner {
    id: String,
    cid: String,
    pid: i32,
    started_at: SystemTime,
    exit: watch::Receiver<Option<ExitStatus>>,
    /// Set by `stop`: the status says so rather than guessing from the signal.
    stopping: Mutex<bool>,
    /// Set once the pid is reaped: from then on it may name another process.
    reaped: std::sync::atomic::AtomicBool,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn started_at(&self) -> SystemTime {
        self.inner.started_at
    }

    pub fn is_same(&self, other: &Container) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub fn status(&self) -> Option<ExitStatus> {
        self.inner.exit.borrow().clone()
    }

    pub async fn wait(&self) -> ExitStatus {
        let mut rx = self.inner.exit.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(s) => s.clone().unwrap_or_else(|| lost("no status")),
            Err(_) => lost("the wait task ended without a status"),
        }
    }
}

fn lost(detail: &str) -> ExitStatus {
    ExitStatus {
        code: 128,
        reason: ExitReason::Error,
        message: format!("runtime host lost the container: {detail}"),
        oom_killed: false,
        finished_at: SystemTime::now(),
    }
}

/// The containers side of a runtime host.
#[derive(Clone)]
pub struct ContainerHost {
    runtime: LinuxRuntime,
    bundles: PathBuf,
}

impl std::fmt::Debug for ContainerHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerHost")
            .field("bundles", &self.bundles)
            .finish_non_exhaustive()
    }
}

impl ContainerHost {
    /// Containers under `state` (0700), their init run as `init_command` (`skiff linux-init`).
    /// Makes this process the subreaper of its containers and removes what a previous host left.
    pub fn new(
        state: &Path,
        init_command: Vec<std::ffi::OsString>,
    ) -> Result<Self, ContainerError> {
        let runtime = LinuxRuntime::new(state.join("containers"), init_command)?;
        let bundles = state.join("bundles");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&bundles)
            .map_err(io_err(format!("creating {}", bundles.display())))?;
        linux::become_subreaper()?;
        let host = ContainerHost { runtime, bundles };
        host.clean_leftovers();
        Ok(host)
    }

    fn clean_leftovers(&self) {
        for st in self.runtime.list() {
            tracing::warn!(container = %st.saved.id, "removing a container a previous runtime host left");
            let _ = self.runtime.delete(&st.saved.id, true);
        }
        if let Ok(entries) = std::fs::read_dir(&self.bundles) {
            for e in entries.flatten() {
                remove_bundle(&e.path());
            }
        }
    }

    /// Creates and starts the container (blocking: call from a blocking thread).
    pub fn start(&self, spec: &ContainerSpec) -> Result<Container, ContainerError> {
        let cid = executor_id(&spec.id);
        if spec.layers.is_empty() {
            return Err(ContainerError::Spec {
                field: "spec.layers".into(),
                problem: "required".into(),
            });
        }
        let dir = self.bundles.join(&cid);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(format!("creating {}", dir.display())))?;
        match self.start_in(&dir, &cid, spec) {
            Ok(c) => Ok(c),
            Err(e) => {
                let _ = self.runtime.delete(&cid, true);
                remove_bundle(&dir);
                Err(e)
            }
        }
    }

    fn start_in(
        &self,
        dir: &Path,
        cid: &str,
        spec: &ContainerSpec,
    ) -> Result<Container, ContainerError> {
        let rootfs = dir.join("rootfs");
        for d in ["rootfs", "upper", "work"] {
            let p = dir.join(d);
            std::fs::create_dir(&p).map_err(io_err(format!("creating {}", p.display())))?;
        }
        mount_overlay(&spec.layers, &dir.join("upper"), &dir.join("work"), &rootfs)?;
        let config = container_config(spec);
        let json =
            serde_json::to_vec_pretty(&spec_json(&config)).map_err(|e| ContainerError::Io {
                what: "config.json".into(),
                source: e.into(),
            })?;
        std::fs::write(dir.join("config.json"), json)
            .map_err(io_err(format!("writing {}/config.json", dir.display())))?;

        let log = LogWriter::create(&spec.log_path, spec.log_max_bytes.max(1)).map_err(io_err(
            format!("opening the log {}", spec.log_path.display()),
        ))?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let stdio = StdioSet {
            stdin: None,
            stdout: Some(out_w.into()),
            stderr: Some(err_w.into()),
        };
        let state = self.runtime.create(cid, dir, stdio)?;
        let pid = state.saved.pid;
        if let Err(e) = self.runtime.start(cid) {
            // Its pid 1 is this subreaper's child: kill and reap it.
            let _ = self.runtime.delete(cid, true);
            let _ = linux::wait_pid(pid);
            return Err(e.into());
        }
        let started_at = SystemTime::now();
        let (tx, rx) = watch::channel(None);
        let inner = Arc::new(Inner {
            id: spec.id.clone(),
            cid: cid.to_string(),
            pid,
            started_at,
            exit: rx,
            stopping: Mutex::new(false),
            reaped: std::sync::atomic::AtomicBool::new(false),
        });
        let copiers = [
            tokio::spawn(copy_log(out_r, log.clone(), LogStream::Stdout)),
            tokio::spawn(copy_log(err_r, log.clone(), LogStream::Stderr)),
        ];
        let runtime = self.runtime.clone();
        let watched = inner.clone();
        tokio::spawn(async move {
            let code = wait_exit(watched.clone()).await;
            // The output written before the exit is in the pipes: drain it first.
            for c in copiers {
                let _ = c.await;
            }
            let _ = log.finish();
            let oom = runtime.oom_killed(&watched.cid).unwrap_or(false);
            let stopped = *watched.stopping.lock().unwrap_or_else(|e| e.into_inner());
            let (reason, message) = match code {
                0 => (ExitReason::Completed, String::new()),
                _ if oom => (ExitReason::OomKilled, "the memory limit was reached".into()),
                _ if stopped => (ExitReason::Error, "stopped".into()),
                c if c > 128 => (ExitReason::Error, format!("killed by signal {}", c - 128)),
                _ => (ExitReason::Error, String::new()),
            };
            tx.send_replace(Some(ExitStatus {
                code,
                reason,
                message,
                oom_killed: oom && code != 0,
                finished_at: SystemTime::now(),
            }));
        });
        Ok(Container { inner })
    }

    /// SIGTERM, then SIGKILL once `grace` has passed; returns the exit status.
    pub async fn stop(&self, c: &Container, grace: Duration) -> ExitStatus {
        if let Some(s) = c.status() {
            return s;
        }
        *c.inner.stopping.lock().unwrap_or_else(|e| e.into_inner()) = true;
        let pid = nix::unistd::Pid::from_raw(c.inner.pid);
        // Only a pid not yet reaped is still the container's.
        let signal = |sig| {
            if !c.inner.reaped.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = nix::sys::signal::kill(pid, sig);
            }
        };
        if !grace.is_zero() {
            signal(Signal::SIGTERM);
            if let Ok(s) = tokio::time::timeout(grace, c.wait()).await {
                return s;
            }
        }
        // Every process of its cgroup, which names only the container's.
        let _ = self.runtime.kill(&c.inner.cid, Signal::SIGKILL, true);
        signal(Signal::SIGKILL);
        c.wait().await
    }

    /// Stops (at once) and deletes the container, its rootfs and its bundle.
    pub async fn remove(&self, c: &Container) {
        self.stop(c, Duration::ZERO).await;
        let (runtime, cid, dir) = (
            self.runtime.clone(),
            c.inner.cid.clone(),
            self.bundles.join(&c.inner.cid),
        );
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = runtime.delete(&cid, true) {
                tracing::warn!(container = %cid, error = %e, "deleting");
            }
            remove_bundle(&dir);
        })
        .await;
    }

    /// Runs `args` in the running container with its privileges; returns the child.
    pub fn exec(
        &self,
        c: &Container,
        args: Vec<String>,
        env: Vec<String>,
        stdio: StdioSet,
    ) -> Result<std::process::Child, ContainerError> {
        let st = self.runtime.state(&c.inner.cid)?;
        let bundle = linux::bundle::Bundle::load(&st.saved.bundle)?;
        let mut process = bundle.spec.process().clone().unwrap_or_default();
        process.set_args(Some(args));
        if !env.is_empty() {
            process.set_env(Some(env));
        }
        Ok(self.runtime.exec(&c.inner.cid, &process, stdio)?)
    }
}

fn container_config(spec: &ContainerSpec) -> ContainerConfig {
    let mut c = ContainerConfig::new(spec.args.clone());
    c.env = spec.env.clone();
    if !spec.cwd.is_empty() {
        c.cwd = spec.cwd.clone();
    }
    if !spec.hostname.is_empty() {
        c.hostname = spec.hostname.clone();
    }
    c.uid = spec.uid;
    c.gid = spec.gid;
    c.readonly_rootfs = spec.readonly_rootfs;
    c.capabilities = spec.capabilities.clone();
    c.memory_limit = spec.memory_limit_bytes.and_then(|m| i64::try_from(m).ok());
    // Kubernetes: quota = limit × period / 1000; shares = request × 1024 / 1000 (min 2).
    c.cpu_quota = spec
        .cpu_limit_millicores
        .map(|m| (i64::from(m) * 100).max(1000));
    c.cpu_shares = spec
        .cpu_request_millicores
        .map(|m| (u64::from(m) * 1024 / 1000).max(2));
    c.pids_limit = spec.pids_limit;
    c.cgroup = Some(format!("/skiff/{}", executor_id(&spec.id)));
    c.netns = spec.netns.as_ref().map(|p| p.display().to_string());
    c.binds = spec.binds.clone();
    c
}

fn pipe() -> Result<(OwnedFd, OwnedFd), ContainerError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ContainerError::Io {
        what: "pipe".into(),
        source: e.into(),
    })
}

async fn copy_log(fd: OwnedFd, log: LogWriter, stream: LogStream) {
    let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Err(e) = log.write(stream, &buf[..n]) {
                    tracing::warn!(error = %e, "writing a container log");
                }
            }
        }
    }
}

/// Waits for the container's init (a child of this subreaper) to exit; 128 + signal if killed.
/// One small thread per container, blocked in `waitpid` on that pid alone.
async fn wait_exit(inner: Arc<Inner>) -> i32 {
    fn wait(inner: &Inner) -> i32 {
        let code = linux::wait_pid(inner.pid).unwrap_or(128);
        inner
            .reaped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        code
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let waited = inner.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("wait-{}", inner.pid))
        .stack_size(64 * 1024)
        .spawn(move || {
            let _ = tx.send(wait(&waited));
        });
    match spawned {
        Ok(_) => rx.await.unwrap_or(128),
        Err(e) => {
            tracing::warn!(error = %e, pid = inner.pid, "no wait thread: waiting on the blocking pool");
            tokio::task::spawn_blocking(move || wait(&inner))
                .await
                .unwrap_or(128)
        }
    }
}

/// Mounts `layers` (bottom first) with `upper` and `work` on `target`.
fn mount_overlay(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), ContainerError> {
    let lower: Vec<String> = layers.iter().rev().map(|p| escape(p)).collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={},index=off",
        lower.join(":"),
        escape(upper),
        escape(work)
    );
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(|e| ContainerError::Io {
        what: format!("mounting the overlay rootfs at {}", target.display()),
        source: e.into(),
    })
}

/// overlayfs option syntax: `,` `:` and `\` in a path are escaped with `\`.
fn escape(p: &Path) -> String {
    let s = p.display().to_string();
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

fn remove_bundle(dir: &Path) {
    let rootfs = dir.join("rootfs");
    match nix::mount::umount2(&rootfs, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            // Never walk a tree that may still be the container's rootfs.
            tracing::warn!(path = %rootfs.display(), error = %e, "unmounting; the bundle stays");
            return;
        }
    }
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %dir.display(), error = %e, "removing a bundle");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_escaped() {
        assert_eq!(escape(Path::new("/a,b:c\\d")), "/a\\,b\\:c\\\\d");
    }

    #[test]
    fn limits_follow_kubernetes_conversions() {
        let c = container_config(&ContainerSpec {
            id: "u/c/0".into(),
            cpu_limit_millicores: Some(250),
            cpu_request_millicores: Some(100),
            memory_limit_bytes: Some(64 << 20),
            ..Default::default()
        });
        assert_eq!(c.cpu_quota, Some(25_000));
        assert_eq!(c.cpu_shares, Some(102));
        assert_eq!(c.memory_limit, Some(64 << 20));
        assert_eq!(c.cgroup.as_deref(), Some("/skiff/u_c_0"));
    }
}
