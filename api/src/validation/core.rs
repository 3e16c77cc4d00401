//! Rules for the kinds other than Pod.

use super::names::is_config_key;
use super::pod::{check_port_ref, validate_pod_spec};
use super::{FieldErrors, check_one_of, check_port, check_quantity, validate_labels};
use crate::IntOrStringValue;
use crate::selector::LabelSelector;
use crate::v1::{
    ConfigMap, Deployment, Endpoints, Event, Namespace, Node, PersistentVolumeClaim, ReplicaSet,
    Secret, Service,
};

pub fn validate_namespace(ns: &Namespace, errors: &mut FieldErrors) {
    if let Some(meta) = &ns.metadata {
        crate::pod_security::validate_labels(&meta.labels, errors);
    }
}

pub fn validate_deployment(d: &Deployment, errors: &mut FieldErrors) {
    let Some(spec) = &d.spec else {
        errors.add("spec", "required");
        return;
    };
    validate_workload(
        spec.replicas,
        spec.selector.as_ref(),
        spec.template.as_ref(),
        errors,
    );
    if spec.min_ready_seconds < 0 {
        errors.add("spec.minReadySeconds", "must not be negative");
    }
    if spec.revision_history_limit.is_some_and(|r| r < 0) {
        errors.add("spec.revisionHistoryLimit", "must not be negative");
    }
    if spec.progress_deadline_seconds.is_some_and(|p| p <= 0) {
        errors.add("spec.progressDeadlineSeconds", "must be greater than 0");
    }
    if let Some(strategy) = &spec.strategy {
        check_one_of(
            &strategy.r#type,
            &["RollingUpdate", "Recreate"],
            "spec.strategy.type",
            errors,
        );
        if let Some(ru) = &strategy.rolling_update {
            if strategy.r#type == "Recreate" {
                errors.add(
                    "spec.strategy.rollingUpdate",
                    "may not be given when strategy type is Recreate",
                );
            }
            for (field, v) in [
                ("maxSurge", &ru.max_surge),
                ("maxUnavailable", &ru.max_unavailable),
            ] {
                match v.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(IntOrStringValue::Int(n)) if *n < 0 => errors.add(
                        format!("spec.strategy.rollingUpdate.{field}"),
                        "must not be negative",
                    ),
                    Some(IntOrStringValue::Str(s))
                        if s.strip_suffix('%')
                            .and_then(|p| p.parse::<u32>().ok())
                            .is_none_or(|p| p > 100) =>
                    {
                        errors.add(
                            format!("spec.strategy.rollingUpdate.{field}"),
                            format!("{s:?} must be an integer or a percentage like \"25%\""),
                        )
                    }
                    _ => {}
                }
            }
            let zero = |v: &Option<crate::IntOrString>| {
                v.as_ref()
                    .and_then(|v| v.value.as_ref())
                    .is_some_and(|v| match v {
                        IntOrStringValue::Int(n) => *n == 0,
                        IntOrStringValue::Str(s) => s == "0%",
                    })
            };
            if zero(&ru.max_surge) && zero(&ru.max_unavailable) {
                errors.add(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    "may not be 0 when maxSurge is 0",
                );
            }
        }
    }
}

pub fn validate_replica_set(rs: &ReplicaSet, errors: &mut FieldErrors) {
    let Some(spec) = &rs.spec else {
        errors.add("spec", "required");
        return;
    };
    validate_workload(
        spec.replicas,
        spec.selector.as_ref(),
        spec.template.as_ref(),
        errors,
    );
    if spec.min_ready_seconds < 0 {
        errors.add("spec.minReadySeconds", "must not be negative");
    }
}

