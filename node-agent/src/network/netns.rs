//! Pod network namespaces: one per pod with OCI containers, shared by all of them, so that the
//! containers of a pod reach each other on `localhost` (Kubernetes' pod sandbox).
//!
//! Made as `ip netns add skiff-<pod uid>` makes them (a bind mount at `/run/netns/...` that
//! keeps the namespace alive with no process in it), over rtnetlink ([`super::netlink`]),
//! loopback brought up, removed with the pod
//! (which also destroys the pod's `eth0` and so its veth pair). The namespace outlives the agent,
//! so a restarted agent finds it in place.
//!
//! [`ensure`] makes the namespace of a pod without an address; [`super::veth::attach`] makes it
//! in the same batch as the pod's `eth0` otherwise.
//!
//! Must not: add interfaces other than loopback ([`super::veth`] gives the pod its `eth0`).
//! Blocking: call from `spawn_blocking`.

use std::path::PathBuf;

use super::iproute::ip;
use super::{NetworkError, netlink};

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
    let path = path(uid);
    if path.exists() {
        return Ok(path);
    }
    let failed = |step: &str| {
        let (step, path) = (format!("pod {uid}: {step}"), path.clone());
        move |source| NetworkError::Netlink { step, path, source }
    };
    // On a thread of its own, which the new namespace keeps.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                netlink::create_netns_here(&path).map_err(failed("creating its namespace"))?;
                let up = (|| {
                    let mut rtnl = netlink::Rtnl::open()?;
                    let lo = rtnl.link_index("lo")?.ok_or(std::io::ErrorKind::NotFound)?;
                    rtnl.set_up(lo, None)
                })();
                if let Err(e) = up {
                    remove(uid);
                    return Err(failed("setting lo up")(e));
                }
                Ok(path.clone())
            })
            .join()
            .unwrap_or_else(|_| Err(NetworkError::Task("pod network thread panicked".into())))
    })
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
