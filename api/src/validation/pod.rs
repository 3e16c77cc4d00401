//! Pod spec rules (also used for a Deployment's pod template).

use std::collections::BTreeSet;

use super::names::{is_config_key, is_dns1123_label, is_dns1123_subdomain, is_env_name};
use super::{FieldErrors, check_one_of, check_port, check_quantity};
use crate::v1::{Container, ObjectMeta, Pod, PodSpec, Volume};
use crate::{IntOrString, IntOrStringValue};

pub fn validate_pod(pod: &Pod, errors: &mut FieldErrors) {
    match &pod.spec {
        Some(spec) => {
            validate_pod_spec(spec, "spec", errors);
            super::probe::validate_wasm_probes(pod.metadata.as_ref(), spec, "spec", errors);
            validate_mount_path_kinds(pod.metadata.as_ref(), spec, "spec", errors);
            super::pod_semantics::validate_pod_semantics(
                pod.metadata.as_ref(),
                spec,
                "spec",
                errors,
            );
            super::security::validate_pod_security(spec, "spec", errors);
            super::security::validate_containers_security(
                pod.metadata.as_ref(),
                spec,
                "spec",
                errors,
            );
            if let Some(meta) = &pod.metadata {
                validate_workload_annotations(meta, spec, "metadata.annotations", errors);
            }
        }
        None => errors.add("spec", "required"),
    }
}

/// The annotation naming the containers of the other kind (DESIGN §4) names containers of this
/// pod, and only the one that fits the pod's runtime class is used: the other would be ignored,
/// so it is refused.
pub fn validate_workload_annotations(
    meta: &ObjectMeta,
    spec: &PodSpec,
    path: &str,
    errors: &mut FieldErrors,
) {
    use crate::workload::{LINUX_CONTAINERS, WASM_CONTAINERS, WASM_RUNTIME, listed};
    crate::host_interfaces::validate(meta, path, errors);
    crate::functions::validate(meta, path, errors);
    let wasm_pod = spec.runtime_class_name == WASM_RUNTIME;
    let (used, unused) = if wasm_pod {
        (LINUX_CONTAINERS, WASM_CONTAINERS)
    } else {
        (WASM_CONTAINERS, LINUX_CONTAINERS)
    };
    if meta.annotations.contains_key(unused) {
        let why = if wasm_pod {
            "the pod's containers are Wasm already (runtimeClassName: wasm); name its Linux containers in"
        } else {
            "the pod's containers are Linux containers already (no runtimeClassName: wasm); name its Wasm containers in"
        };
        errors.add(format!("{path}[{unused}]"), format!("{why} {used}"));
    }
    if let Some(value) = meta.annotations.get(used) {
        let names: BTreeSet<&str> = spec
            .init_containers
            .iter()
            .chain(&spec.containers)
            .map(|c| c.name.as_str())
            .collect();
        for name in listed(value) {
            if !names.contains(name) {
                errors.add(
                    format!("{path}[{used}]"),
                    format!("no container named {name:?} in this pod"),
                );
            }
        }
    }
}

/// The built-in priority classes (there is no PriorityClass kind): name and value.
pub const PRIORITY_CLASSES: &[(&str, i32)] = &[
    ("system-cluster-critical", 2_000_000_000),
    ("system-node-critical", 2_000_001_000),
];

/// The priority of a class name, if it is a known one.
pub fn priority_of_class(name: &str) -> Option<i32> {
    PRIORITY_CLASSES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
}

