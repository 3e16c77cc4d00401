//! The linux executor: OCI containers in Linux namespaces and cgroups, runc-compatible in its
//! lifecycle (create → start → state/kill → delete on an OCI bundle).
//!
//! Public API:
//!
//! - [`LinuxRuntime::new`]`(state_root, init_command)`: containers' state lives in
//!   `state_root/<id>/` (0700); `init_command` is how to run this crate's init (`skiff
//!   linux-init`, see [`init_main`]): the process that sets a container up.
//! - [`LinuxRuntime::create`]`(id, bundle, stdio)` → [`State`] (`created`: the container's init
//!   waits, set up, on its exec FIFO); [`LinuxRuntime::start`]; [`LinuxRuntime::state`];
//!   [`LinuxRuntime::kill`]; [`LinuxRuntime::delete`]; [`LinuxRuntime::exec`] (a process in a
//!   running container); [`LinuxRuntime::oom_killed`] and [`LinuxRuntime::usage`] (its cgroup).
//! - [`wait_pid`]: the exit status of a container's init, for a caller that is its parent or
//!   subreaper ([`become_subreaper`]).
//! - [`default_spec`]: the spec a container gets by default (Kubernetes' defaults: capabilities,
//!   no_new_privs, the `RuntimeDefault` seccomp profile, masked paths).
//!
//! How a container is built is in [`init`] (namespaces, fork, then [`mounts`] and [`security`]);
//! [`cgroups`] handles v1 and v2; [`seccomp`] compiles OCI profiles; [`sealed_exe`] keeps the
//! binary the inits run from out of a container's reach for writing. The only `unsafe` is the
//! fork of the single-threaded init ([`sys`]).
//!
//! Must not: know about pods or images (it takes a bundle: a rootfs and a spec), or leave a
//! cgroup, state dir or process behind after `delete`.

pub mod bundle;
pub mod cgroups;
pub mod default_spec;
mod error;
pub mod init;
pub mod mount_target;
pub mod mounts;
pub mod sealed_exe;
pub mod seccomp;
pub mod security;
pub mod state;
mod sys;

pub use sys::{fork_single_threaded, thread_count};

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

pub use error::LinuxError;
pub use state::{State, Status};

use cgroups::Cgroup;
use error::SysContext;

/// How long `start` waits for a created container's init to take the go.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The three standard streams of a container's process.
#[derive(Debug, Default)]
pub struct StdioSet {
    pub stdin: Option<Stdio>,
    pub stdout: Option<Stdio>,
    pub stderr: Option<Stdio>,
}

