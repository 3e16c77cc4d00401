//! The OCI bundle of a Wasm container: `config.json` (and, when the agent has no image rootfs
//! for it, a `rootfs/` holding just the module), in the form `containerd-shim-skiff-v1` runs —
//! the same bundle runs under a plain containerd with `--runtime io.containerd.skiff.v1`.
//!
//! The form (see [`super`] for the whole table):
//! - `process.args[0]` is the module's path inside the rootfs, ending in `.wasm`: that is what
//!   makes the shim run a Wasm task; `args[1..]` are the guest's arguments, `process.env` exactly
//!   its environment, `process.cwd` its working directory.
//! - `root.path` is preopened at `/` (read-only when `root.readonly`); each `bind` mount of a
//!   directory is preopened at its destination (`ro` in its options: read-only).
//! - `linux.resources.memory.limit` caps linear memory, `cpu.quota`/`cpu.period` CPU time;
//!   `linux.cgroupsPath`, if set, is a cgroup the shim process joins when the shim is the task's
//!   own (a hard cap on the process; never in a node group's shim).
//! - Sockets only in a network namespace named by path in `linux.namespaces`; the annotations
//!   [`BIND_PORTS`] and [`OUTBOUND`] narrow what the guest may do there.
//! - [`GROUP`] puts the task in a shared shim; [`LOG_PATH`] asks for CRI-format log files when
//!   Create gives no stdio FIFOs.
//!
//! Must not: hold Secret values in files outside the bundle's directory (the caller puts the
//! bundle on tmpfs and removes it with the pod).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResourcesBuilder, MountBuilder, RootBuilder, Spec, get_default_namespaces,
};

use super::error::ShimError;

/// Puts containers in one shim (the shim's own annotation; CRI's sandbox id does the same).
pub const GROUP: &str = "io.containerd.skiff.v1.group";
/// TCP ports the guest may bind, comma-separated (`"8080,9090"`; empty: none). Absent: any.
pub const BIND_PORTS: &str = "io.containerd.skiff.v1.wasm.bind-ports";
/// `"false"`: no outbound connections or name lookups. Absent or `"true"`: allowed.
pub const OUTBOUND: &str = "io.containerd.skiff.v1.wasm.outbound";
/// The guest's argv\[0\] instead of the module's path.
pub const ARGV0: &str = "io.containerd.skiff.v1.wasm.argv0";
/// A CRI-format log file for stdout and stderr, used when Create gives neither.
pub const LOG_PATH: &str = "io.containerd.skiff.v1.log-path";
/// Rotate [`LOG_PATH`] past this many bytes.
pub const LOG_MAX_BYTES: &str = "io.containerd.skiff.v1.log-max-bytes";

/// Where the guest's `/` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WasmRoot {
    /// `BUNDLE/rootfs/` holding only the module (hard-linked, else copied), read-only: the guest
    /// sees that one file at `/`.
    ModuleOnly { module: PathBuf },
    /// An unpacked image: `module` is the module's path inside it (`/app/main.wasm`).
    Image {
        rootfs: PathBuf,
        module: String,
        read_only: bool,
    },
}

/// A host directory the guest sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmMount {
    pub host: PathBuf,
    /// Absolute, e.g. `/data`.
    pub guest: String,
    pub read_only: bool,
}

/// A guest's sockets: none without a network namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WasmNetwork {
    /// The pod's network namespace (a pinned file, `/run/netns/NAME`).
    pub netns: Option<PathBuf>,
    /// Ports the guest may listen on; `None`: any.
    pub bind_ports: Option<Vec<u16>>,
    pub outbound: bool,
}

/// What the agent knows of one Wasm container, as the bundle writer takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmBundle {
    pub root: WasmRoot,
    /// The shim group (several tasks, one shim); `None`: a shim of its own.
    pub group: Option<String>,
    /// The guest's `argv[0]`; `None`: the module's path in the rootfs.
    pub argv0: Option<String>,
    /// The guest's arguments after `argv[0]` (`process.args[0]` is the module's path in the
    /// rootfs: the shim reads the module from there).
    pub args: Vec<String>,
    /// In order; the guest sees exactly these.
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub mounts: Vec<WasmMount>,
    pub memory_limit_bytes: Option<u64>,
    pub cpu_limit_millicores: Option<u32>,
    pub network: WasmNetwork,
    /// A cgroup the shim joins for this task (relative to the hierarchy roots).
    pub cgroups_path: Option<String>,
    /// A CRI log file (when the task is created without stdio).
    pub log_path: Option<PathBuf>,
    pub log_max_bytes: Option<u64>,
    /// Extra annotations (the agent's labels: pod uid, container, attempt).
    pub labels: BTreeMap<String, String>,
}

impl WasmBundle {
    pub fn new(root: WasmRoot) -> Self {
        WasmBundle {
            root,
            group: None,
            argv0: None,
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            mounts: Vec::new(),
            memory_limit_bytes: None,
            cpu_limit_millicores: None,
            network: WasmNetwork::default(),
            cgroups_path: None,
            log_path: None,
            log_max_bytes: None,
            labels: BTreeMap::new(),
        }
    }

