//! The containerd shim end to end: a real Debian `containerd` (its own root, state and socket,
//! started by the test) runs tasks through `containerd-shim-skiff-v1` with `ctr run --runtime
//! io.containerd.skiff.v1`. Images are built here and imported with `ctr image import`: the
//! `probe` guest as an image whose entrypoint is `/probe.wasm`, and busybox for Linux tasks.

use std::process::Stdio;
use std::time::{Duration, Instant};

use skiff_tests::containerd::{Containerd, mounts_under, namespace_cgroups};
use skiff_tests::guests::guest;
use skiff_tests::images::{BUSYBOX_IMAGE, busybox_oci_archive, wasm_entrypoint_archive};
use skiff_tests::{shim_dir, wait_for};

mod function;
mod group;
mod logs;
mod stats;

const RUNTIME: &str = "io.containerd.skiff.v1";
const PROBE_IMAGE: &str = "skiff.test/probe:latest";

fn containerd() -> Containerd {
    let dir = shim_dir();
    let c = Containerd::start_with_path(&[dir.as_path()]);
    let probe = guest("probe");
    let archive = c.dir().join("probe.tar");
    wasm_entrypoint_archive(&probe, &archive, PROBE_IMAGE).expect("probe image");
    c.import(&archive);
    let archive = c.dir().join("busybox.tar");
    busybox_oci_archive(&archive).expect("busybox image");
    c.import(&archive);
    c
}

/// `ctr run --rm --runtime skiff IMAGE ID ARGS...`: (exit code, stdout, stderr). As with any
/// runtime, `ctr` replaces the image's entrypoint with ARGS when they are given, so Wasm runs
/// name the module first (`/probe.wasm echo hi`), as runwasi's examples do.
fn run(c: &Containerd, image: &str, id: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["run", "--rm", "--runtime", RUNTIME, image, id];
    all.extend_from_slice(args);
    let out = c.ctr(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The status column of `ctr task ls` for `id`.
fn task_status(c: &Containerd, id: &str) -> Option<String> {
    c.ctr_ok(["task", "ls"]).lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.first() == Some(&id)).then(|| cols.get(2).unwrap_or(&"").to_string())
    })
}

/// The pid `ctr task ls` shows for task `id`.
fn task_pid(c: &Containerd, id: &str) -> u32 {
    let ls = c.ctr_ok(["task", "ls"]);
    ls.lines()
        .find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&id)).then(|| cols.get(1)?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no pid for task {id} in: {ls}"))
}

/// Each thread of `pid` with the cgroup it is in for memory (v1's memory hierarchy, or v2's
/// unified one).
fn memory_cgroup_of_threads(pid: u32) -> Vec<(String, String)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the shim's threads");
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let tid = task.file_name().to_string_lossy().into_owned();
        let Ok(cgroups) = std::fs::read_to_string(task.path().join("cgroup")) else {
            continue; // the thread ended meanwhile
        };
        let lines: Vec<(&str, &str)> = cgroups
            .lines()
            .filter_map(|l| {
                let mut parts = l.splitn(3, ':');
                parts.next()?;
                Some((parts.next()?, parts.next()?))
            })
            .collect();
        let v1 = lines
            .iter()
            .find(|(controllers, _)| controllers.split(',').any(|c| c == "memory"));
        let memory = v1.or_else(|| lines.iter().find(|(controllers, _)| controllers.is_empty()));
        out.push((
            tid,
            memory.map(|(_, path)| path.to_string()).unwrap_or_default(),
        ));
    }
    out
}

fn start_detached(c: &Containerd, image: &str, id: &str, args: &[&str]) {
    let mut all = vec!["run", "-d", "--runtime", RUNTIME, image, id];
    all.extend_from_slice(args);
    c.ctr_ok(&all);
}

/// The memory usage `ctr task metrics` prints (`memory.usage_in_bytes` for cgroup v1 metrics,
/// `memory.usage` for v2), 0 if none.
fn memory_usage(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| {
            let mut cols = l.split_whitespace();
            let name = cols.next()?;
            matches!(name, "memory.usage_in_bytes" | "memory.usage")
                .then(|| cols.next()?.parse().ok())
                .flatten()
        })
        .unwrap_or(0)
}

