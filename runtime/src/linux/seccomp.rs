//! Seccomp: the OCI profile (`linux.seccomp`) compiled to BPF with `seccompiler`, and the
//! runtime default profile skiff gives containers that ask for `RuntimeDefault`.
//!
//! seccompiler filters have one match action each, so a profile becomes a stack the kernel
//! evaluates together (the most restrictive result wins): a base filter that returns the default
//! action for every syscall no rule names (rules there, conditions included, return Allow), and
//! one filter per other action returning it for that action's rules. Names this architecture does
//! not have are skipped, as runc skips them.
//!
//! Must not: install anything itself before the caller asks ([`apply`]), or weaken a profile: a
//! profile it cannot express (an action or operator it does not know) is an error.

use std::collections::{BTreeMap, BTreeSet};

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator, LinuxSyscall};
use seccompiler::{BpfProgram, TargetArch};
use serde_json::{Value, json};

use super::error::LinuxError;

/// Compiled filters, in installation order.
pub type Filters = Vec<BpfProgram>;

fn arch() -> Result<TargetArch, LinuxError> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| LinuxError::Seccomp(format!("architecture {}: {e}", std::env::consts::ARCH)))
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<Value, LinuxError> {
    Ok(match a {
        LinuxSeccompAction::ScmpActAllow => json!("allow"),
        LinuxSeccompAction::ScmpActErrno => {
            json!({"errno": errno.unwrap_or(nix::libc::EPERM as u32)})
        }
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            json!("kill_thread")
        }
        LinuxSeccompAction::ScmpActKillProcess => json!("kill_process"),
        LinuxSeccompAction::ScmpActTrap => json!("trap"),
        LinuxSeccompAction::ScmpActLog => json!("log"),
        other => {
            return Err(LinuxError::Seccomp(format!(
                "action {other:?} is not supported"
            )));
        }
    })
}

fn conditions(rule: &LinuxSyscall) -> Result<Option<Value>, LinuxError> {
    let Some(args) = rule.args().as_ref().filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for a in args {
        let (op, val) = match a.op() {
            LinuxSeccompOperator::ScmpCmpEq => (json!("eq"), a.value()),
            LinuxSeccompOperator::ScmpCmpNe => (json!("ne"), a.value()),
            LinuxSeccompOperator::ScmpCmpLt => (json!("lt"), a.value()),
            LinuxSeccompOperator::ScmpCmpLe => (json!("le"), a.value()),
            LinuxSeccompOperator::ScmpCmpGt => (json!("gt"), a.value()),
            LinuxSeccompOperator::ScmpCmpGe => (json!("ge"), a.value()),
            // libseccomp: (arg & value) == valueTwo.
            LinuxSeccompOperator::ScmpCmpMaskedEq => {
                (json!({"masked_eq": a.value()}), a.value_two().unwrap_or(0))
            }
        };
        out.push(json!({"index": a.index(), "type": "qword", "op": op, "val": val}));
    }
    Ok(Some(Value::Array(out)))
}

/// Does seccompiler know this syscall on this architecture?
fn known(name: &str, arch: TargetArch) -> bool {
    let probe = json!({"p": {"mismatch_action": "allow", "match_action": "log", "filter": [{"syscall": name}]}});
    seccompiler::compile_from_json(probe.to_string().as_bytes(), arch).is_ok()
}

fn compile(filter: Value, arch: TargetArch) -> Result<BpfProgram, LinuxError> {
    let doc = json!({ "f": filter });
    let mut map = seccompiler::compile_from_json(doc.to_string().as_bytes(), arch)
        .map_err(|e| LinuxError::Seccomp(e.to_string()))?;
    map.remove("f")
        .ok_or_else(|| LinuxError::Seccomp("compiler returned no filter".into()))
}

/// Compiles an OCI profile.
pub fn compile_profile(profile: &LinuxSeccomp) -> Result<Filters, LinuxError> {
    let arch = arch()?;
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let syscalls = profile.syscalls().clone().unwrap_or_default();
    let names: BTreeSet<&str> = syscalls
        .iter()
        .flat_map(|s| s.names().iter().map(String::as_str))
        .collect();
    let usable: BTreeSet<&str> = names.into_iter().filter(|n| known(n, arch)).collect();

    let mut base_rules = Vec::new();
    let mut by_action: BTreeMap<String, (Value, Vec<Value>)> = BTreeMap::new();
    for rule in &syscalls {
        let act = action(rule.action(), rule.errno_ret())?;
        let conds = conditions(rule)?;
        for name in rule.names().iter().filter(|n| usable.contains(n.as_str())) {
            let mut r = json!({"syscall": name});
            if let Some(c) = &conds {
                r["args"] = c.clone();
            }
            base_rules.push(r.clone());
            if act != json!("allow") {
                by_action
                    .entry(act.to_string())
                    .or_insert_with(|| (act.clone(), Vec::new()))
                    .1
                    .push(r);
            }
        }
    }
    let mut filters = Vec::new();
    if default != json!("allow") {
        filters.push(compile(
            json!({"mismatch_action": default, "match_action": "allow", "filter": base_rules}),
            arch,
        )?);
    }
    for (_, (act, rules)) in by_action {
        if act == default {
            continue; // the base filter already returns it for these
        }
        filters.push(compile(
            json!({"mismatch_action": "allow", "match_action": act, "filter": rules}),
            arch,
        )?);
    }
    Ok(filters)
}

/// Installs the filters on the calling thread (which must have no_new_privs or CAP_SYS_ADMIN).
pub fn apply(filters: &Filters) -> Result<(), LinuxError> {
    for f in filters {
        seccompiler::apply_filter(f)
            .map_err(|e| LinuxError::Seccomp(format!("installing: {e}")))?;
    }
    Ok(())
}

/// Syscalls the runtime default profile refuses with EPERM: kernel modules, kexec, reboot,
/// clock and swap control, mounts and namespaces, keyrings, bpf and perf, ptrace-like memory
/// access, handle-based opens — the calls container runtimes' default profiles keep from
/// unprivileged containers.
pub const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "fanotify_init",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "syslog",
    "sysfs",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
    "vm86",
    "vm86old",
];

/// `clone` flags that create namespaces: refused, as `unshare` is.
const NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

/// skiff's `RuntimeDefault` profile, as OCI JSON (so that runc enforces the very same profile in
/// differential tests). `clone3` answers ENOSYS so that libcs fall back to `clone`, whose flags a
/// filter can see.
pub fn runtime_default() -> Value {
    let mut syscalls = vec![
        json!({"names": DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": nix::libc::EPERM}),
        json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": nix::libc::ENOSYS}),
    ];
    for flag in NAMESPACE_FLAGS {
        syscalls.push(json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": nix::libc::EPERM,
            "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
        }));
    }
    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": syscalls})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_compiles() {
        let profile: LinuxSeccomp =
            serde_json::from_value(runtime_default()).expect("an OCI seccomp profile");
        let filters = compile_profile(&profile).expect("compiles");
        // Default allow: no base filter; EPERM and ENOSYS filters.
        assert_eq!(filters.len(), 2);
    }

    #[test]
    fn an_allow_list_gets_a_base_filter() {
        let profile: LinuxSeccomp = serde_json::from_value(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                {"names": ["read", "write", "exit_group", "no_such_call"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"}
            ]
        }))
        .expect("profile");
        assert_eq!(compile_profile(&profile).expect("compiles").len(), 2);
        let bad: LinuxSeccomp = serde_json::from_value(json!({
            "defaultAction": "SCMP_ACT_NOTIFY"
        }))
        .expect("profile");
        assert!(compile_profile(&bad).is_err());
    }
}
