//! The annotations of skiff's OCI bundle form, defined once for both sides: a skiff agent writes
//! them into a container's `config.json` beside the runtime spec, and `containerd-shim-skiff-v1`
//! honours them (the same under a plain containerd; the whole form is tabled in the agent's
//! `containers::bundle`).
//!
//! Must not: hold anything but the names (the agent builds bundles, the shim reads them).

/// Puts tasks in one shim shared by many pods (a skiff node's Wasm pods): such a shim joins no
/// task's cgroup.
pub const GROUP: &str = "io.containerd.skiff.v1.group";
/// CRI's pod sandbox id: the containers of one pod share a shim, as under runc's.
pub const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// TCP ports a Wasm guest may bind in its network namespace, comma-separated (`"8080,9090"`;
/// empty: none). Absent: any port.
pub const BIND_PORTS: &str = "io.containerd.skiff.v1.wasm.bind-ports";
/// `"false"`: no outbound connections or name lookups in the network namespace. Absent or
/// `"true"`: allowed.
pub const OUTBOUND: &str = "io.containerd.skiff.v1.wasm.outbound";
/// The resolver settings of a Wasm guest's name lookups, as a `resolv.conf`'s text (`nameserver`,
/// `search`, `options ndots:N`): a skiff pod's, the same as its OCI containers' `/etc/resolv.conf`.
/// Absent: the shim's own resolver.
pub const RESOLV_CONF: &str = "io.containerd.skiff.v1.wasm.resolv-conf";
/// A Wasm guest's argv\[0\] when it should not be the module's path (a skiff pod's `command[0]`,
/// or its container's name).
pub const ARGV0: &str = "io.containerd.skiff.v1.wasm.argv0";
/// A CRI-format log file for stdout and stderr, used when Create gives no output FIFO.
pub const LOG_PATH: &str = "io.containerd.skiff.v1.log-path";
/// Rotate [`LOG_PATH`] past this many bytes (the runtime's default otherwise).
pub const LOG_MAX_BYTES: &str = "io.containerd.skiff.v1.log-max-bytes";
/// The host interfaces (`wit/`) a Wasm guest may import, comma-separated: `config`, `keyvalue`,
/// `logging`. Absent: none.
pub const WASI_INTERFACES: &str = "io.containerd.skiff.v1.wasi.interfaces";
/// The file (a name inside the bundle directory) holding `wasi:config/store`'s values, a JSON
/// object of strings. The agent writes it mode 0600 beside `config.json` (on tmpfs: Secret
/// values).
pub const WASI_CONFIG_FILE: &str = "io.containerd.skiff.v1.wasi.config-file";
/// The unix socket of the node agent serving `wasi:keyvalue` for the task's pod. Absent (a plain
/// containerd): a granted `wasi:keyvalue` fails every `open` with an error saying so.
pub const WASI_KEYVALUE_SOCKET: &str = "io.containerd.skiff.v1.wasi.keyvalue-socket";
/// A function's (a component exporting `wasi:http/incoming-handler`) TCP ports, comma-separated,
/// in the network namespace the bundle joins. Absent: 8080. Empty: none, and a function fails
/// to start (a skiff pod's container declared no TCP port).
pub const FUNCTION_PORTS: &str = "io.containerd.skiff.v1.function.ports";
/// A function's request timeout in milliseconds (504 past it; 0: none). Absent: 30000.
pub const FUNCTION_TIMEOUT_MS: &str = "io.containerd.skiff.v1.function.timeout-ms";
/// A function's largest request body in bytes (413 past it; 0: none). Absent: 10 MiB.
pub const FUNCTION_MAX_BODY_BYTES: &str = "io.containerd.skiff.v1.function.max-body-bytes";
/// A function's requests in flight at most (503 past it; 0: no cap). Absent: 0.
pub const FUNCTION_CONCURRENCY: &str = "io.containerd.skiff.v1.function.concurrency";
/// Where a function's outgoing `wasi:http` requests may go, comma-separated, in Spin's
/// `allowed_outbound_hosts` syntax. Absent or empty: nowhere.
pub const FUNCTION_ALLOWED_OUTBOUND_HOSTS: &str =
    "io.containerd.skiff.v1.function.allowed-outbound-hosts";
/// `"true"`: the module must be a function (a command fails to start, naming why).
pub const FUNCTION_REQUIRED: &str = "io.containerd.skiff.v1.function.required";
