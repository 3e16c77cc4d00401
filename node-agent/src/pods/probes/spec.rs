//! A probe as the prober runs it: the API's `Probe` with Kubernetes' defaults filled in
//! (initialDelaySeconds 0, periodSeconds 10, timeoutSeconds 1, successThreshold 1,
//! failureThreshold 3), its port resolved (a number, or the name of one of the container's
//! ports) and its host defaulted to the pod's address.
//!
//! Must not: do I/O.

use std::time::Duration;

use skiff_api::v1::{Container, Probe};
use skiff_api::{IntOrString, IntOrStringValue};

/// Which probe of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    /// As kubelet's events name it: `Liveness probe failed: ...`.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }

    /// As kubelet's `Killing` event names it: `failed liveness probe`.
    pub fn lower(self) -> &'static str {
        match self {
            Kind::Liveness => "liveness",
            Kind::Readiness => "readiness",
            Kind::Startup => "startup",
        }
    }

    /// The container's probe of this kind.
    pub fn of(self, container: &Container) -> Option<&Probe> {
        match self {
            Kind::Liveness => container.liveness_probe.as_ref(),
            Kind::Readiness => container.readiness_probe.as_ref(),
            Kind::Startup => container.startup_probe.as_ref(),
        }
    }
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `GET scheme://host:port/path`; 200-399 is success.
    Http {
        https: bool,
        host: String,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    /// A TCP connection that opens is success.
    Tcp { host: String, port: u16 },
    /// grpc.health.v1 `Health/Check` answering SERVING is success.
    Grpc {
        host: String,
        port: u16,
        service: String,
    },
    /// A command run in the container that exits 0 is success.
    Exec { command: Vec<String> },
    /// A probe that cannot run as given (a port the container does not declare): every run fails
    /// with this message, as kubelet's does.
    Invalid(String),
}

/// A probe with its defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    /// `terminationGracePeriodSeconds` of the probe, which wins over the pod's when it kills.
    pub grace_seconds: Option<u32>,
}

/// `value` seconds, or `default` when unset (0: every field with a default has a minimum of 1).
fn seconds(value: i32, default: u64) -> Duration {
    match u64::try_from(value) {
        Ok(v) if v > 0 => Duration::from_secs(v),
        _ => Duration::from_secs(default),
    }
}

fn count(value: i32, default: u32) -> u32 {
    match u32::try_from(value) {
        Ok(v) if v > 0 => v,
        _ => default,
    }
}

/// A probe's `(successThreshold, failureThreshold)`, defaults applied.
pub fn thresholds(probe: &Probe) -> (u32, u32) {
    (
        count(probe.success_threshold, 1),
        count(probe.failure_threshold, 3),
    )
}

impl ProbeSpec {
    /// `probe` of `container`, aimed at `pod_ip` unless it names a host.
    pub fn resolve(probe: &Probe, container: &Container, pod_ip: &str) -> Self {
        let host = |given: &str| {
            if given.is_empty() {
                pod_ip.to_string()
            } else {
                given.to_string()
            }
        };
        let action = if let Some(h) = &probe.http_get {
            match port(h.port.as_ref(), container) {
                Ok(port) => Action::Http {
                    https: h.scheme == "HTTPS",
                    host: host(&h.host),
                    port,
                    path: if h.path.is_empty() {
                        "/".into()
                    } else {
                        h.path.clone()
                    },
                    headers: h
                        .http_headers
                        .iter()
                        .map(|h| (h.name.clone(), h.value.clone()))
                        .collect(),
                },
                Err(e) => Action::Invalid(e),
            }
        } else if let Some(t) = &probe.tcp_socket {
            match port(t.port.as_ref(), container) {
                Ok(port) => Action::Tcp {
                    host: host(&t.host),
                    port,
                },
                Err(e) => Action::Invalid(e),
            }
        } else if let Some(g) = &probe.grpc {
            match u16::try_from(g.port) {
                Ok(port) if port > 0 => Action::Grpc {
                    host: host(""),
                    port,
                    service: g.service.clone().unwrap_or_default(),
                },
                _ => Action::Invalid(format!("invalid port {}", g.port)),
            }
        } else if let Some(e) = &probe.exec {
            Action::Exec {
                command: e.command.clone(),
            }
        } else {
            Action::Invalid("the probe has no handler".into())
        };
        Self {
            action,
            initial_delay: Duration::from_secs(
                u64::try_from(probe.initial_delay_seconds).unwrap_or(0),
            ),
            period: seconds(probe.period_seconds, 10),
            timeout: seconds(probe.timeout_seconds, 1),
            success_threshold: thresholds(probe).0,
            failure_threshold: thresholds(probe).1,
            grace_seconds: probe
                .termination_grace_period_seconds
                .and_then(|g| u32::try_from(g).ok()),
        }
    }
}

