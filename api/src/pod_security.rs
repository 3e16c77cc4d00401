//! The Pod Security Standards (Kubernetes' `privileged`, `baseline` and `restricted` levels) as a
//! pure function of a pod spec, and the namespace labels that choose a level:
//! `pod-security.kubernetes.io/enforce`, `.../warn` and `.../audit`, each with a `-version`.
//!
//! The checks are Kubernetes' for the fields skiff's API has (the `latest` policy); those for
//! fields skiff does not have (AppArmor, SELinux, `procMount`, sysctls, Windows host processes)
//! have nothing to look at. Every version label value is accepted (`latest`, `v1.30`) and judged
//! by the latest policy. Messages are Kubernetes' (`allowPrivilegeEscalation != false (container
//! "app" must set securityContext.allowPrivilegeEscalation=false)`), so that what users search
//! for is what they see.
//!
//! Must not: read namespaces or refuse writes (the control plane's admission link does, with this).

use std::collections::BTreeMap;
use std::fmt;

use crate::v1::{Container, PodSpec, SecurityContext};
use crate::validation::FieldErrors;

/// The label choosing the level pods are refused by.
pub const ENFORCE: &str = "pod-security.kubernetes.io/enforce";
/// The label choosing the level pods are warned about.
pub const WARN: &str = "pod-security.kubernetes.io/warn";
/// The label choosing the level audited (accepted; skiff's audit log does not record it yet).
pub const AUDIT: &str = "pod-security.kubernetes.io/audit";

/// A Pod Security Standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "privileged" => Some(Self::Privileged),
            "baseline" => Some(Self::Baseline),
            "restricted" => Some(Self::Restricted),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }
}

/// A level and the policy version named with it (`restricted:latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub level: Level,
    pub version: String,
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

/// A version label value: `latest` or `v1.N`.
fn is_version(value: &str) -> bool {
    value == "latest"
        || value.strip_prefix("v1.").is_some_and(|minor| {
            !minor.is_empty() && minor.len() <= 3 && minor.bytes().all(|b| b.is_ascii_digit())
        })
}

/// The policy of `mode` (one of [`ENFORCE`], [`WARN`], [`AUDIT`]) in a namespace's `labels`;
/// `None` when the mode's label is absent (or invalid: validation refuses such a namespace).
pub fn policy(labels: &BTreeMap<String, String>, mode: &str) -> Option<Policy> {
    let level = Level::parse(labels.get(mode)?)?;
    let version = labels
        .get(&format!("{mode}-version"))
        .filter(|v| is_version(v))
        .cloned()
        .unwrap_or_else(|| "latest".to_string());
    Some(Policy { level, version })
}

/// The namespace labels' values: a level for each mode, `latest` or `v1.N` for each version.
pub fn validate_labels(labels: &BTreeMap<String, String>, errors: &mut FieldErrors) {
    for mode in [ENFORCE, WARN, AUDIT] {
        if let Some(value) = labels.get(mode)
            && Level::parse(value).is_none()
        {
            errors.add(
                format!("metadata.labels[{mode}]"),
                format!(
                    "invalid value {value:?}: must be one of \"privileged\", \"baseline\", \"restricted\""
                ),
            );
        }
        let version = format!("{mode}-version");
        if let Some(value) = labels.get(&version)
            && !is_version(value)
        {
            errors.add(
                format!("metadata.labels[{version}]"),
                format!("invalid value {value:?}: must be \"latest\" or \"v1.<minor>\""),
            );
        }
    }
}

/// One failed check: Kubernetes' reason and detail (`host namespaces`, `hostNetwork=true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub reason: &'static str,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.detail)
    }
}

/// All violations, joined as Kubernetes joins them (`, `).
pub fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Capabilities the baseline level allows to be added (Kubernetes' list).
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// `"a", "b"` or `"a"`, quoted as Kubernetes lists names.
fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `container "a"` or `containers "a", "b"`.
fn containers(names: &[&str]) -> String {
    if names.len() == 1 {
        format!("container {}", quoted(names))
    } else {
        format!("containers {}", quoted(names))
    }
}

/// `pod or container "a"` / `pod or containers "a", "b"`.
fn pod_or(names: &[&str]) -> String {
    format!("pod or {}", containers(names))
}

fn all_containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers.iter().chain(&spec.containers)
}

/// Names of the containers for which `bad` holds (no Kubernetes check treats init containers
/// apart).
fn failing(spec: &PodSpec, mut bad: impl FnMut(&Container) -> bool) -> Vec<&str> {
    all_containers(spec)
        .filter(|c| bad(c))
        .map(|c| c.name.as_str())
        .collect()
}