    /// Writes the bundle into `dir` (created if missing): `config.json`, and `rootfs/` for
    /// [`WasmRoot::ModuleOnly`]. Returns the spec written.
    pub fn write(&self, dir: &Path) -> Result<Spec, ShimError> {
        std::fs::create_dir_all(dir).map_err(|e| ShimError::io(dir, e))?;
        let fail = |reason: String| ShimError::Bundle {
            path: dir.to_path_buf(),
            reason,
        };
        let (rootfs, module, read_only) = match &self.root {
            WasmRoot::ModuleOnly { module } => {
                let name = module
                    .file_name()
                    .and_then(|n| n.to_str())
                    .filter(|n| n.ends_with(".wasm"))
                    .map(str::to_string)
                    .unwrap_or_else(|| "module.wasm".to_string());
                let rootfs = dir.join("rootfs");
                std::fs::create_dir_all(&rootfs).map_err(|e| ShimError::io(&rootfs, e))?;
                place_module(module, &rootfs.join(&name))?;
                (PathBuf::from("rootfs"), format!("/{name}"), true)
            }
            WasmRoot::Image {
                rootfs,
                module,
                read_only,
            } => {
                if !module.starts_with('/') || !module.ends_with(".wasm") {
                    return Err(fail(format!(
                        "module {module:?}: must be an absolute path in the rootfs ending in .wasm"
                    )));
                }
                (rootfs.clone(), module.clone(), *read_only)
            }
        };
        let spec = self.spec(&rootfs, &module, read_only).map_err(fail)?;
        let path = dir.join("config.json");
        let tmp = dir.join(".config.json.tmp");
        spec.save(&tmp).map_err(|e| fail(e.to_string()))?;
        std::fs::rename(&tmp, &path).map_err(|e| ShimError::io(&path, e))?;
        Ok(spec)
    }

    /// The spec, for a module at `module` in the rootfs at `rootfs`.
    fn spec(&self, rootfs: &Path, module: &str, read_only: bool) -> Result<Spec, String> {
        let e = |e: oci_spec::OciSpecError| e.to_string();
        let mut spec = Spec::default();
        spec.set_hostname(None);
        spec.set_root(Some(
            RootBuilder::default()
                .path(rootfs)
                .readonly(read_only)
                .build()
                .map_err(e)?,
        ));
        let mut process = spec.process().clone().unwrap_or_default();
        let mut args = vec![module.to_string()];
        args.extend(self.args.iter().cloned());
        process.set_args(Some(args));
        process.set_env(Some(
            self.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        ));
        for (k, _) in &self.env {
            if k.is_empty() || k.contains('=') {
                return Err(format!("env {k:?}: not a variable name"));
            }
        }
        process.set_cwd(PathBuf::from(self.cwd.as_deref().unwrap_or("/")));
        spec.set_process(Some(process));

        let mut mounts = Vec::new();
        for (i, m) in self.mounts.iter().enumerate() {
            if !m.guest.starts_with('/') {
                return Err(format!("mounts[{i}].guest {:?}: must be absolute", m.guest));
            }
            let mode = if m.read_only { "ro" } else { "rw" };
            mounts.push(
                MountBuilder::default()
                    .destination(&m.guest)
                    .typ("bind")
                    .source(&m.host)
                    .options(vec!["rbind".to_string(), mode.to_string()])
                    .build()
                    .map_err(e)?,
            );
        }
        spec.set_mounts(Some(mounts));

        let mut resources = LinuxResourcesBuilder::default().devices(vec![]);
        if let Some(limit) = self.memory_limit_bytes {
            let limit =
                i64::try_from(limit).map_err(|_| format!("memory limit {limit}: too large"))?;
            resources = resources.memory(
                LinuxMemoryBuilder::default()
                    .limit(limit)
                    .build()
                    .map_err(e)?,
            );
        }
        if let Some(m) = self.cpu_limit_millicores {
            let period: u64 = 100_000;
            let quota = (i64::from(m) * period as i64 / 1000).max(1000);
            resources = resources.cpu(
                LinuxCpuBuilder::default()
                    .quota(quota)
                    .period(period)
                    .build()
                    .map_err(e)?,
            );
        }
        let mut namespaces = get_default_namespaces();
        if let Some(netns) = &self.network.netns {
            namespaces.retain(|n| n.typ() != LinuxNamespaceType::Network);
            namespaces.push(
                LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::Network)
                    .path(netns)
                    .build()
                    .map_err(e)?,
            );
        }
        let mut linux = LinuxBuilder::default()
            .resources(resources.build().map_err(e)?)
            .namespaces(namespaces)
            .build()
            .map_err(e)?;
        linux.set_cgroups_path(self.cgroups_path.as_ref().map(PathBuf::from));
        spec.set_linux(Some(linux));

