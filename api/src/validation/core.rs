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

pub fn validate_namespace(_ns: &Namespace, _errors: &mut FieldErrors) {}

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
            } else if !(30000..=32767).contains(&p.node_port) {
                errors.add(
                    format!("{path}.nodePort"),
                    format!("{} is outside the node port range 30000-32767", p.node_port),
                );
            }
        }
    }
    if !spec.cluster_ip.is_empty()
        && spec.cluster_ip != "None"
        && spec.cluster_ip.parse::<std::net::IpAddr>().is_err()
    {
        errors.add(
            "spec.clusterIP",
            format!("{:?} is not an IP address", spec.cluster_ip),
        );
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
