//! The container process's privileges, set in its init just before exec: rlimits, the
//! capability sets (bounding first, then user and groups, then the others), no_new_privs, umask.
//!
//! Must not: raise anything the spec does not list, or run with the executor's own privileges
//! past this point.

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability};
use nix::sys::resource::{Resource, setrlimit};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{Capabilities, PosixRlimitType, Process};

use super::error::{LinuxError, SysContext};

fn to_caps(set: Option<&Capabilities>) -> Result<HashSet<Capability>, LinuxError> {
    let mut out = HashSet::new();
    for c in set.into_iter().flatten() {
        // oci-spec serialises as `CAP_CHOWN`, the name the caps crate parses.
        let name = serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let cap = Capability::from_str(&name).map_err(|e| {
            LinuxError::io(
                format!("capability {name}: {e}"),
                std::io::ErrorKind::InvalidInput.into(),
            )
        })?;
        out.insert(cap);
    }
    Ok(out)
}

fn caps_err(what: &str, e: caps::errors::CapsError) -> LinuxError {
    LinuxError::io(format!("{what}: {e}"), std::io::Error::other(e.to_string()))
}

fn resource(t: PosixRlimitType) -> Option<Resource> {
    Some(match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    })
}

pub fn set_rlimits(process: &Process) -> Result<(), LinuxError> {
    for r in process.rlimits().iter().flatten() {
        if let Some(res) = resource(r.typ()) {
            setrlimit(res, r.soft(), r.hard()).ctx(|| format!("rlimit {:?}", r.typ()))?;
        }
    }
    Ok(())
}

/// Drops to the spec's user and capabilities. Runs as root with every capability on entry.
pub fn drop_privileges(process: &Process) -> Result<(), LinuxError> {
    let spec_caps = process.capabilities().clone().unwrap_or_default();
    let bounding = to_caps(spec_caps.bounding().as_ref())?;
    let effective = to_caps(spec_caps.effective().as_ref())?;
    let permitted = to_caps(spec_caps.permitted().as_ref())?;
    let inheritable = to_caps(spec_caps.inheritable().as_ref())?;
    let ambient = to_caps(spec_caps.ambient().as_ref())?;

    // The bounding set can only shrink, and shrinking it needs CAP_SETPCAP: do it first.
    for cap in caps::all() {
        if !bounding.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| caps_err("bounding set", e))?;
        }
    }
    let user = process.user();
    // Keep the permitted set across the uid change; it is cut to the spec's just after.
    nix::sys::prctl::set_keepcaps(true).ctx(|| "keepcaps".into())?;
    // Exactly the spec's supplementary groups (none unless listed), as runc sets them.
    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).ctx(|| "setgroups".into())?;
    let gid = Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).ctx(|| format!("setgid {}", user.gid()))?;
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).ctx(|| format!("setuid {}", user.uid()))?;
    nix::sys::prctl::set_keepcaps(false).ctx(|| "keepcaps".into())?;

    // Inheritable while the effective set still holds CAP_SETPCAP; effective before permitted,
    // since the effective set must stay within the permitted one at every step.
    caps::set(None, CapSet::Inheritable, &inheritable)
        .map_err(|e| caps_err("inheritable set", e))?;
    caps::set(None, CapSet::Effective, &effective).map_err(|e| caps_err("effective set", e))?;
    caps::set(None, CapSet::Permitted, &permitted).map_err(|e| caps_err("permitted set", e))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| caps_err("ambient set", e))?;
    for cap in ambient {
        caps::raise(None, CapSet::Ambient, cap).map_err(|e| caps_err("ambient set", e))?;
    }
    if process.no_new_privileges() == Some(true) {
        nix::sys::prctl::set_no_new_privs().ctx(|| "no_new_privs".into())?;
    }
    let umask = user.umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    Ok(())
}
