//! Running instances: start, kill, wait.
//!
//! Owns [`WasmEngine::start`] and [`Instance`]. Starting builds the WASI context and log
//! (blocking: `spawn_blocking`), a store with the instance's limits and an epoch deadline of one
//! tick, and instantiates it (so that a start failure is an error of `start`, leaving nothing
//! behind); the entry point then runs in a tokio task of its own, so a thousand idle instances
//! cost no threads (an instance granted sockets in a network namespace runs on that
//! namespace's thread, [`super::netns`]). At every tick a running guest yields (or sleeps, under a CPU limit), which
//! is also when a kill takes effect: the task drops the store, freeing the instance's slot. The
//! run's CPU time and the store's memories and tables are counted for [`Instance::usage`].
//! Must not: keep a registry of instances (its caller does: the shim's task service).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use wasmtime::{ResourceLimiter, Store};

use super::engine::WasmEngine;
use super::error::{WasmError, chain};
use super::exit::{ExitStatus, RunEnd, classify};
use super::http::FunctionStats;
use super::http::stats::Counters;
use super::limits::{DeniedGrowth, Limits};
use super::name_lookup::NameLookup;
use super::netns::NetnsThread;
use super::prepare::{ModuleKind, Pre, Prepared};
use super::spec::{Stdio, Streams, WasmSpec};
use super::state::{ComponentState, Guarded, ModuleState};
use super::usage::{InstanceUsage, Usage, accounted};
use super::{stdio, wasi_ctx};
use crate::logs::{LogStream, LogWriter};

/// A started instance. Clones are handles to the same instance.
#[derive(Clone)]
pub struct Instance {
    id: Arc<str>,
    digest: Arc<str>,
    kind: ModuleKind,
    started_at: SystemTime,
    kill: Arc<watch::Sender<bool>>,
    /// A graceful stop (a function drains; anything else is killed).
    stop: Arc<watch::Sender<bool>>,
    exit: watch::Receiver<Option<ExitStatus>>,
    usage: Arc<Usage>,
    /// A function's counters ([`super::http`]); `None` for a command.
    function: Option<Arc<Counters>>,
}

/// The run task's side of an [`Instance`].
pub(crate) struct Controls {
    pub(crate) kill: watch::Receiver<bool>,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) exit: watch::Sender<Option<ExitStatus>>,
}

impl Instance {
    /// A handle for an instance of `prepared` and the controls its run task keeps.
    pub(crate) fn with_controls(
        id: &str,
        prepared: &Prepared,
        usage: Arc<Usage>,
        function: Option<Arc<Counters>>,
    ) -> (Instance, Controls) {
        let (kill_tx, kill) = watch::channel(false);
        let (stop_tx, stop) = watch::channel(false);
        let (exit, exit_rx) = watch::channel(None);
        let instance = Instance {
            id: id.into(),
            digest: prepared.digest().into(),
            kind: prepared.kind(),
            started_at: SystemTime::now(),
            kill: Arc::new(kill_tx),
            stop: Arc::new(stop_tx),
            exit: exit_rx,
            usage,
            function,
        };
        (instance, Controls { kill, stop, exit })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// `sha256:<hex>` of the module it runs.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn kind(&self) -> ModuleKind {
        self.kind
    }

    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// Whether `other` is a handle to this same instance (not another with the same id).
    pub fn is_same(&self, other: &Instance) -> bool {
        Arc::ptr_eq(&self.kill, &other.kill)
    }

    /// Asks the instance to stop; it ends at the guest's next epoch tick (or at once if it
    /// waits in the host), with [`ExitStatus::killed`]. Idempotent; no effect once exited.
    pub fn kill(&self) {
        self.kill.send_replace(true);
    }

    /// Asks the instance to end gracefully (SIGTERM): a function stops accepting, finishes the
    /// requests in flight and exits 0 ([`super::http`]); a command, which cannot be told, is
    /// killed. A later [`Instance::kill`] cuts a drain short.
    pub fn stop(&self) {
        if self.function.is_some() {
            self.stop.send_replace(true);
        } else {
            self.kill();
        }
    }

    /// Whether it serves a function (a `wasi:http` handler) rather than running a command.
    pub fn is_function(&self) -> bool {
        self.function.is_some()
    }

