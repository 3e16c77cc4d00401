//! The runtime spec skiff gives a container by default, as containerd's CRI plugin gives a
//! Kubernetes pod: the container runtime default capabilities, no_new_privs, the `RuntimeDefault`
//! seccomp profile, Kubernetes' masked and read-only `/proc` and `/sys` paths, a minimal `/dev`,
//! read-only sysfs, private pid/ipc/uts/mount/network namespaces.
//!
//! Must not: grant anything a Kubernetes pod without a securityContext would not get.

use oci_spec::runtime::Spec;
use serde_json::{Value, json};

use super::seccomp;

/// Capabilities of a container that asks for none (containerd's and Docker's default set).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Kubernetes' default masked paths.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Kubernetes' default read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// What varies per container; everything else is the default.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub hostname: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups of the process (`user.additionalGids`).
    pub additional_gids: Vec<u32>,
    /// `rootfs` relative to the bundle, or absolute.
    pub rootfs: String,
    pub readonly_rootfs: bool,
    /// Capabilities: `None` the default set; `Some(list)` exactly these.
    pub capabilities: Option<Vec<String>>,
    pub no_new_privileges: bool,
    /// Memory limit in bytes, CPU quota in µs per 100 ms period, pids limit.
    pub memory_limit: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub pids_limit: Option<i64>,
    /// `linux.cgroupsPath`.
    pub cgroup: Option<String>,
    /// A network namespace to join (a pod's), else a new one.
    pub netns: Option<String>,
    /// Host directories or files bound into the container, after the default mounts.
    pub binds: Vec<Bind>,
}

/// A bind mount of a host path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: String,
    pub destination: String,
    pub read_only: bool,
    /// The source must be reached from this directory without following a symlink, checked
    /// when it is mounted (see [`super::mounts::BENEATH_OPTION`]).
    pub beneath: Option<String>,
}

impl ContainerConfig {
    pub fn new(args: Vec<String>) -> Self {
        Self {
            args,
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cwd: "/".into(),
            hostname: "skiff".into(),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            rootfs: "rootfs".into(),
            readonly_rootfs: false,
            capabilities: None,
            no_new_privileges: true,
            memory_limit: None,
            cpu_quota: None,
            cpu_shares: None,
            pids_limit: None,
            cgroup: None,
            netns: None,
            binds: Vec::new(),
        }
    }
}

/// The spec as JSON (what `config.json` holds).
pub fn spec_json(c: &ContainerConfig) -> Value {
    let caps: Vec<String> = c
        .capabilities
        .clone()
        .unwrap_or_else(|| DEFAULT_CAPS.iter().map(|s| s.to_string()).collect());
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    namespaces.push(match &c.netns {
        Some(path) => json!({"type": "network", "path": path}),
        None => json!({"type": "network"}),
    });
    let mut resources = json!({});
    if let Some(m) = c.memory_limit {
        resources["memory"] = json!({"limit": m});
    }
    if c.cpu_quota.is_some() || c.cpu_shares.is_some() {
        let mut cpu = json!({"period": 100_000});
        if let Some(q) = c.cpu_quota {
            cpu["quota"] = json!(q);
        }
        if let Some(s) = c.cpu_shares {
            cpu["shares"] = json!(s);
        }
        resources["cpu"] = cpu;
    }
    if let Some(p) = c.pids_limit {
        resources["pids"] = json!({"limit": p});
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
        "seccomp": match &c.capabilities {
            Some(caps) => seccomp::runtime_default(caps),
            None => seccomp::runtime_default(DEFAULT_CAPS),
        },
    });
    if let Some(cg) = &c.cgroup {
        linux["cgroupsPath"] = json!(cg);
    }
    let mut mounts = json!([
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    ]);
    if let Some(list) = mounts.as_array_mut() {
        for b in &c.binds {
            let mut options = vec!["rbind".to_string(), "nosuid".into(), "nodev".into()];
            if b.read_only {
                options.push("ro".into());
            }
            if let Some(root) = &b.beneath {
                options.push(format!("{}{root}", super::mounts::BENEATH_OPTION));
            }
            list.push(json!({
                "destination": b.destination, "type": "bind", "source": b.source, "options": options,
            }));
        }
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": c.uid, "gid": c.gid, "additionalGids": c.additional_gids},
            "args": c.args,
            "env": c.env,
            "cwd": c.cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "noNewPrivileges": c.no_new_privileges,
        },
        "root": {"path": c.rootfs, "readonly": c.readonly_rootfs},
        "hostname": c.hostname,
        "mounts": mounts,
        "linux": linux,
    })
}

/// The spec as the typed OCI struct.
pub fn spec(c: &ContainerConfig) -> Spec {
    serde_json::from_value(spec_json(c)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_spec_is_a_valid_oci_spec() {
        let value = spec_json(&ContainerConfig::new(vec!["/bin/true".into()]));
        let spec: Spec = serde_json::from_value(value).expect("a valid OCI spec");
        let process = spec.process().clone().expect("process");
        assert_eq!(process.no_new_privileges(), Some(true));
        let caps = process.capabilities().clone().expect("caps");
        assert_eq!(
            caps.bounding().as_ref().map(|b| b.len()),
            Some(DEFAULT_CAPS.len())
        );
        assert!(
            spec.linux()
                .as_ref()
                .and_then(|l| l.seccomp().clone())
                .is_some()
        );
    }
}
