//! The container init: the code of `skiff linux-init create|exec`, a short-lived, single-threaded
//! process the executor spawns for each container (and each exec).
//!
//! `create`: joins the container's cgroup, makes itself non-dumpable (its `/proc/PID/exe` — the
//! host's skiff binary — is then out of the container's reach), enters or creates the
//! namespaces, and forks. The child, pid 1 of the new pid namespace, builds the filesystem
//! ([`super::mounts`]), sets the hostname and rlimits, drops privileges ([`super::security`]),
//! reports "ready" over a close-on-exec pipe and blocks on the exec FIFO. `start` opens the FIFO;
//! the child then closes every other descriptor (none of the executor's files can leak into the
//! container), changes into `cwd` — checked to be inside the new root — installs the seccomp
//! filters and execs the program. The parent saves the state and exits once the child is ready,
//! so the container's init is re-parented to the caller (a subreaper) or to the host's init, as
//! with runc.
//!
//! `exec`: joins a running container's namespaces and cgroup the same way, forks, and the child
//! execs the process with the container's privileges and seccomp profile; the parent waits and
//! exits with the process's status, so the caller waits on it like on any child.
//!
//! Must not: start a thread before forking (see [`super::sys`]), or exec anything before the
//! privileges are dropped and the signal dispositions are back to their defaults.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::stat::Mode;
use nix::unistd::ForkResult;
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use super::bundle::Bundle;
use super::cgroups::Cgroup;
use super::error::{LinuxError, SysContext};
use super::state::{self, EXEC_FIFO, Saved};
use super::{mounts, seccomp, security, sys};

/// Written by the init when `create` fails (the caller reads it).
pub const CREATE_ERROR: &str = "create.error";

fn flag(t: LinuxNamespaceType) -> CloneFlags {
    /// CLONE_NEWTIME (Linux 5.6), which nix does not name.
    const CLONE_NEWTIME: i32 = 0x80;
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(CLONE_NEWTIME),
    }
}

/// Which side of the fork enters a namespace: the pid namespace must be entered before forking
/// (it applies to children); every other one after, in the child alone, so that the parent keeps
/// the host's mount namespace (a `pivot_root` moves every process of the namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    BeforeFork,
    Child,
}

/// Joins the namespaces of this side the spec names by path, then creates the others.
fn enter_namespaces(spec: &Spec, side: Side) -> Result<CloneFlags, LinuxError> {
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    let mut new = CloneFlags::empty();
    for ns in &namespaces {
        let is_pid = ns.typ() == LinuxNamespaceType::Pid;
        if is_pid != (side == Side::BeforeFork) {
            continue;
        }
        match ns.path() {
            Some(path) => {
                let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                    .ctx(|| format!("opening namespace {}", path.display()))?;
                nix::sched::setns(&fd, flag(ns.typ()))
                    .ctx(|| format!("joining namespace {}", path.display()))?;
            }
            None => new |= flag(ns.typ()),
        }
    }
    if new.contains(CloneFlags::CLONE_NEWUSER) {
        return Err(LinuxError::io(
            "user namespaces",
            std::io::Error::other("not supported by this executor yet"),
        ));
    }
    if !new.is_empty() {
        nix::sched::unshare(new).ctx(|| format!("unshare {new:?}"))?;
    }
    Ok(new)
}

/// The program to exec: `args[0]` as is if it has a `/`, else the first match on the spec's PATH.
fn resolve_program(process: &Process) -> Result<PathBuf, LinuxError> {
    let args = process.args().clone().unwrap_or_default();
    let program = args.first().cloned().unwrap_or_default();
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let path = process
        .env()
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(&program);
        if let Ok(m) = std::fs::metadata(&candidate)
            && m.is_file()
        {
            return Ok(candidate);
        }
    }
    Err(LinuxError::io(
        format!("exec {program:?}"),
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "executable file not found in $PATH",
        ),
    ))
}

fn cstrings(items: &[String]) -> Result<Vec<CString>, LinuxError> {
    items
        .iter()
        .map(|s| {
            CString::new(s.as_bytes()).map_err(|_| {
                LinuxError::io(format!("{s:?}"), std::io::ErrorKind::InvalidInput.into())
            })
        })
        .collect()
}

/// Closes every descriptor above stderr.
fn close_extra_fds() {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|fd| *fd > 2)
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        let _ = nix::unistd::close(fd);
    }
}

