//! Pod network namespaces: one per pod with OCI containers, shared by all of them, so that the
//! containers of a pod reach each other on `localhost` (Kubernetes' pod sandbox).
//!
//! Made with iproute2 (`ip netns add skiff-<pod uid>`, a bind mount at `/run/netns/...` that
//! keeps the namespace alive with no process in it), loopback brought up, removed with the pod
//! (which also destroys the pod's `eth0` and so its veth pair). The namespace outlives the agent,
//! so a restarted agent finds it in place.
//!
//! [`ensure`] makes the namespace of a pod without an address; [`super::veth::attach`] makes it
//! in the same batch as the pod's `eth0` otherwise.
//!
//! Must not: add interfaces other than loopback ([`super::veth`] gives the pod its `eth0`).
//! Blocking: call from `spawn_blocking`.

use std::path::PathBuf;

use super::NetworkError;
use super::iproute::ip;

/// The namespace's name for pod `uid`.
pub fn name(uid: &str) -> String {
    format!("skiff-{uid}")
}

/// The namespace file of pod `uid`.
pub fn path(uid: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name(uid))
}

/// The namespace file of pod `uid`, made (with loopback up) if missing.
pub fn ensure(uid: &str) -> Result<PathBuf, NetworkError> {
    let name = name(uid);
    let path = path(uid);
    if path.exists() {
        return Ok(path);
    }
    ip(&["netns", "add", &name])?;
    if let Err(e) = ip(&["-n", &name, "link", "set", "lo", "up"]) {
        let _ = ip(&["netns", "delete", &name]);
        return Err(e);
    }
    Ok(path)
}

/// Removes pod `uid`'s namespace, if any.
pub fn remove(uid: &str) {
    let name = name(uid);
    if !path(uid).exists() {
        return;
    }
    if let Err(e) = ip(&["netns", "delete", &name]) {
        tracing::warn!(netns = %name, error = %e, "removing a pod network namespace");
    }
}
