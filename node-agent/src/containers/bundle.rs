//! One spec builder: a [`ContainerSpec`] becomes the OCI bundle `containerd-shim-skiff-v1` runs,
//! the same bundle a plain containerd would hand it (`ctr run --runtime io.containerd.skiff.v1
//! --config BUNDLE/config.json` runs it as the agent does).
//!
//! - A Wasm container's root is a directory on disk holding only a copy of its module, shared
//!   read-only by every task of that module (`DATA_DIR/roots/<digest>/`); its grants are the
//!   bundle's mounts, limits, network namespace and the skiff annotations (the form below).
//! - A Linux container gets skiff's default spec (capabilities, seccomp, masked paths: see
//!   [`skiff_runtime::linux::default_spec`]), its cgroup `/skiff/<task id>`, and its rootfs as
//!   an overlay of the image's layers that the shim mounts at Create (the writable layer in
//!   [`LinuxProcess::scratch`], on disk).
//!
//! # The Wasm bundle form
//!
//! What the agent writes, and what the shim honours (the same under a plain containerd):
//!
//! | in `config.json` | the guest gets |
//! | --- | --- |
//! | `process.args[0]` ending in `.wasm` (or a file starting with `\0asm`), inside the rootfs | a Wasm task: that module (core module or component) |
//! | `process.args[1..]`, `process.env`, `process.cwd` | its arguments (argv\[0\] is the module path), exactly this environment, its initial directory |
//! | `root.path`, `root.readonly` | that directory preopened at `/` |
//! | `mounts[]` of type `bind` whose source is a directory; option `ro` | each preopened at its destination (absolute, or a relative preopen name such as `.`), read-only with `ro` |
//! | `linux.resources.memory.limit` | a cap on linear memory (a refused `memory.grow`, then an OOM event); Stats' `memory.usage_limit` |
//! | `linux.resources.cpu.quota` / `period` | a cap on CPU time |
//! | `linux.cgroupsPath` | a cgroup the shim process joins when the shim is the task's own or a CRI pod's (never a node group's): a hard cap on the process, with headroom |
//! | a `network` entry of `linux.namespaces` with a `path` | sockets, made in that namespace: any port, outbound allowed |
//! | annotation [`BIND_PORTS`] `"8080,9090"` (with a namespace) | only these ports may be bound (`""`: none) |
//! | annotation [`OUTBOUND`] `"false"` (with a namespace) | no outbound connections, no name lookups |
//! | annotation [`RESOLV_CONF`] `resolv.conf` text (with a namespace) | name lookups (`wasi:sockets/ip-name-lookup`) with these nameservers, search domains and `ndots`, from the namespace |
//! | annotation [`ARGV0`] `NAME` | NAME as its argv\[0\] instead of the module's path |
//! | annotation [`GROUP`] `NAME` (or CRI's `io.kubernetes.cri.sandbox-id`) | the task shares the shim (and its wasmtime engine) of that group |
//! | annotation [`WASI_INTERFACES`] `"config,keyvalue,logging"` | those host interfaces of `wit/` may be imported (an ungranted one fails the start, named) |
//! | annotation [`WASI_CONFIG_FILE`] `wasi-config.json` (a file of the bundle, mode 0600) | `wasi:config/store` answers with its JSON object's keys and values |
//! | annotation [`WASI_KEYVALUE_SOCKET`] `PATH` | `wasi:keyvalue` through the agent's socket for the pod (absent: `open` fails, saying so) |
//! | annotations [`FUNCTION_PORTS`] `"8080"`, [`FUNCTION_TIMEOUT_MS`], [`FUNCTION_MAX_BODY_BYTES`], [`FUNCTION_CONCURRENCY`], [`FUNCTION_ALLOWED_OUTBOUND_HOSTS`], [`FUNCTION_REQUIRED`] | if the component exports `wasi:http/incoming-handler`: served per request on those ports (in the namespace) with those limits and outbound hosts; required: a command fails to start (always written by the agent: the container's TCP ports, empty for none, and the pod's `skiff.dev/function-*` settings) |
//! | annotation [`LOG_PATH`] `FILE` (Create without stdio) | stdout and stderr as CRI log records in FILE ([`LOG_MAX_BYTES`] rotates it); a Linux task's init too |
//!
//! Stats of a Wasm task are its own, from wasmtime's accounting (cgroups v2 `Metrics`: linear
//! memories and tables, its guest's CPU time), whichever shim it shares. Without a namespace
//! path the guest has no sockets at all. Create's stdio paths, when given, are FIFOs (as
//! containerd makes them) and take precedence over the log path.
//!
//! Must not: put the bundle anywhere but the directory it is given (on tmpfs: it holds the
//! container's environment, Secret values included).

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use skiff_runtime::bundle::{
    ARGV0, BIND_PORTS, FUNCTION_ALLOWED_OUTBOUND_HOSTS, FUNCTION_CONCURRENCY,
    FUNCTION_MAX_BODY_BYTES, FUNCTION_PORTS, FUNCTION_REQUIRED, FUNCTION_TIMEOUT_MS, GROUP,
    LOG_MAX_BYTES, LOG_PATH, OUTBOUND, RESOLV_CONF, WASI_CONFIG_FILE, WASI_INTERFACES,
    WASI_KEYVALUE_SOCKET,
};
use skiff_runtime::linux::default_spec::{Bind, ContainerConfig, spec_json};
use skiff_runtime::wasm::{HostGrants, HttpOptions};

