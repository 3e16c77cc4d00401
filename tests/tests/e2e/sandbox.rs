//! The sandbox's hardening, end to end on the linux executor (`skiff oci run`, real processes,
//! busybox bundles with skiff's default spec) and on a cluster's Wasm pods: the RuntimeDefault
//! seccomp allow-list answers EPERM (not ENOSYS) to io_uring, keyrings, user namespaces and x32
//! numbers; a volume's subPath and a nested mount point swapped for symlinks while containers
//! start, again and again, never put a mount on the host; a Wasm pod without a memory limit gets
//! the node's default.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use skiff_tests::bundles::{Bundle, skiff_oci};
use skiff_tests::guests::guest;
use skiff_tests::{Cluster, text};

/// A static C program that tries each call the profile must refuse and prints `name=errno`.
const SECCOMP_PROBE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void report(const char *name, long r) {
    printf("%s=%s\n", name, r == -1 ? strerrorname_np(errno) : "allowed");
}

int main(void) {
    unsigned char params[120];
    memset(params, 0, sizeof params);
    report("io_uring_setup", syscall(SYS_io_uring_setup, 1, params));
    report("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
    report("add_key", syscall(SYS_add_key, "user", "k", "v", 1, -3));
    report("unshare_user", unshare(CLONE_NEWUSER));
    report("x32_getpid", syscall(SYS_getpid | 0x40000000));
    report("clone3", syscall(SYS_clone3, 0, 0));
    report("getpid", syscall(SYS_getpid) > 0 ? 0 : -1);
    return 0;
}
"#;

fn id(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// `gcc -static` of `source` into `out`.
fn compile_static(source: &str, out: &Path) {
    let c = out.with_extension("c");
    std::fs::write(&c, source).expect("write the C source");
    let o = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(out)
        .arg(&c)
        .output()
        .expect("gcc (scripts/test installs gcc and libc6-dev)");
    assert!(o.status.success(), "gcc: {}", text(&o));
}

#[test]
fn seccomp_refuses_io_uring_keyrings_user_namespaces_and_x32_with_eperm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle_dir = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle_dir).expect("bundle dir");
    let bundle = Bundle::busybox(&bundle_dir, &["/seccomp-probe"]);
    compile_static(SECCOMP_PROBE, &bundle.rootfs().join("seccomp-probe"));
    let o = skiff_oci(
        &dir.path().join("state"),
        &bundle.dir,
        &["run", &id("seccomp")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let got = String::from_utf8_lossy(&o.stdout).into_owned();
    for line in [
        "io_uring_setup=EPERM",
        "keyctl=EPERM",
        "add_key=EPERM",
        "unshare_user=EPERM",
        // This kernel has no x32 ABI (it would say ENOSYS): EPERM is the filter's answer.
        "x32_getpid=EPERM",
        // libcs fall back to clone, whose flags the filter can see.
        "clone3=ENOSYS",
        "getpid=allowed",
    ] {
        assert!(got.lines().any(|l| l == line), "{line} in:\n{got}");
    }
    // The same program on the host: the calls exist here, so EPERM above is the profile's.
    let host = Command::new(bundle.rootfs().join("seccomp-probe"))
        .output()
        .expect("run on the host");
    let host = String::from_utf8_lossy(&host.stdout).into_owned();
    assert!(host.contains("x32_getpid=ENOSYS"), "{host}");
    assert!(!host.contains("io_uring_setup=EPERM"), "{host}");
}

/// Swaps `path` between a directory and a symlink to `target` until `stop`.
fn swapper(path: PathBuf, target: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut swaps = 0;
        let aside = path.with_extension("aside");
        let _ = std::fs::create_dir_all(&aside);
        while !stop.load(Ordering::Relaxed) {
            let link = path.with_extension("link");
            let _ = std::fs::remove_file(&link);
            let _ = std::os::unix::fs::symlink(&target, &link);
            // The directory out of the way, the link in, then back: a rename each, atomic.
            let _ = std::fs::rename(&path, &aside);
            let _ = std::fs::rename(&link, &path);
            // Each state held a moment: starts meet the link and the directory alike.
            std::thread::sleep(std::time::Duration::from_micros(300));
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::rename(&aside, &path);
            std::thread::sleep(std::time::Duration::from_micros(300));
            let _ = std::fs::create_dir_all(&aside);
            swaps += 1;
        }
        swaps
    })
}

