//! The Wasm executor: wasmtime, one shared engine per process, many instances as tokio tasks.
//!
//! Public API, in the order a caller uses it:
//!
//! - [`WasmEngine::new`]`(`[`EngineOptions`]`)`: the shared engine (async, epoch interruption with
//!   a 10 ms ticker thread, the pooling allocator sized by `max_instances`, copy-on-write memory
//!   images) and its module cache directory.
//! - [`WasmEngine::prepare`]`(path)` → [`PrepareOutcome`] `{ prepared: `[`Prepared`]`, origin:
//!   `[`Origin`]` (Compiled | DiskCache | Memory), elapsed }`: reads a `.wasm`/`.wat` file,
//!   compiles it once per content digest (or loads `<cache>/<digest>-<engine>.cwasm`), checks it
//!   is a command and links it against WASI preview 1 (core modules) or WASI 0.2 or 0.3
//!   (components; [`Prepared::wasi`] says which, from the `wasi:cli/run` they export). A
//!   component exporting `wasi:http/incoming-handler` is a function ([`Prepared::role`] →
//!   [`Role::Function`]).
//! - [`WasmEngine::start`]`(`[`WasmSpec`]`)` (or [`WasmEngine::start_prepared`]) → [`Instance`]:
//!   instantiates and runs the entry point in a tokio task (on a thread inside
//!   [`WasmSpec::netns`] when the spec grants sockets); [`Instance::kill`],
//!   [`Instance::wait`] → [`ExitStatus`] `{ code, reason: `[`ExitReason`]`, message, oom_killed,
//!   finished_at }`; [`Instance::usage`] → [`InstanceUsage`] `{ memory_bytes, table_bytes, cpu }`,
//!   the instance's own figures from wasmtime's accounting (many instances share a process).
//! - A function's start serves it instead ([`http`]): listeners on [`HttpOptions::ports`] in
//!   [`WasmSpec::netns`], an instance per request under the spec's limits;
//!   [`Instance::stop`] drains it (exit 0), [`Instance::function_stats`] → [`FunctionStats`].
//! - [`WasmEngine::measure_start`]`(prepared, n)`: `n` instantiation times, for benchmarks.
//!
//! Errors are [`WasmError`]s that name the file, import or setting at fault.
//!
//! Must not: know about pods or the cluster, or keep a registry of instances (its caller does:
//! `containerd-shim-skiff-v1`'s task service).

mod cache;
mod engine;
mod error;
mod exit;
pub mod host;
pub mod http;
mod instance;
mod limits;
mod name_lookup;
mod netns;
mod p3;
mod preopen;
mod prepare;
mod spec;
mod state;
mod stdio;
mod usage;
mod wasi_ctx;

pub use engine::{EngineOptions, WasmEngine};
pub use error::WasmError;
pub use exit::{ExitReason, ExitStatus, KILLED_EXIT_CODE, TRAP_EXIT_CODE};
pub use host::{ConfigValues, HostGrants};
pub use http::{FunctionStats, HttpOptions};
pub use instance::Instance;
pub use p3::Wasi;
pub use preopen::check_guest_path;
pub use prepare::{ModuleKind, Origin, PrepareOutcome, Prepared, Role};
pub use spec::{DEFAULT_LOG_MAX_BYTES, Network, Preopen, Resolver, Stdio, Streams, WasmSpec};
pub use usage::InstanceUsage;