/// SIGKILL, wait for STOPPED, delete the task and the container.
fn kill_and_remove(c: &Containerd, id: &str) {
    c.ctr_ok(["task", "kill", "--signal", "SIGKILL", id]);
    wait_for("the task to stop", Duration::from_secs(5), || {
        (task_status(c, id).as_deref() == Some("STOPPED")).then_some(())
    });
    remove(c, id);
}

fn remove(c: &Containerd, id: &str) {
    c.ctr_ok(["task", "delete", id]);
    c.ctr_ok(["container", "delete", id]);
}

fn assert_nothing_left(c: &Containerd) {
    wait_for("shims to exit", Duration::from_secs(10), || {
        c.shim_pids().is_empty().then_some(())
    });
    assert!(
        c.container_pids().is_empty(),
        "processes left in the namespace's cgroups: {:?}",
        c.container_pids()
    );
    let mounts = mounts_under(c.dir());
    let task_mounts: Vec<_> = mounts.iter().filter(|m| m.starts_with(c.state())).collect();
    assert!(
        task_mounts.is_empty(),
        "rootfs mounts left: {task_mounts:?}"
    );
    wait_for(
        "the tasks' cgroups to be removed",
        Duration::from_secs(10),
        || namespace_cgroups(c.namespace()).is_empty().then_some(()),
    );
}

#[test]
fn wasm_guest_output_and_exit_codes() {
    let c = containerd();
    let (code, out, err) = run(
        &c,
        PROBE_IMAGE,
        "w-echo",
        &["/probe.wasm", "echo", "hello", "from", "wasm"],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "hello from wasm\n"),
        "stderr: {err}\n{}",
        c.log()
    );

    let (code, out, err) = run(&c, PROBE_IMAGE, "w-exit", &["/probe.wasm", "exit", "3"]);
    assert_eq!(code, 3, "stdout: {out}\nstderr: {err}");
    assert!(err.contains("exiting 3"), "stderr: {err}");

    // The guest sees the image's files through the rootfs preopen, and only those.
    let (code, out, _) = run(&c, PROBE_IMAGE, "w-ls", &["/probe.wasm", "ls", "/"]);
    assert_eq!(code, 0);
    let entries: Vec<&str> = out.lines().collect();
    assert!(entries.contains(&"probe.wasm"), "{out}");

    // linux.resources.memory.limit is the guest's memory limit: malloc fails past it, and a
    // guest that then fails is reported OOM-killed (137), as on a skiff node.
    for (mib, want) in [("16", 0), ("128", 137)] {
        let out = c.ctr([
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            "--memory-limit",
            "67108864",
            PROBE_IMAGE,
            "w-hog",
            "/probe.wasm",
            "hog",
            mib,
        ]);
        assert_eq!(
            out.status.code(),
            Some(want),
            "hog {mib} MiB under 64 MiB: {out:?}"
        );
    }

    let (code, out, err) = run(&c, PROBE_IMAGE, "w-esc", &["/probe.wasm", "escape", "/"]);
    assert_eq!(code, 0, "a guest escaped its rootfs:\n{out}\n{err}");
    assert_nothing_left(&c);
}

