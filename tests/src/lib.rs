//! The end-to-end harness: real `skiff` processes in temp dirs, torn down when dropped.
//!
//! Tests start a [`Cluster`] (one `skiff server`), add node agents with [`Cluster::add_agent`]
//! (real `skiff agent` processes, each with its own data dir and shims), run CLI commands
//! with [`Cluster::skiff`], talk gRPC with [`Cluster::api`], and can `kill -9` and restart the
//! server and any agent, or cut an agent off (`pause_agent`: SIGSTOP, so it neither heartbeats nor
//! answers) and let it back. [`Cluster::start_with`] takes [`ClusterOptions`] (short node grace
//! periods and heartbeats for node-loss tests); [`Cluster::add_agent_with`] extra agent flags
//! (`--labels`). Dropping the cluster ends every process it started — agents, their shims (by
//! the pid each agent recorded), and the server.
//!
//! The `skiff` binary is found at `$SKIFF_BIN`, else next to the test binary's target dir
//! (`cargo build --bins` first; `scripts/test` does).
//!
//! [`guests`] builds the Wasm test guests (C sources and WAT in `tests/guests/`) on demand.
//! [`containerd`] runs a private real containerd; [`images`] writes OCI layout archives of test images;
//! [`registry`] runs a private OCI registry (Debian's `docker-registry`) and pushes test images to it.
//! [`browser`] drives a headless Chromium over WebDriver (the dashboard's tests, screenshots, bench);
//! [`dashboard`] is the dashboard's page contract over it.
//! [`netslot`] gives each cluster its own cluster CIDR (its agents' bridges and routes are removed
//! with it); [`netns`] makes network namespaces for agents that stand for separate machines.

pub mod browser;
pub mod bundles;
pub mod cgroup;
pub mod containerd;
pub mod dashboard;
pub mod dns;
pub mod etcd;
pub mod guests;
pub mod images;
pub mod kubectl;
pub mod netns;
pub mod netslot;
pub mod otlp;
pub mod registry;
pub mod third_party;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use skiff_api::client::{Api, ClientConfig, ResourceClient, Transport};

