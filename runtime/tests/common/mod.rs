//! Shared harness of the runtime's integration tests: a wasm executor ([`WasmEngine`]) driven
//! directly, as `containerd-shim-skiff-v1` drives it, with helpers to build specs, wait for
//! exits and read CRI logs.
//!
//! Each test gets its own [`Executor`] (an engine of 32 slots and a temp dir for logs: a few
//! milliseconds, address space reserved, not committed); all share one on-disk module cache, so
//! the probe guest is compiled once per test run, not once per test.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use skiff_runtime::logs::{LogStream, parse_line};
use skiff_runtime::wasm::{EngineOptions, ExitStatus, Instance, WasmEngine, WasmSpec};

#[allow(unused_imports)]
pub use skiff_tests::guests::{component, guest, wat};

/// How long [`Executor::run`] waits for a guest to exit.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// One engine, and a temp dir for the logs of its instances.
pub struct Executor {
    pub dir: tempfile::TempDir,
    pub engine: WasmEngine,
}

/// The module cache shared by the tests of one run.
pub fn shared_cache_dir() -> PathBuf {
    skiff_tests::guests::guests_dir().join("runtime-test-cache")
}

impl Default for Executor {
    fn default() -> Self {
        Executor::new()
    }
}

impl Executor {
    /// An engine of 32 slots on the shared module cache.
    pub fn new() -> Executor {
        Executor::with(|_| {})
    }

    /// An engine on the shared module cache, its options changed by `configure`.
    pub fn with(configure: impl FnOnce(&mut EngineOptions)) -> Executor {
        let mut options = EngineOptions {
            max_instances: 32,
            ..EngineOptions::new(shared_cache_dir())
        };
        configure(&mut options);
        Executor {
            dir: tempfile::tempdir().unwrap(),
            engine: WasmEngine::new(options).unwrap(),
        }
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{id}.log"))
    }

    /// A spec running `module` as `probe ARGS...`, logging to this executor's temp dir.
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

    /// Starts `spec`, which must start.
    pub async fn start(&self, spec: &WasmSpec) -> Instance {
        let instance = self
            .engine
            .start(spec.clone())
            .await
            .unwrap_or_else(|e| panic!("starting {}: {e}", spec.id));
        assert_eq!(instance.id(), spec.id);
        instance
    }

    /// Starts `spec` and waits (up to [`RUN_TIMEOUT`]) for it to exit.
    pub async fn run(&self, spec: &WasmSpec) -> ExitStatus {
        let instance = self.start(spec).await;
        exited(&instance, RUN_TIMEOUT).await
    }

    /// (stdout, stderr) of an instance, joined from its CRI log (partial records merged).
    pub fn output(&self, id: &str) -> (String, String) {
        output_of(&self.log_path(id))
    }
}

/// Waits up to `timeout` for `instance` to exit.
pub async fn exited(instance: &Instance, timeout: Duration) -> ExitStatus {
    tokio::time::timeout(timeout, instance.wait())
        .await
        .unwrap_or_else(|_| panic!("instance {} still running after {timeout:?}", instance.id()))
}

/// Kills `instance` and waits (up to 5 s) for it to end.
pub async fn kill(instance: &Instance) -> ExitStatus {
    instance.kill();
    exited(instance, Duration::from_secs(5)).await
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
