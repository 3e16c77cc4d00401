//! Shared harness of the runtime's integration tests: a runtime host served in-process on a real
//! Unix socket in a temp dir, a typed client to it, and helpers to build specs and read logs.
//!
//! Each test gets its own host (engine, socket, log dir); all share one on-disk module cache so
//! the probe guest is compiled once per test run, not once per test.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use skiff_runtime::host::{HostClient, HostOptions, HostServer, InstanceInfo};
use skiff_runtime::logs::{LogStream, parse_line};
use skiff_runtime::wasm::WasmSpec;
use tokio::sync::oneshot;

#[allow(unused_imports)]
pub use skiff_tests::guests::{component, guest, wat};

/// One in-process runtime host and a client connected over its socket.
pub struct Host {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub client: HostClient,
    shutdown: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

/// The module cache shared by the tests of one run.
pub fn shared_cache_dir() -> PathBuf {
    skiff_tests::guests::guests_dir().join("runtime-test-cache")
}

impl Host {
    pub async fn start() -> Host {
        Host::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut HostOptions)) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("host.sock");
        let mut options = HostOptions {
            socket: socket.clone(),
            cache_dir: shared_cache_dir(),
            max_instances: 32,
            ..HostOptions::default()
        };
        configure(&mut options);
        let server = HostServer::bind(&options).await.unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            server
                .serve(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        let client = HostClient::connect(&socket).await.unwrap();
        Host {
            dir,
            socket,
            client,
            shutdown: Some(tx),
            served: Some(served),
        }
    }

    /// Stops serving (killing every instance) and waits until it has.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(served) = self.served.take() {
            served.await.unwrap();
        }
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{id}.log"))
    }

    /// A spec running `module` as `probe ARGS...`, logging to the host's temp dir.
    pub fn spec(&self, id: &str, module: &Path, args: &[&str]) -> WasmSpec {
        WasmSpec {
            id: id.to_string(),
            module_path: module.to_path_buf(),
            argv0: "probe".to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            log_path: self.log_path(id),
            ..WasmSpec::default()
        }
    }

    /// Starts `spec` and waits (up to 30 s) for it to exit.
    pub async fn run(&self, spec: &WasmSpec) -> InstanceInfo {
        let (info, created) = self.client.start(spec).await.unwrap();
        assert!(created);
        assert_eq!(info.id, spec.id);
        self.wait_exit(&spec.id, Duration::from_secs(30)).await
    }

    /// Polls List until the instance has exited.
    pub async fn wait_exit(&self, id: &str, timeout: Duration) -> InstanceInfo {
        let deadline = Instant::now() + timeout;
        loop {
            let list = self.client.list().await.unwrap();
            let info = list
                .into_iter()
                .find(|i| i.id == id)
                .unwrap_or_else(|| panic!("instance {id} not listed"));
            if !info.running() {
                return info;
            }
            assert!(
                Instant::now() < deadline,
                "instance {id} still running after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// (stdout, stderr) of an instance, joined from its CRI log (partial records merged).
    pub fn output(&self, id: &str) -> (String, String) {
        output_of(&self.log_path(id))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// (stdout, stderr) of a CRI log file; records of a stream concatenated, `F` adding a newline.
pub fn output_of(path: &Path) -> (String, String) {
    let text = std::fs::read(path).unwrap_or_default();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let rec = parse_line(line).unwrap();
        let buf = match rec.stream {
            LogStream::Stdout => &mut out,
            LogStream::Stderr => &mut err,
        };
        buf.extend_from_slice(&rec.content);
        if !rec.partial {
            buf.push(b'\n');
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// The probe guest as a core module.
pub fn probe() -> PathBuf {
    guest("probe")
}

/// The probe guest as a component.
pub fn probe_component() -> PathBuf {
    component("probe")
}
