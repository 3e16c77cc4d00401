//! Taking a node down (issue "Services", DESIGN §3): Ctrl-C of `skiff up` leaves no rule, route,
//! bridge, network namespace, mount or process behind; `kill -9` of a lone `skiff agent` leaves
//! its pods running, and `skiff agent --reset` then removes them and the node's state.
//!
//! Each node runs in a network namespace the test made, so what is left is looked for there
//! (links, routes, nftables tables) and on the host (pod namespaces, mounts, processes).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_tests::guests::socket_component;
use skiff_tests::netns::NodeNetwork;
use skiff_tests::netslot::NetSlot;
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, ClusterOptions, skiff_bin, stdout, text, wait_for};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    stdout(&out)
}

/// Whether process `pid` still runs (a zombie, never reaped on this VM, does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// The pids of the node's shims, from the records its agent keeps.
fn shim_pids(agent_dir: &Path) -> Vec<i32> {
    let Ok(groups) = std::fs::read_dir(agent_dir.join("shims")) else {
        return Vec::new();
    };
    groups
        .flatten()
        .filter_map(|g| std::fs::read_to_string(g.path().join("pid")).ok())
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// What the node left behind: in its network namespace `ns`, on the host for its pods `uids`,
/// its data dir's mounts, and processes `pids`.
fn leftovers(ns: &str, agent_dir: &Path, uids: &[String], pids: &[i32]) -> Vec<String> {
    let mut left = Vec::new();
    let links = run(Command::new("ip").args(["-n", ns, "-o", "link", "show"]));
    for line in links.lines() {
        let name = line
            .split(": ")
            .nth(1)
            .unwrap_or("")
            .split('@')
            .next()
            .unwrap_or("");
        if !matches!(name, "lo" | "eth0") {
            left.push(format!("link {name}"));
        }
    }
    let routes = run(Command::new("ip").args(["-n", ns, "route", "show", "table", "all"]));
    for line in routes.lines() {
        // The node's own link (eth0's subnet, local and broadcast routes of its addresses).
        if line.contains("dev eth0") || line.contains("dev lo") {
            continue;
        }
        left.push(format!("route {line}"));
    }
    let tables = run(Command::new("ip").args(["netns", "exec", ns, "nft", "list", "tables"]));
    for table in tables.lines().filter(|t| !t.trim().is_empty()) {
        left.push(format!("nftables {table}"));
    }
    for uid in uids {
        if Path::new(&format!("/run/netns/skiff-{uid}")).exists() {
            left.push(format!("pod network namespace skiff-{uid}"));
        }
    }
    let dir = agent_dir.display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for mount in mounts.lines().filter(|m| m.contains(&dir)) {
        left.push(format!("mount {mount}"));
    }
    for pid in pids.iter().filter(|p| alive(**p)) {
        left.push(format!("process {pid}"));
    }
    left
}

/// A busybox pod sleeping `marker` seconds (a number no other process of the host sleeps, to
/// find it by), and a Wasm pod granted a socket, both behind one Service.
fn workload(image: &str, marker: u64) -> String {
    let net = socket_component("net");
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: oci\n  labels: {{app: left}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    command: [busybox, sleep, \"{marker}\"]\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: wasm\n  labels: {{app: left}}\nspec:\n  runtimeClassName: wasm\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: server\n    image: file:{net}\n    command: [net, serve, \"8080\", hello, \"1000\"]\n    ports:\n    - containerPort: 8080\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: left\nspec:\n  selector: {{app: left}}\n  ports:\n  - {{port: 80, targetPort: 8080}}\n",
        net = net.display(),
    )
}

/// A marker for [`workload`], distinct per test process and test.
fn marker(test: u64) -> u64 {
    1_000_000 + u64::from(std::process::id()) * 10 + test
}

/// The host pid of the process running `sleep MARKER`.
fn sleeper(marker: u64) -> Option<i32> {
    let want = format!("busybox\0sleep\0{marker}\0");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        (cmdline == want.as_bytes()).then_some(pid)
    })
}

/// Waits for both pods to run; their uids and the container's pid.
fn running(skiff: &dyn Fn(&[&str]) -> std::process::Output, marker: u64) -> (Vec<String>, i32) {
    let mut uids = Vec::new();
    for pod in ["oci", "wasm"] {
        let uid = wait_for(&format!("{pod} to run"), Duration::from_secs(90), || {
            let out = skiff(&["get", "pod", pod, "-o", "json"]);
            let p: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (p["status"]["phase"] == "Running")
                .then(|| p["metadata"]["uid"].as_str().map(str::to_string))?
        });
        uids.push(uid);
    }
    let pid = wait_for("the container's process", Duration::from_secs(20), || {
        sleeper(marker)
    });
    (uids, pid)
}