        let mut annotations: std::collections::HashMap<String, String> =
            self.labels.clone().into_iter().collect();
        if let Some(group) = &self.group {
            annotations.insert(GROUP.into(), group.clone());
        }
        if self.network.netns.is_some() {
            if let Some(ports) = &self.network.bind_ports {
                let list: Vec<String> = ports.iter().map(u16::to_string).collect();
                annotations.insert(BIND_PORTS.into(), list.join(","));
            }
            annotations.insert(OUTBOUND.into(), self.network.outbound.to_string());
        }
        if let Some(argv0) = &self.argv0 {
            annotations.insert(ARGV0.into(), argv0.clone());
        }
        if let Some(log) = &self.log_path {
            annotations.insert(LOG_PATH.into(), log.display().to_string());
        }
        if let Some(max) = self.log_max_bytes {
            annotations.insert(LOG_MAX_BYTES.into(), max.to_string());
        }
        spec.set_annotations(Some(annotations));
        Ok(spec)
    }
}

/// The shim group a bundle's task belongs to, as the shim decides it: CRI's sandbox id, else
/// [`GROUP`], else the task's own id.
pub fn group_of(spec: &Spec, id: &str) -> String {
    const KEYS: [&str; 2] = ["io.kubernetes.cri.sandbox-id", GROUP];
    spec.annotations()
        .as_ref()
        .and_then(|a| KEYS.iter().find_map(|k| a.get(*k)))
        .filter(|v| !v.is_empty())
        .cloned()
        .unwrap_or_else(|| id.to_string())
}

/// Hard-links `module` to `to` (a copy across filesystems).
fn place_module(module: &Path, to: &Path) -> Result<(), ShimError> {
    if to.exists() {
        std::fs::remove_file(to).map_err(|e| ShimError::io(to, e))?;
    }
    match std::fs::hard_link(module, to) {
        Ok(()) => Ok(()),
        Err(_) => std::fs::copy(module, to)
            .map(drop)
            .map_err(|e| ShimError::io(module, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_only_bundle_holds_the_module_and_the_grants() {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("hello.wasm");
        std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
        let bundle = dir.path().join("b");
        let data = dir.path().join("data");
        let mut b = WasmBundle::new(WasmRoot::ModuleOnly {
            module: module.clone(),
        });
        b.group = Some("wasm".into());
        b.args = vec!["serve".into()];
        b.env = vec![("A".into(), "1".into())];
        b.mounts = vec![WasmMount {
            host: data.clone(),
            guest: "/data".into(),
            read_only: true,
        }];
        b.memory_limit_bytes = Some(64 << 20);
        b.cpu_limit_millicores = Some(500);
        b.network = WasmNetwork {
            netns: Some("/run/netns/p1".into()),
            bind_ports: Some(vec![8080, 9090]),
            outbound: false,
        };
        b.log_path = Some("/var/log/pods/p/c/0.log".into());
        b.labels.insert("skiff.dev/pod-uid".into(), "u1".into());
        b.write(&bundle).unwrap();

        assert!(bundle.join("rootfs/hello.wasm").is_file());
        let spec = Spec::load(bundle.join("config.json")).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/hello.wasm", "serve"]);
        assert_eq!(p.env().as_ref().unwrap(), &["A=1"]);
        let root = spec.root().as_ref().unwrap();
        assert_eq!(root.path(), Path::new("rootfs"));
        assert_eq!(root.readonly(), Some(true));
        let m = &spec.mounts().as_ref().unwrap()[0];
        assert_eq!(m.destination(), Path::new("/data"));
        assert_eq!(m.typ().as_deref(), Some("bind"));
        assert!(m.options().as_ref().unwrap().contains(&"ro".to_string()));
        let linux = spec.linux().as_ref().unwrap();
        let r = linux.resources().as_ref().unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(50_000));
        let net = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|n| n.typ() == LinuxNamespaceType::Network)
            .collect::<Vec<_>>();
        assert_eq!(net.len(), 1);
        assert_eq!(net[0].path().as_deref(), Some(Path::new("/run/netns/p1")));
        let a = spec.annotations().as_ref().unwrap();
        assert_eq!(a[BIND_PORTS], "8080,9090");
        assert_eq!(a[OUTBOUND], "false");
        assert_eq!(a[LOG_PATH], "/var/log/pods/p/c/0.log");
        assert_eq!(a["skiff.dev/pod-uid"], "u1");
        assert_eq!(group_of(&spec, "t1"), "wasm");
    }

    #[test]
    fn bad_grants_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = WasmBundle::new(WasmRoot::Image {
            rootfs: dir.path().into(),
            module: "/app.wasm".into(),
            read_only: true,
        });
        b.mounts = vec![WasmMount {
            host: dir.path().into(),
            guest: "data".into(),
            read_only: false,
        }];
        let e = b.write(&dir.path().join("b")).unwrap_err().to_string();
        assert!(e.contains("mounts[0].guest \"data\""), "{e}");
        b.mounts.clear();
        b.env = vec![("A=B".into(), "1".into())];
        let e = b.write(&dir.path().join("b")).unwrap_err().to_string();
        assert!(e.contains("env \"A=B\""), "{e}");
        b.env.clear();
        let spec = b.write(&dir.path().join("b")).unwrap();
        assert_eq!(group_of(&spec, "t1"), "t1");
        // No network namespace: no socket annotations (the shim grants nothing).
        assert!(!spec.annotations().as_ref().unwrap().contains_key(OUTBOUND));
    }
}
