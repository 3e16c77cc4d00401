//! A private, real `containerd` (Debian's package) for tests and benchmarks, torn down when dropped.
//!
//! [`Containerd::start`] writes its own config (schema `version = 2`, the one containerd 1.6 reads)
//! into a temp dir — root, state, gRPC and ttrpc sockets, the `opt` plugin dir all inside it; the CRI
//! plugin disabled so it boots in milliseconds — starts `containerd --config` on it and waits until
//! `ctr version` answers. [`Containerd::ctr`] runs `ctr` against it, always with `--address` and the
//! fixture's own namespace.
//!
//! Each fixture gets a namespace of its own (`skiff-test-<pid>-<n>`): `ctr run` puts a container in
//! the cgroup `/<namespace>/<id>` and the runc shim keeps its state in `/run/containerd/runc/<namespace>`,
//! both outside the temp dir and shared by every containerd on the host, so two fixtures running
//! `bench-0` at once must not meet there.
//!
//! Dropping it stops what it started, and only that: its tasks and containers through `ctr`, then
//! its `containerd` process (by its [`Child`]), then any shim whose command line names this
//! containerd's socket, with their descendants, and any process left in its namespace's cgroups;
//! then it unmounts whatever is still mounted under the temp dir (lazily if busy), removes the shim
//! sockets, runc state and cgroup dirs of its namespace, and the temp dir.
//!
//! containerd needs root: starting one as another user panics with a message saying so.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The runc runtime of containerd 1.6 (`containerd-shim-runc-v2`).
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";

/// Debian packages the fixture needs (`busybox-static` for [`crate::images::busybox_oci_archive`]).
pub const PACKAGES: &str = "containerd runc busybox-static";

/// How long containerd may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A running private containerd.
pub struct Containerd {
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    address: PathBuf,
    namespace: String,
    /// `PATH` for containerd (and so its shims), when shim dirs were given.
    path_env: Option<std::ffi::OsString>,
}

/// Starts `containerd --config DIR/config.toml`, logging (appending) to `DIR/containerd.log`.
/// Shims inherit its environment: `SKIFF_SHIM_CACHE_DIR` keeps the skiff shim's compiled
/// modules inside `DIR`.
fn spawn_containerd(dir: &Path, path_env: Option<&OsStr>) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("containerd.log"))
        .expect("creating containerd log");
    let log2 = log.try_clone().expect("cloning log handle");
    let mut cmd = Command::new("containerd");
    cmd.arg("--config")
        .arg(dir.join("config.toml"))
        .env("SKIFF_SHIM_CACHE_DIR", dir.join("shim-cache"))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    if let Some(p) = path_env {
        cmd.env("PATH", p);
    }
    cmd.spawn().expect("spawning containerd")
}

impl Containerd {
    /// Starts a containerd that finds shims on the usual `PATH`.
    pub fn start() -> Self {
        Self::start_with_path(&[])
    }

