//! The pod fields of manifests as people write them, beyond the basics: lifecycle hooks
//! (`postStart`/`preStop`), pod affinity and anti-affinity, `topologySpreadConstraints`,
//! `fsGroupChangePolicy`, `supplementalGroups` of Wasm pods, and `hostPort`. Kubernetes' rules
//! and messages where Kubernetes has them; a field skiff cannot honour is refused here naming
//! why (a Wasm container has no process to exec a hook in, nor groups).
//!
//! Must not: look at other objects (namespaces, nodes): these rules read the pod alone.

use std::collections::BTreeSet;

use super::names::validate_label_key;
use super::pod::containers_by_kind;
use super::{FieldErrors, check_one_of, validate_labels};
use crate::selector::LabelSelector;
use crate::v1::{
    LabelSelector as LabelSelectorSpec, LifecycleHandler, ObjectMeta, PodAffinityTerm, PodSpec,
};

/// Kubernetes' default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

/// Every rule of this module; `path` is the pod spec's (`spec`, `spec.template.spec`).
pub fn validate_pod_semantics(
    meta: Option<&ObjectMeta>,
    spec: &PodSpec,
    path: &str,
    errors: &mut FieldErrors,
) {
    let grace = spec
        .termination_grace_period_seconds
        .map_or(DEFAULT_GRACE_SECONDS, i64::from);
    if spec.active_deadline_seconds.is_some() {
        errors.add(
            format!("{path}.activeDeadlineSeconds"),
            "not supported: skiff's nodes do not end a pod at a deadline (stop it with `skiff delete`, or give its command a timeout)",
        );
    }
    let containers = containers_by_kind(meta, spec, path);
    for (cpath, c, wasm) in &containers {
        let init = cpath.contains(".initContainers[");
        // Kubernetes' defaults are accepted (exported manifests carry them); no message is read
        // from the file, so a container's termination message stays empty.
        if !c.termination_message_path.is_empty()
            && c.termination_message_path != "/dev/termination-log"
        {
            errors.add(
                format!("{cpath}.terminationMessagePath"),
                "not supported: only Kubernetes' default \"/dev/termination-log\" is accepted, and skiff does not read it",
            );
        }
        if !matches!(c.termination_message_policy.as_str(), "" | "File") {
            errors.add(
                format!("{cpath}.terminationMessagePolicy"),
                "not supported: skiff takes no termination message from a container's logs (only \"File\", the default, is accepted)",
            );
        }
        for (i, p) in c.ports.iter().enumerate() {
            if p.host_port != 0 {
                errors.add(
                    format!("{cpath}.ports[{i}].hostPort"),
                    "not supported: skiff does not forward node ports to pods by hostPort; expose the pod with a NodePort or LoadBalancer Service (answered on every node's address)",
                );
            }
        }
        let Some(lifecycle) = &c.lifecycle else {
            continue;
        };
        if init {
            errors.add(
                format!("{cpath}.lifecycle"),
                "may not be set for init containers",
            );
            continue;
        }
        for (name, handler) in [
            ("postStart", &lifecycle.post_start),
            ("preStop", &lifecycle.pre_stop),
        ] {
            if let Some(h) = handler {
                let hpath = format!("{cpath}.lifecycle.{name}");
                validate_handler(h, c, *wasm, grace, &hpath, errors);
            }
        }
    }
    let all_wasm = containers.iter().all(|(_, _, wasm)| *wasm);
    if let Some(sc) = &spec.security_context {
        let spath = format!("{path}.securityContext");
        // Without fsGroup the policy has nothing to do, in Kubernetes as here.
        if let Some(policy) = &sc.fs_group_change_policy {
            check_one_of_required(
                policy,
                &["OnRootMismatch", "Always"],
                &format!("{spath}.fsGroupChangePolicy"),
                errors,
            );
        }
        if all_wasm && !sc.supplemental_groups.is_empty() {
            errors.add(
                format!("{spath}.supplementalGroups"),
                "not supported for a Wasm pod: a Wasm guest runs with no user or groups of its own (its files are reached through the directories it is granted)",
            );
        }
    }
    if let Some(affinity) = &spec.affinity {
        let apath = format!("{path}.affinity");
        if let Some(pa) = &affinity.pod_affinity {
            validate_affinity(
                &pa.required_during_scheduling_ignored_during_execution,
                pa.preferred_during_scheduling_ignored_during_execution
                    .iter()
                    .map(|w| (w.weight, w.pod_affinity_term.as_ref())),
                &format!("{apath}.podAffinity"),
                errors,
            );
        }
        if let Some(pa) = &affinity.pod_anti_affinity {
            validate_affinity(
                &pa.required_during_scheduling_ignored_during_execution,
                pa.preferred_during_scheduling_ignored_during_execution
                    .iter()
                    .map(|w| (w.weight, w.pod_affinity_term.as_ref())),
                &format!("{apath}.podAntiAffinity"),
                errors,
            );
        }
    }
    validate_spread(spec, path, errors);
}