use super::spec::{ContainerSpec, LinuxProcess, WasmProcess, Workload};
use crate::shim::{RootfsMount, ShimError};

/// Writes the bundle of `spec` (task `task_id`) into `dir`; returns the rootfs mounts Create
/// must send (none for a Wasm task).
pub fn write(
    spec: &ContainerSpec,
    task_id: &str,
    dir: &Path,
    roots: &Path,
    module_digest: &str,
) -> Result<Vec<RootfsMount>, ShimError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| ShimError::io(dir, e))?;
    match &spec.workload {
        Workload::Wasm(wasm) => {
            let (root, module) = module_root(roots, &wasm.module, module_digest)?;
            let config =
                wasm_config(spec, wasm, &root, &module).map_err(|reason| ShimError::Bundle {
                    path: dir.to_path_buf(),
                    reason,
                })?;
            if wasm.host.config {
                write_config_values(dir, &wasm.host)?;
            }
            let path = dir.join("config.json");
            std::fs::write(&path, config.to_string()).map_err(|e| ShimError::io(&path, e))?;
            Ok(Vec::new())
        }
        Workload::Linux(linux) => linux_bundle(spec, linux, task_id, dir),
    }
}

/// The file of `wasi:config` values ([`WASI_CONFIG_FILE`]) in the bundle directory: mode 0600,
/// written before `config.json` names it.
const CONFIG_VALUES_FILE: &str = "wasi-config.json";

fn write_config_values(dir: &Path, host: &HostGrants) -> Result<(), ShimError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let values: BTreeMap<&str, &str> = (host.config_values.0.iter())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let path = dir.join(CONFIG_VALUES_FILE);
    let text = serde_json::to_vec(&values).map_err(|e| ShimError::Bundle {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let _ = std::fs::remove_file(&path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(&text))
        .map_err(|e| ShimError::io(&path, e))
}

/// `roots/<digest>/<name>.wasm`, a copy of the module: the guest's read-only `/`, holding
/// nothing but its module. Returns the root and the module's path in it.
fn module_root(roots: &Path, module: &Path, digest: &str) -> Result<(PathBuf, String), ShimError> {
    let hex = digest.rsplit(':').next().unwrap_or(digest);
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ShimError::invalid(
            format!("module {}", module.display()),
            format!("digest {digest:?} is not sha256:<hex>"),
        ));
    }
    let name = module
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.ends_with(".wasm") && !n.starts_with('.'))
        .unwrap_or("module.wasm")
        .to_string();
    let dir = roots.join(hex);
    let file = dir.join(&name);
    if !file.exists() {
        /// Tells apart the copies that concurrent starts of one agent make.
        static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        std::fs::create_dir_all(&dir).map_err(|e| ShimError::io(&dir, e))?;
        // Placed under a name of its own and renamed: a concurrent start (of this agent or a
        // restarted one) never sees half a copy, nor removes this one's.
        let copy = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.{}.{copy}", std::process::id()));
        // A copy, never a hard link: nothing done through a task's root can reach the
        // node's (or the user's) own file.
        if let Err(e) = std::fs::copy(module, &tmp) {
            let _ = std::fs::remove_file(&tmp);
            return Err(ShimError::io(module, e));
        }
        std::fs::rename(&tmp, &file).map_err(|e| ShimError::io(&file, e))?;
    }
    Ok((dir, format!("/{name}")))
}