/// Path of the `skiff` binary under test.
pub fn skiff_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SKIFF_BIN") {
        return PathBuf::from(p);
    }
    // target/debug/deps/<test> -> target/debug/skiff
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("skiff");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --bins` first (scripts/test does)",
        bin.display()
    );
    bin
}

/// The directory holding the `containerd-shim-skiff-v1` binary under test (beside `skiff`), for
/// [`containerd::Containerd::start_with_path`].
pub fn shim_dir() -> PathBuf {
    let dir = skiff_bin()
        .parent()
        .map(Path::to_path_buf)
        .expect("skiff binary dir");
    assert!(
        dir.join("containerd-shim-skiff-v1").exists(),
        "{}/containerd-shim-skiff-v1 not found: run `cargo build --bins` first (scripts/test does)",
        dir.display()
    );
    dir
}

/// How the server and agents of a test cluster are run.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// `skiff server --node-grace-period` (default: the server's).
    pub node_grace_period: Option<String>,
    /// `skiff server --pod-eviction-timeout`.
    pub pod_eviction_timeout: Option<String>,
    /// `skiff agent --heartbeat-interval` for every agent.
    pub heartbeat_interval: Option<String>,
    /// `skiff server --listen` (default `127.0.0.1:0`): an address agents in other network
    /// namespaces reach.
    pub listen: Option<String>,
    /// Extra environment of every agent (`SKIFF_INSECURE_REGISTRIES`).
    pub agent_env: Vec<(String, String)>,
    /// `skiff server --cluster-domain` (default: the server's, `cluster.local`).
    pub cluster_domain: Option<String>,
    /// More `skiff server` flags (`--horizontal-pod-autoscaler-sync-period 1s`).
    pub server_args: Vec<String>,
}

/// One `skiff server` process and its data dir.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    options: ClusterOptions,
    server: Option<Child>,
    agents: Vec<Agent>,
    /// The cluster's own `--cluster-cidr`.
    net: netslot::NetSlot,
    /// `skiff agent --server` when not this server's address ([`Cluster::set_agent_servers`]).
    agent_servers: Option<String>,
}

/// A `skiff agent` process of a test cluster.
pub struct Agent {
    pub name: String,
    pub data_dir: PathBuf,
    pub node_ip: String,
    /// The network namespace (`/run/netns/NAME`) the agent runs in, if not the test's own.
    pub netns: Option<String>,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl Agent {
    /// The agent's log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("agent.log")).unwrap_or_default()
    }

    /// The agent process's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The pid of the agent's shim of `group` (`wasm`: the node's Wasm shim; `pod-<uid>`: a
    /// pod's), as the agent recorded it, if that process is a skiff shim.
    pub fn shim_pid(&self, group: &str) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.data_dir.join("shims").join(group).join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline)
            .contains("containerd-shim-skiff-v1")
            .then_some(pid)
    }

    /// Every shim group the agent has a record of.
    pub fn shim_groups(&self) -> Vec<String> {
        std::fs::read_dir(self.data_dir.join("shims"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("address").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// A shim's log.
    pub fn shim_log(&self, group: &str) -> String {
        std::fs::read_to_string(self.data_dir.join("shims").join(group).join("shim.log"))
            .unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Removes the node proxy's nft table and routes, as `DATA_DIR/proxy.state` records them,
    /// when the agent ran in the test's own network namespace (a namespace of the test takes
    /// them along when it is deleted).
    fn clean_proxy(&self) {
        if self.netns.is_some() {
            return;
        }
        let state = std::fs::read_to_string(self.data_dir.join("proxy.state")).unwrap_or_default();
        for line in state.lines() {
            let mut command = Command::new(if line.starts_with("table ") {
                "nft"
            } else {
                "ip"
            });
            if let Some(table) = line.strip_prefix("table ") {
                command.args(["delete", "table", "ip", table.trim()]);
            } else if let Some(route) = line.strip_prefix("route ") {
                command
                    .args(["route", "delete"])
                    .args(route.split_whitespace());
                command.args(["proto", "78"]);
            } else {
                continue;
            }
            let _ = command.stderr(Stdio::null()).status();
        }
    }

    /// `kill -9` of every shim of the agent (and so its pods), by the pids it recorded.
    fn kill_shims(&self) {
        let mut pids: Vec<i32> = self
            .shim_groups()
            .iter()
            .filter_map(|group| self.shim_pid(group))
            .collect();
        // And any shim whose record was not written yet (the agent killed while launching it)
        // or already removed: every shim of this agent names its socket on its command line.
        let socket = self.data_dir.join("shims").join("agent.sock");
        let needle = format!("\0-address\0{}\0", socket.display());
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&needle) && !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        for pid in pids {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }

    /// Removes what the agent's containers leave on the host once their shims are killed: their
    /// processes and cgroups, their rootfs mounts, the agent's tmpfs and its pods' network
    /// namespaces (an agent cleans these up when it starts again; a test's never does).
    /// The pod network namespaces go with their veths; the addresses' files name the pods that
    /// had one.
    fn clean_containers(&self) {
        let mut pods = std::collections::BTreeSet::new();
        let bundles = self.data_dir.join("run/bundles");
        for entry in std::fs::read_dir(&bundles).into_iter().flatten().flatten() {
            let cid = entry.file_name().to_string_lossy().into_owned();
            cgroup::remove(&format!("skiff/{cid}"));
            let rootfs = entry.path().join("rootfs");
            let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
            if let Some((uid, _)) = cid.split_once('_') {
                pods.insert(uid.to_string());
            }
        }
        for entry in std::fs::read_dir(self.data_dir.join("ipam"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(uid) = std::fs::read_to_string(entry.path()) {
                pods.insert(uid.trim().to_string());
            }
        }
        for uid in pods.iter().filter(|u| !u.is_empty()) {
            let _ = Command::new("ip")
                .args(["netns", "delete", &format!("skiff-{uid}")])
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = nix::mount::umount2(&self.data_dir.join("run"), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// `--resolv-conf` with a file naming no nameserver, unless the test gives its own: the node's
/// DNS server then forwards nothing, so no test reaches the host's resolvers through a pod.
fn no_upstream_dns(data_dir: &Path, extra_args: &[String]) -> Vec<std::ffi::OsString> {
    if extra_args.iter().any(|a| a == "--resolv-conf") {
        return Vec::new();
    }
    let file = data_dir.join("no-upstream-resolv.conf");
    std::fs::write(
        &file,
        "# no upstream: tests never ask the host's resolvers\n",
    )
    .expect("write resolv.conf");
    vec!["--resolv-conf".into(), file.into_os_string()]
}

impl Cluster {
    /// Starts a server on a free loopback port and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(ClusterOptions::default())
    }

    /// Starts a server with these options.
    pub fn start_with(options: ClusterOptions) -> Self {
        Self::start_in(options, netslot::NetSlot::take())
    }

    /// Starts a server with these options on this slot (a test that made node addresses of
    /// `slot` before the cluster).
    pub fn start_in(options: ClusterOptions, slot: netslot::NetSlot) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let listen = options
            .listen
            .clone()
            .unwrap_or_else(|| "127.0.0.1:0".to_string());
        let mut c = Cluster {
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            options,
            server: None,
            agents: Vec::new(),
            net: slot,
            agent_servers: None,
        };
        c.spawn_server(&listen);
        c
    }

    /// The cluster's `--cluster-cidr`.
    pub fn cluster_cidr(&self) -> String {
        self.net.cluster_cidr()
    }

    /// The cluster's `--service-cidr`.
    pub fn service_cidr(&self) -> String {
        self.net.service_cidr()
    }

    /// The join token agents use.
    pub fn join_token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("join-token"))
            .expect("join-token")
            .trim()
            .to_string()
    }

    /// Starts `skiff agent --name NAME --node-ip 127.0.0.N` and waits until its Node is Ready.
    /// Returns the agent's index.
    pub fn add_agent(&mut self, name: &str) -> usize {
        self.add_agent_with(name, &[])
    }

    /// [`Cluster::add_agent`] with extra `skiff agent` flags (kept for restarts).
    pub fn add_agent_with(&mut self, name: &str, extra_args: &[&str]) -> usize {
        let node_ip = format!("127.0.0.{}", self.agents.len() + 2);
        self.add_agent_at(name, &node_ip, None, extra_args)
    }

    /// Starts `skiff agent --name NAME --node-ip NODE_IP` inside network namespace `netns`
    /// (`nsenter --net`: the agent has the namespace's links and routes and shares the test's
    /// mounts, as an agent on its own machine would) and waits until its Node is Ready.
    pub fn add_agent_at(
        &mut self,
        name: &str,
        node_ip: &str,
        netns: Option<&str>,
        extra_args: &[&str],
    ) -> usize {
        let index = self.agents.len();
        let data_dir = self.dir.path().join("agents").join(name);
        std::fs::create_dir_all(&data_dir).expect("agent dir");
        self.agents.push(Agent {
            name: name.to_string(),
            data_dir,
            node_ip: node_ip.to_string(),
            netns: netns.map(str::to_string),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            child: None,
        });
        self.start_agent(index);
        index
    }

    pub fn agent(&self, index: usize) -> &Agent {
        &self.agents[index]
    }

    /// Starts (or restarts) agent `index` and waits for its Node to be Ready.
    pub fn start_agent(&mut self, index: usize) {
        // The bootstrap token travels in a file, never on the command line.
        let token_file = self.dir.path().join("join-token");
        let addr = self
            .agent_servers
            .clone()
            .unwrap_or_else(|| self.addr.to_string());
        let heartbeat = self.options.heartbeat_interval.clone();
        let agent_env = self.options.agent_env.clone();
        let agent = &mut self.agents[index];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(agent.data_dir.join("agent.log"))
            .expect("agent log");
        let mut command = match &agent.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}"))
                    .arg("--")
                    .arg(skiff_bin());
                c
            }
            None => Command::new(skiff_bin()),
        };
        let child = command
            .args(["agent", "--server", &addr, "--token-file"])
            .arg(&token_file)
            .args(["--name", &agent.name, "--node-ip", &agent.node_ip])
            .arg("--data-dir")
            .arg(&agent.data_dir)
            .args(
                heartbeat
                    .iter()
                    .flat_map(|h| ["--heartbeat-interval", h.as_str()]),
            )
            .args(&agent.extra_args)
            .args(no_upstream_dns(&agent.data_dir, &agent.extra_args))
            .env("SKIFF_LOG", "info,skiff_node_agent=debug")
            .envs(agent_env)
            // Relative `file:` images (the examples) are resolved from the repository root.
            .current_dir(guests::workspace_root())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn skiff agent");
        agent.child = Some(child);
        let name = agent.name.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.skiff(&["get", "node", &name, "-o", "json"]);
            if out.status.success() {
                let node: serde_json::Value =
                    serde_json::from_slice(&out.stdout).expect("node json");
                let ready = node["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                if ready {
                    return;
                }
            }
            if let Some(status) = self.agents[index]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "skiff agent exited with {status}: {}",
                    self.agents[index].log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "agent {name} did not become Ready: {}",
                self.agents[index].log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` of agent `index`'s shim of `group` (`wasm`: its Wasm shim); its pid.
    pub fn kill_shim(&mut self, index: usize, group: &str) -> i32 {
        let pid = self.agents[index]
            .shim_pid(group)
            .unwrap_or_else(|| panic!("agent {index} has no live shim {group:?}"));
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        pid
    }

    /// `kill -9` agent `index` (its shims and pods keep running).
    pub fn kill_agent(&mut self, index: usize) {
        self.agents[index].kill();
    }

    /// Cuts agent `index` off (SIGSTOP): it stops heartbeating and answering, as behind a network
    /// partition, while its pods keep running.
    pub fn pause_agent(&mut self, index: usize) {
        self.agents[index].signal("-STOP");
    }

    /// Ends a [`Cluster::pause_agent`] (SIGCONT).
    pub fn resume_agent(&mut self, index: usize) {
        self.agents[index].signal("-CONT");
    }

    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    pub fn config(&self) -> ClientConfig {
        ClientConfig::load(&self.config_path()).expect("config.yaml")
    }

    fn spawn_server(&mut self, listen: &str) {
        let _ = std::fs::remove_file(self.config_path());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let o = &self.options;
        let child = Command::new(skiff_bin())
            .args(["server", "--data-dir"])
            .arg(self.dir.path())
            .args(["--listen", listen])
            .args(["--cluster-cidr", &self.net.cluster_cidr()])
            .args(["--service-cidr", &self.net.service_cidr()])
            .args(
                o.node_grace_period
                    .iter()
                    .flat_map(|d| ["--node-grace-period", d.as_str()]),
            )
            .args(
                o.pod_eviction_timeout
                    .iter()
                    .flat_map(|d| ["--pod-eviction-timeout", d.as_str()]),
            )
            .args(
                o.cluster_domain
                    .iter()
                    .flat_map(|d| ["--cluster-domain", d.as_str()]),
            )
            .args(&o.server_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn skiff server");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(config) = ClientConfig::load(&self.config_path()) {
                self.addr = config
                    .server
                    .trim_start_matches("https://")
                    .parse()
                    .expect("server address");
                if self.skiff(&["get", "namespaces"]).status.success() {
                    return;
                }
            }
            if let Some(status) = self
                .server
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("skiff server exited with {status}: {}", self.server_log());
            }
            assert!(
                Instant::now() < deadline,
                "skiff server did not come up: {}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Agents started from now on get `--server SERVERS` (several API servers, comma-separated:
    /// tests/tests/e2e/ha.rs) instead of this server's address.
    pub fn set_agent_servers(&mut self, servers: &str) {
        self.agent_servers = Some(servers.to_string());
    }

    /// `kill -9` the server.
    pub fn kill_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data dir and port.
    pub fn restart_server(&mut self) {
        self.kill_server();
        let listen = self.addr.to_string();
        self.spawn_server(&listen);
    }

    /// Runs `skiff --config <this cluster> ARGS`.
    pub fn skiff(&self, args: &[&str]) -> Output {
        self.skiff_cmd(args).output().expect("run skiff")
    }

    /// The command, for tests that need stdin or a long-running child.
    pub fn skiff_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(skiff_bin());
        // `--config` first: after a `--`, it would be the workload's argument.
        cmd.arg("--config")
            .arg(self.config_path())
            .args(args)
            .env_remove("SKIFF_CONFIG");
        cmd
    }

    /// Runs skiff with `stdin` as its standard input.
    pub fn skiff_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .skiff_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run skiff");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("skiff output")
    }

    /// `skiff apply -f -` of `yaml`; panics with the output if it fails.
    pub fn apply(&self, yaml: &str) {
        let out = self.skiff_stdin(&["apply", "-f", "-"], yaml);
        assert!(out.status.success(), "{}", text(&out));
    }

    /// `skiff get KIND NAME -o json` (default namespace), or None if it does not exist.
    pub fn get_json(&self, kind: &str, name: &str) -> Option<serde_json::Value> {
        let out = self.skiff(&["get", kind, name, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("object json"))
    }

    pub fn transport(&self) -> Transport {
        self.config().connect().expect("connect")
    }

    pub fn api<K: ResourceClient>(&self, namespace: &str) -> Api<K> {
        Api::new(self.transport(), namespace)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            agent.signal("-CONT");
            agent.kill();
            agent.kill_shims();
            agent.clean_containers();
            agent.clean_proxy();
        }
        self.kill_server();
        // The node bridges and routes of agents in the test's own network namespace.
        netslot::clean(&self.net.cluster_cidr());
    }
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Polls `f` until it returns Some, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