#[test]
fn a_symlink_swap_race_against_volume_mounts_never_reaches_the_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle_dir = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle_dir).expect("bundle dir");
    // Two volumes another container could write: `shared` is mounted at /data, and its `sub` is
    // both a subPath source (mounted at /sub) and, through /data, the parent of a nested mount
    // point (/data/sub/inner, from `other`).
    let shared = dir.path().join("shared");
    let other = dir.path().join("other");
    let host = dir.path().join("host-secret");
    for d in [shared.join("sub"), other.clone(), host.clone()] {
        std::fs::create_dir_all(&d).expect("dirs");
    }
    std::fs::write(host.join("keep"), "host").expect("host file");
    let mut bundle = Bundle::busybox(
        &bundle_dir,
        &[
            "sh",
            "-c",
            // Exit 42: the nested mount is not in the container's view (it went elsewhere).
            "awk '$4 ~ /other$/ {f=1} END {exit f ? 0 : 42}' /proc/self/mountinfo || exit 42; \
             echo x > /sub/marker-sub; echo x > /data/sub/inner/marker-nested; true",
        ],
    );
    let mounts = bundle.spec["mounts"].as_array_mut().expect("mounts");
    mounts.push(
        json!({"destination": "/data", "type": "bind", "source": shared,
        "options": ["rbind", "rw"]}),
    );
    mounts.push(
        json!({"destination": "/sub", "type": "bind", "source": shared.join("sub"),
        "options": ["rbind", "rw", format!("skiff.beneath={}", shared.display())]}),
    );
    mounts.push(
        json!({"destination": "/data/sub/inner", "type": "bind", "source": other,
        "options": ["rbind", "rw"]}),
    );
    bundle.save();
    let stop = Arc::new(AtomicBool::new(false));
    let racer = swapper(shared.join("sub"), host.clone(), stop.clone());
    let state = dir.path().join("state");
    let (mut ran, mut refused) = (0, 0);
    for i in 0..40 {
        let o = skiff_oci(&state, &bundle.dir, &["run", &id(&format!("race{i}"))]);
        assert_ne!(
            o.status.code(),
            Some(42),
            "run {i}: the nested mount went elsewhere"
        );
        if o.status.success() {
            ran += 1;
        } else {
            // Refused (a link where a directory was, or the point moved): the safe outcome.
            refused += 1;
        }
        let mut names: Vec<String> = std::fs::read_dir(&host)
            .expect("host dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["keep"], "run {i} reached the host directory");
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = racer.join().expect("racer");
    assert!(swaps > 40, "the race ran ({swaps} swaps)");
    assert_eq!(
        std::fs::read_to_string(host.join("keep")).expect("kept"),
        "host"
    );
    // Both outcomes are safe; at least some runs must have gone through for the race to mean
    // anything (and the links the walk resolved stayed inside the rootfs).
    assert!(ran > 0, "no run got through ({refused} refused)");
    eprintln!("{ran} runs went through, {refused} were refused, {swaps} swaps");
}

/// The exit code and reason of pod `name`'s container once it has terminated.
fn exit_code(c: &Cluster, name: &str) -> (i64, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen = c.get_json("pod", name);
        let code = seen.as_ref().and_then(|p| {
            let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
            // A zero exit code is left out of the JSON, as any default.
            let reason = t["reason"].as_str()?.to_string();
            Some((t["exitCode"].as_i64().unwrap_or(0), reason))
        });
        if let Some(code) = code {
            return code;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pod {name} did not terminate: {seen:#?}\nagent log:\n{}",
            c.agent(0).log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_wasm_pod_without_a_memory_limit_gets_the_nodes_default() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    let image = format!("file:{}", guest("probe").display());
    let pod = |name: &str, resources: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {image}\n    command: [probe]\n    args: [hog, \"200\"]\n{resources}"
        )
    };
    // 200 MiB is over the default 128Mi: the allocation fails inside the guest, which then
    // exits; a guest refused memory is reported OOMKilled (137), as with any limit.
    c.apply(&pod("unlimited", ""));
    // Its own limit (or a LimitRange's default, set at admission) comes first.
    c.apply(&pod(
        "limited",
        "    resources: {limits: {memory: 512Mi}}\n",
    ));
    assert_eq!(exit_code(&c, "unlimited"), (137, "OOMKilled".to_string()));
    assert_eq!(exit_code(&c, "limited"), (0, "Completed".to_string()));
}

#[test]
fn seccomp_refuses_blocked_syscalls_in_an_oci_pod() {
    // The probe, static, in a host directory the pod mounts; the image is busybox from a
    // registry of the test's own on loopback.
    let registry = skiff_tests::registry::Registry::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("busybox.tar");
    skiff_tests::images::busybox_oci_archive(&archive).expect("busybox image");
    let image = registry.push_layout(&archive, "busybox", "v1").reference;
    let probe_dir = dir.path().join("probe");
    std::fs::create_dir_all(&probe_dir).expect("probe dir");
    compile_static(SECCOMP_PROBE, &probe_dir.join("seccomp-probe"));
    let mut c = Cluster::start();
    c.add_agent("node-1");
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: seccomp}}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    command: [/probe/seccomp-probe]\n    volumeMounts:\n    - {{name: probe, mountPath: /probe, readOnly: true}}\n  volumes:\n  - name: probe\n    hostPath: {{path: {}, type: Directory}}\n",
        probe_dir.display()
    ));
    let (code, reason) = exit_code(&c, "seccomp");
    assert_eq!((code, reason.as_str()), (0, "Completed"));
    let out = c.skiff(&["logs", "seccomp"]);
    assert!(out.status.success(), "{}", text(&out));
    let got = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in [
        "io_uring_setup=EPERM",
        "keyctl=EPERM",
        "add_key=EPERM",
        "unshare_user=EPERM",
        "x32_getpid=EPERM",
        "getpid=allowed",
    ] {
        assert!(got.lines().any(|l| l == line), "{line} in:\n{got}");
    }
}

