//! Wasm tasks: an image whose entrypoint is a `.wasm` file, run in skiff's wasm executor inside
//! the shim process.
//!
//! Owns telling a Wasm bundle from a Linux one ([`module_of`]), the translation of the bundle's
//! OCI spec into a [`WasmSpec`] ([`wasm_spec`]) and [`WasmTask`]: compiled at Create (so a bad
//! module fails `ctr run` with the compiler's message, and Start only instantiates), started,
//! killed at the next epoch tick. The guest gets exactly what the spec grants, as a skiff pod:
//! argv, env, cwd, the rootfs preopened at `/` (read-only when `root.readonly`), bind mounts of
//! directories at their destinations (a relative destination is a relative preopen name, as
//! wasmtime's `--dir HOST::GUEST`); memory and CPU limits from `linux.resources`. Sockets only
//! when the spec joins an existing network namespace (a CRI pod sandbox's, `ctr run --with-ns
//! network:PATH`): then the guest's sockets are made in it, and it may bind any port and connect
//! out, as a container there could ([`network_of`]), unless the annotations [`BIND_PORTS`] and
//! [`OUTBOUND`] narrow that (a skiff agent's bundles carry them: per-port binds, outbound), and
//! its name lookups use the settings of [`RESOLV_CONF`] (a skiff pod's resolver) if given. A
//! task given a new namespace, or none (the host's), gets no sockets. Without output FIFOs and
//! with [`LOG_PATH`](crate::logfile::LOG_PATH), stdout and stderr go to that CRI-format log file
//! (a skiff agent's pods). A component exporting `wasi:http/incoming-handler` is a function:
//! served per request on the ports and with the limits of the bundle's function annotations
//! ([`crate::function`]), in the joined namespace whatever the socket grants say.
//! Must not: run Linux processes (that is `linux`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use oci_spec::runtime::LinuxNamespaceType;
use oci_spec::runtime::Spec;
use skiff_runtime::bundle::{ARGV0, BIND_PORTS, OUTBOUND, RESOLV_CONF};
use skiff_runtime::linux::mounts::resolve_in_root;
use skiff_runtime::wasm::{
    EngineOptions, Instance, Network, Preopen, Prepared, Resolver, Stdio, Streams, WasmEngine,
    WasmSpec,
};

use crate::Locked;
use crate::cgroup::Joined;
use crate::logfile::{LogFile, log_file};
use crate::shim::annotation;

/// Where compiled modules are cached unless `SKIFF_SHIM_CACHE_DIR` says otherwise.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/skiff/shim-cache";