/// Containers under one state root.
#[derive(Debug, Clone)]
pub struct LinuxRuntime {
    root: PathBuf,
    init: Vec<OsString>,
    /// `create` forks this process for the init instead of running `init` (see
    /// [`LinuxRuntime::with_in_process_create`]).
    in_process_create: bool,
    /// Where inits keep compiled seccomp filters; the state root when None.
    seccomp_cache: Option<PathBuf>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// An executor id for any caller's id (an instance id, a containerd container id): characters
/// outside `[A-Za-z0-9.-]` become `_` (a leading `.` too), and ids longer than 64 characters are
/// cut to 47 and suffixed with a hash of the whole id, so distinct ids stay distinct.
pub fn executor_id(id: &str) -> String {
    let mut plain: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if plain.starts_with('.') {
        plain.replace_range(..1, "_");
    }
    if plain.len() <= 64 && !plain.is_empty() {
        return plain;
    }
    use sha2::Digest;
    let hash = sha2::Sha256::digest(id.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", &plain[..plain.len().min(47)])
}

impl LinuxRuntime {
    /// `init_command`: the program and leading arguments that run [`init_main`] (e.g.
    /// `[/usr/local/bin/skiff, linux-init]`).
    pub fn new(root: impl Into<PathBuf>, init_command: Vec<OsString>) -> Result<Self, LinuxError> {
        let root = root.into();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .ctx(|| format!("creating the state root {}", root.display()))?;
        Ok(Self {
            root,
            init: init_command,
            in_process_create: false,
            seccomp_cache: None,
        })
    }

    /// Keeps compiled seccomp filters in `dir` instead of the state root: a shim, whose state
    /// root is one bundle's, shares one directory between all its containers
    /// ([`seccomp::compile_profile_cached`]).
    pub fn with_seccomp_cache(mut self, dir: PathBuf) -> Self {
        self.seccomp_cache = Some(dir);
        self
    }

    /// Where this runtime's inits keep compiled seccomp filters.
    fn seccomp_cache_dir(&self) -> PathBuf {
        self.seccomp_cache
            .clone()
            .unwrap_or_else(|| default_seccomp_cache(&self.root))
    }

    /// `--seccomp-cache DIR` for an init, when one is set.
    fn seccomp_cache_args(&self) -> Vec<&std::ffi::OsStr> {
        match &self.seccomp_cache {
            Some(dir) => vec!["--seccomp-cache".as_ref(), dir.as_os_str()],
            None => Vec::new(),
        }
    }

    /// `create` forks the calling process for the container's init rather than spawning
    /// `init_command` (one exec fewer: `skiff oci create|run`). The caller must be
    /// single-threaded whenever it calls `create`, and the container inherits the caller's
    /// stdio (the [`StdioSet`] given to `create` is not used).
    pub fn with_in_process_create(mut self) -> Self {
        self.in_process_create = true;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, id: &str) -> Result<PathBuf, LinuxError> {
        if !valid_id(id) {
            return Err(LinuxError::BadId(id.to_string()));
        }
        Ok(state::container_dir(&self.root, id))
    }

    fn init_command(&self) -> Command {
        let mut cmd = Command::new(&self.init[0]);
        cmd.args(&self.init[1..]);
        cmd
    }

    /// Sets a container up from the bundle; it waits for [`LinuxRuntime::start`].
    pub fn create(&self, id: &str, bundle: &Path, stdio: StdioSet) -> Result<State, LinuxError> {
        let dir = self.dir(id)?;
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(LinuxError::Exists(id.to_string()));
            }
            Err(e) => return Err(LinuxError::io(format!("creating {}", dir.display()), e)),
        }
        let result = self.create_in(&dir, id, bundle, stdio);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    fn create_in(
        &self,
        dir: &Path,
        id: &str,
        bundle: &Path,
        stdio: StdioSet,
    ) -> Result<State, LinuxError> {
        let bundle = std::fs::canonicalize(bundle).map_err(|e| LinuxError::Bundle {
            bundle: bundle.to_path_buf(),
            message: format!("cannot open: {e}"),
        })?;
        // The container's process opens the FIFO for writing after it has dropped to its own
        // user, through its O_PATH descriptor (the 0700 state dir stays closed to it): so the
        // FIFO is writable by all (0622, as runc makes it), readable by root alone.
        let fifo = dir.join(state::EXEC_FIFO);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622))
            .ctx(|| "creating the exec fifo".into())?;
        std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o622))
            .ctx(|| "chmod the exec fifo".into())?;
        // A forked init runs this process's binary: only when that binary is sealed
        // ([`sealed_exe`]); else the init is executed from the sealed copy.
        let code = if self.in_process_create && sealed_exe::running_sealed() {
            self.create_in_process(id, &bundle)?
        } else {
            let mut cmd = self.init_command();
            cmd.arg("create")
                .arg("--root")
                .arg(&self.root)
                .args(self.seccomp_cache_args())
                .arg("--id")
                .arg(id)
                .arg("--bundle")
                .arg(&bundle)
                .env_clear()
                .stdin(stdio.stdin.unwrap_or_else(Stdio::null))
                .stdout(stdio.stdout.unwrap_or_else(Stdio::null))
                .stderr(stdio.stderr.unwrap_or_else(Stdio::null));
            let status = cmd
                .status()
                .ctx(|| format!("running the container init {:?}", self.init[0]))?;
            status.code().unwrap_or(128)
        };
        if code != 0 {
            let message = std::fs::read_to_string(dir.join(init::CREATE_ERROR))
                .unwrap_or_else(|_| format!("the container init failed (exit code {code})"));
            // The init and its child are gone: so must be the cgroup they made.
            if let Ok(b) = bundle::Bundle::load(&bundle)
                && let Ok(cg) = Cgroup::new(&init::cgroup_path(&b.spec, id))
            {
                let _ = cg.destroy();
            }
            return Err(LinuxError::Init {
                id: id.to_string(),
                message,
            });
        }
        state::load(&self.root, id)
    }

    /// The init as a fork of this (single-threaded) process; its exit code.
    fn create_in_process(&self, id: &str, bundle: &Path) -> Result<i32, LinuxError> {
        match sys::fork_single_threaded().ctx(|| "fork".into())? {
            nix::unistd::ForkResult::Child => {
                let cache = self.seccomp_cache_dir();
                std::process::exit(init::create(&self.root, id, bundle, &cache));
            }
            nix::unistd::ForkResult::Parent { child } => wait_pid(child.as_raw()),
        }
    }

    /// Lets a created container exec its process.
    pub fn start(&self, id: &str) -> Result<(), LinuxError> {
        let dir = self.dir(id)?;
        let st = state::load(&self.root, id)?;
        if st.status != Status::Created {
            return Err(LinuxError::State {
                id: id.to_string(),
                status: st.status.as_str(),
                wanted: "created",
            });
        }
        let fifo_path = dir.join(state::EXEC_FIFO);
        // Non-blocking: opening succeeds at once, and the init's blocked open for writing returns.
        let mut fifo = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&fifo_path)
            .ctx(|| format!("opening {}", fifo_path.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut byte = [0u8; 1];
        loop {
            match fifo.read(&mut byte) {
                Ok(1) => break,
                Ok(_) | Err(_) => {
                    let alive =
                        state::load(&self.root, id).is_ok_and(|s| s.status != Status::Stopped);
                    if !alive || Instant::now() > deadline {
                        let _ = std::fs::remove_file(&fifo_path);
                        return Err(LinuxError::Init {
                            id: id.to_string(),
                            message: "the container's init did not take the start".into(),
                        });
                    }
                    // Woken by the init's byte (a FIFO whose writer never wrote reports no
                    // event), or after 10 ms to look at the init again.
                    let mut fds = [nix::poll::PollFd::new(
                        std::os::fd::AsFd::as_fd(&fifo),
                        nix::poll::PollFlags::POLLIN,
                    )];
                    let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10u8));
                }
            }
        }
        std::fs::remove_file(&fifo_path).ctx(|| format!("removing {}", fifo_path.display()))
    }

    pub fn state(&self, id: &str) -> Result<State, LinuxError> {
        self.dir(id)?;
        state::load(&self.root, id)
    }

    /// Every container under the root.
    pub fn list(&self) -> Vec<State> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut out: Vec<State> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|id| state::load(&self.root, &id).ok())
            .collect();
        out.sort_by(|a, b| a.saved.id.cmp(&b.saved.id));
        out
    }

    /// Signals the container's init, or (`all`) every process in its cgroup.
    pub fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<(), LinuxError> {
        let st = self.state(id)?;
        if st.status == Status::Stopped {
            return Err(LinuxError::State {
                id: id.to_string(),
                status: "stopped",
                wanted: "created or running",
            });
        }
        if all {
            Cgroup::new(&st.saved.cgroup)?.signal_all(signal);
            return Ok(());
        }
        nix::sys::signal::kill(Pid::from_raw(st.saved.pid), signal)
            .ctx(|| format!("signalling container {id:?}"))
    }

    /// Removes a stopped container (or, with `force`, kills a live one first): its processes,
    /// cgroup and state.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), LinuxError> {
        let dir = self.dir(id)?;
        let st = state::load(&self.root, id)?;
        if st.status == Status::Running && !force {
            return Err(LinuxError::State {
                id: id.to_string(),
                status: "running",
                wanted: "stopped (or use force)",
            });
        }
        let cgroup = Cgroup::new(&st.saved.cgroup)?;
        if st.status != Status::Stopped {
            let _ = nix::sys::signal::kill(Pid::from_raw(st.saved.pid), Signal::SIGKILL);
        }
        cgroup.destroy()?;
        std::fs::remove_dir_all(&dir).ctx(|| format!("removing {}", dir.display()))
    }

    /// Runs `process` (an OCI `process` object) in a running container; the returned child (the
    /// exec helper) exits with the process's status. SIGTERM to the helper kills the process and
    /// the helper then exits with 137; never SIGKILL it, or the process is orphaned.
    pub fn exec(
        &self,
        id: &str,
        process: &oci_spec::runtime::Process,
        stdio: StdioSet,
    ) -> Result<std::process::Child, LinuxError> {
        let dir = self.dir(id)?;
        let file = dir.join(format!("exec-{}.json", uuid_like()));
        let json = serde_json::to_vec(process).map_err(|e| LinuxError::Init {
            id: id.to_string(),
            message: e.to_string(),
        })?;
        std::fs::write(&file, json).ctx(|| format!("writing {}", file.display()))?;
        let mut cmd = self.init_command();
        cmd.arg("exec")
            .arg("--root")
            .arg(&self.root)
            .args(self.seccomp_cache_args())
            .arg("--id")
            .arg(id)
            .arg("--process")
            .arg(&file)
            .env_clear()
            .stdin(stdio.stdin.unwrap_or_else(Stdio::null))
            .stdout(stdio.stdout.unwrap_or_else(Stdio::null))
            .stderr(stdio.stderr.unwrap_or_else(Stdio::inherit));
        // The helper removes the file once read; a helper that never ran cannot.
        cmd.spawn()
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&file);
            })
            .ctx(|| format!("running the exec init {:?}", self.init[0]))
    }

    /// Was a process of the container killed for memory?
    pub fn oom_killed(&self, id: &str) -> Result<bool, LinuxError> {
        let st = self.state(id)?;
        Ok(Cgroup::new(&st.saved.cgroup)?.oom_killed())
    }

    pub fn usage(&self, id: &str) -> Result<cgroups::Usage, LinuxError> {
        let st = self.state(id)?;
        Ok(Cgroup::new(&st.saved.cgroup)?.usage())
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

use std::os::unix::fs::OpenOptionsExt;

/// Makes this process the reaper of its orphaned descendants (a container's init outlives the
/// short-lived init that forked it).
pub fn become_subreaper() -> Result<(), LinuxError> {
    nix::sys::prctl::set_child_subreaper(true).ctx(|| "PR_SET_CHILD_SUBREAPER".into())
}

/// Blocks until process `pid` (a child or, for a subreaper, an orphaned descendant) ends;
/// returns its exit code (128 + signal when killed).
pub fn wait_pid(pid: i32) -> Result<i32, LinuxError> {
    use nix::sys::wait::{WaitStatus, waitpid};
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(LinuxError::sys(format!("waiting for pid {pid}"), e)),
        }
    }
}

