//! The end-to-end harness: real `skiff` processes in temp dirs, torn down when dropped.
//!
//! Tests start a [`Cluster`] (today: one `skiff server`; node agents join it in later issues),
//! run CLI commands against it with [`Cluster::skiff`], talk gRPC with [`Cluster::api`], and can
//! `kill -9` and restart the server on the same data dir and port.
//!
//! The `skiff` binary is found at `$SKIFF_BIN`, else next to the test binary's target dir
//! (`cargo build --bins` first; `scripts/test` does).

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

/// One `skiff server` process and its data dir.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    server: Option<Child>,
}

impl Cluster {
    /// Starts a server on a free loopback port and waits until it answers.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Cluster {
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            server: None,
        };
        c.spawn_server("127.0.0.1:0");
        c
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
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log file");
        let child = Command::new(skiff_bin())
            .args(["server", "--data-dir"])
            .arg(self.dir.path())
            .args(["--listen", listen])
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

    /// Runs `skiff ARGS --config <this cluster>`.
    pub fn skiff(&self, args: &[&str]) -> Output {
        self.skiff_cmd(args).output().expect("run skiff")
    }

    /// The command, for tests that need stdin or a long-running child.
    pub fn skiff_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(skiff_bin());
        cmd.args(args)
            .arg("--config")
            .arg(self.config_path())
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

    pub fn transport(&self) -> Transport {
        self.config().connect().expect("connect")
    }

    pub fn api<K: ResourceClient>(&self, namespace: &str) -> Api<K> {
        Api::new(self.transport(), namespace)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_server();
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