/// The engine options of a shim process: the runtime's node sizing (1100 instance slots), since
/// one shim may serve every Wasm pod of a node (a node group). The slots are address space
/// reserved at the engine's build, not memory: an idle shim's anonymous PSS is within about
/// 0.5 MiB of what 32 slots cost, and each idle task adds its own (about 90 KiB).
pub fn engine_options() -> EngineOptions {
    let cache = std::env::var_os("SKIFF_SHIM_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR));
    EngineOptions::new(cache)
}

/// The module a bundle runs, if it is a Wasm bundle: its `process.args[0]` names a `.wasm` file,
/// or a path to a file that starts with Wasm's magic bytes (resolved inside the rootfs, never
/// outside it).
pub fn module_of(spec: &Spec, rootfs: &Path) -> Option<Result<PathBuf, String>> {
    let arg0 = spec.process().as_ref()?.args().as_ref()?.first()?.clone();
    let cwd = spec
        .process()
        .as_ref()
        .map(|p| p.cwd().clone())
        .unwrap_or_else(|| PathBuf::from("/"));
    let resolved = resolve_in_root(rootfs, &cwd.join(&arg0));
    if !arg0.ends_with(".wasm") {
        let path = resolved.ok().filter(|_| arg0.contains('/'))?;
        return is_wasm_file(&path).then_some(Ok(path));
    }
    Some(
        resolved
            .map_err(|e| format!("process.args[0] {arg0:?}: {e}"))
            .and_then(|p| match std::fs::metadata(&p) {
                Ok(m) if m.is_file() => Ok(p),
                Ok(_) => Err(format!("process.args[0] {arg0:?}: not a regular file")),
                Err(e) => Err(format!("process.args[0] {arg0:?}: not in the image: {e}")),
            }),
    )
}

/// Whether `path` is a regular file that begins with `\0asm`. Nothing else is opened: a hostile
/// image's FIFO or device node at the entrypoint must neither block Create nor be touched.
fn is_wasm_file(path: &Path) -> bool {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    if !std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut magic = [0u8; 4];
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
        .open(path)
        .and_then(|mut f| {
            if !f.metadata()?.is_file() {
                return Ok(false);
            }
            f.read_exact(&mut magic).map(|()| &magic == b"\0asm")
        })
        .unwrap_or(false)
}

/// The executor spec for a Wasm bundle.
pub fn wasm_spec(
    id: &str,
    spec: &Spec,
    rootfs: &Path,
    module: PathBuf,
    streams: Streams,
) -> Result<WasmSpec, String> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| "process: missing".to_string())?;
    let args = process.args().clone().unwrap_or_default();
    let env = process
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let read_only_root = spec
        .root()
        .as_ref()
        .is_some_and(|r| r.readonly() == Some(true));
    let mut preopens = vec![Preopen {
        host: rootfs.to_path_buf(),
        guest: "/".to_string(),
        read_only: read_only_root,
        beneath: None,
    }];
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let options = m.options().clone().unwrap_or_default();
        let is_bind = m.typ().as_deref() == Some("bind")
            || options.iter().any(|o| o == "bind" || o == "rbind");
        let Some(source) = m.source().as_ref().filter(|_| is_bind) else {
            continue;
        };
        if !source.is_dir() {
            // Files (resolv.conf, hosts) mean nothing to a guest without sockets.
            continue;
        }
        // An absolute path, or (a Wasm task's own habit, as wasmtime's --dir HOST::GUEST) a
        // relative preopen name such as "." or "data".
        let guest = m.destination().display().to_string();
        if let Err(why) = skiff_runtime::wasm::check_guest_path(&guest) {
            return Err(format!("mounts[{i}].destination {guest:?}: {why}"));
        }
        preopens.push(Preopen {
            host: source.clone(),
            guest,
            read_only: options.iter().any(|o| o == "ro"),
            // A subPath's volume: the executor opens the source from it by descriptor.
            beneath: options
                .iter()
                .find_map(|o| o.strip_prefix(skiff_runtime::linux::mounts::BENEATH_OPTION))
                .map(PathBuf::from),
        });
    }
    let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    let memory_limit = resources
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .filter(|l| *l > 0)
        .map(|l| l as u64);
    let cpu_limit_millicores = resources.and_then(|r| r.cpu().as_ref()).and_then(|c| {
        let quota = c.quota().filter(|q| *q > 0)?;
        let period = c.period().filter(|p| *p > 0).unwrap_or(100_000);
        Some(((quota as u64).saturating_mul(1000) / period).clamp(1, u32::MAX as u64) as u32)
    });
    let cwd = process.cwd().display().to_string();
    let (network, netns) = network_of(spec)?;
    let (stdio, log_path, log_max_bytes) = stdio_of(spec, streams)?;
    Ok(WasmSpec {
        id: id.to_string(),
        module_path: module,
        argv0: annotation(spec, ARGV0)
            .map(str::to_string)
            .or_else(|| args.first().cloned())
            .unwrap_or_default(),
        args: args.into_iter().skip(1).collect(),
        env,
        cwd: Some(cwd).filter(|c| !c.is_empty()),
        preopens,
        memory_limit,
        cpu_limit_millicores,
        network,
        netns,
        stdio,
        log_path,
        log_max_bytes,
        http: crate::function::options(spec)?,
        ..WasmSpec::default()
    })
}

/// The guest's streams: the FIFOs Create gave, else the CRI log file the annotations name
/// ([`log_file`]), else none.
fn stdio_of(spec: &Spec, streams: Streams) -> Result<(Stdio, PathBuf, u64), String> {
    let has_output = streams.stdout.is_some() || streams.stderr.is_some();
    match log_file(spec, has_output)? {
        Some(LogFile { path, max_bytes }) => Ok((Stdio::Log, path, max_bytes)),
        None => Ok((Stdio::Streams(Arc::new(streams)), PathBuf::new(), 0)),
    }
}

