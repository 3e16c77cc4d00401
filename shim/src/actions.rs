//! The `start` and `delete` actions, answered before any async runtime exists, and the server
//! that a `start` forks.
//!
//! containerd runs `shim start` and `shim delete` around every task, and waits for both. The
//! framework's `start` execs the binary a second time and waits until that copy has set up its
//! server. Here `start` binds the socket itself, forks the server (single-threaded, so the fork
//! is safe), and prints the address at once. Connections wait in the socket's backlog until the
//! server accepts them. The `delete` action needs no async runtime at all. Everything else
//! (`-v`, `-info`, a server started with `-socket`) goes to the framework.
//!
//! Must not: serve requests (that is [`crate::service`]) or decide what a cleanup removes (that
//! is [`crate::shim`]).

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim::Flags;
use containerd_shim::api::DeleteResponse;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim_async::{Task, create_task};
use containerd_shim::protos::ttrpc::r#async::Server;
use containerd_shim::protos::ttrpc::r#async::transport::Listener;
use containerd_shim::publisher::RemotePublisher;
use oci_spec::runtime::{LinuxResources, Spec};

use crate::events::Events;
use crate::process::Exit;
use crate::service::Service;
use crate::shim::{cleanup, grouping};

/// Where containerd tells its shims to publish events.
const TTRPC_ADDRESS: &str = "TTRPC_ADDRESS";

/// `shim start`: the address of the shim serving this container's group, starting one if none
/// runs. Returns the process's exit code.
pub fn start(flags: &Flags) -> i32 {
    match start_inner(flags) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}: start: {e}", crate::RUNTIME_ID);
            1
        }
    }
}

fn start_inner(flags: &Flags) -> Result<(), String> {
    let spec = Spec::load("config.json").ok();
    let group = grouping(spec.as_ref(), &flags.id);
    let address = containerd_shim::socket_address(&flags.address, &flags.namespace, &group);
    let path = PathBuf::from(address.trim_start_matches("unix://"));
    let Some(listener) = bind(&path)? else {
        // The group's shim runs already: it serves this container too.
        return answer(&address);
    };
    // The child waits on this until the parent has placed it in containerd's shim cgroup.
    let (placed_rx, placed_tx) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // Single-threaded here: the child may go on without exec.
    match skiff_runtime::linux::fork_single_threaded().map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop(placed_tx);
            let code = match detach() {
                Ok(()) => {
                    // Returns when the parent wrote or went away: either way it is done.
                    let _ = nix::unistd::read(&placed_rx, &mut [0u8; 1]);
                    drop(placed_rx);
                    serve(flags, listener, &path, spec.as_ref())
                }
                Err(e) => {
                    log::error!("detaching the shim: {e}");
                    1
                }
            };
            std::process::exit(code);
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(listener);
            drop(placed_rx);
            let pid = u32::try_from(child.as_raw()).unwrap_or(0);
            // containerd's shim cgroup (from the options on stdin) and an OOM score above its own.
            if let Err(e) = containerd_shim::cgroup::set_cgroup_and_oom_score(pid) {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                let _ = std::fs::remove_file(&path);
                return Err(format!("placing the shim (pid {pid}): {e}"));
            }
            let _ = nix::unistd::write(&placed_tx, b"p");
            drop(placed_tx);
            answer(&address)
        }
    }
}

/// The cgroup the first container's task runs in, when its shim can join it before any thread
/// starts: a Wasm entrypoint (the guest runs in the shim) and a `linux.cgroupsPath`, in a shim
/// of its own or its pod's (a node group's shim never joins one).
fn first_task_cgroup(spec: &Spec) -> Option<(String, Option<LinuxResources>)> {
    if !names_wasm(Some(spec)) || crate::shim::in_node_group(spec) {
        return None;
    }
    let linux = spec.linux().as_ref()?;
    let path = linux.cgroups_path().as_ref()?.display().to_string();
    Some((path, linux.resources().clone()))
}

/// Does the first container's entrypoint name a `.wasm` file? Then the server builds its engine
/// before Create asks for it.
fn names_wasm(spec: Option<&Spec>) -> bool {
    spec.and_then(|s| s.process().as_ref())
        .and_then(|p| p.args().as_ref())
        .and_then(|a| a.first())
        .is_some_and(|a| a.ends_with(".wasm"))
}

/// Binds the shim socket; `None` when a live shim already listens on it. A socket left by a
/// dead shim is replaced.
fn bind(path: &Path) -> Result<Option<UnixListener>, String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    match UnixListener::bind(path) {
        Ok(l) => return Ok(Some(l)),
        Err(e) if e.kind() != std::io::ErrorKind::AddrInUse => {
            return Err(format!("binding {}: {e}", path.display()));
        }
        Err(_) => {}
    }
    if UnixStream::connect(path).is_ok() {
        return Ok(None);
    }
    std::fs::remove_file(path)
        .map_err(|e| format!("removing the stale {}: {e}", path.display()))?;
    UnixListener::bind(path)
        .map(Some)
        .map_err(|e| format!("binding {}: {e}", path.display()))
}