    /// A function's request figures so far; `None` for a command.
    pub fn function_stats(&self) -> Option<FunctionStats> {
        self.function.as_ref().map(|c| c.read())
    }

    /// What it uses now, from wasmtime's accounting ([`super::usage`]): its memories and tables
    /// (none once exited) and its guest's CPU time so far.
    pub fn usage(&self) -> InstanceUsage {
        self.usage.read()
    }

    /// The exit status, once exited.
    pub fn status(&self) -> Option<ExitStatus> {
        self.exit.borrow().clone()
    }

    /// Waits until the instance has exited.
    pub async fn wait(&self) -> ExitStatus {
        let mut rx = self.exit.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(status) => status
                .clone()
                .unwrap_or_else(|| ExitStatus::lost("no status")),
            Err(_) => ExitStatus::lost("the run task ended without a status"),
        }
    }
}

/// Where an instance's output goes, for what the host itself writes there.
pub(crate) enum Output {
    Log(LogWriter),
    Streams(Arc<Streams>),
}

impl Output {
    /// Where `wasi:logging` records go: the same stderr.
    pub(crate) fn sink(&self) -> super::host::logging::Sink {
        match self {
            Output::Log(log) => super::host::logging::Sink::Log(log.clone()),
            Output::Streams(streams) => super::host::logging::Sink::Streams(streams.clone()),
        }
    }

    /// The spec's CRI log (created) or its streams. Blocking.
    pub(crate) fn open(spec: &WasmSpec) -> Result<Output, WasmError> {
        Ok(match &spec.stdio {
            Stdio::Log => Output::Log(
                LogWriter::create(&spec.log_path, spec.effective_log_max_bytes()).map_err(
                    |source| WasmError::Log {
                        path: spec.log_path.clone(),
                        source,
                    },
                )?,
            ),
            Stdio::Streams(streams) => Output::Streams(streams.clone()),
        })
    }

    pub(crate) fn log(&self) -> Option<&LogWriter> {
        match self {
            Output::Log(log) => Some(log),
            Output::Streams(_) => None,
        }
    }

    /// Writes host text (a trap's message) to the instance's stderr.
    pub(crate) fn stderr(&self, text: &str) {
        match self {
            Output::Log(log) => {
                let _ = log.write(LogStream::Stderr, text.as_bytes());
            }
            Output::Streams(streams) => stdio::write_stderr(streams, text),
        }
    }

    /// After the store is gone: writes what the guest left without a newline.
    pub(crate) fn finish(&self) {
        if let Output::Log(log) = self
            && let Err(e) = log.finish()
        {
            tracing::warn!(error = %e, "writing the end of a guest's log");
        }
    }
}

/// A store, instantiated, with its entry point still to call.
enum Ready {
    Module(Store<ModuleState>, wasmtime::TypedFunc<(), ()>),
    Component(Store<ComponentState>, wasmtime_wasi::p2::bindings::Command),
    P3Command(Store<ComponentState>, wasmtime_wasi::p3::bindings::Command),
}

impl WasmEngine {
    /// Prepares `spec.module_path` (from cache when possible) and starts it.
    pub async fn start(&self, spec: WasmSpec) -> Result<Instance, WasmError> {
        let prepared = self.prepare(&spec.module_path).await?.prepared;
        self.start_prepared(&prepared, spec).await
    }