/// What a Deployment and a ReplicaSet share: replicas, a selector that matches the template's
/// labels, and a pod template whose pods restart Always.
fn validate_workload(
    replicas: Option<i32>,
    selector: Option<&crate::v1::LabelSelector>,
    template: Option<&crate::v1::PodTemplateSpec>,
    errors: &mut FieldErrors,
) {
    if replicas.is_some_and(|r| r < 0) {
        errors.add("spec.replicas", "must not be negative");
    }
    let selector = match selector {
        None => {
            errors.add("spec.selector", "required");
            None
        }
        Some(sel) if sel.match_labels.is_empty() && sel.match_expressions.is_empty() => {
            errors.add("spec.selector", "must not be empty");
            None
        }
        Some(sel) => {
            validate_labels(&sel.match_labels, "spec.selector.matchLabels", errors);
            match LabelSelector::from_spec(sel) {
                Ok(s) => Some(s),
                Err(e) => {
                    errors.add("spec.selector.matchExpressions", e.reason);
                    None
                }
            }
        }
    };
    let Some(t) = template else {
        errors.add("spec.template", "required");
        return;
    };
    let labels = t
        .metadata
        .as_ref()
        .map(|m| m.labels.clone())
        .unwrap_or_default();
    validate_labels(&labels, "spec.template.metadata.labels", errors);
    if let Some(sel) = selector
        && !sel.matches(&labels)
    {
        errors.add(
            "spec.template.metadata.labels",
            "`selector` does not match template `labels`",
        );
    }
    match &t.spec {
        Some(ps) => {
            validate_pod_spec(ps, "spec.template.spec", errors);
            super::probe::validate_wasm_probes(
                t.metadata.as_ref(),
                ps,
                "spec.template.spec",
                errors,
            );
            super::pod::validate_mount_path_kinds(
                t.metadata.as_ref(),
                ps,
                "spec.template.spec",
                errors,
            );
            super::security::validate_pod_security(ps, "spec.template.spec", errors);
            super::pod_semantics::validate_pod_semantics(
                t.metadata.as_ref(),
                ps,
                "spec.template.spec",
                errors,
            );
            super::security::validate_containers_security(
                t.metadata.as_ref(),
                ps,
                "spec.template.spec",
                errors,
            );
            if let Some(meta) = &t.metadata {
                super::pod::validate_workload_annotations(
                    meta,
                    ps,
                    "spec.template.metadata.annotations",
                    errors,
                );
            }
            if !ps.restart_policy.is_empty() && ps.restart_policy != "Always" {
                errors.add(
                    "spec.template.spec.restartPolicy",
                    format!(
                        "unsupported value {:?}: pods of a Deployment or ReplicaSet must have restartPolicy Always",
                        ps.restart_policy
                    ),
                );
            }
        }
        None => errors.add("spec.template.spec", "required"),
    }
}

pub fn validate_service(s: &Service, errors: &mut FieldErrors) {
    let Some(spec) = &s.spec else {
        errors.add("spec", "required");
        return;
    };
    check_one_of(
        &spec.r#type,
        &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"],
        "spec.type",
        errors,
    );
    validate_labels(&spec.selector, "spec.selector", errors);
    if spec.r#type != "ExternalName" && spec.ports.is_empty() && spec.cluster_ip != "None" {
        errors.add("spec.ports", "at least one port is required");
    }
    let mut names = std::collections::BTreeSet::new();
    let mut node_ports = std::collections::BTreeSet::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        check_port(p.port, &format!("{path}.port"), errors);
        check_one_of(
            &p.protocol,
            &["TCP", "UDP", "SCTP"],
            &format!("{path}.protocol"),
            errors,
        );
        if spec.ports.len() > 1 && p.name.is_empty() {
            errors.add(
                format!("{path}.name"),
                "required when a service has more than one port",
            );
        }
        if !names.insert((p.name.as_str(), p.protocol.as_str())) {
            errors.add(
                format!("{path}.name"),
                format!("duplicate port name {:?}", p.name),
            );
        }
        if p.target_port
            .as_ref()
            .and_then(|t| t.value.as_ref())
            .is_some()
        {
            check_port_ref(
                p.target_port.as_ref(),
                &format!("{path}.targetPort"),
                errors,
            );
        }
        if p.node_port != 0 {
            if spec.r#type != "NodePort" && spec.r#type != "LoadBalancer" {
                errors.add(
                    format!("{path}.nodePort"),
                    "may only be given for type NodePort or LoadBalancer",
                );
            } else {
                // The range (`--service-node-port-range`) is the server's to judge: its
                // allocator refuses a port outside it, or one another Service holds.
                check_port(p.node_port, &format!("{path}.nodePort"), errors);
            }
            let protocol = if p.protocol.is_empty() {
                "TCP"
            } else {
                p.protocol.as_str()
            };
            if !node_ports.insert((p.node_port, protocol)) {
                errors.add(
                    format!("{path}.nodePort"),
                    format!("Duplicate value: {}", p.node_port),
                );
            }
        }
    }
    validate_cluster_ip(spec, errors);
    validate_session_affinity(spec, errors);
}

