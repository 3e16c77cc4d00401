//! The linux executor (`skiff oci`, runc's command line) on busybox bundles: the same bundle
//! under skiff and Debian's runc gives the same exit codes, capabilities and mounts; limits hold
//! (pids, memory with OOM detection); exec joins the container; nothing of the executor leaks in;
//! a hostile rootfs cannot point a mount at the host; delete leaves nothing behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use skiff_tests::bundles::{Bundle, runc, skiff_oci};
use skiff_tests::{text, wait_for};

/// A unique container id for this test process.
fn id(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

struct Setup {
    _dir: tempfile::TempDir,
    bundle: Bundle,
    skiff_root: PathBuf,
    runc_root: PathBuf,
}

fn setup(args: &[&str]) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle_dir = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle_dir).expect("bundle dir");
    let bundle = Bundle::busybox(&bundle_dir, args);
    Setup {
        skiff_root: dir.path().join("skiff-state"),
        runc_root: dir.path().join("runc-state"),
        _dir: dir,
        bundle,
    }
}

fn cgroup_gone(cgroup: &str) -> bool {
    ["memory", "pids", "cpu", "unified"].iter().all(|c| {
        !Path::new("/sys/fs/cgroup")
            .join(c)
            .join(cgroup.trim_start_matches('/'))
            .exists()
    }) && !Path::new("/sys/fs/cgroup")
        .join(cgroup.trim_start_matches('/'))
        .exists()
}

/// Mount points with their type and ro/rw, from /proc/self/mountinfo, sorted.
const MOUNTS: &str = "awk '{ split($6, o, \",\"); for (i = 7; $i != \"-\"; i++); print $5, $(i+1), o[1] }' /proc/self/mountinfo | sort";

#[test]
fn the_same_bundle_runs_the_same_under_skiff_and_runc() {
    let probes = [
        ("exit code", "exit 3".to_string()),
        ("identity", "echo pid $$; hostname; id".to_string()),
        (
            "privileges",
            "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status".to_string(),
        ),
        ("mounts", MOUNTS.to_string()),
        ("devices", "ls -l /dev | awk '{print $1, $NF}'".to_string()),
        ("masked", "cat /proc/kcore | wc -c; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/domainname; echo $?".to_string()),
        ("seccomp", "unshare -U true; echo unshare=$?; mount -t tmpfs none /tmp; echo mount=$?".to_string()),
        ("read-only sysfs", "touch /sys/x; echo $?".to_string()),
    ];
    let s = setup(&["sh", "-c", "true"]);
    let mut bundle = s.bundle;
    for (what, script) in probes {
        bundle.spec["process"]["args"] = json!(["sh", "-c", script]);
        bundle.save();
        let ours = skiff_oci(&s.skiff_root, &bundle.dir, &["run", &id("diff")]);
        let theirs = runc(&s.runc_root, &bundle.dir, &["run", &id("diff")]);
        assert_eq!(
            (ours.status.code(), out(&ours)),
            (theirs.status.code(), out(&theirs)),
            "{what}: skiff vs runc\n--- skiff\n{}\n--- runc\n{}",
            text(&ours),
            text(&theirs)
        );
        if what == "privileges" {
            let o = out(&ours);
            assert!(
                o.contains("NoNewPrivs:\t1") && o.contains("Seccomp:\t2"),
                "{o}"
            );
            assert!(
                o.contains("CapEff:\t00000000a80425fb"),
                "the default capability set: {o}"
            );
        }
        if what == "seccomp" {
            assert!(
                out(&ours).contains("unshare=1") && out(&ours).contains("mount=1"),
                "{}",
                out(&ours)
            );
        }
        if what == "exit code" {
            assert_eq!(ours.status.code(), Some(3));
        }
    }
    assert!(cgroup_gone(&format!("/skiff/{}", id("diff"))));
    // No container state is left; only the compiled seccomp profile, kept for the next start.
    let left: Vec<String> = std::fs::read_dir(&s.skiff_root)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(left, [".seccomp"]);
    assert_eq!(
        std::fs::read_dir(s.skiff_root.join(".seccomp"))
            .map(|d| d.count())
            .unwrap_or(0),
        1,
        "one profile, one compiled file"
    );
}

