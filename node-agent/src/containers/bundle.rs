//! One spec builder: a [`ContainerSpec`] becomes the OCI bundle `containerd-shim-skiff-v1` runs,
//! the same bundle a plain containerd would hand it (the form is in [`crate::shim`]).
//!
//! - A Wasm container's root is a directory on disk holding only a copy of its module, shared
//!   read-only by every task of that module (`DATA_DIR/roots/<digest>/`); its grants are the bundle's mounts,
//!   limits, network namespace and the skiff annotations.
//! - A Linux container gets skiff's default spec (capabilities, seccomp, masked paths: see
//!   [`skiff_runtime::linux::default_spec`]), its cgroup `/skiff/<task id>`, and its rootfs as
//!   an overlay of the image's layers that the shim mounts at Create (the writable layer in
//!   [`LinuxProcess::scratch`], on disk).
//!
//! Must not: put the bundle anywhere but the directory it is given (on tmpfs: it holds the
//! container's environment, Secret values included).

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde_json::json;
use skiff_runtime::linux::default_spec::{Bind, ContainerConfig, spec_json};

use super::spec::{ContainerSpec, LinuxProcess, WasmProcess, Workload};
use crate::shim::{self, RootfsMount, ShimError, WasmBundle, WasmMount, WasmNetwork, WasmRoot};

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
            let root = module_root(roots, &wasm.module, module_digest)?;
            wasm_bundle(spec, wasm, root).write(dir)?;
            Ok(Vec::new())
        }
        Workload::Linux(linux) => linux_bundle(spec, linux, task_id, dir),
    }
}

/// `roots/<digest>/<name>.wasm`, a copy of the module: the guest's read-only `/`, holding
/// nothing but its module.
fn module_root(roots: &Path, module: &Path, digest: &str) -> Result<WasmRoot, ShimError> {
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
        std::fs::create_dir_all(&dir).map_err(|e| ShimError::io(&dir, e))?;
        // Placed under a temporary name and renamed: a concurrent start never sees half a copy.
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        // A copy, never a hard link: nothing done through a task's root can reach the
        // node's (or the user's) own file.
        std::fs::copy(module, &tmp).map_err(|e| ShimError::io(module, e))?;
        std::fs::rename(&tmp, &file).map_err(|e| ShimError::io(&file, e))?;
    }
    Ok(WasmRoot::Image {
        rootfs: dir,
        module: format!("/{name}"),
        read_only: true,
    })
}

fn wasm_bundle(spec: &ContainerSpec, wasm: &WasmProcess, root: WasmRoot) -> WasmBundle {
    let mut b = WasmBundle::new(root);
    b.group = Some(spec.group.name());
    b.argv0 = Some(wasm.argv0.clone());
    b.args = wasm.args.clone();
    b.env = spec.env.clone();
    b.cwd = Some(spec.cwd.clone()).filter(|c| !c.is_empty());
    b.mounts = spec
        .mounts
        .iter()
        .map(|m| WasmMount {
            host: m.host.clone(),
            guest: m.guest.clone(),
            read_only: m.read_only,
        })
        .collect();
    b.memory_limit_bytes = spec.memory_limit_bytes;
    b.cpu_limit_millicores = spec.cpu_limit_millicores;
    b.network = WasmNetwork {
        netns: spec.netns.clone(),
        bind_ports: Some(wasm.bind_ports.clone()),
        outbound: wasm.outbound,
    };
    b.log_path = Some(spec.log_path.clone());
    b.log_max_bytes = Some(spec.log_max_bytes);
    b.labels = spec.labels.to_annotations();
    b
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
    let mut annotations = spec.labels.to_annotations();
    annotations.insert(shim::bundle::GROUP.into(), spec.group.name());
    annotations.insert(
        shim::bundle::LOG_PATH.into(),
        spec.log_path.display().to_string(),
    );
    annotations.insert(
        shim::bundle::LOG_MAX_BYTES.into(),
        spec.log_max_bytes.to_string(),
    );
    config["annotations"] = json!(annotations);
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
        assert_eq!(config["annotations"][shim::bundle::GROUP], "pod-u1");
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
            assert_eq!(config["annotations"][shim::bundle::BIND_PORTS], "8080");
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
}