/// The annotations of every bundle: the agent's labels, the shim group, the CRI log file.
fn annotations(spec: &ContainerSpec) -> BTreeMap<String, String> {
    let mut annotations = spec.labels.to_annotations();
    annotations.insert(GROUP.into(), spec.group.name());
    annotations.insert(LOG_PATH.into(), spec.log_path.display().to_string());
    annotations.insert(LOG_MAX_BYTES.into(), spec.log_max_bytes.to_string());
    // The shim's create and start join the trace of the pod sync writing the bundle.
    if let Some(traceparent) = skiff_telemetry::current_traceparent() {
        annotations.insert(skiff_telemetry::POD_ANNOTATION.into(), traceparent);
    }
    annotations
}

/// The spec of a Wasm container whose module is at `module` in the read-only root `root`, in
/// the form above.
fn wasm_config(
    spec: &ContainerSpec,
    wasm: &WasmProcess,
    root: &Path,
    module: &str,
) -> Result<Value, String> {
    if let Some((k, _)) = spec
        .env
        .iter()
        .find(|(k, _)| k.is_empty() || k.contains('='))
    {
        return Err(format!("env {k:?}: not a variable name"));
    }
    let mut mounts = Vec::new();
    for (i, m) in spec.mounts.iter().enumerate() {
        if let Err(why) = skiff_runtime::wasm::check_guest_path(&m.guest) {
            return Err(format!("mounts[{i}].guest {:?}: {why}", m.guest));
        }
        let mode = if m.read_only { "ro" } else { "rw" };
        let mut options = vec!["rbind".to_string(), mode.to_string()];
        if let Some(dir) = &m.beneath {
            // A subPath: the shim opens it from its volume by descriptor, no symlink followed.
            options.push(format!(
                "{}{}",
                skiff_runtime::linux::mounts::BENEATH_OPTION,
                dir.display()
            ));
        }
        mounts.push(
            json!({"destination": m.guest, "type": "bind", "source": m.host, "options": options}),
        );
    }
    let mut resources = json!({});
    if let Some(limit) = spec.memory_limit_bytes {
        let limit = i64::try_from(limit).map_err(|_| format!("memory limit {limit}: too large"))?;
        resources["memory"] = json!({ "limit": limit });
    }
    if let Some(m) = spec.cpu_limit_millicores {
        // As for a Linux container: quota = limit × period / 1000.
        resources["cpu"] = json!({"quota": (i64::from(m) * 100).max(1000), "period": 100_000});
    }
    let namespaces: Vec<Value> = (spec.netns.iter())
        .map(|path| json!({"type": "network", "path": path}))
        .collect();
    let mut annotations = annotations(spec);
    annotations.insert(ARGV0.into(), wasm.argv0.clone());
    let host = &wasm.host;
    let granted: Vec<&str> = [
        (host.config, "config"),
        (host.keyvalue, "keyvalue"),
        (host.logging, "logging"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if !granted.is_empty() {
        annotations.insert(WASI_INTERFACES.into(), granted.join(","));
    }
    if host.config {
        annotations.insert(WASI_CONFIG_FILE.into(), CONFIG_VALUES_FILE.into());
    }
    if let Some(socket) = &host.keyvalue_socket {
        annotations.insert(WASI_KEYVALUE_SOCKET.into(), socket.display().to_string());
    }
    function_annotations(&wasm.http, &mut annotations);
    if spec.netns.is_some() {
        let ports: Vec<String> = wasm.bind_ports.iter().map(u16::to_string).collect();
        annotations.insert(BIND_PORTS.into(), ports.join(","));
        annotations.insert(OUTBOUND.into(), wasm.outbound.to_string());
        if let Some(text) = &wasm.resolv_conf {
            annotations.insert(RESOLV_CONF.into(), text.clone());
        }
    }
    let args: Vec<&str> = std::iter::once(module)
        .chain(wasm.args.iter().map(String::as_str))
        .collect();
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": 0, "gid": 0}, "args": args, "env": env, "cwd": cwd},
        "root": {"path": root, "readonly": true},
        "mounts": mounts,
        "linux": {"resources": resources, "namespaces": namespaces},
        "annotations": annotations,
    }))
}

