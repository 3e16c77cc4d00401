//! What the pod loop asks the runtime to run: one attempt of a container, a Wasm guest or a
//! Linux process, with everything it is granted. [`super::bundle`] turns it into an OCI bundle.

use std::path::PathBuf;

use super::instance::Labels;

/// A host directory or file the container sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host: PathBuf,
    /// Absolute, e.g. `/data`.
    pub guest: String,
    pub read_only: bool,
    /// For a subPath: the volume's directory, beneath which `host` must be reached without a
    /// symlink when it is mounted.
    pub beneath: Option<PathBuf>,
}

/// The shim a container runs in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ShimGroup {
    /// The node's Wasm shim, shared by every all-Wasm pod (one wasmtime engine).
    NodeWasm,
    /// The pod's own shim (its sandbox): pods with a Linux container, Wasm ones included.
    Pod(String),
}

impl ShimGroup {
    /// The group's name in the shim records and the bundle's group annotation.
    pub fn name(&self) -> String {
        match self {
            ShimGroup::NodeWasm => "wasm".to_string(),
            ShimGroup::Pod(uid) => format!("pod-{uid}"),
        }
    }
}

/// What a container runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    Wasm(WasmProcess),
    Linux(LinuxProcess),
}

/// A Wasm guest: its module and the sockets it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmProcess {
    /// The module (or component) file on this node.
    pub module: PathBuf,
    /// The guest's argv\[0\].
    pub argv0: String,
    /// Its arguments after argv\[0\].
    pub args: Vec<String>,
    /// Ports it may listen on (in the pod's network namespace).
    pub bind_ports: Vec<u16>,
    pub outbound: bool,
    /// Its name lookups' resolver settings, as `resolv.conf` text (the pod's, as its OCI
    /// containers' `/etc/resolv.conf`); `None`: the shim's resolver.
    pub resolv_conf: Option<String>,
    /// The host interfaces beyond WASI it may import (`wit/`), with their config values and
    /// keyvalue socket ([`crate::pods`] resolves them from the pod's annotations).
    pub host: skiff_runtime::wasm::HostGrants,
    /// How it is served if its component is a function (exports `wasi:http/incoming-handler`):
    /// the container's TCP ports and the pod's `skiff.dev/function-*` settings.
    pub http: skiff_runtime::wasm::HttpOptions,
}

/// A process in Linux namespaces over an image's layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinuxProcess {
    /// Snapshot directories, bottom layer first.
    pub layers: Vec<PathBuf>,
    /// Where the writable layer lives (on disk, removed with the attempt).
    pub scratch: PathBuf,
    pub args: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the pod's `supplementalGroups`, then its `fsGroup`.
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    pub cpu_request_millicores: Option<u32>,
    pub pids_limit: Option<i64>,
    pub readonly_rootfs: bool,
    /// `None`: the default set; `Some(list)`: exactly these (`CAP_...`).
    pub capabilities: Option<Vec<String>>,
}

/// One attempt of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub labels: Labels,
    pub group: ShimGroup,
    pub workload: Workload,
    /// In order; the container sees exactly these.
    pub env: Vec<(String, String)>,
    /// Empty: the image's (or `/`).
    pub cwd: String,
    pub mounts: Vec<Mount>,
    pub memory_limit_bytes: Option<u64>,
    pub cpu_limit_millicores: Option<u32>,
    /// The pod's network namespace (a pinned file); `None`: a Wasm guest gets no sockets.
    pub netns: Option<PathBuf>,
    /// The CRI log file of this attempt.
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
}