#[test]
fn a_looping_guest_is_killed_within_a_second_and_task_ls_shows_its_states() {
    let c = containerd();
    start_detached(&c, PROBE_IMAGE, "w-spin", &["/probe.wasm", "spin"]);
    assert_eq!(task_status(&c, "w-spin").as_deref(), Some("RUNNING"));
    // Its figures are its instance's (wasmtime's accounting, see `stats`).
    let metrics = c.ctr_ok(["task", "metrics", "w-spin"]);
    assert!(memory_usage(&metrics) > 0, "ctr task metrics: {metrics}");
    // A shim of its own runs the guest in the task's cgroup: every thread of the shim (the
    // task's pid), not only the one that joined, is in it.
    let threads = memory_cgroup_of_threads(task_pid(&c, "w-spin"));
    assert!(threads.len() > 1, "the shim's threads: {threads:?}");
    let outside: Vec<String> = threads
        .into_iter()
        .filter(|(_, cgroup)| !cgroup.ends_with(&format!("/{}/w-spin", c.namespace())))
        .map(|(tid, cgroup)| format!("thread {tid} in {cgroup}"))
        .collect();
    assert!(
        outside.is_empty(),
        "shim threads outside the task's cgroup: {outside:?}"
    );
    let t = Instant::now();
    c.ctr_ok(["task", "kill", "--signal", "SIGKILL", "w-spin"]);
    wait_for("the killed guest to stop", Duration::from_secs(5), || {
        (task_status(&c, "w-spin").as_deref() == Some("STOPPED")).then_some(())
    });
    let took = t.elapsed();
    assert!(took < Duration::from_secs(1), "kill took {took:?}");
    remove(&c, "w-spin");
    assert_eq!(task_status(&c, "w-spin"), None);
    assert_nothing_left(&c);
}

#[test]
fn busybox_runs_through_the_shim_with_exec() {
    let c = containerd();
    let (code, out, err) = run(
        &c,
        BUSYBOX_IMAGE,
        "b-run",
        &["sh", "-c", "echo $((6*7)) pid=$$; exit 4"],
    );
    assert_eq!(
        (code, out.as_str()),
        (4, "42 pid=1\n"),
        "stderr: {err}\n{}",
        c.log()
    );

    start_detached(
        &c,
        BUSYBOX_IMAGE,
        "b-exec",
        &["/bin/busybox", "sleep", "30"],
    );
    let out = c.ctr_ok([
        "task",
        "exec",
        "--exec-id",
        "e1",
        "b-exec",
        "sh",
        "-c",
        "echo pid1: $(/bin/busybox tr '\\0' ' ' < /proc/1/cmdline)",
    ]);
    // The exec joined the container: its pid 1 is the task's process.
    assert_eq!(out.trim_end(), "pid1: /bin/busybox sleep 30");
    // A kill of an exec reaches the process it runs (not only the executor's helper).
    let mut long = c
        .ctr_command([
            "task",
            "exec",
            "--exec-id",
            "e2",
            "b-exec",
            "/bin/busybox",
            "sleep",
            "1000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ctr task exec");
    wait_for("the exec to run", Duration::from_secs(5), || {
        let n = c.ctr_ok(["task", "ps", "b-exec"]).lines().count();
        (n >= 4).then_some(())
    });
    c.ctr_ok([
        "task",
        "kill",
        "--exec-id",
        "e2",
        "--signal",
        "SIGKILL",
        "b-exec",
    ]);
    let status = long.wait().expect("ctr task exec exit");
    assert_eq!(status.code(), Some(137), "the exec's exit status");
    wait_for(
        "the exec's process to be gone",
        Duration::from_secs(5),
        || {
            let ps = c.ctr_ok(["task", "ps", "b-exec"]);
            (ps.lines().count() == 2).then_some(())
        },
    );
    assert_eq!(task_status(&c, "b-exec").as_deref(), Some("RUNNING"));
    let pids = c.ctr_ok(["task", "ps", "b-exec"]);
    assert!(pids.lines().count() >= 2, "ctr task ps: {pids}");
    let metrics = c.ctr_ok(["task", "metrics", "b-exec"]);
    assert!(memory_usage(&metrics) > 0, "ctr task metrics: {metrics}");
    // A pid 1 without handlers ignores SIGTERM (as under runc): kill every process.
    c.ctr_ok(["task", "kill", "--all", "--signal", "SIGKILL", "b-exec"]);
    wait_for("sleep to end", Duration::from_secs(10), || {
        (task_status(&c, "b-exec").as_deref() == Some("STOPPED")).then_some(())
    });
    remove(&c, "b-exec");
    assert_nothing_left(&c);
}

#[test]
fn twenty_runs_leave_no_shim_mount_or_cgroup() {
    let c = containerd();
    for i in 0..20 {
        let (image, args): (&str, &[&str]) = if i % 2 == 0 {
            (PROBE_IMAGE, &["/probe.wasm", "echo", "run"])
        } else {
            (BUSYBOX_IMAGE, &["echo", "run"])
        };
        let (code, out, err) = run(&c, image, &format!("r{i}"), args);
        assert_eq!((code, out.as_str()), (0, "run\n"), "run {i}: {err}");
    }
    assert_nothing_left(&c);
    let cgroups = namespace_cgroups(c.namespace());
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
}

#[test]
fn events_come_in_order_create_start_exit_delete() {
    let c = containerd();
    let mut events = c
        .ctr_command(["events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ctr events");
    std::thread::sleep(Duration::from_millis(300));
    let (code, _, err) = run(&c, PROBE_IMAGE, "w-ev", &["/probe.wasm", "echo", "x"]);
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(Duration::from_millis(500));
    let _ = events.kill();
    let out = events.wait_with_output().expect("ctr events output");
    let text = String::from_utf8_lossy(&out.stdout);
    let topics: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("w-ev"))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("/tasks/")))
        .collect();
    assert_eq!(
        topics,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ],
        "{text}"
    );
}

