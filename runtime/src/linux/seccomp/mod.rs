//! Seccomp: the OCI profile (`linux.seccomp`) compiled to BPF with `seccompiler`, and the
//! runtime default profile skiff gives containers that ask for `RuntimeDefault`
//! ([`runtime_default`]: an allow-list, containerd's default profile as the reference).
//!
//! seccompiler filters have one match action each, so a profile becomes a stack the kernel
//! evaluates together (the most restrictive result wins): a base filter that returns the default
//! action for every syscall no rule names (rules there, conditions included, return Allow), and
//! one filter per other action returning it for that action's rules. Names this architecture does
//! not have are skipped, as runc skips them. On x86_64 every profile also gets [`x32_guard`]: the
//! x32 ABI's syscall numbers (`nr | 0x40000000`, under the same audit architecture) answer EPERM
//! whatever the profile says, so a rule written for a 64-bit number cannot be sidestepped through
//! its x32 twin.
//!
//! [`compile_profile_cached`] keeps each profile's compile in the runtime's state root, so only
//! the first container of a profile pays for it.
//!
//! Must not: install anything itself before the caller asks ([`apply`]), or weaken a profile: a
//! profile it cannot express (an action or operator it does not know) is an error.

mod cache;
mod runtime_default;

pub use cache::compile_profile_cached;
pub use runtime_default::{ALLOWED, CAPABILITY_GATED, runtime_default};

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

/// The names seccompiler knows on this architecture: all of them in one probe when it can (a
/// profile of hundreds of names is compiled in every container's init), else name by name.
fn usable(names: BTreeSet<&str>, arch: TargetArch) -> BTreeSet<&str> {
    let filter: Vec<Value> = names.iter().map(|n| json!({"syscall": n})).collect();
    let probe = json!({"p": {"mismatch_action": "allow", "match_action": "log", "filter": filter}});
    if seccompiler::compile_from_json(probe.to_string().as_bytes(), arch).is_ok() {
        return names;
    }
    names.into_iter().filter(|n| known(n, arch)).collect()
}

fn compile(filter: Value, arch: TargetArch) -> Result<BpfProgram, LinuxError> {
    let doc = json!({ "f": filter });
    let mut map = seccompiler::compile_from_json(doc.to_string().as_bytes(), arch)
        .map_err(|e| LinuxError::Seccomp(e.to_string()))?;
    map.remove("f")
        .ok_or_else(|| LinuxError::Seccomp("compiler returned no filter".into()))
}

/// Compiles an OCI profile: its filters, in installation order.
pub fn compile_profile(profile: &LinuxSeccomp) -> Result<Filters, LinuxError> {
    let arch = arch()?;
    let mut filters: Filters = x32_guard().into_iter().collect();
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let syscalls = profile.syscalls().clone().unwrap_or_default();
    let names: BTreeSet<&str> = syscalls
        .iter()
        .flat_map(|s| s.names().iter().map(String::as_str))
        .collect();
    let usable = usable(names, arch);

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

/// `SECCOMP_RET_ERRNO | EPERM`, `SECCOMP_RET_ALLOW`.
const RET_EPERM: u32 = 0x0005_0000 | nix::libc::EPERM as u32;
const RET_ALLOW: u32 = 0x7fff_0000;

/// The bit that marks an x32 syscall number on x86_64 (`__X32_SYSCALL_BIT`).
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// On x86_64, a filter answering EPERM to every syscall number with [`X32_SYSCALL_BIT`] set
/// (anything at or above it: no x86_64 number is that large) and allowing the rest; on other
/// architectures none. It runs beside the profile's filters, so it never allows what they refuse.
pub fn x32_guard() -> Option<BpfProgram> {
    if std::env::consts::ARCH != "x86_64" {
        return None;
    }
    use seccompiler::sock_filter;
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x05 | 0x10;
    const JGE_K: u16 = 0x05 | 0x30;
    const RET_K: u16 = 0x06;
    /// `AUDIT_ARCH_X86_64`.
    const ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    let op = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    Some(vec![
        op(LD_W_ABS, 0, 0, 4),            // arch
        op(JEQ_K, 0, 3, ARCH_X86_64),     // another architecture: allow (its own filters judge)
        op(LD_W_ABS, 0, 0, 0),            // nr
        op(JGE_K, 0, 1, X32_SYSCALL_BIT), // x32: refuse
        op(RET_K, 0, 0, RET_EPERM),
        op(RET_K, 0, 0, RET_ALLOW),
    ])
}

#[cfg(test)]
mod bpf_eval;
#[cfg(test)]
mod tests;
