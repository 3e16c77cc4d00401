//! Conversions between the runtime host's protobuf messages and the executor's own types.
//!
//! Owns both directions (the server decodes specs and encodes instances; the client does the
//! reverse), with field paths in every decoding error. Must not: do anything but convert.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::container::ContainerSpec;
use super::proto;
use super::registry::{InstanceEvent, InstanceInfo};
use crate::linux::default_spec::Bind;
use crate::wasm::{ExitReason, ExitStatus, ModuleKind, Network, Origin, Preopen, Stdio, WasmSpec};

/// A message field that does not decode: `spec.network.allow_bind_ports[0]: 70000 is not a port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

fn field(field: impl Into<String>, problem: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        problem: problem.into(),
    }
}

pub(crate) fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

fn from_unix_nanos(n: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(n).unwrap_or(0))
}

pub(crate) fn instance_kind_to_proto(kind: Option<ModuleKind>) -> proto::ModuleKind {
    kind.map_or(proto::ModuleKind::Container, kind_to_proto)
}

pub(crate) fn kind_to_proto(kind: ModuleKind) -> proto::ModuleKind {
    match kind {
        ModuleKind::Module => proto::ModuleKind::Module,
        ModuleKind::Component => proto::ModuleKind::Component,
    }
}

pub(crate) fn kind_from_proto(kind: proto::ModuleKind) -> Option<ModuleKind> {
    match kind {
        proto::ModuleKind::Module => Some(ModuleKind::Module),
        proto::ModuleKind::Component => Some(ModuleKind::Component),
        proto::ModuleKind::Unspecified | proto::ModuleKind::Container => None,
    }
}

pub(crate) fn origin_to_proto(origin: Origin) -> proto::Origin {
    match origin {
        Origin::Compiled => proto::Origin::Compiled,
        Origin::DiskCache => proto::Origin::DiskCache,
        Origin::Memory => proto::Origin::Memory,
    }
}

pub(crate) fn origin_from_proto(origin: proto::Origin) -> Option<Origin> {
    match origin {
        proto::Origin::Compiled => Some(Origin::Compiled),
        proto::Origin::DiskCache => Some(Origin::DiskCache),
        proto::Origin::Memory => Some(Origin::Memory),
        proto::Origin::Unspecified => None,
    }
}

/// Decodes and checks a Start request's container spec; returns it with its labels.
pub(crate) fn container_from_proto(
    p: proto::ContainerSpec,
) -> Result<(ContainerSpec, BTreeMap<String, String>), FieldError> {
    let required = |name: &str, empty: bool| {
        if empty {
            Err(field(format!("container.{name}"), "required"))
        } else {
            Ok(())
        }
    };
    required("id", p.id.is_empty())?;
    required("layers", p.layers.is_empty())?;
    required("args", p.args.is_empty())?;
    required("log_path", p.log_path.is_empty())?;
    for (i, l) in p.layers.iter().enumerate() {
        if !l.starts_with('/') {
            return Err(field(
                format!("container.layers[{i}]"),
                "must be an absolute path",
            ));
        }
    }
    let mut binds = Vec::with_capacity(p.mounts.len());
    for (i, m) in p.mounts.into_iter().enumerate() {
        if !m.host_path.starts_with('/') {
            return Err(field(
                format!("container.mounts[{i}].host_path"),
                "must be an absolute path",
            ));
        }
        if !m.container_path.starts_with('/') {
            return Err(field(
                format!("container.mounts[{i}].container_path"),
                "must be an absolute path",
            ));
        }
        if !m.beneath.is_empty() && !Path::new(&m.host_path).starts_with(&m.beneath) {
            return Err(field(
                format!("container.mounts[{i}].beneath"),
                "must be a directory that holds host_path",
            ));
        }
        binds.push(Bind {
            source: m.host_path,
            destination: m.container_path,
            read_only: m.read_only,
            beneath: (!m.beneath.is_empty()).then_some(m.beneath),
        });
    }
    if p.cpu_limit_millicores == Some(0) {
        return Err(field("container.cpu_limit_millicores", "must be positive"));
    }
    let labels = p.labels.into_iter().collect();
    Ok((
        ContainerSpec {
            id: p.id,
            layers: p.layers.into_iter().map(PathBuf::from).collect(),
            args: p.args,
            env: p.env,
            cwd: p.cwd,
            uid: p.uid,
            gid: p.gid,
            hostname: p.hostname,
            netns: Some(p.netns_path)
                .filter(|n| !n.is_empty())
                .map(PathBuf::from),
            binds,
            memory_limit_bytes: p.memory_limit_bytes,
            cpu_limit_millicores: p.cpu_limit_millicores,
            cpu_request_millicores: p.cpu_request_millicores,
            pids_limit: p.pids_limit,
            readonly_rootfs: p.readonly_rootfs,
            capabilities: p.capabilities.map(|c| c.names),
            log_path: PathBuf::from(p.log_path),
            log_max_bytes: if p.log_max_bytes == 0 {
                10 << 20
            } else {
                p.log_max_bytes
            },
        },
        labels,
    ))
}