pub fn validate_pod_spec(spec: &PodSpec, path: &str, errors: &mut FieldErrors) {
    if !spec.priority_class_name.is_empty()
        && priority_of_class(&spec.priority_class_name).is_none()
    {
        let known: Vec<&str> = PRIORITY_CLASSES.iter().map(|(n, _)| *n).collect();
        errors.add(
            format!("{path}.priorityClassName"),
            format!(
                "no PriorityClass named {:?} (known: {}; or set `priority` directly)",
                spec.priority_class_name,
                known.join(", ")
            ),
        );
    }
    if spec.containers.is_empty() {
        errors.add(
            format!("{path}.containers"),
            "at least one container is required",
        );
    }
    let volumes = validate_volumes(&spec.volumes, &format!("{path}.volumes"), errors);
    let mut names = BTreeSet::new();
    let all = spec
        .init_containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("{path}.initContainers[{i}]"), c, true))
        .chain(
            spec.containers
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("{path}.containers[{i}]"), c, false)),
        );
    for (cpath, c, init) in all {
        if !c.name.is_empty() && !names.insert(c.name.as_str()) {
            errors.add(
                format!("{cpath}.name"),
                format!("duplicate container name {:?}", c.name),
            );
        }
        validate_container(c, &cpath, init, &volumes, errors);
    }
    check_one_of(
        &spec.restart_policy,
        &["Always", "OnFailure", "Never"],
        &format!("{path}.restartPolicy"),
        errors,
    );
    check_one_of(
        &spec.dns_policy,
        &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        &format!("{path}.dnsPolicy"),
        errors,
    );
    if !spec.runtime_class_name.is_empty() && !is_dns1123_subdomain(&spec.runtime_class_name) {
        errors.add(
            format!("{path}.runtimeClassName"),
            format!("{:?} is not a valid name", spec.runtime_class_name),
        );
    }
    if !spec.node_name.is_empty() && !is_dns1123_subdomain(&spec.node_name) {
        errors.add(
            format!("{path}.nodeName"),
            format!("{:?} is not a valid node name", spec.node_name),
        );
    }
    if spec.termination_grace_period_seconds.is_some_and(|s| s < 0) {
        errors.add(
            format!("{path}.terminationGracePeriodSeconds"),
            "must not be negative",
        );
    }
    if !spec.hostname.is_empty() && !is_dns1123_label(&spec.hostname) {
        errors.add(
            format!("{path}.hostname"),
            format!("{:?} is not a valid DNS label", spec.hostname),
        );
    }
    if !spec.subdomain.is_empty() && !is_dns1123_label(&spec.subdomain) {
        errors.add(
            format!("{path}.subdomain"),
            format!("{:?} is not a valid DNS label", spec.subdomain),
        );
    }
    super::pod_dns::validate_dns_config(spec, path, errors);
    super::pod_dns::validate_host_aliases(spec, path, errors);
    for (i, t) in spec.tolerations.iter().enumerate() {
        let tpath = format!("{path}.tolerations[{i}]");
        check_one_of(
            &t.operator,
            &["Exists", "Equal"],
            &format!("{tpath}.operator"),
            errors,
        );
        check_one_of(
            &t.effect,
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            &format!("{tpath}.effect"),
            errors,
        );
        if t.operator == "Exists" && !t.value.is_empty() {
            errors.add(
                format!("{tpath}.value"),
                "must be empty when operator is Exists",
            );
        }
    }
    if let Some(na) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
    {
        let apath = format!("{path}.affinity.nodeAffinity");
        if let Some(req) = &na.required_during_scheduling_ignored_during_execution {
            for (i, term) in req.node_selector_terms.iter().enumerate() {
                for (j, e) in term.match_expressions.iter().enumerate() {
                    check_one_of(
                        &e.operator,
                        &["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"],
                        &format!(
                            "{apath}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}].matchExpressions[{j}].operator"
                        ),
                        errors,
                    );
                }
            }
        }
        for (i, p) in na
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .enumerate()
        {
            if !(1..=100).contains(&p.weight) {
                errors.add(
                    format!("{apath}.preferredDuringSchedulingIgnoredDuringExecution[{i}].weight"),
                    "must be between 1 and 100",
                );
            }
        }
    }
}

