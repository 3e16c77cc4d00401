//! What one Wasm instance is given: [`WasmSpec`] and its parts.
//!
//! Owns the executor's own small spec (no cluster objects: the node agent translates a pod's
//! container into this). A guest gets exactly what the spec grants and nothing ambient: these
//! args, this env, these preopened dirs, these sockets. Must not: open files or build WASI
//! contexts (that is `wasi_ctx`).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

/// The default [`WasmSpec::log_max_bytes`]: 10 MiB, as kubelet's `containerLogMaxSize`.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// Everything needed to start one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WasmSpec {
    /// Unique on this host.
    pub id: String,
    /// A `.wasm` binary or `.wat` text file: a core module (WASI preview 1 command) or a
    /// component (`wasi:cli/command`).
    pub module_path: PathBuf,
    /// `argv[0]` as the guest sees it.
    pub argv0: String,
    pub args: Vec<String>,
    /// In order; the guest sees exactly these.
    pub env: Vec<(String, String)>,
    /// The initial working directory, a guest path, offered as
    /// `wasi:cli/environment.initial-cwd` (preview 2). Programs built for WASI preview 1 (core
    /// modules, and components made from them with the adapter) never ask: wasi-libc starts
    /// them at `/` and resolves relative paths from there.
    pub cwd: Option<String>,
    pub preopens: Vec<Preopen>,
    /// Cap on linear memory, in bytes.
    pub memory_limit: Option<u64>,
    /// Cap on CPU, in thousandths of one core.
    pub cpu_limit_millicores: Option<u32>,
    pub network: Network,
    /// The network namespace the guest's sockets are made in (a file such as
    /// `/run/netns/NAME`); `None`: the process's own. Only read when `network` grants sockets.
    pub netns: Option<PathBuf>,
    /// stdout and stderr, in the CRI log format (when `stdio` is [`Stdio::Log`]).
    pub log_path: PathBuf,
    /// Rotate the log past this size; 0 means [`DEFAULT_LOG_MAX_BYTES`].
    pub log_max_bytes: u64,
    /// Where the standard streams go: the CRI log (a node's pods) or files given by the caller
    /// (containerd's FIFOs, for the shim).
    pub stdio: Stdio,
    pub labels: BTreeMap<String, String>,
    /// The host interfaces beyond WASI it may import (`wit/`), and what they serve.
    pub host: super::host::HostGrants,
    /// How it is served if it is a function (a component exporting `wasi:http/incoming-handler`).
    pub http: super::http::HttpOptions,
}

impl WasmSpec {
    /// The log rotation threshold in effect.
    pub fn effective_log_max_bytes(&self) -> u64 {
        if self.log_max_bytes == 0 {
            DEFAULT_LOG_MAX_BYTES
        } else {
            self.log_max_bytes
        }
    }
}

/// A guest's standard streams.
#[derive(Debug, Clone, Default)]
pub enum Stdio {
    /// No stdin; stdout and stderr as CRI records in [`WasmSpec::log_path`].
    #[default]
    Log,
    /// Raw byte streams on pipes or FIFOs the caller opened (stdin for reading, stdout and
    /// stderr for writing); a missing one is empty (stdin) or discarded (output). They are
    /// read and written asynchronously, so a guest blocked on one can still be killed.
    Streams(Arc<Streams>),
}

/// The files of [`Stdio::Streams`]. Each must be a pipe or FIFO.
#[derive(Debug, Default)]
pub struct Streams {
    pub stdin: Option<File>,
    pub stdout: Option<File>,
    pub stderr: Option<File>,
}

impl PartialEq for Stdio {
    /// Streams are equal when they are the same files (the same `Arc`).
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Stdio::Log, Stdio::Log) => true,
            (Stdio::Streams(a), Stdio::Streams(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Stdio {}

/// A host directory made visible to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    pub host: PathBuf,
    /// The guest's name for it, e.g. `/data`.
    pub guest: String,
    pub read_only: bool,
    /// `host` lies inside this directory (a volume, for a `subPath`): it is then opened from it
    /// by descriptor with no symlink followed, in the process that runs the guest, so what the
    /// agent checked cannot be swapped for a link before the guest gets it.
    pub beneath: Option<PathBuf>,
}

/// Sockets a guest may use. The default grants none: no TCP, no UDP, no name lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    /// TCP ports the guest may bind and listen on.
    pub allow_bind_ports: Vec<u16>,
    /// Outbound TCP/UDP connections and name lookups.
    pub allow_outbound: bool,
    /// Any TCP port may be bound and listened on, not only `allow_bind_ports` (a guest alone
    /// in a network namespace, as a container is there).
    pub bind_any_port: bool,
    /// How names are looked up (`wasi:sockets/ip-name-lookup`, with outbound sockets): `None`,
    /// the process's resolver; a pod's guests get its resolver settings.
    pub resolver: Option<Resolver>,
}

/// A stub resolver's settings, as a `resolv.conf` gives them ([`Resolver::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    /// Asked on port 53.
    pub nameservers: Vec<std::net::IpAddr>,
    /// Tried in order for a name with fewer than `ndots` dots (before the name itself).
    pub searches: Vec<String>,
    pub ndots: usize,
    /// Per query, and how many times each is tried.
    pub timeout: std::time::Duration,
    pub attempts: usize,
}

impl Default for Resolver {
    /// glibc's defaults.
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            searches: Vec::new(),
            ndots: 1,
            timeout: std::time::Duration::from_secs(5),
            attempts: 2,
        }
    }
}

impl Network {
    /// True when no socket at all is granted.
    pub fn is_none(&self) -> bool {
        self.allow_bind_ports.is_empty() && !self.allow_outbound && !self.bind_any_port
    }
}