/// How one racing Wasm pod's start ended: `Some(true)` ran, `Some(false)` refused (waiting with a
/// create error, or failed), `None` not yet.
fn wasm_start_outcome(c: &Cluster, name: &str) -> Option<(bool, String)> {
    let p = c.get_json("pod", name)?;
    let state = &p["status"]["containerStatuses"][0]["state"];
    if !state["terminated"].is_null() {
        return Some((true, state["terminated"].to_string()));
    }
    // A create error about the volume is the refusal; others (a moment's wait for the node's
    // rights) are retried by the agent.
    let waiting = state["waiting"]["reason"].as_str().unwrap_or_default();
    let message = state["waiting"]["message"].as_str().unwrap_or_default();
    let about_the_volume = ["subPath", "symlink", "ENOENT", "shared"]
        .iter()
        .any(|w| message.contains(w));
    if (waiting.ends_with("Error") && about_the_volume) || p["status"]["phase"] == "Failed" {
        return Some((false, state["waiting"].to_string()));
    }
    None
}

/// The Wasm path of the race above, through the real agent and shim: a hostPath volume's `sub`
/// (a subPath of Wasm pods) is swapped for a symlink to a host directory while pods start, batch
/// after batch. The agent checks the subPath, then the shim opens it beneath the volume by
/// descriptor: a swap between the two is met by the shim's refusal, never by a preopen of the
/// host directory. Each start either writes its marker inside the volume or is refused.
#[test]
fn a_wasm_subpath_swapped_for_a_symlink_through_agent_and_shim_never_reaches_the_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let volume = dir.path().join("volume");
    let host = dir.path().join("host-secret");
    for d in [volume.join("sub"), host.clone()] {
        std::fs::create_dir_all(&d).expect("dirs");
    }
    std::fs::write(host.join("keep"), "host").expect("host file");
    let mut c = Cluster::start();
    c.add_agent("node-1");
    let image = format!("file:{}", guest("probe").display());
    let pod = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  automountServiceAccountToken: false\n  terminationGracePeriodSeconds: 0\n  volumes:\n  - name: shared\n    hostPath: {{path: {volume}}}\n  containers:\n  - name: main\n    image: {image}\n    command: [probe]\n    args: [write, /data/marker-{name}, x]\n    volumeMounts:\n    - {{name: shared, mountPath: /data, subPath: sub}}\n",
            volume = volume.display(),
        )
    };
    let stop = Arc::new(AtomicBool::new(false));
    let racer = swapper(volume.join("sub"), host.clone(), stop.clone());
    let (mut ran, mut refused) = (0, 0);
    let mut refusals = Vec::new();
    // Batches of 8 pods: at least 40 starts, on until both outcomes were met, bounded.
    for batch in 0..15 {
        if batch >= 5 && ran > 0 && refused > 0 {
            break;
        }
        let names: Vec<String> = (0..8).map(|i| format!("race-{batch}-{i}")).collect();
        let manifests: Vec<String> = names.iter().map(|n| pod(n)).collect();
        c.apply(&manifests.join("---\n"));
        for name in &names {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let (went, how) = loop {
                if let Some(outcome) = wasm_start_outcome(&c, name) {
                    break outcome;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "pod {name} neither ran nor was refused: {:?}",
                    c.get_json("pod", name)
                );
                std::thread::sleep(Duration::from_millis(50));
            };
            if went {
                ran += 1;
            } else {
                refused += 1;
                refusals.push(how);
            }
        }
        let mut seen: Vec<String> = std::fs::read_dir(&host)
            .expect("host dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        seen.sort();
        assert_eq!(seen, ["keep"], "batch {batch} reached the host directory");
        let mut delete = vec!["delete", "pod"];
        delete.extend(names.iter().map(String::as_str));
        let out = c.skiff(&delete);
        assert!(out.status.success(), "{}", text(&out));
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = racer.join().expect("racer");
    assert_eq!(
        std::fs::read_to_string(host.join("keep")).expect("kept"),
        "host"
    );
    // A refusal names the subPath (the agent's check) or the shim's open beneath the volume.
    for how in &refusals {
        assert!(
            how.contains("subPath")
                || how.contains("symlink")
                || how.contains("ENOENT")
                || how.contains("shared"),
            "an unexpected refusal: {how}"
        );
    }
    assert!(
        ran > 0 && refused > 0,
        "the race was not met: {ran} ran, {refused} refused, {swaps} swaps"
    );
    eprintln!("{ran} Wasm pods ran, {refused} were refused, {swaps} swaps: {refusals:?}");
}
