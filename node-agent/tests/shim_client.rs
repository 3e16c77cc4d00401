//! The agent's shim client against the real `containerd-shim-skiff-v1`: launched as containerd
//! launches it, a Wasm task run to its exit code (and its TaskExit event, and its CRI log), then
//! an agent restart (everything of the first agent dropped with its async runtime) that adopts
//! a still-running task of a group shim, sees what ended meanwhile, kills and deletes, and leaves
//! nothing behind.
//!
//! Needs root (the shim's sockets live in `/run/containerd/s`) and the shim binary: at
//! `$SKIFF_SHIM_BIN`, else beside this test's target dir (`cargo build -p
//! containerd-shim-skiff-v1` first).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use skiff_node_agent::shim::{Code, CreateTask, ShimEvent, Shims, ShimsConfig, TaskStatus};
use tokio::sync::broadcast;

fn shim_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SKIFF_SHIM_BIN") {
        return PathBuf::from(p);
    }
    // target/debug/deps/<test> -> target/debug/containerd-shim-skiff-v1
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("containerd-shim-skiff-v1");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p containerd-shim-skiff-v1` first",
        bin.display()
    );
    bin
}

/// A WASI preview 1 command that writes "hello\n" to stdout, sleeps `sleep_ms`, and exits
/// with `code`.
fn guest(dir: &Path, name: &str, sleep_ms: u64, code: i32) -> PathBuf {
    let ns = sleep_ms * 1_000_000;
    let text = format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 200) "hello\n")
  (func (export "_start")
    (i32.store (i32.const 100) (i32.const 200))
    (i32.store (i32.const 104) (i32.const 6))
    (drop (call $write (i32.const 1) (i32.const 100) (i32.const 1) (i32.const 120)))
    ;; one clock subscription at 0: monotonic clock, relative timeout
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const {ns}))
    (drop (call $poll (i32.const 0) (i32.const 304) (i32.const 1) (i32.const 400)))
    (call $exit (i32.const {code}))))"#
    );
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, wat::parse_str(&text).unwrap()).unwrap();
    path
}

/// Writes a Wasm bundle in `dir` (the form of `containers::bundle`): `module` alone in its
/// read-only rootfs, in shim group `group` (none: a shim of its own), its output in the CRI log
/// `log` if given.
fn bundle(dir: &Path, module: &Path, group: Option<&str>, log: Option<&Path>) {
    let name = module.file_name().unwrap().to_str().unwrap();
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    std::fs::copy(module, dir.join("rootfs").join(name)).unwrap();
    let mut annotations = serde_json::Map::new();
    if let Some(group) = group {
        annotations.insert("io.containerd.skiff.v1.group".into(), group.into());
    }
    if let Some(log) = log {
        let log = log.display().to_string();
        annotations.insert("io.containerd.skiff.v1.log-path".into(), log.into());
    }
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": 0, "gid": 0}, "args": [format!("/{name}")], "cwd": "/"},
        "root": {"path": "rootfs", "readonly": true},
        "annotations": annotations,
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

/// Whether `pid` is a live process (a zombie is not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// SIGKILLs the shims a failed test leaves, and removes their sockets.
#[derive(Default)]
struct Reaper(Mutex<Vec<(u32, String)>>);

impl Reaper {
    fn watch(&self, pid: u32, address: &str) {
        let socket = address.trim_start_matches("unix://").to_string();
        self.0.lock().unwrap().push((pid, socket));
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for (pid, socket) in self.0.lock().unwrap().iter() {
            if alive(*pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = std::fs::remove_file(socket);
        }
    }
}

async fn next_exit(events: &mut broadcast::Receiver<ShimEvent>, id: &str, within: Duration) -> u32 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(ShimEvent::Exited {
                id: got,
                exec_id: None,
                exit,
                ..
            })) if got == id => return exit.code,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("events: {e}"),
            Err(_) => panic!("no TaskExit for {id} within {within:?}"),
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn shim_log(data: &Path, group: &str) -> String {
    std::fs::read_to_string(data.join("shims").join(group).join("shim.log")).unwrap_or_default()
}

#[test]
fn tasks_run_through_the_shim_and_survive_an_agent_restart() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root (the shim's sockets live in /run/containerd/s)");
        return;
    }
    let binary = shim_binary();
    let dir = tempfile::Builder::new()
        .prefix("shimc")
        .tempdir_in("/tmp")
        .unwrap();
    let data = dir.path().join("data");
    let bundles = dir.path().join("bundles");
    let config = ShimsConfig::new(&data, &binary);
    let quick = guest(dir.path(), "quick", 0, 3);
    let long = guest(dir.path(), "long", 600_000, 0);
    let short = guest(dir.path(), "short", 2_500, 0);
    let reaper = Reaper::default();

    // The first agent: a task run to its end in a shim of its own, then two tasks started in
    // a group's shim.
    let agent = runtime();
    let (group_address, group_pid, long_pid) = agent.block_on(async {
        let shims = Shims::open(config.clone()).await.unwrap();
        let mut events = shims.subscribe();

        let b = bundles.join("quick");
        let log = dir.path().join("logs/quick.log");
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        bundle(&b, &quick, None, Some(&log));
        let shim = shims.shim_for("quick", "quick", &b).await.unwrap();
        let info = shim.connect_info("").await.unwrap();
        reaper.watch(info.shim_pid, shim.address());
        assert_eq!(
            std::fs::read_to_string(data.join("shims/quick/address")).unwrap(),
            shim.address()
        );
        let task = CreateTask {
            id: "quick".into(),
            bundle: b.clone(),
            rootfs: Vec::new(),
        };
        let pid = shim.create(&task).await.unwrap();
        assert_eq!(pid, info.shim_pid, "a Wasm task runs in its shim");
        assert_eq!(
            shim.state("quick").await.unwrap().status,
            TaskStatus::Created
        );
        shim.start("quick").await.unwrap();
        let exit = shim.wait("quick").await.unwrap();
        assert_eq!(
            exit.code,
            3,
            "shim log: {}\ntask log: {}",
            shim_log(&data, "quick"),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(exit.at.is_some());
        assert_eq!(
            next_exit(&mut events, "quick", Duration::from_secs(10)).await,
            3
        );
        let state = shim.state("quick").await.unwrap();
        assert_eq!(state.status, TaskStatus::Stopped);
        assert_eq!(state.exit.map(|e| e.code), Some(3));
        // The log path asked for CRI records.
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains(" stdout F hello"), "{text:?}");
        assert_eq!(shim.delete("quick").await.unwrap().code, 3);
        let e = shim.state("quick").await.unwrap_err();
        assert!(e.is_not_found(), "{e}");
        assert!(shim.shutdown(false).await.unwrap(), "the shim did not exit");
        let socket = shim.address().trim_start_matches("unix://").to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(info.shim_pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(info.shim_pid), "shim {} still runs", info.shim_pid);
        assert!(!Path::new(&socket).exists(), "{socket} left behind");
        assert!(!data.join("shims/quick").exists());

        // A group: two tasks, one shim.
        let mut pids = Vec::new();
        let mut address = String::new();
        for (id, module) in [("long", &long), ("short", &short)] {
            let b = bundles.join(id);
            bundle(&b, module, Some("pods"), None);
            let shim = shims.shim_for("pods", id, &b).await.unwrap();
            assert_eq!(shim.group(), "pods");
            if address.is_empty() {
                address = shim.address().to_string();
            }
            assert_eq!(shim.address(), address, "one shim for the group");
            let task = CreateTask {
                id: id.into(),
                bundle: b,
                rootfs: Vec::new(),
            };
            shim.create(&task).await.unwrap();
            pids.push(shim.start(id).await.unwrap());
        }
        let shim = shims.reconnect("pods").await.unwrap();
        let info = shim.connect_info("long").await.unwrap();
        reaper.watch(info.shim_pid, shim.address());
        assert_eq!(info.task_pid, pids[0]);
        (address, info.shim_pid, pids[0])
    });
    // The agent dies: its runtime, its connections and its events endpoint go at once (the
    // socket file stays, as after a kill -9).
    drop(agent);

    // "short" ends while no agent listens: its shim's TaskExit finds no endpoint.
    std::thread::sleep(Duration::from_millis(3_500));
    assert!(
        alive(group_pid),
        "the shim died without its agent: {}",
        shim_log(&data, "pods")
    );

    // The next agent adopts what runs.
    let agent = runtime();
    agent.block_on(async {
        let shims = Shims::open(config.clone()).await.unwrap();
        let mut events = shims.subscribe();
        let recorded = shims.recorded().unwrap();
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert_eq!(recorded[0].group, "pods");
        assert_eq!(recorded[0].address, group_address);
        let ids: Vec<&str> = recorded[0].tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["long", "short"]);

        let shim = shims.reconnect("pods").await.unwrap();
        let info = shim.connect_info("long").await.unwrap();
        assert_eq!(info.shim_pid, group_pid, "the same shim, not a new one");
        let state = shim.state("long").await.unwrap();
        assert_eq!(state.status, TaskStatus::Running);
        assert_eq!(state.pid, long_pid);
        assert_eq!(state.exit, None);
        // Adopted, not started again: a second Start is refused, and it still runs.
        let e = shim.start("long").await.unwrap_err();
        assert_eq!(e.code(), Some(Code::FAILED_PRECONDITION), "{e}");
        assert_eq!(
            shim.state("long").await.unwrap().status,
            TaskStatus::Running
        );
        // What ended meanwhile, the shim still knows.
        let state = shim.state("short").await.unwrap();
        assert_eq!(state.status, TaskStatus::Stopped);
        assert_eq!(state.exit.map(|e| e.code), Some(0));

        shim.kill("long", 9, false).await.unwrap();
        assert_eq!(shim.wait("long").await.unwrap().code, 137);
        // The shim's publisher finds the new endpoint (it reconnects as it retries).
        assert_eq!(
            next_exit(&mut events, "long", Duration::from_secs(20)).await,
            137
        );
        shim.delete("short").await.unwrap();
        shim.delete("long").await.unwrap();
        assert!(
            shim.shutdown(false).await.unwrap(),
            "the group's shim did not exit"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(group_pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(group_pid), "shim {group_pid} still runs");
        let socket = group_address.trim_start_matches("unix://");
        assert!(!Path::new(socket).exists(), "{socket} left behind");
        assert!(shims.recorded().unwrap().is_empty());
        let e = shims.reconnect("pods").await.unwrap_err();
        assert!(e.to_string().contains("no address recorded"), "{e}");
        shims.close().await;
    });
    drop(agent);
    assert!(!data.join("shims/agent.sock.ttrpc").exists());
    let left: Vec<_> = std::fs::read_dir(data.join("shims"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["cache"], "left in the data dir");
}