/// How the shim serves the container if its component is a function: always written, so that
/// the shim's defaults for a plain containerd (port 8080) never apply to a skiff pod.
fn function_annotations(http: &HttpOptions, annotations: &mut BTreeMap<String, String>) {
    let ports: Vec<String> = http.ports.iter().map(u16::to_string).collect();
    annotations.insert(FUNCTION_PORTS.into(), ports.join(","));
    annotations.insert(
        FUNCTION_TIMEOUT_MS.into(),
        http.timeout.as_millis().to_string(),
    );
    annotations.insert(
        FUNCTION_MAX_BODY_BYTES.into(),
        http.max_body_bytes.to_string(),
    );
    annotations.insert(FUNCTION_CONCURRENCY.into(), http.concurrency.to_string());
    if !http.allowed_outbound_hosts.is_empty() {
        annotations.insert(
            FUNCTION_ALLOWED_OUTBOUND_HOSTS.into(),
            http.allowed_outbound_hosts.join(","),
        );
    }
    if http.required {
        annotations.insert(FUNCTION_REQUIRED.into(), "true".into());
    }
}

fn linux_bundle(
    spec: &ContainerSpec,
    linux: &LinuxProcess,
    task_id: &str,
    dir: &Path,
) -> Result<Vec<RootfsMount>, ShimError> {
    let fail = |reason: String| ShimError::Bundle {
        path: dir.to_path_buf(),
        reason,
    };
    if linux.layers.is_empty() {
        return Err(fail("the image has no layers".into()));
    }
    let Some(netns) = &spec.netns else {
        return Err(fail(
            "a Linux container needs its pod's network namespace".into(),
        ));
    };
    let mut c = ContainerConfig::new(linux.args.clone());
    c.env = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !spec.cwd.is_empty() {
        c.cwd = spec.cwd.clone();
    }
    if !linux.hostname.is_empty() {
        c.hostname = linux.hostname.clone();
    }
    c.uid = linux.uid;
    c.gid = linux.gid;
    c.additional_gids = linux.additional_gids.clone();
    c.readonly_rootfs = linux.readonly_rootfs;
    c.capabilities = linux.capabilities.clone();
    c.memory_limit = spec.memory_limit_bytes.and_then(|m| i64::try_from(m).ok());
    // Kubernetes: quota = limit × period / 1000; shares = request × 1024 / 1000 (min 2).
    c.cpu_quota = spec
        .cpu_limit_millicores
        .map(|m| (i64::from(m) * 100).max(1000));
    c.cpu_shares = linux
        .cpu_request_millicores
        .map(|m| (u64::from(m) * 1024 / 1000).max(2));
    c.pids_limit = linux.pids_limit;
    c.cgroup = Some(format!("/skiff/{task_id}"));
    c.netns = Some(netns.display().to_string());
    c.binds = spec
        .mounts
        .iter()
        .map(|m| Bind {
            source: m.host.display().to_string(),
            destination: m.guest.clone(),
            read_only: m.read_only,
            beneath: m.beneath.as_ref().map(|b| b.display().to_string()),
        })
        .collect();
    let mut config = spec_json(&c);
    config["annotations"] = json!(annotations(spec));
    let path = dir.join("config.json");
    let bytes = serde_json::to_vec_pretty(&config).map_err(|e| fail(e.to_string()))?;
    std::fs::write(&path, bytes).map_err(|e| ShimError::io(&path, e))?;

    let upper = linux.scratch.join("upper");
    let work = linux.scratch.join("work");
    for d in [&upper, &work] {
        std::fs::create_dir_all(d).map_err(|e| ShimError::io(d, e))?;
    }
    let lower: Vec<String> = linux.layers.iter().rev().map(|p| escape(p)).collect();
    Ok(vec![RootfsMount {
        typ: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            "index=off".into(),
            format!("workdir={}", escape(&work)),
            format!("upperdir={}", escape(&upper)),
            format!("lowerdir={}", lower.join(":")),
        ],
    }])
}