    /// Starts an already prepared module with `spec` (its `module_path` is not read again).
    pub async fn start_prepared(
        &self,
        prepared: &Prepared,
        spec: WasmSpec,
    ) -> Result<Instance, WasmError> {
        if let Pre::Function(_) = prepared.pre() {
            return super::http::server::start(self, prepared, spec).await;
        }
        if spec.http.required {
            return Err(WasmError::NotFunction {
                path: spec.module_path.clone(),
            });
        }
        let engine = self.clone();
        let (output, netns, builder) = tokio::task::spawn_blocking(move || {
            // A guest granted no socket makes none: its namespace does not matter.
            let netns = match &spec.netns {
                Some(path) if !spec.network.is_none() => Some(engine.inner.netns.enter(path)?),
                _ => None,
            };
            let output = Output::open(&spec)?;
            let builder = wasi_ctx::builder(&spec, output.log())?;
            Ok::<_, WasmError>((output, netns, (builder, spec)))
        })
        .await
        .map_err(|e| WasmError::Engine(format!("start task: {e}")))??;
        let (mut builder, spec) = builder;
        let usage = Arc::new(Usage::default());
        let limits = self.limits(&spec, usage.clone());
        if let Some(component) = prepared.component() {
            super::host::check_imports(
                &self.inner.engine,
                component,
                &spec.host,
                &spec.module_path,
            )?;
        }
        let ready = match prepared.pre() {
            Pre::Module(pre) => {
                let mut store = self.store(ModuleState {
                    wasi: builder.build_p1(),
                    limits,
                });
                let instance = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|e| instantiate_error(&spec, &mut store, e))?;
                let start = instance
                    .get_typed_func::<(), ()>(&mut store, "_start")
                    .map_err(|e| instantiate_error(&spec, &mut store, e))?;
                Ready::Module(store, start)
            }
            Pre::Component(pre) => {
                let sink = output.sink();
                let mut store = self.store(component_state(builder, limits, &spec, sink));
                let command = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|e| instantiate_error(&spec, &mut store, e))?;
                Ready::Component(store, command)
            }
            Pre::P3Command(pre) => {
                let sink = output.sink();
                let mut store = self.store(component_state(builder, limits, &spec, sink));
                let command = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|e| instantiate_error(&spec, &mut store, e))?;
                Ready::P3Command(store, command)
            }
            // Served by `start_prepared`'s first branch.
            Pre::Function(_) => {
                return Err(WasmError::Engine(
                    "a function is served, not run as a command".into(),
                ));
            }
        };
        Ok(spawn(spec.id, prepared, ready, output, netns, usage))
    }

    /// Times `n` instantiations of `prepared`, one after another: from an empty store to an
    /// instance whose entry point (`_start` or `wasi:cli/run`) is ready to call. Nothing runs;
    /// each instance is dropped after it is timed. For benchmarks.
    pub async fn measure_start(
        &self,
        prepared: &Prepared,
        n: usize,
    ) -> Result<Vec<Duration>, WasmError> {
        let spec = WasmSpec::default();
        let component_store = |builder| {
            let limits = self.limits(&spec, Arc::default());
            let sink = super::host::logging::Sink::Discard;
            self.store(component_state(builder, limits, &spec, sink))
        };
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let began = Instant::now();
            let mut builder = wasmtime_wasi::WasiCtxBuilder::new();
            builder.arg("measure");
            match prepared.pre() {
                Pre::Module(pre) => {
                    let mut store = self.store(ModuleState {
                        wasi: builder.build_p1(),
                        limits: self.limits(&spec, Arc::default()),
                    });
                    let instance = pre
                        .instantiate_async(&mut store)
                        .await
                        .map_err(|e| instantiate_error(&spec, &mut store, e))?;
                    instance
                        .get_typed_func::<(), ()>(&mut store, "_start")
                        .map_err(|e| instantiate_error(&spec, &mut store, e))?;
                }
                Pre::Component(pre) => {
                    let mut store = component_store(builder);
                    pre.instantiate_async(&mut store)
                        .await
                        .map_err(|e| instantiate_error(&spec, &mut store, e))?;
                }
                Pre::P3Command(pre) => {
                    let mut store = component_store(builder);
                    pre.instantiate_async(&mut store)
                        .await
                        .map_err(|e| instantiate_error(&spec, &mut store, e))?;
                }
                Pre::Function(handler) => {
                    let mut store = component_store(builder);
                    handler.instantiate(&mut store).await.map_err(|message| {
                        WasmError::Instantiate {
                            id: spec.id.clone(),
                            message,
                        }
                    })?;
                }
            }
            times.push(began.elapsed());
        }
        Ok(times)
    }

    pub(crate) fn limits(&self, spec: &WasmSpec, usage: Arc<Usage>) -> Limits {
        Limits::new(
            spec.memory_limit,
            spec.cpu_limit_millicores,
            self.inner.options.epoch_tick,
            usage,
            self.inner.options.max_memory_bytes,
        )
    }

    /// A store with the limiter, and a deadline of one tick whose callback yields (or throttles).
    pub(crate) fn store<T: Guarded>(&self, data: T) -> Store<T> {
        let mut store = Store::new(&self.inner.engine, data);
        store.limiter(|s: &mut T| -> &mut dyn ResourceLimiter { s.limits() });
        store.epoch_deadline_callback(|mut cx| Ok(cx.data_mut().limits().on_epoch()));
        store.set_epoch_deadline(1);
        store
    }
}