/// The last steps before exec, shared by create and exec: no descriptor but stdio, `cwd`
/// inside the root, the seccomp filters (when no_new_privs allows installing them last), exec.
fn exec_process(process: &Process, filters: Option<&seccomp::Filters>) -> LinuxError {
    let run = || -> Result<std::convert::Infallible, LinuxError> {
        let program = resolve_program(process)?;
        let args = cstrings(&process.args().clone().unwrap_or_default())?;
        let env = cstrings(&process.env().clone().unwrap_or_default())?;
        let program = CString::new(program.as_os_str().as_encoded_bytes())
            .map_err(|_| LinuxError::io("program path", std::io::ErrorKind::InvalidInput.into()))?;
        close_extra_fds();
        nix::unistd::chdir(process.cwd())
            .ctx(|| format!("chdir to cwd {}", process.cwd().display()))?;
        // A cwd reached through a leaked descriptor would lie outside the root: getcwd says so.
        let cwd = nix::unistd::getcwd().ctx(|| "cwd is outside the container's root".into())?;
        if !cwd.starts_with("/") {
            return Err(LinuxError::io(
                "cwd is outside the container's root",
                std::io::ErrorKind::PermissionDenied.into(),
            ));
        }
        sys::default_signals();
        if let Some(f) = filters {
            seccomp::apply(f)?;
        }
        nix::unistd::execve(&program, &args, &env)
            .ctx(|| format!("exec {}", program.to_string_lossy()))
    };
    match run() {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

/// Moves this process into `cgroup`. An init is still single-threaded here (forked by `skiff oci`
/// or freshly executed by a shim), so it moves itself thread-wise: no wait for the threadgroup
/// lock's RCU grace period, which was the largest single cost of a container start on a v1 host
/// (10-15 ms of ~17).
fn join(cgroup: &Cgroup) -> Result<(), LinuxError> {
    if sys::thread_count() == Some(1) {
        cgroup.join_current_thread()
    } else {
        cgroup.join(nix::unistd::getpid().as_raw())
    }
}

/// The spec's seccomp filters, compiled once per profile and kept in `cache`.
fn compile_seccomp(spec: &Spec, cache: &Path) -> Result<Option<seccomp::Filters>, LinuxError> {
    match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(profile) => Ok(Some(seccomp::compile_profile_cached(profile, cache)?)),
        None => Ok(None),
    }
}

/// The child side of `create` up to "ready": filesystem, hostname, limits, privileges.
fn child_setup(
    bundle: &Bundle,
    filters: Option<seccomp::Filters>,
) -> Result<(Process, Option<seccomp::Filters>, bool), LinuxError> {
    let spec = &bundle.spec;
    let new_ns = enter_namespaces(spec, Side::Child)?;
    let process = spec.process().clone().unwrap_or_default();
    nix::sys::stat::umask(Mode::empty());
    if !new_ns.contains(CloneFlags::CLONE_NEWNS) {
        return Err(LinuxError::io(
            "mount namespace",
            std::io::Error::other("a container needs its own mount namespace"),
        ));
    }
    mounts::prepare(spec, &bundle.rootfs)?;
    mounts::pivot(&bundle.rootfs)?;
    mounts::finish(spec)?;
    if new_ns.contains(CloneFlags::CLONE_NEWUTS)
        && let Some(h) = spec.hostname()
    {
        nix::unistd::sethostname(h).ctx(|| format!("hostname {h}"))?;
    }
    security::set_rlimits(&process)?;
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .ctx(|| "oom_score_adj".into())?;
    }
    let nnp = process.no_new_privileges() == Some(true);
    // Without no_new_privs a filter can only be installed while privileged: first, then.
    if !nnp && let Some(f) = &filters {
        seccomp::apply(f)?;
    }
    security::drop_privileges(&process)?;
    Ok((process, filters, nnp))
}

/// The child side of `create`: reports ready (or why not) on `ready`, waits for `start` on the
/// exec FIFO, execs. Returns only on failure after "ready" was sent.
fn child(
    bundle: &Bundle,
    filters: Option<seccomp::Filters>,
    fifo: &OwnedFd,
    ready: OwnedFd,
) -> LinuxError {
    let mut ready = std::fs::File::from(ready);
    let (process, filters, nnp) = match child_setup(bundle, filters) {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.write_all(format!("E{e}").as_bytes());
            std::process::exit(127);
        }
    };
    if let Err(e) = ready.write_all(b"R") {
        return LinuxError::io("reporting ready", e);
    }
    drop(ready);
    let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    let gate = std::fs::OpenOptions::new().write(true).open(&path);
    match gate {
        Ok(mut g) => {
            if let Err(e) = g.write_all(b"0") {
                return LinuxError::io("exec fifo", e);
            }
        }
        Err(e) => return LinuxError::io("waiting for start on the exec fifo", e),
    }
    exec_process(&process, if nnp { filters.as_ref() } else { None })
}

