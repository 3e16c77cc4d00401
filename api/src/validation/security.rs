//! Security fields of a pod that skiff's nodes cannot honour, refused by validation with the
//! reason (DESIGN §4: a field Kubernetes knows but skiff does not honour is refused, never
//! accepted and ignored).
//!
//! Refused whatever the namespace's Pod Security level:
//! - `hostNetwork: true`: every pod gets a network namespace of its own (Wasm pods share the
//!   node's only when they are granted no sockets, which is not the host network either).
//! - `shareProcessNamespace: true`: each container has a PID namespace of its own.
//! - `securityContext.privileged: true`: no container runs with every capability and device.
//! - `securityContext.allowPrivilegeEscalation: true`: every container runs with
//!   `no_new_privs`.
//! - `seccompProfile.type: Unconfined` (the node always applies its RuntimeDefault profile) and
//!   `Localhost` (no profiles are read from the node).
//! - `capabilities.add` of a name that is not a Linux capability, and any `add` in a Wasm
//!   container (a Wasm guest has no capabilities to be given).
//! - pod `securityContext.fsGroup` and `supplementalGroups`: volumes are not chowned and the
//!   process gets only its `runAsGroup`.
//!
//! Must not: judge what a namespace allows (that is Pod Security admission, in the control
//! plane), or refuse fields that the nodes do honour.

use super::FieldErrors;
use crate::v1::{Container, ObjectMeta, PodSpec, SecurityContext};

/// The Linux capabilities (`capabilities(7)`), as the API spells them (without `CAP_`).
pub const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// A capability name as the API accepts it: `NET_ADMIN` or `CAP_NET_ADMIN`, any case; `ALL`
/// only in `drop`.
fn is_capability(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITIES.contains(&bare)
}