/// `sessionAffinity` None or ClientIP; its timeout 1..=86400 seconds, only with ClientIP
/// (Kubernetes' rules).
fn validate_session_affinity(spec: &crate::v1::ServiceSpec, errors: &mut FieldErrors) {
    if !spec.session_affinity.is_empty() {
        check_one_of(
            &spec.session_affinity,
            &["None", "ClientIP"],
            "spec.sessionAffinity",
            errors,
        );
    }
    let timeout = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds);
    let path = "spec.sessionAffinityConfig.clientIP.timeoutSeconds";
    match timeout {
        Some(t) if spec.session_affinity != "ClientIP" => errors.add(
            path,
            format!("Invalid value: {t}: must not be set when sessionAffinity is not ClientIP"),
        ),
        Some(t) if !(1..=86400).contains(&t) => errors.add(
            path,
            format!("Invalid value: {t}: must be greater than 0 and less than 86400"),
        ),
        _ => {}
    }
}

/// `clusterIP` and `clusterIPs` (single-stack IPv4: at most one entry, the same as `clusterIP`),
/// and what each type allows. Which addresses are free and in range is the server's allocator's.
fn validate_cluster_ip(spec: &crate::v1::ServiceSpec, errors: &mut FieldErrors) {
    let ip = spec.cluster_ip.as_str();
    if !ip.is_empty() && ip != "None" {
        match ip.parse::<std::net::IpAddr>() {
            Err(_) => errors.add(
                "spec.clusterIP",
                format!("Invalid value: {ip:?}: not an IP address"),
            ),
            Ok(std::net::IpAddr::V6(_)) => errors.add(
                "spec.clusterIP",
                format!("Invalid value: {ip:?}: IPv6 service addresses are not supported yet"),
            ),
            Ok(std::net::IpAddr::V4(_)) => {}
        }
    }
    if spec.cluster_ips.len() > 1 {
        errors.add(
            "spec.clusterIPs",
            "Invalid value: dual-stack services are not supported yet: give at most one address",
        );
    }
    if let (Some(first), false) = (spec.cluster_ips.first(), ip.is_empty())
        && first != ip
    {
        errors.add(
            "spec.clusterIPs[0]",
            format!("Invalid value: {first:?}: must match `clusterIP` ({ip:?}) if specified"),
        );
    }
    let ip = if ip.is_empty() {
        spec.cluster_ips.first().map_or("", String::as_str)
    } else {
        ip
    };
    match spec.r#type.as_str() {
        t @ ("NodePort" | "LoadBalancer") if ip == "None" => errors.add(
            "spec.clusterIP",
            format!("Invalid value: \"None\": may not be set to 'None' for {t} services"),
        ),
        "ExternalName" if !ip.is_empty() => errors.add(
            "spec.clusterIP",
            "Forbidden: may not be set for ExternalName services",
        ),
        _ => {}
    }
}

pub fn validate_endpoints(e: &Endpoints, errors: &mut FieldErrors) {
    for (i, subset) in e.subsets.iter().enumerate() {
        for (field, addrs) in [
            ("addresses", &subset.addresses),
            ("notReadyAddresses", &subset.not_ready_addresses),
        ] {
            for (j, a) in addrs.iter().enumerate() {
                if a.ip.parse::<std::net::IpAddr>().is_err() {
                    errors.add(
                        format!("subsets[{i}].{field}[{j}].ip"),
                        format!("{:?} is not an IP address", a.ip),
                    );
                }
            }
        }
        for (j, p) in subset.ports.iter().enumerate() {
            check_port(p.port, &format!("subsets[{i}].ports[{j}].port"), errors);
        }
    }
}

pub fn validate_secret(s: &Secret, errors: &mut FieldErrors) {
    super::pull_secret::validate_pull_secret(s, errors);
    for key in s.data.keys() {
        if !is_config_key(key) {
            errors.add(
                format!("data[{key}]"),
                "a valid key is letters, digits, '-', '_' and '.'",
            );
        }
    }
    for key in s.string_data.keys() {
        if !is_config_key(key) {
            errors.add(
                format!("stringData[{key}]"),
                "a valid key is letters, digits, '-', '_' and '.'",
            );
        }
    }
}