fn validate_volumes<'a>(
    volumes: &'a [Volume],
    path: &str,
    errors: &mut FieldErrors,
) -> BTreeSet<&'a str> {
    let mut names = BTreeSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let vpath = format!("{path}[{i}]");
        if !is_dns1123_label(&v.name) {
            errors.add(
                format!("{vpath}.name"),
                format!("{:?} is not a valid volume name", v.name),
            );
        } else if !names.insert(v.name.as_str()) {
            errors.add(
                format!("{vpath}.name"),
                format!("duplicate volume name {:?}", v.name),
            );
        }
        let sources = [
            v.empty_dir.is_some(),
            v.host_path.is_some(),
            v.config_map.is_some(),
            v.secret.is_some(),
            v.persistent_volume_claim.is_some(),
            v.projected.is_some(),
        ];
        match sources.iter().filter(|s| **s).count() {
            0 => errors.add(
                vpath.clone(),
                "one volume source is required: emptyDir, hostPath, configMap, secret, persistentVolumeClaim or projected",
            ),
            1 => {}
            _ => errors.add(vpath.clone(), "only one volume source may be given"),
        }
        if let Some(hp) = &v.host_path {
            if !hp.path.starts_with('/') {
                errors.add(format!("{vpath}.hostPath.path"), "must be an absolute path");
            }
            check_one_of(
                &hp.r#type,
                &[
                    "DirectoryOrCreate",
                    "Directory",
                    "FileOrCreate",
                    "File",
                    "Socket",
                    "CharDevice",
                    "BlockDevice",
                ],
                &format!("{vpath}.hostPath.type"),
                errors,
            );
        }
        if let Some(ed) = &v.empty_dir {
            check_one_of(
                &ed.medium,
                &["Memory"],
                &format!("{vpath}.emptyDir.medium"),
                errors,
            );
            if !ed.size_limit.is_empty() {
                check_quantity(
                    &ed.size_limit,
                    &format!("{vpath}.emptyDir.sizeLimit"),
                    errors,
                );
            }
        }
        if let Some(cm) = &v.config_map {
            if cm.name.is_empty() {
                errors.add(format!("{vpath}.configMap.name"), "required");
            }
            check_items(&cm.items, &format!("{vpath}.configMap.items"), errors);
        }
        if let Some(s) = &v.secret {
            if s.secret_name.is_empty() {
                errors.add(format!("{vpath}.secret.secretName"), "required");
            }
            check_items(&s.items, &format!("{vpath}.secret.items"), errors);
        }
        if let Some(projected) = &v.projected {
            super::validate_projected(projected, &format!("{vpath}.projected"), errors);
        }
        if let Some(pvc) = &v.persistent_volume_claim
            && pvc.claim_name.is_empty()
        {
            errors.add(
                format!("{vpath}.persistentVolumeClaim.claimName"),
                "required",
            );
        }
    }
    names
}

fn check_items(items: &[crate::v1::KeyToPath], path: &str, errors: &mut FieldErrors) {
    for (i, item) in items.iter().enumerate() {
        if !is_config_key(&item.key) {
            errors.add(
                format!("{path}[{i}].key"),
                format!("{:?} is not a valid key", item.key),
            );
        }
        if !is_relative_path(&item.path) {
            errors.add(
                format!("{path}[{i}].path"),
                "must be a relative path without '..'",
            );
        }
    }
}

/// A relative preopen name of a Wasm container (as wasmtime's `--dir HOST::GUEST`): `.`, or
/// components that are all real names (no `..`, no `.`, no empty one). The executor applies the
/// same rule (`skiff_runtime::wasm::check_guest_path`); the error says what is wrong.
fn check_preopen_name(name: &str) -> Result<(), &'static str> {
    if name == "." {
        return Ok(());
    }
    if name.is_empty() {
        return Err("is empty");
    }
    if name.contains('\0') {
        return Err("contains a NUL byte");
    }
    for part in name.split('/') {
        match part {
            "" => return Err("has an empty component"),
            "." => return Err("has a '.' component"),
            ".." => return Err("must not contain '..'"),
            _ => {}
        }
    }
    Ok(())
}