fn sc(c: &Container) -> Option<&SecurityContext> {
    c.security_context.as_ref()
}

fn cap_name(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper).to_string()
}

/// What `spec` violates at `level` (empty: allowed). A level includes the checks of the levels
/// below it.
pub fn check(level: Level, spec: &PodSpec) -> Vec<Violation> {
    let mut out = Vec::new();
    if level == Level::Privileged {
        return out;
    }
    baseline(spec, &mut out);
    if level == Level::Restricted {
        restricted(spec, &mut out);
    }
    out
}

fn baseline(spec: &PodSpec, out: &mut Vec<Violation>) {
    let mut host = Vec::new();
    if spec.host_network {
        host.push("hostNetwork=true");
    }
    if !host.is_empty() {
        out.push(Violation {
            reason: "host namespaces",
            detail: host.join(", "),
        });
    }
    let privileged = failing(spec, |c| sc(c).and_then(|s| s.privileged) == Some(true));
    if !privileged.is_empty() {
        out.push(Violation {
            reason: "privileged",
            detail: format!(
                "{} must not set securityContext.privileged=true",
                containers(&privileged)
            ),
        });
    }
    let mut added: Vec<String> = Vec::new();
    let adders = failing(spec, |c| {
        let extra: Vec<String> = sc(c)
            .and_then(|s| s.capabilities.as_ref())
            .map(|caps| {
                caps.add
                    .iter()
                    .map(|a| cap_name(a))
                    .filter(|a| !BASELINE_CAPABILITIES.contains(&a.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        for e in &extra {
            if !added.contains(e) {
                added.push(e.clone());
            }
        }
        !extra.is_empty()
    });
    if !adders.is_empty() {
        let names: Vec<&str> = added.iter().map(String::as_str).collect();
        out.push(Violation {
            reason: "non-default capabilities",
            detail: format!(
                "{} must not include {} in securityContext.capabilities.add",
                containers(&adders),
                quoted(&names)
            ),
        });
    }
    let host_paths: Vec<&str> = spec
        .volumes
        .iter()
        .filter(|v| v.host_path.is_some())
        .map(|v| v.name.as_str())
        .collect();
    if !host_paths.is_empty() {
        out.push(Violation {
            reason: "hostPath volumes",
            detail: format!(
                "volume{} {}",
                if host_paths.len() == 1 { "" } else { "s" },
                quoted(&host_paths)
            ),
        });
    }
    let mut ports: Vec<String> = Vec::new();
    let porters = failing(spec, |c| {
        let mine: Vec<String> = c
            .ports
            .iter()
            .filter(|p| p.host_port != 0)
            .map(|p| p.host_port.to_string())
            .collect();
        ports.extend(mine.iter().cloned());
        !mine.is_empty()
    });
    if !porters.is_empty() {
        out.push(Violation {
            reason: "hostPort",
            detail: format!(
                "{} use{} {}",
                containers(&porters),
                if porters.len() == 1 { "s" } else { "" },
                if ports.len() == 1 {
                    format!("hostPort {}", ports[0])
                } else {
                    format!("hostPorts {}", ports.join(", "))
                }
            ),
        });
    }
    let unconfined = |t: Option<&str>| t == Some("Unconfined");
    let pod_seccomp = spec
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
        .map(|p| p.r#type.as_str());
    let mut forbidden = Vec::new();
    if unconfined(pod_seccomp) {
        forbidden.push(
            "pod must not set securityContext.seccompProfile.type to \"Unconfined\"".to_string(),
        );
    }
    let bad = failing(spec, |c| {
        unconfined(
            sc(c)
                .and_then(|s| s.seccomp_profile.as_ref())
                .map(|p| p.r#type.as_str()),
        )
    });
    if !bad.is_empty() {
        forbidden.push(format!(
            "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
            containers(&bad)
        ));
    }
    if !forbidden.is_empty() {
        out.push(Violation {
            reason: "seccompProfile",
            detail: forbidden.join("; "),
        });
    }
}

fn restricted(spec: &PodSpec, out: &mut Vec<Violation>) {
    const ALLOWED_VOLUMES: &str = "configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected, secret";
    let restricted_volumes: Vec<&str> = spec
        .volumes
        .iter()
        .filter(|v| v.host_path.is_some())
        .map(|v| v.name.as_str())
        .collect();
    if !restricted_volumes.is_empty() {
        out.push(Violation {
            reason: "restricted volume types",
            detail: format!(
                "volume{} {} use{} restricted volume type \"hostPath\" (allowed: {ALLOWED_VOLUMES})",
                if restricted_volumes.len() == 1 { "" } else { "s" },
                quoted(&restricted_volumes),
                if restricted_volumes.len() == 1 { "s" } else { "" },
            ),
        });
    }
    let escalating = failing(spec, |c| {
        sc(c).and_then(|s| s.allow_privilege_escalation) != Some(false)
    });
    if !escalating.is_empty() {
        out.push(Violation {
            reason: "allowPrivilegeEscalation != false",
            detail: format!(
                "{} must set securityContext.allowPrivilegeEscalation=false",
                containers(&escalating)
            ),
        });
    }
    let mut not_dropping = Vec::new();
    let mut adding: Vec<String> = Vec::new();
    let mut adders = Vec::new();
    for c in all_containers(spec) {
        let caps = sc(c).and_then(|s| s.capabilities.as_ref());
        let drops_all = caps.is_some_and(|k| k.drop.iter().any(|d| d.eq_ignore_ascii_case("ALL")));
        if !drops_all {
            not_dropping.push(c.name.as_str());
        }
        let extra: Vec<String> = caps
            .map(|k| {
                k.add
                    .iter()
                    .map(|a| cap_name(a))
                    .filter(|a| a != "NET_BIND_SERVICE")
                    .collect()
            })
            .unwrap_or_default();
        if !extra.is_empty() {
            adders.push(c.name.as_str());
            for e in extra {
                if !adding.contains(&e) {
                    adding.push(e);
                }
            }
        }
    }
    let mut caps = Vec::new();
    if !not_dropping.is_empty() {
        caps.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers(&not_dropping)
        ));
    }
    if !adders.is_empty() {
        let names: Vec<&str> = adding.iter().map(String::as_str).collect();
        caps.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers(&adders),
            quoted(&names)
        ));
    }
    if !caps.is_empty() {
        out.push(Violation {
            reason: "unrestricted capabilities",
            detail: caps.join("; "),
        });
    }
    let pod_sc = spec.security_context.as_ref();
    // runAsNonRoot: true at the pod, not overridden with false by a container; or true in
    // every container.
    let pod_non_root = pod_sc.and_then(|s| s.run_as_non_root);
    let explicit_false = failing(spec, |c| {
        sc(c).and_then(|s| s.run_as_non_root) == Some(false)
    });
    let unset = failing(spec, |c| sc(c).and_then(|s| s.run_as_non_root).is_none());
    let mut non_root = Vec::new();
    if pod_non_root == Some(false) {
        non_root.push("pod must not set securityContext.runAsNonRoot=false".to_string());
    }
    if !explicit_false.is_empty() {
        non_root.push(format!(
            "{} must not set securityContext.runAsNonRoot=false",
            containers(&explicit_false)
        ));
    }
    if pod_non_root != Some(true) && !unset.is_empty() {
        non_root.push(format!(
            "{} must set securityContext.runAsNonRoot=true",
            pod_or(&unset)
        ));
    }
    if !non_root.is_empty() {
        out.push(Violation {
            reason: "runAsNonRoot != true",
            detail: non_root.join("; "),
        });
    }
    let mut root = Vec::new();
    if pod_sc.and_then(|s| s.run_as_user) == Some(0) {
        root.push("pod must not set runAsUser=0".to_string());
    }
    let root_containers = failing(spec, |c| sc(c).and_then(|s| s.run_as_user) == Some(0));
    if !root_containers.is_empty() {
        root.push(format!(
            "{} must not set runAsUser=0",
            containers(&root_containers)
        ));
    }
    if !root.is_empty() {
        out.push(Violation {
            reason: "runAsUser=0",
            detail: root.join("; "),
        });
    }
    let allowed = |t: Option<&str>| matches!(t, Some("RuntimeDefault" | "Localhost"));
    let pod_type = pod_sc
        .and_then(|s| s.seccomp_profile.as_ref())
        .map(|p| p.r#type.as_str());
    let container_type = |c: &Container| {
        sc(c)
            .and_then(|s| s.seccomp_profile.as_ref())
            .map(|p| p.r#type.as_str().to_string())
    };
    let unset_seccomp = failing(spec, |c| {
        let own = container_type(c);
        match own.as_deref() {
            Some(t) => !allowed(Some(t)) && t != "Unconfined",
            None => !allowed(pod_type),
        }
    });
    if !unset_seccomp.is_empty() && pod_type != Some("Unconfined") {
        let who = if allowed(pod_type) {
            containers(&unset_seccomp)
        } else {
            pod_or(&unset_seccomp)
        };
        out.push(Violation {
            reason: "seccompProfile",
            detail: format!(
                "{who} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\""
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{
        Capabilities, ContainerPort, HostPathVolumeSource, PodSecurityContext, SeccompProfile,
        Volume,
    };

    fn container(name: &str, sc: Option<SecurityContext>) -> Container {
        Container {
            name: name.into(),
            image: "x".into(),
            security_context: sc,
            ..Default::default()
        }
    }

    fn restricted_context() -> SecurityContext {
        SecurityContext {
            allow_privilege_escalation: Some(false),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                add: vec![],
                drop: vec!["ALL".into()],
            }),
            seccomp_profile: Some(SeccompProfile {
                r#type: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_bare_pod_is_baseline_but_not_restricted() {
        let spec = PodSpec {
            containers: vec![container("app", None)],
            ..Default::default()
        };
        assert!(check(Level::Baseline, &spec).is_empty());
        assert!(check(Level::Privileged, &spec).is_empty());
        let shown = describe(&check(Level::Restricted, &spec));
        assert_eq!(
            shown,
            "allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false), \
             unrestricted capabilities (container \"app\" must set securityContext.capabilities.drop=[\"ALL\"]), \
             runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true), \
             seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"
        );
    }

    #[test]
    fn a_restricted_pod_passes_every_level() {
        let spec = PodSpec {
            containers: vec![
                container("app", Some(restricted_context())),
                container("side", Some(restricted_context())),
            ],
            ..Default::default()
        };
        for level in [Level::Privileged, Level::Baseline, Level::Restricted] {
            assert!(check(level, &spec).is_empty(), "{level:?}");
        }
        // Pod-level runAsNonRoot and seccomp cover containers that leave them unset.
        let mut lean = restricted_context();
        lean.run_as_non_root = None;
        lean.seccomp_profile = None;
        let spec = PodSpec {
            containers: vec![container("app", Some(lean))],
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                seccomp_profile: Some(SeccompProfile {
                    r#type: "RuntimeDefault".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(check(Level::Restricted, &spec).is_empty());
    }

    #[test]
    fn baseline_refuses_host_access_and_extra_capabilities() {
        let mut sc = SecurityContext {
            privileged: Some(true),
            capabilities: Some(Capabilities {
                add: vec!["SYS_ADMIN".into(), "CHOWN".into()],
                drop: vec![],
            }),
            ..Default::default()
        };
        sc.seccomp_profile = Some(SeccompProfile {
            r#type: "Unconfined".into(),
            ..Default::default()
        });
        let mut c = container("app", Some(sc));
        c.ports = vec![ContainerPort {
            container_port: 80,
            host_port: 8080,
            ..Default::default()
        }];
        let spec = PodSpec {
            host_network: true,
            containers: vec![c],
            volumes: vec![Volume {
                name: "root".into(),
                host_path: Some(HostPathVolumeSource {
                    path: "/".into(),
                    r#type: String::new(),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let shown = describe(&check(Level::Baseline, &spec));
        assert_eq!(
            shown,
            "host namespaces (hostNetwork=true), \
             privileged (container \"app\" must not set securityContext.privileged=true), \
             non-default capabilities (container \"app\" must not include \"SYS_ADMIN\" in securityContext.capabilities.add), \
             hostPath volumes (volume \"root\"), \
             hostPort (container \"app\" uses hostPort 8080), \
             seccompProfile (container \"app\" must not set securityContext.seccompProfile.type to \"Unconfined\")"
        );
    }

    #[test]
    fn labels_choose_the_policy_and_bad_values_are_refused() {
        let labels: BTreeMap<String, String> = [
            (ENFORCE, "restricted"),
            ("pod-security.kubernetes.io/enforce-version", "v1.30"),
            (WARN, "baseline"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            policy(&labels, ENFORCE).map(|p| p.to_string()),
            Some("restricted:v1.30".to_string())
        );
        assert_eq!(
            policy(&labels, WARN).map(|p| p.to_string()),
            Some("baseline:latest".to_string())
        );
        assert_eq!(policy(&labels, AUDIT), None);
        let mut errors = FieldErrors::default();
        validate_labels(&labels, &mut errors);
        assert!(errors.is_empty(), "{errors}");
        let bad: BTreeMap<String, String> = [
            (ENFORCE, "strict"),
            ("pod-security.kubernetes.io/warn-version", "2"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut errors = FieldErrors::default();
        validate_labels(&bad, &mut errors);
        let shown = errors.to_string();
        assert!(
            shown.contains(
                "metadata.labels[pod-security.kubernetes.io/enforce]: invalid value \"strict\""
            ) && shown.contains(
                "metadata.labels[pod-security.kubernetes.io/warn-version]: invalid value \"2\""
            ),
            "{shown}"
        );
    }
}
