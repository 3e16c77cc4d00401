//! A real etcd cluster on loopback for the tests of the etcd store and of HA (Debian's
//! `etcd-server`): one or three members on free ports, data in a temp dir, each member killed by
//! its PID (and the dir removed) when dropped.
//!
//! Must not: listen anywhere but 127.0.0.1, or touch an etcd it did not start.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ETCD_BIN: &str = "/usr/bin/etcd";
const ETCDCTL_BIN: &str = "/usr/bin/etcdctl";

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// An etcd cluster started by a test.
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
}

fn free_port() -> u16 {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl EtcdCluster {
    /// Starts `members` members (1 or 3) and waits until the cluster answers.
    pub fn start(members: usize) -> Self {
        assert!(
            Path::new(ETCD_BIN).exists(),
            "{ETCD_BIN} not found: install the Debian package etcd-server"
        );
        let dir = tempfile::tempdir().expect("etcd dir");
        let members: Vec<Member> = (0..members)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            token: format!("skiff-test-{}", std::process::id()),
            dir,
            members,
            initial_cluster,
        };
        for i in 0..cluster.members.len() {
            cluster.spawn(i);
        }
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.members[i].name)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("etcd log");
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new(ETCD_BIN)
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(self.data_dir(i))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", "new"])
            // Quicker raft elections than the defaults (100 ms / 1 s): loopback, tests on 2 cores.
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd log"))
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.members[i].child = Some(child);
    }

    /// `http://127.0.0.1:PORT` of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// The endpoints as `skiff server --etcd` takes them.
    pub fn endpoints_arg(&self) -> String {
        self.endpoints().join(",")
    }

    /// Member `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// `kill -9` of member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data dir (after [`EtcdCluster::kill`]).
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.spawn(i);
    }

    /// Kills every member, then starts them all again on their data.
    pub fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        for i in 0..self.members.len() {
            self.spawn(i);
        }
        self.wait_healthy(Duration::from_secs(30));
    }

    /// Waits until the running members have a leader and answer a linearizable read.
    pub fn wait_healthy(&self, timeout: Duration) {
        let running: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect();
        let deadline = Instant::now() + timeout;
        loop {
            let ok = Command::new(ETCDCTL_BIN)
                .env("ETCDCTL_API", "3")
                .arg("--endpoints")
                .arg(running.join(","))
                .args(["--command-timeout", "2s", "get", "/health-probe"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "etcd did not become healthy in {timeout:?}; log of m0:\n{}",
                    self.log(0)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `etcdctl ARGS` against the cluster: its stdout (panics on failure).
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = Command::new(ETCDCTL_BIN)
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.endpoints_arg())
            .args(args)
            .output()
            .expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The watchers open on the running members, from each one's `/metrics`
    /// (`etcd_debugging_mvcc_watcher_total`): how many etcd watches the clients hold.
    pub fn watchers(&self) -> u64 {
        let mut total = 0;
        for text in self.metrics() {
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
                .expect("etcd reports etcd_debugging_mvcc_watcher_total");
            total += value.trim().parse::<f64>().expect("a number") as u64;
        }
        total
    }

    /// The text of each running member's `/metrics`.
    fn metrics(&self) -> Vec<String> {
        use std::io::{Read, Write};
        let mut out = Vec::new();
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            let addr = format!("127.0.0.1:{}", m.client_port);
            let mut conn = std::net::TcpStream::connect(&addr).expect("connect to etcd");
            write!(conn, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("ask etcd");
            let mut text = String::new();
            conn.read_to_string(&mut text).expect("etcd's metrics");
            out.push(text);
        }
        out
    }

    /// The gRPC messages the running members have received so far, by method (`Range`, `Txn`,
    /// `Put`, `LeaseKeepAlive`, `Watch`, ...; from `grpc_server_msg_received_total`): a unary
    /// call is one message, a stream counts each message its client sent.
    pub fn rpcs(&self) -> std::collections::BTreeMap<String, u64> {
        let mut by_method = std::collections::BTreeMap::new();
        for text in self.metrics() {
            for line in text.lines() {
                let Some(rest) = line.strip_prefix("grpc_server_msg_received_total{") else {
                    continue;
                };
                let Some((labels, value)) = rest.split_once("} ") else {
                    continue;
                };
                let method = labels
                    .split(',')
                    .find_map(|l| l.strip_prefix("grpc_method=\""))
                    .map(|m| m.trim_end_matches('"').to_string());
                let value = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
                if let Some(method) = method
                    && value > 0
                {
                    *by_method.entry(method).or_insert(0) += value;
                }
            }
        }
        by_method
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
