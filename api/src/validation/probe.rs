//! Probe rules: liveness, readiness and startup probes of a container, as Kubernetes checks them
//! (one handler of `exec`, `httpGet`, `tcpSocket` or `grpc`; ports; thresholds), plus what a
//! Wasm container can be probed with.
//!
//! Skiff is stricter than Kubernetes in two places, both about probes that could never pass:
//! a named probe port must be one the container declares (kubelet would only fail the probe at
//! run time), and a Wasm container is refused what it cannot answer — `exec` (a Wasm guest has
//! no processes or shell to run a command in) and, in a pod with no Linux container, a network
//! probe on a port no container of the pod declares (a Wasm guest may listen only on its
//! declared ports).
//!
//! Must not: look at anything outside the pod (no Services, no nodes).

use std::collections::BTreeSet;

use super::names::is_dns1123_label;
use super::{FieldErrors, check_one_of, check_port};
use crate::v1::{Container, ObjectMeta, Pod, PodSpec, Probe};
use crate::workload::{WorkloadKind, container_kind, pod_kinds};
use crate::{IntOrString, IntOrStringValue};

/// The three probe fields of a container, with their kinds.
pub fn probes(c: &Container) -> [(&'static str, Option<&Probe>); 3] {
    [
        ("livenessProbe", c.liveness_probe.as_ref()),
        ("readinessProbe", c.readiness_probe.as_ref()),
        ("startupProbe", c.startup_probe.as_ref()),
    ]
}

/// Checks a container's probes; `init` for init containers, which may have none.
pub fn validate_container_probes(c: &Container, path: &str, init: bool, errors: &mut FieldErrors) {
    for (field, probe) in probes(c) {
        let Some(p) = probe else { continue };
        let ppath = format!("{path}.{field}");
        if init {
            errors.add(ppath, "may not be set for init containers");
            continue;
        }
        validate_probe(p, c, field, &ppath, errors);
    }
}

fn validate_probe(p: &Probe, c: &Container, field: &str, path: &str, errors: &mut FieldErrors) {
    let handlers = [
        p.exec.is_some(),
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
        p.grpc.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if handlers != 1 {
        errors.add(
            path.to_string(),
            "exactly one of exec, httpGet, tcpSocket or grpc is required",
        );
    }
    if let Some(h) = &p.http_get {
        check_probe_port(h.port.as_ref(), c, &format!("{path}.httpGet.port"), errors);
        check_one_of(
            &h.scheme,
            &["HTTP", "HTTPS"],
            &format!("{path}.httpGet.scheme"),
            errors,
        );
        if !h.path.is_empty() && !h.path.starts_with('/') {
            errors.add(format!("{path}.httpGet.path"), "must start with '/'");
        }
        for (i, header) in h.http_headers.iter().enumerate() {
            if !is_header_name(&header.name) {
                errors.add(
                    format!("{path}.httpGet.httpHeaders[{i}].name"),
                    format!("{:?} is not a valid HTTP header name", header.name),
                );
            }
            if header.value.contains(['\r', '\n']) {
                errors.add(
                    format!("{path}.httpGet.httpHeaders[{i}].value"),
                    "must not contain a line break",
                );
            }
        }
    }
    if let Some(t) = &p.tcp_socket {
        check_probe_port(
            t.port.as_ref(),
            c,
            &format!("{path}.tcpSocket.port"),
            errors,
        );
    }
    if let Some(g) = &p.grpc {
        check_port(g.port, &format!("{path}.grpc.port"), errors);
    }
    if let Some(e) = &p.exec
        && e.command.is_empty()
    {
        errors.add(format!("{path}.exec.command"), "required");
    }
    for (name, v) in [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        if v < 0 {
            errors.add(format!("{path}.{name}"), "must not be negative");
        }
    }
    if field != "readinessProbe" && p.success_threshold > 1 {
        errors.add(
            format!("{path}.successThreshold"),
            format!("must be 1 for a {field}"),
        );
    }
    if let Some(grace) = p.termination_grace_period_seconds {
        if field == "readinessProbe" {
            errors.add(
                format!("{path}.terminationGracePeriodSeconds"),
                "must not be set for a readinessProbe (it never kills the container)",
            );
        } else if grace < 1 {
            errors.add(
                format!("{path}.terminationGracePeriodSeconds"),
                "must be greater than 0",
            );
        }
    }
}

/// A port given as a number (1-65535) or as the name of one of the container's ports.
pub(crate) fn check_probe_port(
    port: Option<&IntOrString>,
    c: &Container,
    path: &str,
    errors: &mut FieldErrors,
) {
    match port.and_then(|p| p.value.as_ref()) {
        None => errors.add(path, "required"),
        Some(IntOrStringValue::Int(n)) => check_port(*n, path, errors),
        Some(IntOrStringValue::Str(s)) => {
            if !is_dns1123_label(s) || s.len() > 15 {
                errors.add(path, format!("{s:?} is not a valid port name"));
            } else if !c.ports.iter().any(|p| p.name == *s) {
                errors.add(
                    path,
                    format!("container {:?} declares no port named {s:?}", c.name),
                );
            }
        }
    }
}

/// An HTTP header field name: one or more token characters (RFC 9110).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// What Wasm containers cannot be probed with. `meta` decides which containers are Wasm (the
/// pod's runtime class and its annotations); `path` is the pod spec's (`spec`,
/// `spec.template.spec`).
pub fn validate_wasm_probes(
    meta: Option<&ObjectMeta>,
    spec: &PodSpec,
    path: &str,
    errors: &mut FieldErrors,
) {
    let pod = Pod {
        metadata: meta.cloned(),
        spec: Some(spec.clone()),
        status: None,
    };
    // In a pod with a Linux container, every container lives in the pod's network namespace,
    // where the Linux containers may listen on any port: only `exec` is ruled out.
    let all_wasm = !pod_kinds(&pod).contains(&WorkloadKind::Linux);
    let declared: BTreeSet<i32> = spec
        .init_containers
        .iter()
        .chain(&spec.containers)
        .flat_map(|c| &c.ports)
        .map(|p| p.container_port)
        .collect();
    for (i, c) in spec.containers.iter().enumerate() {
        if container_kind(&pod, &c.name) != WorkloadKind::Wasm {
            continue;
        }
        for (field, probe) in probes(c) {
            let Some(p) = probe else { continue };
            let ppath = format!("{path}.containers[{i}].{field}");
            if p.exec.is_some() {
                errors.add(
                    format!("{ppath}.exec"),
                    "a Wasm container cannot be probed with exec: a Wasm guest has no processes or shell to run a command in (use httpGet, tcpSocket or grpc on a port it declares)",
                );
            }
            if !all_wasm {
                continue;
            }
            let ports = [
                (
                    "httpGet.port",
                    p.http_get.as_ref().and_then(|h| h.port.as_ref()),
                ),
                (
                    "tcpSocket.port",
                    p.tcp_socket.as_ref().and_then(|t| t.port.as_ref()),
                ),
            ];
            let numbered = ports
                .into_iter()
                .filter_map(|(f, port)| match port.and_then(|p| p.value.as_ref()) {
                    Some(IntOrStringValue::Int(n)) => Some((f, *n)),
                    _ => None,
                })
                .chain(p.grpc.as_ref().map(|g| ("grpc.port", g.port)));
            for (f, n) in numbered {
                if declared.is_empty() {
                    errors.add(
                        format!("{ppath}.{f}"),
                        "a Wasm pod granted no socket cannot be probed over the network: declare the port the guest listens on in the container's ports",
                    );
                } else if (1..=65535).contains(&n) && !declared.contains(&n) {
                    errors.add(
                        format!("{ppath}.{f}"),
                        format!("a Wasm guest listens only on the ports its pod declares, and no container declares {n}"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{ContainerPort, ExecAction, GrpcAction, HttpGetAction, TcpSocketAction};

    fn container(probe: Probe) -> Container {
        Container {
            name: "web".into(),
            image: "file:x.wasm".into(),
            ports: vec![ContainerPort {
                name: "http".into(),
                container_port: 8080,
                ..Default::default()
            }],
            liveness_probe: Some(probe),
            ..Default::default()
        }
    }

    fn tcp(port: IntOrString) -> Probe {
        Probe {
            tcp_socket: Some(TcpSocketAction {
                port: Some(port),
                host: String::new(),
            }),
            ..Default::default()
        }
    }

    fn errors_of(spec: &PodSpec, meta: Option<&ObjectMeta>) -> String {
        let mut errors = FieldErrors::default();
        super::super::validate_pod_spec(spec, "spec", &mut errors);
        validate_wasm_probes(meta, spec, "spec", &mut errors);
        errors.to_string()
    }

    fn spec(c: Container, wasm: bool) -> PodSpec {
        PodSpec {
            runtime_class_name: if wasm { "wasm".into() } else { String::new() },
            containers: vec![c],
            ..Default::default()
        }
    }

    #[test]
    fn a_probe_has_exactly_one_handler_and_valid_ports() {
        assert_eq!(
            errors_of(&spec(container(tcp(IntOrString::int(8080))), false), None),
            ""
        );
        assert_eq!(
            errors_of(
                &spec(container(tcp(IntOrString::string("http"))), false),
                None
            ),
            ""
        );
        let shown = errors_of(&spec(container(Probe::default()), false), None);
        assert!(
            shown.contains(
                "spec.containers[0].livenessProbe: exactly one of exec, httpGet, tcpSocket or grpc"
            ),
            "{shown}"
        );
        let shown = errors_of(
            &spec(container(tcp(IntOrString::string("metrics"))), false),
            None,
        );
        assert!(
            shown.contains("spec.containers[0].livenessProbe.tcpSocket.port: container \"web\" declares no port named \"metrics\""),
            "{shown}"
        );
        let http = Probe {
            http_get: Some(HttpGetAction {
                port: Some(IntOrString::int(0)),
                scheme: "FTP".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let shown = errors_of(&spec(container(http), false), None);
        assert!(
            shown.contains(
                "spec.containers[0].livenessProbe.httpGet.port: 0 must be between 1 and 65535"
            ),
            "{shown}"
        );
        assert!(
            shown.contains(
                "spec.containers[0].livenessProbe.httpGet.scheme: unsupported value \"FTP\""
            ),
            "{shown}"
        );
        let grpc = Probe {
            grpc: Some(GrpcAction {
                port: 70000,
                service: None,
            }),
            ..Default::default()
        };
        let shown = errors_of(&spec(container(grpc), false), None);
        assert!(
            shown.contains(
                "spec.containers[0].livenessProbe.grpc.port: 70000 must be between 1 and 65535"
            ),
            "{shown}"
        );
    }

    #[test]
    fn thresholds_and_grace_follow_kubernetes() {
        let mut p = tcp(IntOrString::int(8080));
        p.success_threshold = 2;
        p.period_seconds = -1;
        let shown = errors_of(&spec(container(p.clone()), false), None);
        assert!(
            shown.contains("livenessProbe.successThreshold: must be 1 for a livenessProbe"),
            "{shown}"
        );
        assert!(
            shown.contains("livenessProbe.periodSeconds: must not be negative"),
            "{shown}"
        );
        // A readiness probe may ask for several successes, but never kills.
        let mut c = container(tcp(IntOrString::int(8080)));
        c.liveness_probe = None;
        p.period_seconds = 1;
        p.termination_grace_period_seconds = Some(5);
        c.readiness_probe = Some(p);
        let shown = errors_of(&spec(c, false), None);
        assert!(!shown.contains("successThreshold"), "{shown}");
        assert!(
            shown.contains("readinessProbe.terminationGracePeriodSeconds: must not be set"),
            "{shown}"
        );
    }

    #[test]
    fn init_containers_have_no_probes() {
        let mut s = spec(container(tcp(IntOrString::int(8080))), false);
        s.init_containers = vec![Container {
            name: "init".into(),
            ..container(tcp(IntOrString::int(8080)))
        }];
        let shown = errors_of(&s, None);
        assert!(
            shown.contains(
                "spec.initContainers[0].livenessProbe: may not be set for init containers"
            ),
            "{shown}"
        );
    }

    #[test]
    fn wasm_containers_are_refused_what_they_cannot_answer() {
        let exec = Probe {
            exec: Some(ExecAction {
                command: vec!["true".into()],
            }),
            ..Default::default()
        };
        let shown = errors_of(&spec(container(exec.clone()), true), None);
        assert!(
            shown.contains(
                "spec.containers[0].livenessProbe.exec: a Wasm container cannot be probed with exec"
            ),
            "{shown}"
        );
        // The same exec probe on a Linux container is fine.
        assert_eq!(errors_of(&spec(container(exec), false), None), "");
        // A port the pod does not declare, and a pod that declares none.
        let shown = errors_of(&spec(container(tcp(IntOrString::int(9090))), true), None);
        assert!(
            shown.contains("livenessProbe.tcpSocket.port: a Wasm guest listens only on the ports its pod declares, and no container declares 9090"),
            "{shown}"
        );
        let mut bare = container(tcp(IntOrString::int(8080)));
        bare.ports.clear();
        let shown = errors_of(&spec(bare.clone(), true), None);
        assert!(
            shown.contains("livenessProbe.tcpSocket.port: a Wasm pod granted no socket cannot be probed over the network"),
            "{shown}"
        );
        // In a pod with a Linux container, the Wasm container shares the pod's network.
        let mut mixed = spec(bare, true);
        mixed.containers.push(Container {
            name: "sidecar".into(),
            image: "busybox".into(),
            ..Default::default()
        });
        let meta = ObjectMeta {
            annotations: [(
                crate::workload::LINUX_CONTAINERS.to_string(),
                "sidecar".to_string(),
            )]
            .into(),
            ..Default::default()
        };
        assert_eq!(errors_of(&mixed, Some(&meta)), "");
    }
}