/// overlayfs option syntax: `,` `:` and `\` in a path are escaped with `\`.
fn escape(p: &Path) -> String {
    let s = p.display().to_string();
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Removes a task's bundle (after its task is deleted: its rootfs is unmounted by then).
pub fn remove(dir: &Path) {
    let rootfs = dir.join("rootfs");
    match nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            // Never walk a tree that may still be a container's rootfs.
            tracing::warn!(path = %rootfs.display(), error = %e, "unmounting; the bundle stays");
            return;
        }
    }
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %dir.display(), error = %e, "removing a bundle");
    }
}

/// Where the writable layer of a Linux attempt lives.
pub fn scratch_dir(data_dir: &Path, pod_uid: &str, task_id: &str) -> PathBuf {
    data_dir
        .join("pods")
        .join(pod_uid)
        .join("rootfs")
        .join(task_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::instance::Labels;
    use crate::containers::spec::{Mount, ShimGroup};

    fn spec(workload: Workload) -> ContainerSpec {
        ContainerSpec {
            labels: Labels {
                pod_uid: "u1".into(),
                pod: "ns/p".into(),
                container: "c".into(),
                attempt: 0,
                image_id: "sha256:00".into(),
            },
            group: ShimGroup::Pod("u1".into()),
            workload,
            env: vec![("A".into(), "1".into())],
            cwd: String::new(),
            mounts: vec![Mount {
                host: "/tmp".into(),
                guest: "/data".into(),
                read_only: true,
                beneath: None,
            }],
            memory_limit_bytes: Some(64 << 20),
            cpu_limit_millicores: Some(500),
            netns: Some("/run/netns/x".into()),
            log_path: "/var/log/c/0.log".into(),
            log_max_bytes: 1024,
        }
    }

    #[test]
    fn a_linux_bundle_has_the_default_spec_the_grants_and_an_overlay_rootfs() {
        let tmp = tempfile::tempdir().unwrap();
        let linux = LinuxProcess {
            layers: vec!["/l/bottom".into(), "/l/top".into()],
            scratch: tmp.path().join("scratch"),
            args: vec!["/bin/sh".into()],
            uid: 1000,
            gid: 1000,
            additional_gids: vec![3000],
            hostname: "p".into(),
            cpu_request_millicores: Some(100),
            pids_limit: Some(64),
            readonly_rootfs: false,
            capabilities: None,
        };
        let dir = tmp.path().join("bundle");
        let mounts = write(
            &spec(Workload::Linux(linux)),
            "u1_c_0",
            &dir,
            tmp.path(),
            "",
        )
        .unwrap();
        assert_eq!(mounts.len(), 1);
        assert!(
            mounts[0]
                .options
                .contains(&"lowerdir=/l/top:/l/bottom".to_string())
        );
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["process"]["env"][0], "A=1");
        assert_eq!(config["linux"]["cgroupsPath"], "/skiff/u1_c_0");
        assert_eq!(config["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert!(config["linux"]["seccomp"].is_object());
        assert_eq!(config["annotations"][GROUP], "pod-u1");
        assert_eq!(config["annotations"]["skiff.dev/container"], "c");
        assert!(
            config["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["destination"] == "/data")
        );
    }

    #[test]
    fn a_wasm_root_holds_only_the_module_shared_by_digest() {
        let tmp = tempfile::tempdir().unwrap();
        let module = tmp.path().join("hello.wasm");
        std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
        let wasm = WasmProcess {
            module: module.clone(),
            argv0: "c".into(),
            args: vec!["x".into()],
            bind_ports: vec![8080],
            outbound: false,
            resolv_conf: None,
            host: HostGrants::default(),
            http: skiff_runtime::wasm::HttpOptions::default(),
        };
        let roots = tmp.path().join("roots");
        for attempt in 0..2 {
            let mut s = spec(Workload::Wasm(wasm.clone()));
            s.labels.attempt = attempt;
            let dir = tmp.path().join(format!("b{attempt}"));
            let mounts = write(&s, "t", &dir, &roots, "sha256:abcd").unwrap();
            assert!(mounts.is_empty());
            let config: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
            assert_eq!(config["process"]["args"][0], "/hello.wasm");
            assert_eq!(config["root"]["readonly"], true);
            assert_eq!(config["annotations"][BIND_PORTS], "8080");
        }
        let entries: Vec<_> = std::fs::read_dir(roots.join("abcd")).unwrap().collect();
        assert_eq!(entries.len(), 1);
        assert!(
            write(
                &spec(Workload::Wasm(wasm)),
                "t",
                &tmp.path().join("b"),
                &roots,
                "x/../y"
            )
            .is_err()
        );
    }

    #[test]
    fn concurrent_starts_of_one_module_each_find_its_whole_copy() {
        let tmp = tempfile::tempdir().unwrap();
        let module = tmp.path().join("probe.wasm");
        let bytes: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
        std::fs::write(&module, &bytes).unwrap();
        let roots = tmp.path().join("roots");
        for round in 0..5 {
            let digest = format!("sha256:{round:04x}");
            std::thread::scope(|scope| {
                let starts: Vec<_> = (0..8)
                    .map(|_| scope.spawn(|| module_root(&roots, &module, &digest)))
                    .collect();
                for start in starts {
                    let (root, name) = start.join().unwrap().unwrap();
                    let copy = std::fs::read(root.join(name.trim_start_matches('/'))).unwrap();
                    assert!(copy == bytes, "a start saw half a copy");
                }
            });
            let left: Vec<_> = std::fs::read_dir(roots.join(format!("{round:04x}")))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(left, ["probe.wasm"], "no temporary copy is left behind");
        }
    }

    #[test]
    fn a_wasm_bundle_is_a_spec_with_the_grants_and_bad_grants_are_refused_by_name() {
        use oci_spec::runtime::{LinuxNamespaceType, Spec};
        let tmp = tempfile::tempdir().unwrap();
        let module = tmp.path().join("hello.wasm");
        std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
        let wasm = WasmProcess {
            module,
            argv0: "c".into(),
            args: vec!["serve".into()],
            bind_ports: vec![8080, 9090],
            outbound: false,
            resolv_conf: Some("nameserver 10.244.1.1\n".into()),
            host: HostGrants::default(),
            http: HttpOptions {
                ports: vec![8080, 9090],
                timeout: std::time::Duration::from_millis(2500),
                concurrency: 3,
                allowed_outbound_hosts: vec!["http://a:1".into(), "https://*.b".into()],
                required: true,
                ..HttpOptions::default()
            },
        };
        let roots = tmp.path().join("roots");
        let dir = tmp.path().join("b");
        let mut s = spec(Workload::Wasm(wasm));
        s.group = ShimGroup::NodeWasm;
        write(&s, "t", &dir, &roots, "sha256:abcd").unwrap();
        // Read as the shim reads it.
        let spec = Spec::load(dir.join("config.json")).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/hello.wasm", "serve"]);
        assert_eq!(p.env().as_ref().unwrap(), &["A=1"]);
        assert_eq!(p.cwd(), Path::new("/"));
        let root = spec.root().as_ref().unwrap();
        assert_eq!(root.path(), &roots.join("abcd"));
        assert_eq!(root.readonly(), Some(true));
        let m = &spec.mounts().as_ref().unwrap()[0];
        assert_eq!(m.destination(), Path::new("/data"));
        assert_eq!(m.typ().as_deref(), Some("bind"));
        assert!(m.options().as_ref().unwrap().contains(&"ro".to_string()));
        let linux = spec.linux().as_ref().unwrap();
        let r = linux.resources().as_ref().unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(50_000));
        assert_eq!(r.cpu().as_ref().unwrap().period(), Some(100_000));
        let ns = linux.namespaces().as_ref().unwrap();
        assert_eq!(ns.len(), 1);
        assert_eq!(ns[0].typ(), LinuxNamespaceType::Network);
        assert_eq!(ns[0].path().as_deref(), Some(Path::new("/run/netns/x")));
        let a = spec.annotations().as_ref().unwrap();
        assert_eq!(a[BIND_PORTS], "8080,9090");
        assert_eq!(a[OUTBOUND], "false");
        assert_eq!(a[RESOLV_CONF], "nameserver 10.244.1.1\n");
        assert_eq!(a[ARGV0], "c");
        assert_eq!(a[GROUP], "wasm");
        assert_eq!(a[LOG_PATH], "/var/log/c/0.log");
        assert_eq!(a[LOG_MAX_BYTES], "1024");
        assert_eq!(a["skiff.dev/pod-uid"], "u1");
        assert_eq!(a[FUNCTION_PORTS], "8080,9090");
        assert_eq!(a[FUNCTION_TIMEOUT_MS], "2500");
        assert_eq!(a[FUNCTION_MAX_BODY_BYTES], (10u64 << 20).to_string());
        assert_eq!(a[FUNCTION_CONCURRENCY], "3");
        assert_eq!(a[FUNCTION_ALLOWED_OUTBOUND_HOSTS], "http://a:1,https://*.b");
        assert_eq!(a[FUNCTION_REQUIRED], "true");

        // No network namespace: no socket annotations (the shim grants nothing).
        s.netns = None;
        write(&s, "t", &dir, &roots, "sha256:abcd").unwrap();
        let spec = Spec::load(dir.join("config.json")).unwrap();
        assert!(!spec.annotations().as_ref().unwrap().contains_key(OUTBOUND));
        assert!(
            !spec
                .annotations()
                .as_ref()
                .unwrap()
                .contains_key(RESOLV_CONF)
        );
        assert!(
            spec.linux()
                .as_ref()
                .unwrap()
                .namespaces()
                .as_ref()
                .unwrap()
                .is_empty()
        );

        // A relative preopen name (wasmtime's --dir HOST::data) is a Wasm guest's own habit;
        // one with '..' is refused by name.
        s.mounts[0].guest = "data".into();
        write(&s, "t", &dir, &roots, "sha256:abcd").unwrap();
        s.mounts[0].guest = "../data".into();
        let e = write(&s, "t", &dir, &roots, "sha256:abcd")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mounts[0].guest \"../data\": has a '..' component"),
            "{e}"
        );
        s.mounts.clear();
        s.env = vec![("A=B".into(), "1".into())];
        let e = write(&s, "t", &dir, &roots, "sha256:abcd")
            .unwrap_err()
            .to_string();
        assert!(e.contains("env \"A=B\""), "{e}");
    }

    #[test]
    fn host_grants_become_annotations_and_config_values_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let module = tmp.path().join("host.wasm");
        std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
        let host = HostGrants {
            config: true,
            keyvalue: true,
            logging: false,
            config_values: skiff_runtime::wasm::ConfigValues(vec![
                ("greeting".into(), "hello".into()),
                ("password".into(), "s3cret".into()),
            ]),
            keyvalue_socket: Some("/var/lib/skiff/keyvalue/u1.sock".into()),
        };
        let wasm = WasmProcess {
            module,
            argv0: "c".into(),
            args: vec![],
            bind_ports: vec![],
            outbound: false,
            resolv_conf: None,
            host,
            http: skiff_runtime::wasm::HttpOptions::default(),
        };
        let dir = tmp.path().join("b");
        write(
            &spec(Workload::Wasm(wasm)),
            "t",
            &dir,
            &tmp.path().join("roots"),
            "sha256:ab",
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        assert!(
            !text.contains("s3cret"),
            "config values stay out of config.json"
        );
        let config: serde_json::Value = serde_json::from_str(&text).unwrap();
        let annotations = &config["annotations"];
        assert_eq!(annotations[WASI_INTERFACES], "config,keyvalue");
        assert_eq!(annotations[WASI_CONFIG_FILE], CONFIG_VALUES_FILE);
        assert_eq!(
            annotations[WASI_KEYVALUE_SOCKET],
            "/var/lib/skiff/keyvalue/u1.sock"
        );
        let file = dir.join(CONFIG_VALUES_FILE);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let values: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(
            values,
            serde_json::json!({"greeting": "hello", "password": "s3cret"})
        );
    }
}