/// Decodes and checks a Start request's spec.
pub(crate) fn spec_from_proto(p: proto::WasmSpec) -> Result<WasmSpec, FieldError> {
    if p.id.is_empty() {
        return Err(field("spec.id", "required"));
    }
    if p.module_path.is_empty() {
        return Err(field("spec.module_path", "required"));
    }
    if p.log_path.is_empty() {
        return Err(field("spec.log_path", "required"));
    }
    let mut preopens = Vec::with_capacity(p.preopens.len());
    for (i, o) in p.preopens.into_iter().enumerate() {
        if o.host_path.is_empty() {
            return Err(field(format!("spec.preopens[{i}].host_path"), "required"));
        }
        if o.guest_path.is_empty() {
            return Err(field(format!("spec.preopens[{i}].guest_path"), "required"));
        }
        preopens.push(Preopen {
            host: PathBuf::from(o.host_path),
            guest: o.guest_path,
            read_only: o.read_only,
        });
    }
    let net = p.network.unwrap_or_default();
    let mut allow_bind_ports = Vec::with_capacity(net.allow_bind_ports.len());
    for (i, port) in net.allow_bind_ports.into_iter().enumerate() {
        let port = u16::try_from(port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| {
                field(
                    format!("spec.network.allow_bind_ports[{i}]"),
                    format!("{port} is not a port"),
                )
            })?;
        allow_bind_ports.push(port);
    }
    if p.cpu_limit_millicores == Some(0) {
        return Err(field("spec.cpu_limit_millicores", "must be positive"));
    }
    let netns = Some(PathBuf::from(p.netns_path)).filter(|p| !p.as_os_str().is_empty());
    if netns.as_ref().is_some_and(|p| !p.is_absolute()) {
        return Err(field("spec.netns_path", "must be an absolute path"));
    }
    Ok(WasmSpec {
        id: p.id,
        module_path: PathBuf::from(p.module_path),
        argv0: p.argv0,
        args: p.args,
        env: p.env.into_iter().map(|e| (e.name, e.value)).collect(),
        cwd: Some(p.cwd).filter(|c| !c.is_empty()),
        preopens,
        memory_limit: p.memory_limit_bytes,
        cpu_limit_millicores: p.cpu_limit_millicores,
        network: Network {
            allow_bind_ports,
            allow_outbound: net.allow_outbound,
            bind_any_port: net.bind_any_port,
        },
        netns,
        log_path: PathBuf::from(p.log_path),
        log_max_bytes: p.log_max_bytes,
        stdio: Stdio::Log,
        labels: p.labels.into_iter().collect(),
    })
}