/// A probe's port: a number, or the name of one of the container's ports.
fn port(port: Option<&IntOrString>, container: &Container) -> Result<u16, String> {
    let number = match port.and_then(|p| p.value.as_ref()) {
        Some(IntOrStringValue::Int(n)) => *n,
        Some(IntOrStringValue::Str(name)) => container
            .ports
            .iter()
            .find(|p| p.name == *name)
            .map(|p| p.container_port)
            .ok_or_else(|| {
                format!(
                    "unable to find port {name:?} in container {:?}",
                    container.name
                )
            })?,
        None => return Err("the probe has no port".into()),
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port {number}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{ContainerPort, GrpcAction, HttpGetAction, HttpHeader, TcpSocketAction};

    fn container() -> Container {
        Container {
            name: "web".into(),
            ports: vec![ContainerPort {
                name: "http".into(),
                container_port: 8080,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn kubernetes_defaults_fill_what_is_unset() {
        let probe = Probe {
            tcp_socket: Some(TcpSocketAction {
                port: Some(IntOrString::int(80)),
                host: String::new(),
            }),
            ..Default::default()
        };
        let spec = ProbeSpec::resolve(&probe, &container(), "10.244.0.7");
        assert_eq!(
            spec,
            ProbeSpec {
                action: Action::Tcp {
                    host: "10.244.0.7".into(),
                    port: 80
                },
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
                grace_seconds: None,
            }
        );
    }

    #[test]
    fn named_ports_hosts_paths_and_headers_resolve() {
        let probe = Probe {
            http_get: Some(HttpGetAction {
                port: Some(IntOrString::string("http")),
                scheme: "HTTPS".into(),
                http_headers: vec![HttpHeader {
                    name: "X-Probe".into(),
                    value: "1".into(),
                }],
                ..Default::default()
            }),
            period_seconds: 2,
            failure_threshold: 1,
            termination_grace_period_seconds: Some(4),
            ..Default::default()
        };
        let spec = ProbeSpec::resolve(&probe, &container(), "10.244.0.7");
        assert_eq!(
            spec.action,
            Action::Http {
                https: true,
                host: "10.244.0.7".into(),
                port: 8080,
                path: "/".into(),
                headers: vec![("X-Probe".into(), "1".into())],
            }
        );
        assert_eq!(
            (spec.period, spec.failure_threshold, spec.grace_seconds),
            (Duration::from_secs(2), 1, Some(4))
        );
        let missing = Probe {
            tcp_socket: Some(TcpSocketAction {
                port: Some(IntOrString::string("metrics")),
                host: "127.0.0.1".into(),
            }),
            ..Default::default()
        };
        assert!(matches!(
            ProbeSpec::resolve(&missing, &container(), "10.244.0.7").action,
            Action::Invalid(m) if m.contains("\"metrics\"")
        ));
        let grpc = Probe {
            grpc: Some(GrpcAction {
                port: 9090,
                service: Some("db".into()),
            }),
            ..Default::default()
        };
        assert_eq!(
            ProbeSpec::resolve(&grpc, &container(), "10.244.0.7").action,
            Action::Grpc {
                host: "10.244.0.7".into(),
                port: 9090,
                service: "db".into()
            }
        );
    }
}