fn check_one_of_required(value: &str, allowed: &[&str], path: &str, errors: &mut FieldErrors) {
    if value.is_empty() {
        errors.add(path, "must not be empty");
    } else {
        check_one_of(value, allowed, path, errors);
    }
}

fn validate_handler(
    h: &LifecycleHandler,
    c: &crate::v1::Container,
    wasm: bool,
    grace: i64,
    path: &str,
    errors: &mut FieldErrors,
) {
    let set = [
        h.exec.is_some(),
        h.http_get.is_some(),
        h.tcp_socket.is_some(),
        h.sleep.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    match set {
        0 => errors.add(path, "must specify a handler type (exec, httpGet or sleep)"),
        1 => {}
        _ => errors.add(path, "may not specify more than 1 handler type"),
    }
    if h.tcp_socket.is_some() {
        errors.add(
            format!("{path}.tcpSocket"),
            "not supported: Kubernetes keeps tcpSocket in lifecycle hooks for compatibility and never runs it; use exec, httpGet or sleep",
        );
    }
    if let Some(e) = &h.exec {
        if e.command.is_empty() {
            errors.add(format!("{path}.exec.command"), "required");
        }
        if wasm {
            errors.add(
                format!("{path}.exec"),
                "a Wasm container cannot run an exec hook: a Wasm guest has no processes or shell to run a command in (use httpGet on a port it declares, or sleep)",
            );
        }
    }
    if let Some(g) = &h.http_get {
        super::probe::check_probe_port(g.port.as_ref(), c, &format!("{path}.httpGet.port"), errors);
        check_one_of(
            &g.scheme,
            &["HTTP", "HTTPS"],
            &format!("{path}.httpGet.scheme"),
            errors,
        );
        if !g.path.is_empty() && !g.path.starts_with('/') {
            errors.add(format!("{path}.httpGet.path"), "must start with '/'");
        }
    }
    if let Some(s) = &h.sleep
        && (s.seconds < 0 || s.seconds > grace)
    {
        errors.add(
            format!("{path}.sleep.seconds"),
            format!(
                "Invalid value: {}: must be non-negative and less than terminationGracePeriodSeconds ({grace})",
                s.seconds
            ),
        );
    }
}

fn validate_affinity<'a>(
    required: &[PodAffinityTerm],
    preferred: impl Iterator<Item = (i32, Option<&'a PodAffinityTerm>)>,
    path: &str,
    errors: &mut FieldErrors,
) {
    for (i, term) in required.iter().enumerate() {
        validate_term(
            term,
            &format!("{path}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"),
            errors,
        );
    }
    for (i, (weight, term)) in preferred.enumerate() {
        let ppath = format!("{path}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
        if !(1..=100).contains(&weight) {
            errors.add(format!("{ppath}.weight"), "must be in the range 1-100");
        }
        match term {
            Some(t) => validate_term(t, &format!("{ppath}.podAffinityTerm"), errors),
            None => errors.add(format!("{ppath}.podAffinityTerm"), "required"),
        }
    }
}

fn validate_term(term: &PodAffinityTerm, path: &str, errors: &mut FieldErrors) {
    check_topology_key(&term.topology_key, &format!("{path}.topologyKey"), errors);
    if let Some(sel) = &term.label_selector {
        validate_selector(sel, &format!("{path}.labelSelector"), errors);
    }
    if let Some(sel) = &term.namespace_selector {
        validate_selector(sel, &format!("{path}.namespaceSelector"), errors);
    }
    for (i, ns) in term.namespaces.iter().enumerate() {
        if !super::names::is_dns1123_label(ns) {
            errors.add(
                format!("{path}.namespaces[{i}]"),
                format!("{ns:?} is not a valid namespace name"),
            );
        }
    }
    validate_label_keys(
        term.label_selector.as_ref(),
        &[
            ("matchLabelKeys", &term.match_label_keys),
            ("mismatchLabelKeys", &term.mismatch_label_keys),
        ],
        path,
        errors,
    );
    let both: BTreeSet<&String> = term
        .match_label_keys
        .iter()
        .filter(|k| term.mismatch_label_keys.contains(k))
        .collect();
    for k in both {
        errors.add(
            format!("{path}.matchLabelKeys"),
            format!("{k:?} exists in both matchLabelKeys and mismatchLabelKeys"),
        );
    }
}

/// `matchLabelKeys` (and `mismatchLabelKeys`): label keys, needing a labelSelector, and not
/// keys the labelSelector already names.
fn validate_label_keys(
    selector: Option<&LabelSelectorSpec>,
    lists: &[(&str, &Vec<String>)],
    path: &str,
    errors: &mut FieldErrors,
) {
    for (field, keys) in lists {
        for (i, k) in keys.iter().enumerate() {
            let kpath = format!("{path}.{field}[{i}]");
            if let Err(e) = validate_label_key(k) {
                errors.add(kpath, e);
                continue;
            }
            let Some(sel) = selector else {
                errors.add(kpath, "must not be specified when labelSelector is not set");
                continue;
            };
            if sel.match_labels.contains_key(k) || sel.match_expressions.iter().any(|e| &e.key == k)
            {
                errors.add(
                    kpath,
                    format!("{k:?} exists in both {field} and labelSelector"),
                );
            }
        }
    }
}

fn check_topology_key(key: &str, path: &str, errors: &mut FieldErrors) {
    if key.is_empty() {
        errors.add(path, "Required value: can not be empty");
    } else if let Err(e) = validate_label_key(key) {
        errors.add(path, e);
    }
}

fn validate_selector(sel: &LabelSelectorSpec, path: &str, errors: &mut FieldErrors) {
    validate_labels(&sel.match_labels, &format!("{path}.matchLabels"), errors);
    if let Err(e) = LabelSelector::from_spec(sel) {
        errors.add(format!("{path}.matchExpressions"), e.reason);
    }
}

fn validate_spread(spec: &PodSpec, path: &str, errors: &mut FieldErrors) {
    let mut seen = BTreeSet::new();
    for (i, c) in spec.topology_spread_constraints.iter().enumerate() {
        let cpath = format!("{path}.topologySpreadConstraints[{i}]");
        if c.max_skew <= 0 {
            errors.add(
                format!("{cpath}.maxSkew"),
                format!("Invalid value: {}: must be greater than zero", c.max_skew),
            );
        }
        check_topology_key(&c.topology_key, &format!("{cpath}.topologyKey"), errors);
        check_one_of_required(
            &c.when_unsatisfiable,
            &["DoNotSchedule", "ScheduleAnyway"],
            &format!("{cpath}.whenUnsatisfiable"),
            errors,
        );
        if let Some(min) = c.min_domains {
            if min <= 0 {
                errors.add(
                    format!("{cpath}.minDomains"),
                    format!("Invalid value: {min}: must be greater than 0"),
                );
            } else if c.when_unsatisfiable != "DoNotSchedule" {
                errors.add(
                    format!("{cpath}.minDomains"),
                    "can only use minDomains if whenUnsatisfiable=DoNotSchedule",
                );
            }
        }
        for (field, value) in [
            ("nodeAffinityPolicy", &c.node_affinity_policy),
            ("nodeTaintsPolicy", &c.node_taints_policy),
        ] {
            if let Some(v) = value {
                check_one_of_required(v, &["Honor", "Ignore"], &format!("{cpath}.{field}"), errors);
            }
        }
        if let Some(sel) = &c.label_selector {
            validate_selector(sel, &format!("{cpath}.labelSelector"), errors);
        }
        validate_label_keys(
            c.label_selector.as_ref(),
            &[("matchLabelKeys", &c.match_label_keys)],
            &cpath,
            errors,
        );
        if !seen.insert((c.topology_key.clone(), c.when_unsatisfiable.clone())) {
            errors.add(
                format!("{cpath}.{{topologyKey, whenUnsatisfiable}}"),
                format!(
                    "Duplicate value: {{{:?}, {:?}}}",
                    c.topology_key, c.when_unsatisfiable
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::v1::*;
    use crate::{IntOrString, IntOrStringValue};

    fn errors_of(meta: Option<&ObjectMeta>, spec: &PodSpec) -> String {
        let mut errors = FieldErrors::default();
        validate_pod_semantics(meta, spec, "spec", &mut errors);
        errors.to_string()
    }

    fn spec_with(c: Container) -> PodSpec {
        PodSpec {
            containers: vec![c],
            ..Default::default()
        }
    }

    fn app() -> Container {
        Container {
            name: "app".into(),
            image: "busybox".into(),
            ports: vec![ContainerPort {
                name: "http".into(),
                container_port: 8080,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn hook(h: LifecycleHandler) -> Container {
        Container {
            lifecycle: Some(Lifecycle {
                pre_stop: Some(h),
                ..Default::default()
            }),
            ..app()
        }
    }

    #[test]
    fn hooks_take_one_handler_kubernetes_runs() {
        let sleep = |seconds| LifecycleHandler {
            sleep: Some(SleepAction { seconds }),
            ..Default::default()
        };
        assert_eq!(errors_of(None, &spec_with(hook(sleep(5)))), "");
        assert_eq!(
            errors_of(None, &spec_with(hook(sleep(31)))),
            "spec.containers[0].lifecycle.preStop.sleep.seconds: Invalid value: 31: must be non-negative and less than terminationGracePeriodSeconds (30)"
        );
        let mut longer = spec_with(hook(sleep(31)));
        longer.termination_grace_period_seconds = Some(60);
        assert_eq!(errors_of(None, &longer), "");
        assert_eq!(
            errors_of(None, &spec_with(hook(LifecycleHandler::default()))),
            "spec.containers[0].lifecycle.preStop: must specify a handler type (exec, httpGet or sleep)"
        );
        let tcp = LifecycleHandler {
            tcp_socket: Some(TcpSocketAction::default()),
            ..Default::default()
        };
        assert!(
            errors_of(None, &spec_with(hook(tcp))).contains("preStop.tcpSocket: not supported")
        );
        let http = |port: IntOrStringValue| LifecycleHandler {
            http_get: Some(HttpGetAction {
                path: "/drain".into(),
                port: Some(IntOrString { value: Some(port) }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            errors_of(
                None,
                &spec_with(hook(http(IntOrStringValue::Str("http".into()))))
            ),
            ""
        );
        assert!(
            errors_of(
                None,
                &spec_with(hook(http(IntOrStringValue::Str("admin".into()))))
            )
            .contains("preStop.httpGet.port: container \"app\" declares no port named \"admin\"")
        );
        let exec = LifecycleHandler {
            exec: Some(ExecAction {
                command: vec!["sh".into(), "-c".into(), "sleep 1".into()],
            }),
            ..Default::default()
        };
        assert_eq!(errors_of(None, &spec_with(hook(exec.clone()))), "");
        let mut wasm = spec_with(hook(exec));
        wasm.runtime_class_name = "wasm".into();
        assert!(
            errors_of(None, &wasm)
                .contains("preStop.exec: a Wasm container cannot run an exec hook"),
            "{}",
            errors_of(None, &wasm)
        );
        let mut init = spec_with(app());
        init.init_containers.push(hook(sleep(1)));
        assert_eq!(
            errors_of(None, &init),
            "spec.initContainers[0].lifecycle: may not be set for init containers"
        );
    }

    #[test]
    fn fields_no_node_honours_are_refused() {
        let mut c = app();
        c.termination_message_path = "/dev/termination-log".into();
        c.termination_message_policy = "File".into();
        assert_eq!(errors_of(None, &spec_with(c.clone())), "", "the defaults");
        c.termination_message_policy = "FallbackToLogsOnError".into();
        c.termination_message_path = "/tmp/msg".into();
        let mut spec = spec_with(c);
        spec.active_deadline_seconds = Some(60);
        let text = errors_of(None, &spec);
        for field in [
            "spec.activeDeadlineSeconds: not supported",
            "spec.containers[0].terminationMessagePath: not supported",
            "spec.containers[0].terminationMessagePolicy: not supported",
        ] {
            assert!(text.contains(field), "{field}: {text}");
        }
    }

    #[test]
    fn host_ports_are_refused_with_the_way_out() {
        let mut c = app();
        c.ports[0].host_port = 80;
        assert!(
            errors_of(None, &spec_with(c))
                .starts_with("spec.containers[0].ports[0].hostPort: not supported")
        );
    }

    fn term(key: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Some(LabelSelectorSpec {
                match_labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            topology_key: key.into(),
            ..Default::default()
        }
    }

    #[test]
    fn affinity_terms_need_a_topology_key_and_valid_selectors() {
        let mut spec = spec_with(app());
        spec.affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: vec![term(
                    "kubernetes.io/hostname",
                )],
                preferred_during_scheduling_ignored_during_execution: vec![
                    WeightedPodAffinityTerm {
                        weight: 100,
                        pod_affinity_term: Some(term("topology.kubernetes.io/zone")),
                    },
                ],
            }),
            ..Default::default()
        });
        assert_eq!(errors_of(None, &spec), "");
        let anti = spec
            .affinity
            .as_mut()
            .unwrap()
            .pod_anti_affinity
            .as_mut()
            .unwrap();
        anti.required_during_scheduling_ignored_during_execution[0].topology_key = String::new();
        anti.required_during_scheduling_ignored_during_execution[0].match_label_keys =
            vec!["app".into()];
        anti.preferred_during_scheduling_ignored_during_execution[0].weight = 0;
        let text = errors_of(None, &spec);
        assert!(text.contains("spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Required value: can not be empty"), "{text}");
        assert!(
            text.contains(
                "matchLabelKeys[0]: \"app\" exists in both matchLabelKeys and labelSelector"
            ),
            "{text}"
        );
        assert!(text.contains("preferredDuringSchedulingIgnoredDuringExecution[0].weight: must be in the range 1-100"), "{text}");
    }

    #[test]
    fn spread_constraints_follow_kubernetes_rules() {
        let constraint = |skew, key: &str, when: &str| TopologySpreadConstraint {
            max_skew: skew,
            topology_key: key.into(),
            when_unsatisfiable: when.into(),
            label_selector: term("x").label_selector,
            ..Default::default()
        };
        let mut spec = spec_with(app());
        spec.topology_spread_constraints = vec![
            constraint(1, "topology.kubernetes.io/zone", "DoNotSchedule"),
            constraint(1, "kubernetes.io/hostname", "ScheduleAnyway"),
        ];
        assert_eq!(errors_of(None, &spec), "");
        spec.topology_spread_constraints.push(constraint(
            0,
            "kubernetes.io/hostname",
            "ScheduleAnyway",
        ));
        spec.topology_spread_constraints[1].min_domains = Some(2);
        spec.topology_spread_constraints[0].when_unsatisfiable = "Sometimes".into();
        let text = errors_of(None, &spec);
        assert!(
            text.contains(
                "topologySpreadConstraints[0].whenUnsatisfiable: unsupported value \"Sometimes\""
            ),
            "{text}"
        );
        assert!(text.contains("topologySpreadConstraints[1].minDomains: can only use minDomains if whenUnsatisfiable=DoNotSchedule"), "{text}");
        assert!(
            text.contains(
                "topologySpreadConstraints[2].maxSkew: Invalid value: 0: must be greater than zero"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "topologySpreadConstraints[2].{topologyKey, whenUnsatisfiable}: Duplicate value"
            ),
            "{text}"
        );
    }

    #[test]
    fn groups_of_wasm_pods_and_the_change_policy() {
        let mut spec = spec_with(app());
        spec.security_context = Some(PodSecurityContext {
            fs_group: Some(2000),
            supplemental_groups: vec![3000],
            fs_group_change_policy: Some("OnRootMismatch".into()),
            ..Default::default()
        });
        assert_eq!(errors_of(None, &spec), "");
        spec.runtime_class_name = "wasm".into();
        assert!(
            errors_of(None, &spec).starts_with(
                "spec.securityContext.supplementalGroups: not supported for a Wasm pod"
            )
        );
        spec.runtime_class_name.clear();
        spec.security_context
            .as_mut()
            .unwrap()
            .fs_group_change_policy = Some("Never".into());
        assert!(
            errors_of(None, &spec).starts_with(
                "spec.securityContext.fsGroupChangePolicy: unsupported value \"Never\""
            )
        );
    }
}