/// A task's sockets: in the network namespace `linux.namespaces` names by path, any port and
/// outbound unless [`BIND_PORTS`] and [`OUTBOUND`] narrow them; none otherwise. A new namespace
/// would hold only a loopback, and the shim's own namespace is the host's, which no spec grants
/// a guest here.
fn network_of(spec: &Spec) -> Result<(Network, Option<PathBuf>), String> {
    let joined = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|ns| {
            ns.iter()
                .find(|n| n.typ() == LinuxNamespaceType::Network)
                .and_then(|n| n.path().clone())
        });
    let Some(path) = joined else {
        return Ok((Network::default(), None));
    };
    let ports = match annotation(spec, BIND_PORTS) {
        None => None,
        Some(list) => Some(
            list.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                        format!("annotation {BIND_PORTS} {list:?}: {p:?} is not a port")
                    })
                })
                .collect::<Result<Vec<u16>, String>>()?,
        ),
    };
    let outbound = match annotation(spec, OUTBOUND) {
        None | Some("true") => true,
        Some("false") => false,
        Some(v) => {
            return Err(format!(
                "annotation {OUTBOUND} {v:?}: must be \"true\" or \"false\""
            ));
        }
    };
    Ok((
        Network {
            bind_any_port: ports.is_none(),
            allow_bind_ports: ports.unwrap_or_default(),
            allow_outbound: outbound,
            resolver: annotation(spec, RESOLV_CONF).map(Resolver::parse),
        },
        Some(path),
    ))
}

/// A Wasm task of this shim.
pub struct WasmTask {
    pub engine: WasmEngine,
    pub prepared: Prepared,
    /// The guest's memory limit (`linux.resources.memory.limit`), for Stats.
    pub memory_limit: Option<u64>,
    /// Taken by Start.
    pub spec: Mutex<Option<WasmSpec>>,
    pub instance: Mutex<Option<Instance>>,
    /// The cgroup this process joined for the task, if it did.
    pub cgroup: Mutex<Option<Joined>>,
    /// 128 + the signal of the first kill, the exit code containerd is told.
    pub killed_with: Mutex<Option<u32>>,
}

impl WasmTask {
    pub fn instance(&self) -> Option<Instance> {
        self.instance.locked().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_runtime::bundle::{LOG_MAX_BYTES, LOG_PATH};

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    fn rootfs_with(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let p = dir.path().join(f.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"\0asm\x01\0\0\0").unwrap();
        }
        dir
    }