/// `skiff up` in namespace `ns`, killed when dropped (if Ctrl-C did not end it).
struct Up {
    child: Child,
    dir: PathBuf,
}

impl Drop for Up {
    fn drop(&mut self) {
        // A failed test still takes its node down: Ctrl-C, then kill if that did not end it.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGINT,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ctrl_c_of_skiff_up_leaves_nothing_behind() {
    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 1);
    let registry = Registry::start_on(net.host_address().parse().expect("ip"));
    let image = registry.push_busybox();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("up");
    let log = std::fs::File::create(tmp.path().join("up.log")).expect("log");
    let ns = net.namespace(0).to_string();
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .arg("--")
        .arg(skiff_bin())
        .arg("up")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--listen", &format!("{}:0", net.address(0))])
        .args(["--cluster-cidr", &slot.cluster_cidr()])
        .args(["--service-cidr", &slot.service_cidr()])
        .args(["--ingress-addr", "off"])
        .env("SKIFF_INSECURE_REGISTRIES", registry.host())
        .env("SKIFF_LOG", "info")
        .current_dir(skiff_tests::guests::workspace_root())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("skiff up");
    let mut up = Up { child, dir };
    let config = up.dir.join("config.yaml");
    let skiff = |args: &[&str]| {
        Command::new(skiff_bin())
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .expect("skiff")
    };
    let up_log = || std::fs::read_to_string(tmp.path().join("up.log")).unwrap_or_default();
    wait_for(
        "skiff up's node to be Ready",
        Duration::from_secs(60),
        || {
            let out = skiff(&["get", "nodes", "-o", "json"]);
            let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            nodes["items"]
                .as_array()?
                .iter()
                .any(|n| {
                    n["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .then_some(())
        },
    );
    let out = Command::new(skiff_bin())
        .arg("--config")
        .arg(&config)
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(workload(&image, marker(1)).as_bytes())?;
            c.wait_with_output()
        })
        .expect("apply");
    assert!(out.status.success(), "{}", text(&out));
    let (uids, container) = running(&skiff, marker(1));
    let agent_dir = up.dir.join("agent");
    let mut processes = shim_pids(&agent_dir);
    processes.push(container);
    assert!(
        processes.len() >= 3,
        "two shims and a container: {processes:?}"
    );
    assert!(
        !leftovers(&ns, &agent_dir, &uids, &processes).is_empty(),
        "a running node has things to leave behind"
    );

    let pid = i32::try_from(up.child.id()).expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = up.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "skiff up did not exit: {}",
            up_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}: {}", up_log());
    let left = leftovers(&ns, &agent_dir, &uids, &processes);
    assert!(left.is_empty(), "left behind: {left:#?}\n{}", up_log());
}

#[test]
fn a_killed_agent_leaves_its_pods_and_reset_removes_them_and_its_state() {
    let slot = NetSlot::take();
    let net = NodeNetwork::new(&slot, 1);
    let registry = Registry::start_on(net.host_address().parse().expect("ip"));
    let image = registry.push_busybox();
    let options = ClusterOptions {
        listen: Some(format!("{}:0", net.host_address())),
        agent_env: vec![("SKIFF_INSECURE_REGISTRIES".into(), registry.host())],
        ..Default::default()
    };
    let mut c = Cluster::start_in(options, slot);
    c.add_agent_at("node-a", net.address(0), Some(net.namespace(0)), &[]);
    c.apply(&workload(&image, marker(2)));
    let (uids, container) = running(&|args| c.skiff(args), marker(2));
    let agent_dir = c.agent(0).data_dir.clone();
    let mut processes = shim_pids(&agent_dir);
    processes.push(container);

    // kill -9 of the agent: its pods keep running, as kubelet's do.
    c.kill_agent(0);
    std::thread::sleep(Duration::from_secs(1));
    assert!(processes.iter().all(|p| alive(*p)), "{processes:?}");

    let ns = net.namespace(0).to_string();
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .arg("--")
        .arg(skiff_bin())
        .args(["agent", "--reset", "--name", "node-a", "--data-dir"])
        .arg(&agent_dir)
        .output()
        .expect("skiff agent --reset");
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    assert!(said.contains("removed") && said.contains("shims"), "{said}");
    let left = leftovers(&ns, &agent_dir, &uids, &processes);
    assert!(left.is_empty(), "left behind: {left:#?}\n{}", text(&out));
    for state in ["shims", "ipam", "pods", "run"] {
        assert!(!agent_dir.join(state).exists(), "{state} is still there");
    }
}