/// Every container of `spec`, init containers first, with its field path and whether it is a
/// Wasm container: by the pod's runtime class, unless the annotation naming the containers of the
/// other kind (`skiff.dev/linux-containers`, `skiff.dev/wasm-containers`) lists it.
pub(crate) fn containers_by_kind<'a>(
    meta: Option<&ObjectMeta>,
    spec: &'a PodSpec,
    path: &str,
) -> Vec<(String, &'a Container, bool)> {
    use crate::workload::{LINUX_CONTAINERS, WASM_CONTAINERS, WASM_RUNTIME, listed};
    let wasm_pod = spec.runtime_class_name == WASM_RUNTIME;
    let exceptions = if wasm_pod {
        LINUX_CONTAINERS
    } else {
        WASM_CONTAINERS
    };
    let listed_names: BTreeSet<&str> = meta
        .and_then(|m| m.annotations.get(exceptions))
        .map(|v| listed(v).collect())
        .unwrap_or_default();
    let init = spec
        .init_containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("{path}.initContainers[{i}]"), c));
    let regular = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("{path}.containers[{i}]"), c));
    init.chain(regular)
        .map(|(cpath, c)| {
            let wasm = wasm_pod != listed_names.contains(c.name.as_str());
            (cpath, c, wasm)
        })
        .collect()
}

/// Relative `mountPath`s (preopen names) only in Wasm containers: a Linux container's must be
/// absolute, as Kubernetes requires.
pub(crate) fn validate_mount_path_kinds(
    meta: Option<&ObjectMeta>,
    spec: &PodSpec,
    path: &str,
    errors: &mut FieldErrors,
) {
    for (cpath, c, wasm) in containers_by_kind(meta, spec, path) {
        if wasm {
            continue;
        }
        for (i, m) in c.volume_mounts.iter().enumerate() {
            if !m.mount_path.starts_with('/') && check_preopen_name(&m.mount_path).is_ok() {
                errors.add(
                    format!("{cpath}.volumeMounts[{i}].mountPath"),
                    format!(
                        "must be an absolute path: {:?} is a relative preopen name, which only a Wasm container may use",
                        m.mount_path
                    ),
                );
            }
        }
    }
}

fn is_relative_path(p: &str) -> bool {
    !p.is_empty() && !p.starts_with('/') && p.split('/').all(|part| part != "..")
}