    /// Starts a containerd whose `PATH` begins with `shim_dirs`, where containerd 1.6 looks for
    /// `containerd-shim-<name>-<version>` binaries (e.g. `containerd-shim-skiff-v1`).
    pub fn start_with_path(shim_dirs: &[&Path]) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "containerd needs root: run this test as root (CI does)"
        );
        for bin in ["containerd", "ctr", "runc", "containerd-shim-runc-v2"] {
            assert!(
                which(bin).is_some(),
                "`{bin}` not found on PATH: install the Debian packages {PACKAGES} \
                 (scripts/test installs them)"
            );
        }

        let dir = tempfile::Builder::new()
            .prefix("skiff-ctrd-")
            .tempdir()
            .expect("creating the containerd temp dir");
        let path = dir.path().to_path_buf();
        let address = path.join("containerd.sock");
        assert!(
            address.as_os_str().len() + ".ttrpc".len() < 100,
            "temp dir path too long for a unix socket: {}",
            path.display()
        );
        let namespace = format!(
            "skiff-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );

        let config = format!(
            "version = 2\n\
             root = {root}\n\
             state = {state}\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             \n\
             [grpc]\n  address = {grpc}\n\
             \n\
             [ttrpc]\n  address = {ttrpc}\n\
             \n\
             [debug]\n  address = \"\"\n  level = \"info\"\n\
             \n\
             [metrics]\n  address = \"\"\n\
             \n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {opt}\n",
            root = toml_str(&path.join("root")),
            state = toml_str(&path.join("state")),
            grpc = toml_str(&address),
            ttrpc = toml_str(&path.join("containerd.sock.ttrpc")),
            opt = toml_str(&path.join("opt")),
        );
        let config_path = path.join("config.toml");
        std::fs::write(&config_path, config).expect("writing containerd config");

        let path_env = (!shim_dirs.is_empty()).then(|| {
            let mut paths: Vec<PathBuf> = shim_dirs.iter().map(|p| p.to_path_buf()).collect();
            if let Some(p) = std::env::var_os("PATH") {
                paths.extend(std::env::split_paths(&p));
            }
            std::env::join_paths(paths).expect("shim dirs must not contain ':'")
        });
        let child = spawn_containerd(&path, path_env.as_deref());
        let mut me = Containerd {
            dir: Some(dir),
            child: Some(child),
            address,
            namespace,
            path_env,
        };
        me.wait_ready();
        me
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "containerd exited at start ({status}); its log:\n{}",
                    self.log()
                );
            }
            if self.address.exists() && self.ctr(["version"]).status.success() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "containerd did not answer `ctr version` within {START_TIMEOUT:?}; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills containerd with SIGKILL (its shims and their tasks live on, as after a crash) and
    /// starts it again on the same root, state and sockets; returns once it answers.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let dir = self.dir().to_path_buf();
        self.child = Some(spawn_containerd(&dir, self.path_env.as_deref()));
        self.wait_ready();
    }

    /// The gRPC socket (`ctr --address`).
    pub fn address(&self) -> &Path {
        &self.address
    }

    /// containerd's root dir (content store, snapshots, metadata).
    pub fn root(&self) -> PathBuf {
        self.dir().join("root")
    }

    /// containerd's state dir (task bundles, rootfs mounts).
    pub fn state(&self) -> PathBuf {
        self.dir().join("state")
    }

    /// The temp dir holding config, log, root, state and sockets.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).expect("temp dir")
    }

    /// The containerd namespace every [`Containerd::ctr`] call uses.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The containerd process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("containerd child")
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("containerd.log")).unwrap_or_default()
    }

    /// Runs `ctr --address SOCK --namespace NS ARGS...` and returns its output, whatever its status.
    pub fn ctr<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.ctr_command(args)
            .stdin(Stdio::null())
            .output()
            .expect("running ctr")
    }

    /// Like [`Containerd::ctr`], but panics (with ctr's stderr and containerd's log) unless it
    /// succeeds; returns its stdout.
    pub fn ctr_ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.ctr(&args);
        if !out.status.success() {
            panic!(
                "ctr {args:?} failed ({}):\nstdout: {}\nstderr: {}\ncontainerd log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ctr image import ARCHIVE` (an OCI layout tar for this host's platform, unpacked for the
    /// default snapshotter); panics on failure.
    pub fn import(&self, archive: &Path) {
        self.ctr_ok([
            OsStr::new("image"),
            OsStr::new("import"),
            archive.as_os_str(),
        ]);
    }

    /// `ctr image import --no-unpack ARCHIVE`, for artifacts containerd cannot unpack into a
    /// snapshot (Wasm OCI artifacts: their blobs land in the content store only); panics on failure.
    pub fn import_artifact(&self, archive: &Path) {
        self.ctr_ok([
            OsStr::new("image"),
            OsStr::new("import"),
            OsStr::new("--no-unpack"),
            archive.as_os_str(),
        ]);
    }

    /// The `ctr` command for this containerd, without its arguments.
    pub fn ctr_command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.address)
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args);
        cmd
    }

    /// Runs `ctr run --rm --runtime io.containerd.runc.v2 IMAGE bench-<i> /bin/echo hi` `n` times,
    /// checking each printed `hi`, and returns the wall time of each run (the `ctr` process from
    /// spawn to exit: container create, start, output, exit, delete).
    pub fn time_ctr_run(&self, image: &str, n: usize) -> Vec<Duration> {
        (0..n)
            .map(|i| {
                let id = format!("bench-{i}");
                let args = [
                    "run",
                    "--rm",
                    "--runtime",
                    RUNC_RUNTIME,
                    image,
                    &id,
                    "/bin/echo",
                    "hi",
                ];
                let t = Instant::now();
                let out = self.ctr(args);
                let took = t.elapsed();
                assert!(
                    out.status.success() && out.stdout == b"hi\n",
                    "ctr {args:?}: {}\nstdout: {:?}\nstderr: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                took
            })
            .collect()
    }

    /// Shim processes serving this containerd (their command line names its socket).
    pub fn shim_pids(&self) -> Vec<u32> {
        shims_of(&self.address)
    }

    /// Processes in this fixture's namespace's cgroups (containers and what they started).
    pub fn container_pids(&self) -> Vec<u32> {
        in_cgroup_namespace(&self.namespace)
    }

    /// Best-effort clean stop of every task and container, through containerd.
    fn remove_tasks_and_containers(&self) {
        let quick = Duration::from_secs(10);
        let ids = |what: &str| -> Vec<String> {
            output_within(self.ctr_command([what, "ls", "-q"]), quick)
                .filter(|o| o.status.success())
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        for id in ids("task") {
            let _ = output_within(self.ctr_command(["task", "delete", "--force", &id]), quick);
        }
        for id in ids("container") {
            let _ = output_within(self.ctr_command(["container", "delete", &id]), quick);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let path = dir.path().to_path_buf();

        // 1. Ask containerd to stop its tasks and remove its containers (lets runc clean up).
        let alive = self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if alive {
            self.remove_tasks_and_containers();
        }

        // 2. Stop our containerd: SIGTERM, then SIGKILL.
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }

        // 3. Shims of this containerd, with everything below them, and anything left in our cgroups.
        let mut victims = Vec::new();
        for shim in shims_of(&self.address) {
            victims.extend(descendants(shim));
            victims.push(shim);
        }
        victims.extend(in_cgroup_namespace(&self.namespace));
        victims.sort_unstable();
        victims.dedup();
        for &pid in &victims {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while victims.iter().any(|&p| is_running(p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }

        // 4. Mounts under the temp dir (task rootfs, snapshots), deepest first.
        unmount_under(&path);

        // 5. What the shims keep outside the temp dir: sockets, runc state, cgroups.
        for socket in shim_sockets(&path.join("state"), &self.namespace) {
            let _ = std::fs::remove_file(socket);
        }
        let _ = std::fs::remove_dir_all(Path::new("/run/containerd/runc").join(&self.namespace));
        remove_namespace_cgroups(&self.namespace);

        // 6. The temp dir.
        if let Err(e) = dir.close() {
            eprintln!("skiff-tests: removing {}: {e}", path.display());
        }
    }
}

/// `s` as a TOML basic string.
fn toml_str(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `bin` on `PATH`.
pub fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// Versions of the installed `containerd`, `runc` and `ctr` (first line of each `--version`).
pub fn versions() -> String {
    ["containerd", "runc", "ctr"]
        .iter()
        .map(|bin| {
            Command::new(bin)
                .arg("--version")
                .output()
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .next()
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| format!("{bin}: not installed"))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs `cmd` and returns its output, or kills it (by its [`Child`]) after `timeout`.
fn output_within(mut cmd: Command, timeout: Duration) -> Option<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = reader(child.stdout.take().map(|s| Box::new(s) as _));
    let err = reader(child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    Some(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Process ids under `/proc`, with their `cmdline` split at NULs.
fn processes() -> Vec<(u32, Vec<String>)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args = raw
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some((pid, args))
        })
        .collect()
}

/// Shims (`containerd-shim-*`) whose `-address` is `address`.
fn shims_of(address: &Path) -> Vec<u32> {
    let address = address.to_string_lossy();
    processes()
        .into_iter()
        .filter(|(_, args)| {
            let is_shim = args.first().is_some_and(|a0| {
                Path::new(a0)
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("containerd-shim"))
            });
            is_shim
                && args
                    .windows(2)
                    .any(|w| (w[0] == "-address" || w[0] == "--address") && w[1] == *address)
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// Parent pid of `pid` (field 4 of `/proc/PID/stat`, after the parenthesised command name).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Every live descendant of `root`.
fn descendants(root: u32) -> Vec<u32> {
    let all: Vec<(u32, u32)> = processes()
        .into_iter()
        .filter_map(|(pid, _)| Some((pid, parent_of(pid)?)))
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(all.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

/// Whether `pid` exists and is not a zombie.
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Live (not zombie) processes whose cgroup path (in any hierarchy) has `namespace` as its first
/// component — where `ctr run` puts containers (`/<namespace>/<id>`).
fn in_cgroup_namespace(namespace: &str) -> Vec<u32> {
    let prefix = format!("/{namespace}/");
    processes()
        .into_iter()
        .filter(|(pid, _)| {
            is_running(*pid)
                && std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| {
                    c.lines().any(|l| {
                        l.splitn(3, ':').nth(2).is_some_and(|p| {
                            p.starts_with(&prefix) || p == &prefix[..prefix.len() - 1]
                        })
                    })
                })
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// Mount points listed in `/proc/self/mountinfo`, in mount order, with `fstype`.
pub fn mounts() -> Vec<(PathBuf, String)> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            let mount_point = unescape_mount(fields.get(4)?);
            let sep = fields.iter().position(|f| *f == "-")?;
            let fstype = fields.get(sep + 1)?.to_string();
            Some((PathBuf::from(mount_point), fstype))
        })
        .collect()
}

/// Mount points at or under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mounts()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(v) = s
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts everything at or under `dir`, deepest and latest first, lazily when busy.
fn unmount_under(dir: &Path) {
    use nix::mount::{MntFlags, umount2};
    for _ in 0..5 {
        let mut points = mounts_under(dir);
        if points.is_empty() {
            return;
        }
        // Later mounts may sit on earlier ones: undo in reverse order, deeper paths first.
        points.reverse();
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in points {
            if umount2(&p, MntFlags::empty()).is_err() {
                let _ = umount2(&p, MntFlags::MNT_DETACH);
            }
        }
    }
}

/// Shim sockets recorded in the task bundles (`STATE/io.containerd.runtime.v2.task/NS/ID/address`).
fn shim_sockets(state: &Path, namespace: &str) -> Vec<PathBuf> {
    let bundles = state.join("io.containerd.runtime.v2.task").join(namespace);
    let Ok(entries) = std::fs::read_dir(bundles) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("address")).ok())
        .filter_map(|a| {
            let p = PathBuf::from(a.trim().strip_prefix("unix://")?);
            // Only sockets containerd keeps under its shared socket dir.
            p.starts_with("/run/containerd/s").then_some(p)
        })
        .collect()
}

/// Removes the (empty once its processes are gone) cgroup dirs `/<namespace>` of every hierarchy.
/// Cgroup directories below `<hierarchy>/<namespace>/` (the tasks' cgroups), on every mounted
/// hierarchy.
pub fn namespace_cgroups(namespace: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (mount_point, fstype) in mounts() {
        if fstype == "cgroup" || fstype == "cgroup2" {
            let Ok(entries) = std::fs::read_dir(mount_point.join(namespace)) else {
                continue;
            };
            out.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    out
}

fn remove_namespace_cgroups(namespace: &str) {
    for (mount_point, fstype) in mounts() {
        if fstype == "cgroup" || fstype == "cgroup2" {
            remove_empty_tree(&mount_point.join(namespace));
        }
    }
}

/// rmdir bottom-up (cgroupfs dirs hold only control files and go with `rmdir`).
fn remove_empty_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_empty_tree(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images;

    /// containerd needs root; CI runs as root. Elsewhere the test fails saying so, never passes
    /// having done nothing.
    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "a private containerd needs root: run the suite as root (CI does)"
        );
    }

    fn stdout(o: &Output) -> String {
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    #[test]
    fn runs_busybox_under_runc_and_cleans_up() {
        require_root();
        eprintln!("{}", versions());
        let ctrd = Containerd::start();
        let archive = ctrd.dir().join("busybox.tar");
        images::busybox_oci_archive(&archive).expect("busybox archive");
        ctrd.import(&archive);
        let listed = ctrd.ctr_ok(["image", "ls", "-q"]);
        assert!(
            listed.lines().any(|l| l == images::BUSYBOX_IMAGE),
            "import did not name the image {}: {listed}",
            images::BUSYBOX_IMAGE
        );

        let run = |id: &str, cmd: &[&str]| {
            let mut args = vec![
                "run",
                "--rm",
                "--runtime",
                RUNC_RUNTIME,
                images::BUSYBOX_IMAGE,
                id,
            ];
            args.extend_from_slice(cmd);
            ctrd.ctr(args)
        };
        let out = run("echo", &["/bin/echo", "hello"]);
        assert!(out.status.success(), "{out:?}\n{}", ctrd.log());
        assert_eq!(stdout(&out), "hello\n");
        let out = run("exit3", &["/bin/sh", "-c", "exit 3"]);
        assert_eq!(out.status.code(), Some(3), "{out:?}");

        let times = ctrd.time_ctr_run(images::BUSYBOX_IMAGE, 3);
        assert_eq!(times.len(), 3);

        // A task left running, for Drop to stop.
        let left = run_sleeper(&ctrd);
        drop_and_check(ctrd, left);
    }

    /// Drop must clean up even when containerd died first (no graceful path through `ctr`).
    #[test]
    fn cleans_up_after_containerd_was_killed() {
        require_root();
        let ctrd = Containerd::start();
        let archive = ctrd.dir().join("busybox.tar");
        images::busybox_oci_archive(&archive).expect("busybox archive");
        ctrd.import(&archive);
        let left = run_sleeper(&ctrd);
        let pid = Pid::from_raw(i32::try_from(ctrd.pid()).expect("pid"));
        kill(pid, Signal::SIGKILL).expect("kill containerd");
        drop_and_check(ctrd, left);
    }

    /// What a running task leaves outside the fixture's own process.
    struct Leftovers {
        containerd: u32,
        dir: PathBuf,
        address: PathBuf,
        namespace: String,
        shims: Vec<u32>,
        containers: Vec<u32>,
        sockets: Vec<PathBuf>,
    }

    /// Starts a detached task that never exits: a shim, a container and a rootfs mount exist then.
    fn run_sleeper(ctrd: &Containerd) -> Leftovers {
        ctrd.ctr_ok([
            "run",
            "-d",
            "--runtime",
            RUNC_RUNTIME,
            images::BUSYBOX_IMAGE,
            "sleeper",
            "/bin/sh",
            "-c",
            "while :; do sleep 1; done",
        ]);
        let dir = ctrd.dir().to_path_buf();
        let left = Leftovers {
            containerd: ctrd.pid(),
            address: ctrd.address().to_path_buf(),
            namespace: ctrd.namespace().to_string(),
            shims: ctrd.shim_pids(),
            containers: ctrd.container_pids(),
            sockets: shim_sockets(&ctrd.state(), ctrd.namespace()),
            dir,
        };
        assert!(
            !left.shims.is_empty(),
            "no shim for {}",
            left.address.display()
        );
        assert!(
            !left.containers.is_empty(),
            "no process in the namespace's cgroups"
        );
        assert!(!left.sockets.is_empty(), "no shim socket recorded");
        assert!(
            !mounts_under(&left.dir).is_empty(),
            "no rootfs mount under {}",
            left.dir.display()
        );
        assert!(
            Path::new("/run/containerd/runc")
                .join(&left.namespace)
                .exists()
        );
        left
    }

    fn drop_and_check(ctrd: Containerd, left: Leftovers) {
        drop(ctrd);
        assert!(!is_running(left.containerd), "containerd still running");
        for p in left.shims.iter().chain(&left.containers) {
            assert!(!is_running(*p), "process {p} still running after drop");
        }
        assert!(shims_of(&left.address).is_empty(), "shims left");
        let in_ns = in_cgroup_namespace(&left.namespace);
        assert!(
            in_ns.is_empty(),
            "container processes left: {:?}",
            in_ns
                .iter()
                .map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default())
                .collect::<Vec<_>>()
        );
        assert!(
            mounts_under(&left.dir).is_empty(),
            "mounts left: {:?}",
            mounts_under(&left.dir)
        );
        assert!(!left.dir.exists(), "{} left", left.dir.display());
        for s in &left.sockets {
            assert!(!s.exists(), "shim socket {} left", s.display());
        }
        assert!(
            !Path::new("/run/containerd/runc")
                .join(&left.namespace)
                .exists()
        );
        for (mount_point, fstype) in mounts() {
            if fstype.starts_with("cgroup") {
                let cg = mount_point.join(&left.namespace);
                assert!(!cg.exists(), "cgroup {} left", cg.display());
            }
        }
    }

    #[test]
    fn imports_a_wasm_artifact() {
        require_root();
        let ctrd = Containerd::start();
        let wasm = ctrd.dir().join("hello.wasm");
        std::fs::write(&wasm, wat::parse_str("(module)").expect("wat")).expect("write");
        let archive = ctrd.dir().join("hello.tar");
        let name = "skiff.test/hello-wasm:v1";
        let written = images::wasm_oci_archive(&wasm, &archive, name).expect("wasm archive");
        ctrd.import_artifact(&archive);
        let listed = ctrd.ctr_ok(["image", "ls"]);
        let line = listed
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not imported: {listed}"));
        assert!(line.contains(&written.manifest.digest), "{line}");
        // The module is in the content store under its layer digest.
        let blob = ctrd.ctr(["content", "get", &written.layers[0].digest]);
        assert!(blob.status.success(), "{blob:?}");
        assert_eq!(blob.stdout, std::fs::read(&wasm).expect("read"));
    }

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mount(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mount(r"/x\\"), r"/x\\");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }
}