/// Records the address in the bundle and prints it for containerd.
fn answer(address: &str) -> Result<(), String> {
    write_address(address)?;
    let mut out = std::io::stdout().lock();
    out.write_all(address.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing the address: {e}"))
}

fn write_address(address: &str) -> Result<(), String> {
    let tmp = format!("address.{}", std::process::id());
    std::fs::write(&tmp, address)
        .and_then(|()| std::fs::rename(&tmp, "address"))
        .map_err(|e| format!("writing the bundle's address file: {e}"))
}

/// The forked server leaves containerd's session and stdio: containerd reads `start`'s output
/// until every holder of that pipe closes it.
fn detach() -> Result<(), String> {
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("/dev/null: {e}"))?;
    nix::unistd::dup2_stdin(&null)
        .and_then(|()| nix::unistd::dup2_stdout(&null))
        .and_then(|()| nix::unistd::dup2_stderr(&null))
        .map_err(|e| format!("dup2: {e}"))?;
    // The container inits the shim starts are reaped by the shim, not by init.
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("subreaper: {e}"))
}

/// The long-running shim: the task service on `listener` until Shutdown. `spec` is the first
/// container's.
fn serve(flags: &Flags, listener: UnixListener, path: &Path, spec: Option<&Spec>) -> i32 {
    if let Err(e) = containerd_shim::logger::init(flags.debug, "info", &flags.namespace, &flags.id)
    {
        // No log FIFO: nothing to tell containerd through, but the shim can still serve.
        eprintln!("{}: log: {e}", crate::RUNTIME_ID);
    }
    // The bundle it started in (its `log` just opened) is the first task's: a group's shim
    // outlives that task, whose bundle must be removable meanwhile. Every path from here on is
    // absolute (Create's bundle).
    if let Err(e) = std::env::set_current_dir("/") {
        log::warn!("leaving the first bundle: chdir /: {e}");
    }
    // Before the async runtime's threads: the cheap moment to join (see `join_at_start`). A
    // failure is left to Create, which joins again and reports it.
    if let Some((cgroup, resources)) = spec.and_then(first_task_cgroup)
        && let Err(e) = crate::cgroup::join_at_start(&cgroup, resources.as_ref())
    {
        log::debug!("joining the task's cgroup at start: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("starting the async runtime: {e}");
            return 1;
        }
    };
    // After the cgroup join (the span exporter starts a thread) and inside the runtime (its
    // gRPC channel lives there); what comes before logs through `log` alone.
    let telemetry = {
        let _runtime = runtime.enter();
        crate::logging::init()
    };
    let result = runtime.block_on(async {
        // Off the request path: the first event published would build them.
        tokio::task::spawn_blocking(crate::events::prepare_descriptors);
        let ttrpc_address =
            std::env::var(TTRPC_ADDRESS).map_err(|e| format!("{TTRPC_ADDRESS}: {e}"))?;
        let publisher = RemotePublisher::new(&ttrpc_address)
            .await
            .map_err(|e| format!("connecting to containerd's events at {ttrpc_address}: {e}"))?;
        // A Wasm first container: its engine is built while containerd sends Create (a
        // failure is left to Create). Not earlier: its mappings would slow the runtime's start.
        let engine = names_wasm(spec)
            .then(crate::service::build_engine_early)
            .and_then(|b| b.map_err(|e| log::warn!("{e}")).ok());
        let exit = Arc::new(ExitSignal::default());
        crate::reaper::spawn();
        let service = Service::new(
            Events::new(publisher, &flags.namespace),
            exit.clone(),
            engine,
        );
        let task: Arc<dyn Task + Send + Sync> = Arc::new(service);
        let listener = Listener::try_from(listener).map_err(|e| format!("listener: {e}"))?;
        let mut server = Server::new()
            .add_listener(listener)
            .register_service(create_task(task));
        server
            .start()
            .await
            .map_err(|e| format!("starting the ttrpc server: {e}"))?;
        tokio::spawn(ignore_termination());
        exit.wait().await;
        let _ = server.shutdown().await;
        let _ = tokio::task::spawn_blocking(crate::cgroup::settle).await;
        Ok::<(), String>(())
    });
    // The spans still queued, while the runtime still drives the exporter's channel.
    telemetry.shutdown();
    // Its threads gone, the process can leave its task cgroups without the kernel's slow path.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    crate::cgroup::leave_at_exit();
    let _ = std::fs::remove_file(path);
    match result {
        Ok(()) => 0,
        Err(e) => {
            log::error!("{e}");
            1
        }
    }
}

/// SIGTERM and SIGINT do not stop a shim (containerd ends it with Shutdown), as the framework
/// has it. Handled rather than ignored, so the processes it starts get default dispositions.
async fn ignore_termination() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => log::debug!("SIGTERM ignored"),
            _ = int.recv() => log::debug!("SIGINT ignored"),
        }
    }
}

/// `shim delete`: cleans up after the container's shim (see [`cleanup`]) and prints the
/// DeleteResponse. Returns the process's exit code.
pub fn delete(flags: &Flags) -> i32 {
    let bundle = if flags.bundle.is_empty() {
        std::env::current_dir().unwrap_or_default()
    } else {
        PathBuf::from(&flags.bundle)
    };
    let response = delete_response(&bundle, &flags.id);
    let bytes = match response.write_to_bytes() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: delete: {e}", crate::RUNTIME_ID);
            return 1;
        }
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(&bytes).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}: delete: writing the response: {e}", crate::RUNTIME_ID);
            1
        }
    }
}

/// Cleans up `id` in `bundle`; the answer containerd records as the task's end.
pub fn delete_response(bundle: &Path, id: &str) -> DeleteResponse {
    cleanup(bundle, id);
    let exit = Exit::now(128 + 9);
    DeleteResponse {
        exit_status: exit.code,
        exited_at: exit.timestamp(),
        ..Default::default()
    }
}