/// Compiled seccomp filters live in the state root unless the runtime names another directory.
fn default_seccomp_cache(root: &Path) -> PathBuf {
    root.join(".seccomp")
}

/// `skiff linux-init create|exec ...`: the entry point of the container init. Must be called
/// first thing in `main`, before any thread starts. Returns the process's exit code.
pub fn init_main(args: &[OsString]) -> i32 {
    let mut mode = None;
    let mut root = None;
    let mut id = None;
    let mut bundle = None;
    let mut process = None;
    let mut seccomp_cache = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("create") | Some("exec") => mode = a.to_str().map(String::from),
            Some("--root") => root = it.next().map(PathBuf::from),
            Some("--id") => id = it.next().and_then(|s| s.to_str()).map(String::from),
            Some("--bundle") => bundle = it.next().map(PathBuf::from),
            Some("--process") => process = it.next().map(PathBuf::from),
            Some("--seccomp-cache") => seccomp_cache = it.next().map(PathBuf::from),
            _ => {}
        }
    }
    match (mode.as_deref(), root, id, bundle, process) {
        (Some("create"), Some(root), Some(id), Some(bundle), _) => {
            let cache = seccomp_cache.unwrap_or_else(|| default_seccomp_cache(&root));
            init::create(&root, &id, &bundle, &cache)
        }
        (Some("exec"), Some(root), Some(id), _, Some(process)) => {
            let cache = seccomp_cache.unwrap_or_else(|| default_seccomp_cache(&root));
            init::exec(&root, &id, &process, &cache)
        }
        _ => {
            eprintln!(
                "usage: linux-init create --root DIR [--seccomp-cache DIR] --id ID --bundle DIR | exec --root DIR [--seccomp-cache DIR] --id ID --process FILE"
            );
            2
        }
    }
}

#[cfg(test)]
mod id_tests {
    use super::*;

    #[test]
    fn any_id_becomes_a_valid_executor_id() {
        assert_eq!(executor_id("web-1"), "web-1");
        assert_eq!(executor_id("0a-1b/web/3"), "0a-1b_web_3");
        assert_eq!(executor_id(".hidden"), "_hidden");
        let uid = "57bd2abf-8ff9-4d3b-a085-64b52e287be1";
        let long = executor_id(&format!("{uid}/{}/12", "c".repeat(63)));
        assert_eq!(long.len(), 64, "{long}");
        assert!(long.starts_with(&format!("{uid}_")), "{long}");
        assert_ne!(long, executor_id(&format!("{uid}/{}/13", "c".repeat(63))));
        for id in ["", "a/b", ".x", &"z".repeat(80)] {
            assert!(
                valid_id(&executor_id(id)),
                "{id:?} -> {:?}",
                executor_id(id)
            );
        }
    }
}