/// The container's cgroup: `linux.cgroupsPath`, else `/skiff/<id>`.
pub fn cgroup_path(spec: &Spec, id: &str) -> String {
    spec.linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| format!("/skiff/{id}"))
}

/// `skiff linux-init create --root DIR --id ID --bundle DIR`. Returns the exit code.
pub fn create(root: &Path, id: &str, bundle_dir: &Path, seccomp_cache: &Path) -> i32 {
    let dir = state::container_dir(root, id);
    match create_inner(&dir, id, bundle_dir, seccomp_cache) {
        Ok(()) => 0,
        Err(e) => {
            let message = match e {
                LinuxError::Init { message, .. } => message,
                other => other.to_string(),
            };
            let _ = std::fs::write(dir.join(CREATE_ERROR), message);
            1
        }
    }
}

fn create_inner(
    dir: &Path,
    id: &str,
    bundle_dir: &Path,
    seccomp_cache: &Path,
) -> Result<(), LinuxError> {
    let bundle = Bundle::load(bundle_dir)?;
    let spec = &bundle.spec;
    // Compiled (or read back) before the fork: the child's root is the container's.
    let filters = compile_seccomp(spec, seccomp_cache)?;
    let cgroup = Cgroup::new(&cgroup_path(spec, id))?;
    cgroup.create(spec.linux().as_ref().and_then(|l| l.resources().as_ref()))?;
    join(&cgroup)?;
    nix::sys::prctl::set_dumpable(false).ctx(|| "making the init non-dumpable".into())?;
    enter_namespaces(spec, Side::BeforeFork)?;
    let (ready_r, ready_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe".into())?;
    let fifo = open(
        &dir.join(EXEC_FIFO),
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "opening the exec fifo".into())?;
    match sys::fork_single_threaded().ctx(|| "fork".into())? {
        ForkResult::Child => {
            drop(ready_r);
            let e = child(&bundle, filters, &fifo, ready_w);
            // After "ready" the only witness is the container's own stderr.
            eprintln!("skiff: {e}");
            std::process::exit(127);
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            drop(fifo);
            // "R" (ready: the child keeps the pipe until it execs), or "E<why>" then EOF.
            let mut reader = std::fs::File::from(ready_r);
            let mut first = [0u8; 1];
            let got = reader.read(&mut first).unwrap_or(0);
            let mut answer = String::new();
            if got == 1 && first[0] != b'R' {
                let _ = reader.read_to_string(&mut answer);
            }
            if got == 1 && first[0] == b'R' {
                let (_, start_time) = state::proc_stat(child.as_raw()).unwrap_or(('?', 0));
                let saved = Saved {
                    id: id.to_string(),
                    pid: child.as_raw(),
                    start_time,
                    bundle: bundle.dir.clone(),
                    rootfs: bundle.rootfs.clone(),
                    cgroup: cgroup.relative(),
                    created: now_rfc3339(),
                };
                state::save(dir, &saved)
            } else {
                let _ = nix::sys::wait::waitpid(child, None);
                // This process is in the cgroup too: the caller removes it once we are gone.
                let message = if answer.is_empty() {
                    "the container init exited during setup".to_string()
                } else {
                    answer
                };
                Err(LinuxError::Init {
                    id: id.to_string(),
                    message,
                })
            }
        }
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `skiff linux-init exec --root DIR --id ID --process FILE`: runs the process in the
/// container and exits with its status. Returns the exit code.
pub fn exec(root: &Path, id: &str, process_file: &Path, seccomp_cache: &Path) -> i32 {
    match exec_inner(root, id, process_file, seccomp_cache) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("skiff exec: {e}");
            126
        }
    }
}

fn exec_inner(
    root: &Path,
    id: &str,
    process_file: &Path,
    seccomp_cache: &Path,
) -> Result<i32, LinuxError> {
    let st = state::load(root, id)?;
    if st.status != state::Status::Running {
        return Err(LinuxError::State {
            id: id.to_string(),
            status: st.status.as_str(),
            wanted: "running",
        });
    }
    let bundle = Bundle::load(&st.saved.bundle)?;
    let text = std::fs::read(process_file).ctx(|| format!("reading {}", process_file.display()))?;
    // Read once: it holds the container's environment (secrets included), so it goes at once.
    let _ = std::fs::remove_file(process_file);
    let process: Process = serde_json::from_slice(&text).map_err(|e| {
        LinuxError::io(
            format!("{}: {e}", process_file.display()),
            std::io::ErrorKind::InvalidData.into(),
        )
    })?;
    let filters = compile_seccomp(&bundle.spec, seccomp_cache)?;
    join(&Cgroup::new(&st.saved.cgroup)?)?;
    nix::sys::prctl::set_dumpable(false).ctx(|| "making the exec init non-dumpable".into())?;
    debug_assert_eq!(
        sys::thread_count(),
        Some(1),
        "exec from a multi-threaded init"
    );
    // Open every namespace first: after joining the mount namespace, /proc is the container's.
    let pid = st.saved.pid;
    let mut fds = Vec::new();
    for (name, f) in [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let path = format!("/proc/{pid}/ns/{name}");
        let fd = open(
            path.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("opening {path}"))?;
        fds.push((name, fd, f));
    }
    for (name, fd, f) in &fds {
        // Joining one's own namespace again fails for some kinds; only join what differs.
        let own = std::fs::read_link(format!("/proc/self/ns/{name}")).ok();
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{name}")).ok();
        if own.is_some() && own == theirs && *name != "mnt" {
            continue;
        }
        nix::sched::setns(fd, *f).ctx(|| format!("joining the container's {name} namespace"))?;
    }
    drop(fds);
    // SIGTERM asks this helper to end the process (see `wait_exec`); SIGCHLD says it ended. Both
    // wait blocked; the child gets default signals back before it execs.
    let mut waited = SigSet::empty();
    waited.add(Signal::SIGTERM);
    waited.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&waited), None).ctx(|| "sigprocmask".into())?;
    match sys::fork_single_threaded().ctx(|| "fork".into())? {
        ForkResult::Child => {
            let nnp = process.no_new_privileges() == Some(true);
            let e = (|| {
                // A session of its own: no controlling terminal of the host's to inject into.
                nix::unistd::setsid().ctx(|| "setsid".into())?;
                security::set_rlimits(&process)?;
                if !nnp && let Some(f) = &filters {
                    seccomp::apply(f)?;
                }
                security::drop_privileges(&process)?;
                // The helper that waits for it is what the caller knows: if it dies, so does the
                // process. Set after the uid change, which clears it.
                // (Its parent's pid is not visible from the container's pid namespace to check
                // it is still there; the helper ends only by SIGKILL before it reaps this.)
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                    .ctx(|| "PR_SET_PDEATHSIG".into())?;
                Err(exec_process(
                    &process,
                    if nnp { filters.as_ref() } else { None },
                ))
            })()
            .unwrap_or_else(|e: LinuxError| e);
            eprintln!("skiff exec: {e}");
            std::process::exit(126);
        }
        ForkResult::Parent { child } => wait_exec(child, &waited),
    }
}

fn exec_status(status: nix::sys::wait::WaitStatus) -> Option<i32> {
    match status {
        nix::sys::wait::WaitStatus::Exited(_, code) => Some(code),
        nix::sys::wait::WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Waits for the exec'd `child`; on SIGTERM kills it first. Either way the helper reaps it
/// itself: an orphan would be reparented outside the container's pid namespace, where nothing
/// reaps it, and its zombie would keep the container's pid 1 from ever finishing its exit.
fn wait_exec(child: nix::unistd::Pid, waited: &SigSet) -> Result<i32, LinuxError> {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => {
                if let Some(code) = exec_status(status) {
                    return Ok(code);
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(LinuxError::sys("waiting for the exec'd process", e)),
        }
        match waited.wait() {
            Ok(Signal::SIGTERM) => {
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                loop {
                    match waitpid(child, None) {
                        Ok(status) => {
                            if let Some(code) = exec_status(status) {
                                return Ok(code);
                            }
                        }
                        Err(nix::errno::Errno::EINTR) => continue,
                        Err(e) => return Err(LinuxError::sys("reaping the exec'd process", e)),
                    }
                }
            }
            Ok(_) => continue,
            Err(e) => return Err(LinuxError::sys("sigwait", e)),
        }
    }
}