pub fn validate_config_map(c: &ConfigMap, errors: &mut FieldErrors) {
    for key in c.data.keys().chain(c.binary_data.keys()) {
        if !is_config_key(key) {
            errors.add(
                format!("data[{key}]"),
                "a valid key is letters, digits, '-', '_' and '.'",
            );
        }
        if c.data.contains_key(key) && c.binary_data.contains_key(key) {
            errors.add(format!("binaryData[{key}]"), "key is also in data");
        }
    }
}

pub fn validate_pvc(p: &PersistentVolumeClaim, errors: &mut FieldErrors) {
    let Some(spec) = &p.spec else {
        errors.add("spec", "required");
        return;
    };
    if spec.access_modes.is_empty() {
        errors.add("spec.accessModes", "at least one access mode is required");
    }
    for (i, m) in spec.access_modes.iter().enumerate() {
        check_one_of(
            m,
            &[
                "ReadWriteOnce",
                "ReadOnlyMany",
                "ReadWriteMany",
                "ReadWriteOncePod",
            ],
            &format!("spec.accessModes[{i}]"),
            errors,
        );
    }
    match spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.get("storage"))
    {
        None => errors.add("spec.resources.requests.storage", "required"),
        Some(q) => {
            check_quantity(q, "spec.resources.requests.storage", errors);
        }
    }
    check_one_of(
        &spec.volume_mode,
        &["Filesystem", "Block"],
        "spec.volumeMode",
        errors,
    );
}

pub fn validate_node(n: &Node, errors: &mut FieldErrors) {
    if let Some(spec) = &n.spec {
        if !spec.pod_cidr.is_empty()
            && let Err(e) = spec.pod_cidr.parse::<crate::cidr::Ipv4Cidr>()
        {
            errors.add("spec.podCIDR", e.to_string());
        }
        for (i, c) in spec.pod_cidrs.iter().enumerate() {
            if let Err(e) = c.parse::<crate::cidr::Ipv4Cidr>() {
                errors.add(format!("spec.podCIDRs[{i}]"), e.to_string());
            }
        }
        if let Some(first) = spec.pod_cidrs.first()
            && *first != spec.pod_cidr
        {
            errors.add("spec.podCIDRs[0]", "must equal spec.podCIDR");
        }
        for (i, t) in spec.taints.iter().enumerate() {
            if t.key.is_empty() {
                errors.add(format!("spec.taints[{i}].key"), "required");
            }
            check_one_of(
                &t.effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
                &format!("spec.taints[{i}].effect"),
                errors,
            );
            if t.effect.is_empty() {
                errors.add(format!("spec.taints[{i}].effect"), "required");
            }
        }
    }
    if let Some(status) = &n.status {
        for (kind, map) in [
            ("capacity", &status.capacity),
            ("allocatable", &status.allocatable),
        ] {
            for (name, value) in map {
                check_quantity(value, &format!("status.{kind}.{name}"), errors);
            }
        }
    }
}