/// The store data of a component (WASI 0.2 or 0.3) started with `spec`.
pub(crate) fn component_state(
    mut builder: wasmtime_wasi::WasiCtxBuilder,
    limits: Limits,
    spec: &WasmSpec,
    log: super::host::logging::Sink,
) -> ComponentState {
    ComponentState {
        ctx: builder.build(),
        table: wasmtime::component::ResourceTable::new(),
        limits,
        lookup: NameLookup::new(spec.network.allow_outbound, spec.network.resolver.as_ref()),
        http: wasmtime_wasi_http::WasiHttpCtx::new(),
        outbound: super::http::outbound::Outbound::default(),
        host: super::host::HostCtx::new(&spec.host, log),
    }
}

fn instantiate_error<T: Guarded>(
    spec: &WasmSpec,
    store: &mut Store<T>,
    e: wasmtime::Error,
) -> WasmError {
    if let Some(limit) = e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return WasmError::Exhausted(limit.to_string());
    }
    if let Some(DeniedGrowth { desired, .. }) = store.data_mut().limits().denied {
        return WasmError::InvalidSpec(format!(
            "memory limit of {} bytes is below the initial memory of {} ({desired} bytes)",
            spec.memory_limit.unwrap_or_default(),
            spec.module_path.display()
        ));
    }
    WasmError::Instantiate {
        id: spec.id.clone(),
        message: chain(&e),
    }
}

/// Runs the entry point in a task of its own until it returns or the instance is killed: on
/// the thread inside the instance's network namespace if it has one, else on the caller's
/// runtime.
fn spawn(
    id: String,
    prepared: &Prepared,
    ready: Ready,
    output: Output,
    netns: Option<Arc<NetnsThread>>,
    usage: Arc<Usage>,
) -> Instance {
    let (instance, controls) = Instance::with_controls(&id, prepared, usage.clone(), None);
    let Controls {
        kill: mut kill_rx,
        exit: exit_tx,
        ..
    } = controls;
    let runtime = netns
        .as_ref()
        .map_or_else(tokio::runtime::Handle::current, |t| t.runtime().clone());
    runtime.spawn(async move {
        let status = tokio::select! {
            biased;
            _ = kill_rx.wait_for(|k| *k) => ExitStatus::killed(),
            status = accounted(run(ready, &output), &usage) => status,
        };
        // The store is gone with the run, its memories and tables with it.
        usage.released();
        output.finish();
        exit_tx.send_replace(Some(status));
        // The last instance in a namespace ends its thread.
        drop(netns);
    });
    instance
}

async fn run(ready: Ready, output: &Output) -> ExitStatus {
    let (result, denied) = match ready {
        Ready::Module(mut store, start) => {
            let result = start
                .call_async(&mut store, ())
                .await
                .map(|()| RunEnd::Returned);
            (result, store.data_mut().limits.denied)
        }
        Ready::Component(mut store, command) => {
            let result = command
                .wasi_cli_run()
                .call_run(&mut store)
                .await
                .map(|r| match r {
                    Ok(()) => RunEnd::Returned,
                    Err(()) => RunEnd::RunFailed,
                });
            (result, store.data_mut().limits.denied)
        }
        Ready::P3Command(mut store, command) => {
            let result = super::p3::run_command(&mut store, command).await;
            (result, store.data_mut().limits.denied)
        }
    };
    let status = classify(&result, denied);
    if let Err(e) = &result
        && e.downcast_ref::<wasmtime_wasi::I32Exit>().is_none()
    {
        // The trap with its wasm backtrace, where `logs` shows it.
        output.stderr(&format!("{e:?}\n"));
    }
    status
}