#[test]
fn a_task_survives_a_containerd_restart_and_is_reconnected() {
    let mut c = containerd();
    start_detached(
        &c,
        PROBE_IMAGE,
        "w-live",
        &["/probe.wasm", "tick", "50", "0"],
    );
    start_detached(
        &c,
        BUSYBOX_IMAGE,
        "b-live",
        &["/bin/busybox", "sleep", "60"],
    );
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 2, "one shim per task");
    c.restart();
    assert_eq!(task_status(&c, "w-live").as_deref(), Some("RUNNING"));
    assert_eq!(task_status(&c, "b-live").as_deref(), Some("RUNNING"));
    assert_eq!(c.shim_pids(), shims, "the same shims serve them");
    for id in ["w-live", "b-live"] {
        kill_and_remove(&c, id);
    }
    assert_nothing_left(&c);
}

#[test]
fn a_killed_shim_is_cleaned_up_by_shim_delete() {
    let c = containerd();
    start_detached(
        &c,
        BUSYBOX_IMAGE,
        "b-orphan",
        &["/bin/busybox", "sleep", "60"],
    );
    start_detached(&c, PROBE_IMAGE, "w-orphan", &["/probe.wasm", "sleep", "0"]);
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 2);
    assert!(!c.container_pids().is_empty());
    let sockets: Vec<std::path::PathBuf> = ["b-orphan", "w-orphan"]
        .iter()
        .map(|id| {
            let bundle = c
                .state()
                .join("io.containerd.runtime.v2.task")
                .join(c.namespace())
                .join(id);
            let address = std::fs::read_to_string(bundle.join("address")).unwrap();
            std::path::PathBuf::from(address.trim().trim_start_matches("unix://"))
        })
        .collect();
    assert!(sockets.iter().all(|s| s.exists()), "{sockets:?}");
    assert!(!namespace_cgroups(c.namespace()).is_empty());
    for shim in shims {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(shim as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    for id in ["b-orphan", "w-orphan"] {
        wait_for(
            "containerd to mark the task stopped",
            Duration::from_secs(10),
            || (task_status(&c, id).as_deref() != Some("RUNNING")).then_some(()),
        );
    }
    // `shim delete` killed the container and removed both tasks' cgroups and rootfs mounts.
    wait_for(
        "the container's processes to be gone",
        Duration::from_secs(10),
        || c.container_pids().is_empty().then_some(()),
    );
    wait_for(
        "both tasks' cgroups to be removed",
        Duration::from_secs(10),
        || namespace_cgroups(c.namespace()).is_empty().then_some(()),
    );
    wait_for(
        "the dead shims' sockets to be removed",
        Duration::from_secs(10),
        || sockets.iter().all(|s| !s.exists()).then_some(()),
    );
    for id in ["b-orphan", "w-orphan"] {
        let _ = c.ctr(["task", "delete", id]);
        c.ctr_ok(["container", "delete", id]);
    }
    assert_nothing_left(&c);
}

#[test]
fn containers_of_one_pod_share_one_shim() {
    let c = containerd();
    // As under CRI: a Linux "pause" container first, then a Wasm container and a second Linux one.
    let pod: [(&str, &str, &[&str]); 3] = [
        ("p-pause", BUSYBOX_IMAGE, &["/bin/busybox", "sleep", "60"]),
        ("p-wasm", PROBE_IMAGE, &["/probe.wasm", "sleep", "0"]),
        ("p-side", BUSYBOX_IMAGE, &["/bin/busybox", "sleep", "60"]),
    ];
    for (id, image, args) in pod {
        let mut all = vec![
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            "--annotation",
            "io.kubernetes.cri.sandbox-id=pod-1",
            image,
            id,
        ];
        all.extend_from_slice(args);
        c.ctr_ok(&all);
    }
    assert_eq!(c.shim_pids().len(), 1, "one shim for the pod's containers");
    // The Wasm container still gets Stats of its own (its instance's).
    let metrics = c.ctr_ok(["task", "metrics", "p-wasm"]);
    assert!(memory_usage(&metrics) > 0, "ctr task metrics: {metrics}");
    for (id, ..) in pod {
        assert_eq!(task_status(&c, id).as_deref(), Some("RUNNING"));
    }
    // The pause container goes last, as a pod's sandbox does.
    for id in ["p-wasm", "p-side", "p-pause"] {
        kill_and_remove(&c, id);
    }
    assert_nothing_left(&c);
}

#[test]
fn a_bad_module_fails_the_run_with_a_clear_error() {
    let c = containerd();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"\0asm\x01\0\0\0\x7fgarbage").unwrap();
    let archive = dir.path().join("bad.tar");
    wasm_entrypoint_archive(&bad, &archive, "skiff.test/bad:latest").unwrap();
    c.import(&archive);
    let (code, _, err) = run(&c, "skiff.test/bad:latest", "w-bad", &[]);
    assert_ne!(code, 0);
    assert!(err.contains("w-bad") && err.contains("bad.wasm"), "{err}");
    assert_nothing_left(&c);
}