/// The pod-level fields (`path` is the pod spec's: `spec`, or a template's `spec.template.spec`).
pub fn validate_pod_security(spec: &PodSpec, path: &str, errors: &mut FieldErrors) {
    if spec.host_network {
        errors.add(
            format!("{path}.hostNetwork"),
            "not supported: every skiff pod gets a network namespace of its own (expose a pod with a NodePort Service instead)",
        );
    }
    if spec.share_process_namespace == Some(true) {
        errors.add(
            format!("{path}.shareProcessNamespace"),
            "not supported: each container of a skiff pod has a process namespace of its own",
        );
    }
    if let Some(sc) = &spec.security_context {
        let spath = format!("{path}.securityContext");
        // fsGroup and supplementalGroups are honoured (volume ownership, the processes'
        // groups): pod_semantics checks what is left of them.
        if let Some(sp) = &sc.seccomp_profile {
            check_seccomp(&sp.r#type, &format!("{spath}.seccompProfile.type"), errors);
        }
    }
}

/// One container's `securityContext`; `wasm` says whether it runs in wasmtime.
pub fn validate_container_security(
    c: &Container,
    path: &str,
    wasm: bool,
    errors: &mut FieldErrors,
) {
    let Some(sc) = &c.security_context else {
        return;
    };
    let spath = format!("{path}.securityContext");
    check_container_context(sc, &spath, wasm, errors);
}

fn check_container_context(
    sc: &SecurityContext,
    spath: &str,
    wasm: bool,
    errors: &mut FieldErrors,
) {
    if sc.privileged == Some(true) {
        errors.add(
            format!("{spath}.privileged"),
            "not supported: skiff runs no privileged containers",
        );
    }
    if sc.allow_privilege_escalation == Some(true) {
        errors.add(
            format!("{spath}.allowPrivilegeEscalation"),
            "not supported: skiff always runs containers with no_new_privs (leave it unset or false)",
        );
    }
    if let Some(sp) = &sc.seccomp_profile {
        check_seccomp(&sp.r#type, &format!("{spath}.seccompProfile.type"), errors);
    }
    if let Some(caps) = &sc.capabilities {
        for (i, name) in caps.add.iter().enumerate() {
            let cpath = format!("{spath}.capabilities.add[{i}]");
            if wasm {
                errors.add(
                    cpath,
                    format!("not supported in a Wasm container: a Wasm guest has no capabilities ({name:?})"),
                );
            } else if !is_capability(name) {
                errors.add(cpath, format!("{name:?} is not a Linux capability"));
            }
        }
        for (i, name) in caps.drop.iter().enumerate() {
            if !name.eq_ignore_ascii_case("ALL") && !is_capability(name) {
                errors.add(
                    format!("{spath}.capabilities.drop[{i}]"),
                    format!("{name:?} is not a Linux capability (or ALL)"),
                );
            }
        }
    }
}

fn check_seccomp(kind: &str, path: &str, errors: &mut FieldErrors) {
    match kind {
        "RuntimeDefault" => {}
        "Unconfined" => errors.add(
            path,
            "\"Unconfined\" is not supported: skiff always applies its RuntimeDefault seccomp profile",
        ),
        "Localhost" => errors.add(
            path,
            "\"Localhost\" is not supported: skiff reads no seccomp profiles from the node (use RuntimeDefault)",
        ),
        "" => errors.add(path, "required: RuntimeDefault"),
        other => errors.add(
            path,
            format!("unsupported value {other:?}: supported values are \"RuntimeDefault\""),
        ),
    }
}

/// The security fields of every container of `spec`, each judged as the Wasm or Linux container
/// it is ([`super::pod::containers_by_kind`]).
pub fn validate_containers_security(
    meta: Option<&ObjectMeta>,
    spec: &PodSpec,
    path: &str,
    errors: &mut FieldErrors,
) {
    for (cpath, c, wasm) in super::pod::containers_by_kind(meta, spec, path) {
        validate_container_security(c, &cpath, wasm, errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Capabilities, PodSecurityContext, SeccompProfile};

    fn pod(wasm: bool, sc: SecurityContext) -> PodSpec {
        PodSpec {
            runtime_class_name: if wasm { "wasm".into() } else { String::new() },
            containers: vec![Container {
                name: "app".into(),
                image: "x".into(),
                security_context: Some(sc),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn errors_of(spec: &PodSpec) -> String {
        let mut errors = FieldErrors::default();
        validate_pod_security(spec, "spec", &mut errors);
        validate_containers_security(None, spec, "spec", &mut errors);
        errors.to_string()
    }

    #[test]
    fn fields_skiff_cannot_honour_are_refused_naming_the_field() {
        let mut spec = pod(false, SecurityContext::default());
        spec.host_network = true;
        spec.share_process_namespace = Some(true);
        spec.security_context = Some(PodSecurityContext {
            fs_group: Some(2000),
            supplemental_groups: vec![3000],
            seccomp_profile: Some(SeccompProfile {
                r#type: "Unconfined".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let e = errors_of(&spec);
        assert!(
            !e.contains("fsGroup") && !e.contains("supplementalGroups"),
            "{e}"
        );
        for field in [
            "spec.hostNetwork: not supported",
            "spec.shareProcessNamespace: not supported",
            "spec.securityContext.seccompProfile.type: \"Unconfined\" is not supported",
        ] {
            assert!(e.contains(field), "{field}: {e}");
        }
        let e = errors_of(&pod(
            false,
            SecurityContext {
                privileged: Some(true),
                allow_privilege_escalation: Some(true),
                seccomp_profile: Some(SeccompProfile {
                    r#type: "Localhost".into(),
                    localhost_profile: "p.json".into(),
                }),
                capabilities: Some(Capabilities {
                    add: vec!["NET_ADMIN".into(), "cap_sys_time".into(), "FLY".into()],
                    drop: vec!["ALL".into(), "WINGS".into()],
                }),
                ..Default::default()
            },
        ));
        let c = "spec.containers[0].securityContext";
        for field in [
            format!("{c}.privileged: not supported"),
            format!("{c}.allowPrivilegeEscalation: not supported"),
            format!("{c}.seccompProfile.type: \"Localhost\" is not supported"),
            format!("{c}.capabilities.add[2]: \"FLY\" is not a Linux capability"),
            format!("{c}.capabilities.drop[1]: \"WINGS\" is not a Linux capability"),
        ] {
            assert!(e.contains(&field), "{field}: {e}");
        }
        assert!(!e.contains("add[0]") && !e.contains("add[1]"), "{e}");
    }

    #[test]
    fn what_nodes_honour_passes() {
        let ok = SecurityContext {
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            run_as_non_root: Some(true),
            run_as_user: Some(1000),
            read_only_root_filesystem: Some(true),
            seccomp_profile: Some(SeccompProfile {
                r#type: "RuntimeDefault".into(),
                ..Default::default()
            }),
            capabilities: Some(Capabilities {
                add: vec!["NET_BIND_SERVICE".into()],
                drop: vec!["ALL".into()],
            }),
            ..Default::default()
        };
        assert_eq!(errors_of(&pod(false, ok.clone())), "");
        // A Wasm container has no capabilities to add; dropping is harmless.
        let e = errors_of(&pod(true, ok.clone()));
        assert!(
            e.contains("spec.containers[0].securityContext.capabilities.add[0]: not supported in a Wasm container"),
            "{e}"
        );
        let mut wasm = ok;
        wasm.capabilities = Some(Capabilities {
            add: vec![],
            drop: vec!["ALL".into()],
        });
        assert_eq!(errors_of(&pod(true, wasm)), "");
    }
}