    fn base(args: &[&str]) -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": args, "cwd": "/", "user": {"uid": 0, "gid": 0},
                        "env": ["A=1", "PATH=/bin", "bad"]},
        })
    }

    #[test]
    fn only_a_wasm_entrypoint_makes_a_wasm_bundle() {
        let root = rootfs_with(&["/app/hello.wasm"]);
        assert!(module_of(&spec(base(&["/bin/sh"])), root.path()).is_none());
        assert!(module_of(&spec(base(&["hello.wasm-not"])), root.path()).is_none());
        // A FIFO at the entrypoint is not opened (it would block Create).
        nix::unistd::mkfifo(
            &root.path().join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        assert!(module_of(&spec(base(&["/fifo"])), root.path()).is_none());
        // No extension, but Wasm's magic: a Wasm bundle too.
        std::fs::copy(
            root.path().join("app/hello.wasm"),
            root.path().join("app/hello"),
        )
        .unwrap();
        let found = module_of(&spec(base(&["/app/hello"])), root.path());
        assert_eq!(found.unwrap().unwrap(), root.path().join("app/hello"));
        let found = module_of(&spec(base(&["/app/hello.wasm", "x"])), root.path());
        assert_eq!(found.unwrap().unwrap(), root.path().join("app/hello.wasm"));
        let e = module_of(&spec(base(&["/missing.wasm"])), root.path())
            .unwrap()
            .unwrap_err();
        assert!(e.contains("process.args[0] \"/missing.wasm\""), "{e}");
    }

    #[test]
    fn a_symlinked_entrypoint_stays_inside_the_rootfs() {
        let root = rootfs_with(&[]);
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("host.wasm"), b"\0asm").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("host.wasm"),
            root.path().join("evil.wasm"),
        )
        .unwrap();
        let e = module_of(&spec(base(&["/evil.wasm"])), root.path())
            .unwrap()
            .unwrap_err();
        assert!(e.contains("not in the image"), "{e}");
    }

    #[test]
    fn the_spec_grants_what_the_bundle_says() {
        let root = rootfs_with(&["/hello.wasm"]);
        let data = tempfile::tempdir().unwrap();
        let mut json = base(&["/hello.wasm", "echo", "hi"]);
        json["root"]["readonly"] = true.into();
        json["mounts"] = serde_json::json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": data.path(), "options": ["rbind", "ro"]},
        ]);
        json["linux"] = serde_json::json!({"resources": {
            "memory": {"limit": 67108864}, "cpu": {"quota": 50000, "period": 100000}}});
        let s = spec(json);
        let module = module_of(&s, root.path()).unwrap().unwrap();
        let w = wasm_spec("t1", &s, root.path(), module, Streams::default()).unwrap();
        assert_eq!(w.argv0, "/hello.wasm");
        assert_eq!(w.args, ["echo", "hi"]);
        assert_eq!(
            w.env,
            [("A".into(), "1".into()), ("PATH".into(), "/bin".into())]
        );
        assert_eq!(w.memory_limit, Some(64 << 20));
        assert_eq!(w.cpu_limit_millicores, Some(500));
        assert!(w.network.is_none());
        assert_eq!(w.preopens.len(), 2);
        assert!(w.preopens[0].read_only && w.preopens[0].guest == "/");
        assert!(w.preopens[1].read_only && w.preopens[1].guest == "/data");
        // FIFOs (or none) and no log annotation: the streams.
        assert!(matches!(w.stdio, Stdio::Streams(_)));
    }

    #[test]
    fn annotations_narrow_the_sockets_of_a_joined_namespace() {
        let root = rootfs_with(&["/hello.wasm"]);
        let with = |annotations: serde_json::Value, netns: bool| {
            let mut json = base(&["/hello.wasm"]);
            json["annotations"] = annotations;
            if netns {
                json["linux"] = serde_json::json!({"namespaces": [
                    {"type": "network", "path": "/run/netns/p1"}]});
            }
            let s = spec(json);
            let module = module_of(&s, root.path()).unwrap().unwrap();
            wasm_spec("t1", &s, root.path(), module, Streams::default())
        };
        let w = with(serde_json::json!({}), true).unwrap();
        assert!(w.network.bind_any_port && w.network.allow_outbound);
        assert_eq!(w.netns.as_deref(), Some(Path::new("/run/netns/p1")));
        let w = with(
            serde_json::json!({BIND_PORTS: "8080, 9090", OUTBOUND: "false"}),
            true,
        )
        .unwrap();
        assert_eq!(w.network.allow_bind_ports, [8080, 9090]);
        assert!(!w.network.bind_any_port && !w.network.allow_outbound);
        let w = with(serde_json::json!({BIND_PORTS: ""}), true).unwrap();
        assert!(w.network.allow_bind_ports.is_empty() && !w.network.bind_any_port);
        // Without a namespace the annotations grant nothing.
        let w = with(serde_json::json!({BIND_PORTS: "8080"}), false).unwrap();
        assert!(w.network.is_none());
        let e = with(serde_json::json!({BIND_PORTS: "80,http"}), true).unwrap_err();
        assert!(e.contains("\"http\" is not a port"), "{e}");
        let e = with(serde_json::json!({OUTBOUND: "yes"}), true).unwrap_err();
        assert!(e.contains(OUTBOUND), "{e}");
        // A pod's resolver settings reach the guest's name lookups.
        assert!(w_resolver(&with(serde_json::json!({}), true).unwrap()).is_none());
        let w = with(
            serde_json::json!({RESOLV_CONF: "search ns.svc.cluster.local\nnameserver 10.244.1.1\noptions ndots:5\n"}),
            true,
        )
        .unwrap();
        let r = w_resolver(&w).expect("resolver settings");
        assert_eq!(
            r.nameservers,
            ["10.244.1.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!((r.searches.len(), r.ndots), (1, 5));
    }

    fn w_resolver(w: &WasmSpec) -> Option<&Resolver> {
        w.network.resolver.as_ref()
    }

    #[test]
    fn a_log_path_is_used_only_without_output_fifos() {
        let root = rootfs_with(&["/hello.wasm"]);
        let mut json = base(&["/hello.wasm"]);
        json["annotations"] =
            serde_json::json!({LOG_PATH: "/var/log/pods/p/c/0.log", LOG_MAX_BYTES: "4096"});
        let s = spec(json);
        let module = module_of(&s, root.path()).unwrap().unwrap();
        let w = wasm_spec("t1", &s, root.path(), module.clone(), Streams::default()).unwrap();
        assert!(matches!(w.stdio, Stdio::Log));
        assert_eq!(w.log_path, Path::new("/var/log/pods/p/c/0.log"));
        assert_eq!(w.log_max_bytes, 4096);
        let fifo = std::fs::File::open("/dev/null").unwrap();
        let streams = Streams {
            stdout: Some(fifo),
            ..Streams::default()
        };
        let w = wasm_spec("t1", &s, root.path(), module, streams).unwrap();
        assert!(matches!(w.stdio, Stdio::Streams(_)));
    }
}