/// Encodes a spec for a Start request.
pub(crate) fn spec_to_proto(s: &WasmSpec) -> proto::WasmSpec {
    proto::WasmSpec {
        id: s.id.clone(),
        module_path: s.module_path.display().to_string(),
        argv0: s.argv0.clone(),
        args: s.args.clone(),
        env: s
            .env
            .iter()
            .map(|(name, value)| proto::EnvVar {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        cwd: s.cwd.clone().unwrap_or_default(),
        preopens: s
            .preopens
            .iter()
            .map(|p| proto::Preopen {
                host_path: p.host.display().to_string(),
                guest_path: p.guest.clone(),
                read_only: p.read_only,
            })
            .collect(),
        memory_limit_bytes: s.memory_limit,
        cpu_limit_millicores: s.cpu_limit_millicores,
        network: Some(proto::Network {
            allow_bind_ports: s
                .network
                .allow_bind_ports
                .iter()
                .map(|&p| p.into())
                .collect(),
            allow_outbound: s.network.allow_outbound,
            bind_any_port: s.network.bind_any_port,
        }),
        netns_path: s
            .netns
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        log_path: s.log_path.display().to_string(),
        log_max_bytes: s.log_max_bytes,
        labels: s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

pub(crate) fn instance_to_proto(i: &InstanceInfo) -> proto::Instance {
    let mut p = proto::Instance {
        id: i.id.clone(),
        labels: i
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        started_at_unix_nanos: unix_nanos(i.started_at),
        digest: i.digest.clone(),
        ..Default::default()
    };
    p.set_kind(instance_kind_to_proto(i.kind));
    match &i.exit {
        None => p.set_state(proto::State::Running),
        Some(exit) => {
            p.set_state(proto::State::Exited);
            p.exit_code = exit.code;
            p.reason = exit.reason.as_str().to_string();
            p.message = exit.message.clone();
            p.finished_at_unix_nanos = unix_nanos(exit.finished_at);
            p.oom_killed = exit.oom_killed;
        }
    }
    p
}

pub(crate) fn instance_from_proto(p: proto::Instance) -> Result<InstanceInfo, FieldError> {
    let kind = match p.kind() {
        proto::ModuleKind::Container => None,
        k => Some(kind_from_proto(k).ok_or_else(|| field("instance.kind", "unspecified"))?),
    };
    let exit = match p.state() {
        proto::State::Running => None,
        proto::State::Exited => Some(ExitStatus {
            code: p.exit_code,
            reason: ExitReason::parse(&p.reason)
                .ok_or_else(|| field("instance.reason", format!("unknown {:?}", p.reason)))?,
            message: p.message.clone(),
            oom_killed: p.oom_killed,
            finished_at: from_unix_nanos(p.finished_at_unix_nanos),
        }),
        proto::State::Unspecified => return Err(field("instance.state", "unspecified")),
    };
    Ok(InstanceInfo {
        id: p.id,
        labels: p.labels.into_iter().collect(),
        digest: p.digest,
        kind,
        started_at: from_unix_nanos(p.started_at_unix_nanos),
        exit,
    })
}

pub(crate) fn event_to_proto(e: &InstanceEvent) -> proto::WatchEvent {
    proto::WatchEvent {
        instance: Some(instance_to_proto(&e.instance)),
        removed: e.removed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_round_trip() {
        let spec = WasmSpec {
            id: "a".into(),
            module_path: "/m.wasm".into(),
            argv0: "m".into(),
            args: vec!["x".into()],
            env: vec![("B".into(), "2".into()), ("A".into(), "1".into())],
            cwd: Some("/data".into()),
            preopens: vec![Preopen {
                host: "/tmp".into(),
                guest: "/data".into(),
                read_only: true,
            }],
            memory_limit: Some(1 << 20),
            cpu_limit_millicores: Some(250),
            network: Network {
                allow_bind_ports: vec![8080],
                allow_outbound: true,
                bind_any_port: true,
            },
            netns: Some("/run/netns/pod".into()),
            log_path: "/l/0.log".into(),
            log_max_bytes: 1000,
            stdio: Stdio::Log,
            labels: [("k".to_string(), "v".to_string())].into(),
        };
        assert_eq!(spec_from_proto(spec_to_proto(&spec)).unwrap(), spec);
    }

    #[test]
    fn bad_specs_name_the_field() {
        let ok = || proto::WasmSpec {
            id: "a".into(),
            module_path: "/m.wasm".into(),
            log_path: "/l".into(),
            ..Default::default()
        };
        assert!(spec_from_proto(ok()).is_ok());
        let e = spec_from_proto(proto::WasmSpec {
            id: String::new(),
            ..ok()
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "spec.id: required");
        let e = spec_from_proto(proto::WasmSpec {
            network: Some(proto::Network {
                allow_bind_ports: vec![80, 70000],
                ..Default::default()
            }),
            ..ok()
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.network.allow_bind_ports[1]: 70000 is not a port"
        );
        let e = spec_from_proto(proto::WasmSpec {
            netns_path: "run/netns/pod".into(),
            ..ok()
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "spec.netns_path: must be an absolute path");
    }

    #[test]
    fn instances_round_trip() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_001);
        let mut info = InstanceInfo {
            id: "a".into(),
            labels: [("k".to_string(), "v".to_string())].into(),
            digest: "sha256:00".into(),
            kind: Some(ModuleKind::Component),
            started_at: t,
            exit: None,
        };
        assert_eq!(instance_from_proto(instance_to_proto(&info)).unwrap(), info);
        info.exit = Some(ExitStatus {
            code: 137,
            reason: ExitReason::OomKilled,
            message: "m".into(),
            oom_killed: true,
            finished_at: t + Duration::from_secs(1),
        });
        let p = instance_to_proto(&info);
        assert_eq!(p.state(), proto::State::Exited);
        assert_eq!(p.reason, "OOMKilled");
        assert_eq!(instance_from_proto(p).unwrap(), info);
    }
}