fn validate_container(
    c: &Container,
    path: &str,
    init: bool,
    volumes: &BTreeSet<&str>,
    errors: &mut FieldErrors,
) {
    if c.name.is_empty() {
        errors.add(format!("{path}.name"), "required");
    } else if !is_dns1123_label(&c.name) {
        errors.add(
            format!("{path}.name"),
            format!(
                "{:?} is not a valid container name (a DNS-1123 label)",
                c.name
            ),
        );
    }
    if c.image.trim().is_empty() {
        errors.add(format!("{path}.image"), "required");
    }
    check_one_of(
        &c.image_pull_policy,
        &["Always", "IfNotPresent", "Never"],
        &format!("{path}.imagePullPolicy"),
        errors,
    );
    for (i, p) in c.ports.iter().enumerate() {
        let ppath = format!("{path}.ports[{i}]");
        check_port(p.container_port, &format!("{ppath}.containerPort"), errors);
        if p.host_port != 0 {
            check_port(p.host_port, &format!("{ppath}.hostPort"), errors);
        }
        check_one_of(
            &p.protocol,
            &["TCP", "UDP", "SCTP"],
            &format!("{ppath}.protocol"),
            errors,
        );
    }
    for (i, e) in c.env.iter().enumerate() {
        let epath = format!("{path}.env[{i}]");
        if !is_env_name(&e.name) {
            errors.add(
                format!("{epath}.name"),
                format!("{:?} is not a valid environment variable name", e.name),
            );
        }
        if let Some(from) = &e.value_from {
            if !e.value.is_empty() {
                errors.add(
                    format!("{epath}.valueFrom"),
                    "may not be given together with value",
                );
            }
            let n = [
                from.config_map_key_ref.is_some(),
                from.secret_key_ref.is_some(),
                from.field_ref.is_some(),
                from.resource_field_ref.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if n != 1 {
                errors.add(
                    format!("{epath}.valueFrom"),
                    "exactly one of configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef is required",
                );
            }
            for (field, sel) in [
                ("configMapKeyRef", &from.config_map_key_ref),
                ("secretKeyRef", &from.secret_key_ref),
            ] {
                if let Some(sel) = sel {
                    if sel.name.is_empty() {
                        errors.add(format!("{epath}.valueFrom.{field}.name"), "required");
                    }
                    if !is_config_key(&sel.key) {
                        errors.add(
                            format!("{epath}.valueFrom.{field}.key"),
                            format!("{:?} is not a valid key", sel.key),
                        );
                    }
                }
            }
        }
    }
    for (i, e) in c.env_from.iter().enumerate() {
        if e.config_map_ref.is_none() == e.secret_ref.is_none() {
            errors.add(
                format!("{path}.envFrom[{i}]"),
                "exactly one of configMapRef or secretRef is required",
            );
        }
    }
    if let Some(r) = &c.resources {
        let rpath = format!("{path}.resources");
        for (kind, map) in [("limits", &r.limits), ("requests", &r.requests)] {
            for (name, value) in map {
                check_resource_name(name, &format!("{rpath}.{kind}.{name}"), errors);
                check_quantity(value, &format!("{rpath}.{kind}.{name}"), errors);
            }
        }
        for (name, req) in &r.requests {
            if let (Some(limit), Ok(req)) =
                (r.limits.get(name), crate::quantity::Quantity::parse(req))
                && let Ok(limit) = crate::quantity::Quantity::parse(limit)
                && req > limit
            {
                errors.add(
                    format!("{rpath}.requests.{name}"),
                    format!("must be less than or equal to the {name} limit"),
                );
            }
        }
    }
    let mut mount_paths = BTreeSet::new();
    for (i, m) in c.volume_mounts.iter().enumerate() {
        let mpath = format!("{path}.volumeMounts[{i}]");
        if !volumes.contains(m.name.as_str()) {
            errors.add(
                format!("{mpath}.name"),
                format!("volume {:?} is not defined in the pod's volumes", m.name),
            );
        }
        if !m.mount_path.starts_with('/') {
            // A Wasm container may name a relative preopen (`.`, `data`): which containers are
            // Wasm is checked with the pod's annotations ([`validate_mount_path_kinds`]).
            if let Err(why) = check_preopen_name(&m.mount_path) {
                errors.add(
                    format!("{mpath}.mountPath"),
                    format!(
                        "must be an absolute path, or in a Wasm container a relative preopen name such as \".\" or \"data\" ({:?} {why})",
                        m.mount_path
                    ),
                );
            } else if !mount_paths.insert(m.mount_path.as_str()) {
                errors.add(
                    format!("{mpath}.mountPath"),
                    format!("{:?} is mounted twice", m.mount_path),
                );
            }
        } else if m.mount_path.split('/').any(|p| p == "..") {
            errors.add(format!("{mpath}.mountPath"), "must not contain '..'");
        } else if !mount_paths.insert(m.mount_path.as_str()) {
            errors.add(
                format!("{mpath}.mountPath"),
                format!("{:?} is mounted twice", m.mount_path),
            );
        }
        if !m.sub_path.is_empty() && !is_relative_path(&m.sub_path) {
            errors.add(
                format!("{mpath}.subPath"),
                "must be a relative path without '..'",
            );
        }
    }
    super::probe::validate_container_probes(c, path, init, errors);
}

fn check_resource_name(name: &str, path: &str, errors: &mut FieldErrors) {
    let known = ["cpu", "memory", "ephemeral-storage", "pods"];
    if !known.contains(&name) && !name.contains('/') && !name.starts_with("hugepages-") {
        errors.add(path, format!("unknown resource {name:?}: supported are cpu, memory, ephemeral-storage, or a domain-prefixed extended resource"));
    }
}

/// A port given as a number (1-65535) or as the name of a container port.
pub(crate) fn check_port_ref(port: Option<&IntOrString>, path: &str, errors: &mut FieldErrors) {
    match port.and_then(|p| p.value.as_ref()) {
        None => errors.add(path, "required"),
        Some(IntOrStringValue::Int(n)) => check_port(*n, path, errors),
        Some(IntOrStringValue::Str(s)) => {
            if !is_dns1123_label(s) || s.len() > 15 {
                errors.add(path, format!("{s:?} is not a valid port name"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::Container;

    fn spec(class: &str) -> PodSpec {
        PodSpec {
            priority_class_name: class.into(),
            containers: vec![Container {
                name: "main".into(),
                image: "file:x.wasm".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// A pod (Wasm or not) with two containers mounting volume `v` at `app` and `sidecar`,
    /// `annotations` on it.
    fn mounting(wasm: bool, app: &str, sidecar: &str, annotations: &[(&str, &str)]) -> Pod {
        use crate::v1::{EmptyDirVolumeSource, VolumeMount};
        let container = |name: &str, at: &str| Container {
            name: name.into(),
            image: "file:x.wasm".into(),
            volume_mounts: vec![VolumeMount {
                name: "v".into(),
                mount_path: at.into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                annotations: annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                runtime_class_name: if wasm { "wasm".into() } else { String::new() },
                containers: vec![container("app", app), container("sidecar", sidecar)],
                volumes: vec![Volume {
                    name: "v".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    fn errors_of(pod: &Pod) -> String {
        let mut errors = FieldErrors::default();
        validate_pod(pod, &mut errors);
        errors.to_string()
    }

    #[test]
    fn wasm_containers_may_mount_at_relative_preopen_names() {
        for name in [".", "data", "out/logs"] {
            assert_eq!(errors_of(&mounting(true, name, "/abs", &[])), "", "{name}");
        }
        // Unsafe or malformed names are refused whatever the container, naming the field.
        for (name, why) in [
            ("../up", "must not contain '..'"),
            ("a/../b", "must not contain '..'"),
            ("./a", "'.' component"),
            ("a//b", "empty component"),
            ("data/", "empty component"),
        ] {
            let e = errors_of(&mounting(true, name, "/abs", &[]));
            assert!(
                e.contains("spec.containers[0].volumeMounts[0].mountPath") && e.contains(why),
                "{name}: {e}"
            );
        }
        // A Linux container's mountPath stays absolute: in an OCI pod, and in a Wasm pod that
        // names it a Linux container; the Wasm container of an OCI pod may use one.
        let e = errors_of(&mounting(false, "data", "/abs", &[]));
        assert!(
            e.contains("spec.containers[0].volumeMounts[0].mountPath: must be an absolute path")
                && e.contains("only a Wasm container"),
            "{e}"
        );
        let e = errors_of(&mounting(
            true,
            "/abs",
            "data",
            &[("skiff.dev/linux-containers", "sidecar")],
        ));
        assert!(
            e.contains("spec.containers[1].volumeMounts[0].mountPath: must be an absolute path"),
            "{e}"
        );
        let ok = mounting(false, ".", "/abs", &[("skiff.dev/wasm-containers", "app")]);
        assert_eq!(errors_of(&ok), "");
    }

    #[test]
    fn priority_classes_are_the_built_in_ones() {
        let mut errors = FieldErrors::default();
        validate_pod_spec(&spec("system-node-critical"), "spec", &mut errors);
        assert!(errors.is_empty(), "{errors}");
        assert_eq!(
            priority_of_class("system-cluster-critical"),
            Some(2_000_000_000)
        );
        let mut errors = FieldErrors::default();
        validate_pod_spec(&spec("gold"), "spec", &mut errors);
        let shown = errors.to_string();
        assert!(
            shown.contains("spec.priorityClassName") && shown.contains("\"gold\""),
            "{shown}"
        );
    }
}