pub fn validate_event(e: &Event, errors: &mut FieldErrors) {
    match &e.involved_object {
        None => errors.add("involvedObject", "required"),
        Some(o) if o.kind.is_empty() || o.name.is_empty() => {
            errors.add("involvedObject", "kind and name are required")
        }
        Some(_) => {}
    }
    check_one_of(&e.r#type, &["Normal", "Warning"], "type", errors);
}

#[cfg(test)]
mod service_tests {
    use super::*;
    use crate::v1::{ServicePort, ServiceSpec};

    fn errors_of(spec: ServiceSpec) -> String {
        let mut errors = FieldErrors::default();
        validate_service(
            &Service {
                spec: Some(spec),
                ..Default::default()
            },
            &mut errors,
        );
        errors.to_string()
    }

    fn port(name: &str, protocol: &str, node_port: i32) -> ServicePort {
        ServicePort {
            name: name.into(),
            protocol: protocol.into(),
            port: 53,
            node_port,
            ..Default::default()
        }
    }

    #[test]
    fn session_affinity_timeouts_are_kubernetes_bounds_with_client_ip_only() {
        let affinity = |kind: &str, timeout: Option<i32>| ServiceSpec {
            ports: vec![port("", "", 0)],
            session_affinity: kind.into(),
            session_affinity_config: timeout.map(|t| crate::v1::SessionAffinityConfig {
                client_ip: Some(crate::v1::ClientIpConfig {
                    timeout_seconds: Some(t),
                }),
            }),
            ..Default::default()
        };
        assert_eq!(errors_of(affinity("ClientIP", Some(60))), "");
        assert_eq!(errors_of(affinity("ClientIP", None)), "");
        assert!(
            errors_of(affinity("ClientIP", Some(0))).starts_with(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0"
            )
        );
        assert!(errors_of(affinity("ClientIP", Some(86401))).contains("86401"));
        assert!(errors_of(affinity("None", Some(60))).contains("must not be set"));
        assert!(errors_of(affinity("Sticky", None)).starts_with("spec.sessionAffinity:"));
    }

    #[test]
    fn node_ports_are_any_port_the_range_is_the_servers() {
        let node_port = |ports| ServiceSpec {
            r#type: "NodePort".into(),
            ports,
            ..Default::default()
        };
        // 8080 is outside the default range, but the server's range may include it.
        assert_eq!(errors_of(node_port(vec![port("", "", 8080)])), "");
        assert_eq!(
            errors_of(node_port(vec![port("", "", 70000)])),
            "spec.ports[0].nodePort: 70000 must be between 1 and 65535"
        );
        // One nodePort for a TCP and a UDP port (DNS), not twice for one protocol.
        assert_eq!(
            errors_of(node_port(vec![
                port("dns", "UDP", 30053),
                port("dns-tcp", "TCP", 30053)
            ])),
            ""
        );
        assert_eq!(
            errors_of(node_port(vec![
                port("a", "", 30053),
                port("b", "TCP", 30053)
            ])),
            "spec.ports[1].nodePort: Duplicate value: 30053"
        );
        let cluster_ip = ServiceSpec {
            ports: vec![port("", "", 30053)],
            ..Default::default()
        };
        assert_eq!(
            errors_of(cluster_ip),
            "spec.ports[0].nodePort: may only be given for type NodePort or LoadBalancer"
        );
    }

    #[test]
    fn cluster_ips_are_one_ipv4_address_as_the_type_allows() {
        let spec = |r#type: &str, ip: &str, ips: &[&str]| ServiceSpec {
            r#type: r#type.into(),
            cluster_ip: ip.into(),
            cluster_ips: ips.iter().map(|s| s.to_string()).collect(),
            ports: vec![port("", "", 0)],
            ..Default::default()
        };
        assert_eq!(errors_of(spec("ClusterIP", "10.96.0.10", &[])), "");
        assert_eq!(errors_of(spec("", "", &["10.96.0.10"])), "");
        assert_eq!(errors_of(spec("", "None", &["None"])), "");
        assert_eq!(
            errors_of(spec("", "10.96.0.300", &[])),
            "spec.clusterIP: Invalid value: \"10.96.0.300\": not an IP address"
        );
        assert_eq!(
            errors_of(spec("", "fd00::10", &[])),
            "spec.clusterIP: Invalid value: \"fd00::10\": IPv6 service addresses are not supported yet"
        );
        assert_eq!(
            errors_of(spec("", "10.96.0.10", &["10.96.0.11"])),
            "spec.clusterIPs[0]: Invalid value: \"10.96.0.11\": must match `clusterIP` (\"10.96.0.10\") if specified"
        );
        assert!(
            errors_of(spec("", "", &["10.96.0.10", "fd00::10"])).starts_with("spec.clusterIPs: ")
        );
        assert_eq!(
            errors_of(spec("NodePort", "None", &[])),
            "spec.clusterIP: Invalid value: \"None\": may not be set to 'None' for NodePort services"
        );
        assert_eq!(
            errors_of(spec("LoadBalancer", "", &["None"])),
            "spec.clusterIP: Invalid value: \"None\": may not be set to 'None' for LoadBalancer services"
        );
        assert_eq!(
            errors_of(spec("ExternalName", "10.96.0.10", &[])),
            "spec.clusterIP: Forbidden: may not be set for ExternalName services"
        );
    }
}