#[test]
fn a_wasm_task_joined_to_a_network_namespace_has_its_sockets_there() {
    const NET_IMAGE: &str = "skiff.test/net:latest";
    let c = containerd();
    let archive = c.dir().join("net.tar");
    let net = skiff_tests::guests::socket_component("net");
    wasm_entrypoint_archive(&net, &archive, NET_IMAGE).expect("net image");
    c.import(&archive);
    // A namespace made by the test, as a CRI pod sandbox's would be.
    let ns = format!("skiff-shim-{}", std::process::id());
    let ip = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .expect("ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ip(&["netns", "add", &ns]);
    struct Netns(String);
    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", &self.0])
                .output();
        }
    }
    let _netns = Netns(ns.clone());
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    let with_ns = format!("network:/run/netns/{ns}");
    let wasm = "/net.component.wasm";

    c.ctr_ok([
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--with-ns",
        &with_ns,
        NET_IMAGE,
        "w-serve",
        wasm,
        "serve",
        "18343",
        "from-the-pod",
        "1",
    ]);
    let out = c.ctr([
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--with-ns",
        &with_ns,
        NET_IMAGE,
        "w-fetch",
        wasm,
        "fetch",
        "127.0.0.1",
        "18343",
        "80",
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(said, "from-the-pod\n");
    wait_for("the server to finish", Duration::from_secs(10), || {
        (task_status(&c, "w-serve").as_deref() == Some("STOPPED")).then_some(())
    });
    remove(&c, "w-serve");

    // Without a namespace to join, no socket at all.
    let (code, out, err) = run(&c, NET_IMAGE, "w-bind", &[wasm, "bind", "18343"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("bind 18343: access-denied"), "{out}{err}");
    assert_nothing_left(&c);
}