#[test]
fn user_read_only_root_and_no_capabilities() {
    let s = setup(&[
        "sh",
        "-c",
        "id -u; id -g; touch /x; echo touch=$?; grep CapEff /proc/self/status",
    ]);
    let mut bundle = s.bundle;
    bundle.spec["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    bundle.spec["root"]["readonly"] = json!(true);
    let none: Vec<String> = Vec::new();
    bundle.spec["process"]["capabilities"] =
        json!({"bounding": none, "effective": none, "permitted": none});
    bundle.save();
    let o = skiff_oci(&s.skiff_root, &bundle.dir, &["run", &id("user")]);
    let stdout = out(&o);
    assert!(stdout.starts_with("1000\n1000\n"), "{}", text(&o));
    assert!(stdout.contains("touch=1"), "read-only root: {}", text(&o));
    assert!(stdout.contains("CapEff:\t0000000000000000"), "{}", text(&o));
}

#[test]
fn a_fork_bomb_is_held_by_the_pids_limit() {
    // Every fork holds a pid for 5 s: the count climbs to the limit and stays there. The bomb
    // runs in a subshell (which exits at its first refused fork) so that pid 1 lives on: its
    // end would kill the whole pid namespace.
    let s = setup(&[
        "sh",
        "-c",
        "bomb() { while :; do sleep 5 & done; }; (bomb); sleep 5; echo survived",
    ]);
    let mut bundle = s.bundle;
    bundle.spec["linux"]["resources"] = json!({"pids": {"limit": 32}});
    bundle.save();
    let cid = id("bomb");
    let o = skiff_oci(&s.skiff_root, &bundle.dir, &["create", &cid]);
    assert!(o.status.success(), "{}", text(&o));
    let o = skiff_oci(&s.skiff_root, &bundle.dir, &["start", &cid]);
    assert!(o.status.success(), "{}", text(&o));
    let cgroup = format!("/sys/fs/cgroup/pids/skiff/{cid}");
    let mut most = 0;
    for _ in 0..30 {
        let current: u64 = std::fs::read_to_string(format!("{cgroup}/pids.current"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        most = most.max(current);
        std::thread::sleep(Duration::from_millis(50));
    }
    let events = std::fs::read_to_string(format!("{cgroup}/pids.events")).unwrap_or_default();
    assert!(most <= 32, "pids.current peaked at {most}");
    assert!(most >= 30, "the bomb reached the limit ({most})");
    assert!(
        events.contains("max ") && !events.contains("max 0"),
        "forks were refused: {events}"
    );
    let o = skiff_oci(&s.skiff_root, &bundle.dir, &["delete", "--force", &cid]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        cgroup_gone(&format!("/skiff/{cid}")),
        "delete removes the cgroup"
    );
}

#[test]
fn memory_over_the_limit_is_oom_killed_and_detected() {
    // busybox `tail` keeps the whole last line in memory: /dev/zero has no newline.
    let s = setup(&["sh", "-c", "tail /dev/zero; echo survived"]);
    let mut bundle = s.bundle;
    bundle.spec["linux"]["resources"] = json!({"memory": {"limit": 64 * 1024 * 1024}});
    bundle.save();
    let cid = id("oom");
    let o = skiff_oci(&s.skiff_root, &bundle.dir, &["create", &cid]);
    assert!(o.status.success(), "{}", text(&o));
    let o = skiff_oci(&s.skiff_root, &bundle.dir, &["start", &cid]);
    assert!(o.status.success(), "{}", text(&o));
    wait_for("the container to stop", Duration::from_secs(30), || {
        let o = skiff_oci(&s.skiff_root, &bundle.dir, &["state", &cid]);
        out(&o).contains("\"stopped\"").then_some(())
    });
    let control = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/memory/skiff/{cid}/memory.oom_control"
    ))
    .unwrap_or_default();
    assert!(
        control
            .lines()
            .any(|l| l.starts_with("oom_kill ") && l != "oom_kill 0"),
        "the kernel OOM-killed in the container's cgroup: {control}"
    );
    let o = skiff_oci(&s.skiff_root, &bundle.dir, &["delete", &cid]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn exec_joins_a_running_container() {
    let s = setup(&["sleep", "30"]);
    let cid = id("exec");
    let bundle = s.bundle;
    assert!(
        skiff_oci(&s.skiff_root, &bundle.dir, &["create", &cid])
            .status
            .success()
    );
    assert!(
        skiff_oci(&s.skiff_root, &bundle.dir, &["start", &cid])
            .status
            .success()
    );
    let o = skiff_oci(
        &s.skiff_root,
        &bundle.dir,
        &[
            "exec",
            &cid,
            "--",
            "sh",
            "-c",
            "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc/self/fd; exit 4",
        ],
    );
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let lines: Vec<&str> = std::str::from_utf8(&o.stdout)
        .unwrap_or("")
        .lines()
        .collect();
    assert_eq!(lines[0], "skiff", "{}", text(&o));
    assert_eq!(
        lines[1].trim(),
        "sleep 30",
        "pid 1 is the container's: {}",
        text(&o)
    );
    // 0, 1, 2 and the one `ls` opened: nothing of the executor's.
    assert_eq!(&lines[2..], ["0", "1", "2", "3"], "{}", text(&o));
    let o = skiff_oci(&s.skiff_root, &bundle.dir, &["state", &cid]);
    assert!(out(&o).contains("\"running\""), "{}", text(&o));
    let o = skiff_oci(&s.skiff_root, &bundle.dir, &["kill", &cid, "KILL"]);
    assert!(o.status.success(), "{}", text(&o));
    wait_for("stopped", Duration::from_secs(10), || {
        out(&skiff_oci(&s.skiff_root, &bundle.dir, &["state", &cid]))
            .contains("\"stopped\"")
            .then_some(())
    });
    assert!(
        skiff_oci(&s.skiff_root, &bundle.dir, &["delete", &cid])
            .status
            .success()
    );
    let o = skiff_oci(&s.skiff_root, &bundle.dir, &["state", &cid]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[test]
fn no_descriptor_of_the_caller_reaches_the_container() {
    use std::os::fd::AsRawFd;
    let s = setup(&["sh", "-c", "ls /proc/self/fd"]);
    // A descriptor the caller leaks on purpose (no close-on-exec).
    let secret = std::fs::File::open("/etc/hostname").expect("open");
    let fd = secret.as_raw_fd();
    nix::fcntl::fcntl(
        &secret,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .expect("clear cloexec");
    let o = skiff_oci(&s.skiff_root, &s.bundle.dir, &["run", &id("fds")]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(out(&o), "0\n1\n2\n3\n", "fd {fd} leaked: {}", text(&o));
    // A cwd through a leaked descriptor (CVE-2024-21626) is refused.
    let mut bundle = s.bundle;
    bundle.spec["process"]["cwd"] = json!(format!("/proc/self/fd/{fd}"));
    bundle.spec["process"]["args"] = json!(["sh", "-c", "pwd; ls"]);
    bundle.save();
    let o = skiff_oci(&s.skiff_root, &bundle.dir, &["run", &id("cwd")]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!out(&o).contains("hostname"), "{}", text(&o));
    drop(secret);
}

#[test]
fn a_planted_symlink_cannot_point_a_mount_at_the_host() {
    let s = setup(&["sh", "-c", "ls /evil"]);
    let host_target = s.bundle.dir.parent().expect("parent").join("host-target");
    std::fs::create_dir_all(&host_target).expect("host dir");
    std::fs::write(host_target.join("keep"), "host file").expect("host file");
    std::os::unix::fs::symlink(&host_target, s.bundle.rootfs().join("evil")).expect("plant");
    let mut bundle = s.bundle;
    let mounts = bundle.spec["mounts"].as_array_mut().expect("mounts");
    mounts.push(
        json!({"destination": "/evil", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}),
    );
    bundle.save();
    let o = skiff_oci(&s.skiff_root, &bundle.dir, &["run", &id("evil")]);
    assert!(o.status.success(), "{}", text(&o));
    // The tmpfs went on the rootfs's own path; the host directory was never covered or touched.
    assert_eq!(
        std::fs::read_to_string(host_target.join("keep")).expect("kept"),
        "host file"
    );
    let inside = bundle
        .rootfs()
        .join(host_target.strip_prefix("/").expect("absolute"));
    assert!(
        inside.is_dir(),
        "the mountpoint was made inside the rootfs: {}",
        inside.display()
    );
}

#[test]
fn bad_bundles_fail_with_the_field_named() {
    let s = setup(&["true"]);
    let mut bundle = s.bundle;
    bundle.spec["process"]["cwd"] = json!("relative");
    bundle.save();
    let o = skiff_oci(&s.skiff_root, &bundle.dir, &["run", &id("bad")]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("process.cwd"),
        "{}",
        text(&o)
    );
    bundle.spec["process"]["cwd"] = json!("/");
    bundle.spec["process"]["args"] = json!(["no-such-program"]);
    bundle.save();
    let o = skiff_oci(&s.skiff_root, &bundle.dir, &["run", &id("bad")]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no-such-program"),
        "{}",
        text(&o)
    );
    assert!(cgroup_gone(&format!("/skiff/{}", id("bad"))));
}
