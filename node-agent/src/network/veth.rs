//! A pod's `eth0`: one end of a veth pair inside the pod's network namespace, with the pod's
//! address and a default route via the node bridge's gateway; the other end (`skv` + 12 hex
//! digits of the pod uid's hash) is a port of the bridge.
//!
//! Every step is idempotent (`replace`), so attaching again (a second container, an agent
//! restart) repairs rather than fails.
//!
//! Must not: give the pod any capability over its interface (containers get no CAP_NET_ADMIN
//! from here), or touch other pods' links. Blocking: call from `spawn_blocking`.

use std::net::Ipv4Addr;

use skiff_api::cidr::Ipv4Cidr;

use super::NetworkError;
use super::bridge::fnv1a;
use super::iproute::{ip, link_exists};
use super::netns;

/// The pod's interface inside its namespace.
pub const POD_IFACE: &str = "eth0";

/// The host end of pod `uid`'s veth pair (15 characters).
pub fn host_name(uid: &str) -> String {
    format!("skv{:012x}", fnv1a(uid) & 0xffff_ffff_ffff)
}

/// Gives pod `uid` (whose namespace exists) its `eth0` with `address` in `block`, on `bridge`.
pub fn attach(
    uid: &str,
    bridge: &str,
    address: Ipv4Addr,
    block: Ipv4Cidr,
    gateway: Ipv4Addr,
) -> Result<(), NetworkError> {
    let ns = netns::name(uid);
    let host = host_name(uid);
    if !link_exists(Some(&ns), POD_IFACE) {
        if link_exists(None, &host) {
            // Left by an attempt that failed half-way.
            ip(&["link", "delete", &host])?;
        }
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", POD_IFACE, "netns", &ns,
        ])?;
    }
    ip(&["link", "set", &host, "master", bridge, "up"])?;
    let cidr = format!("{address}/{}", block.prefix());
    ip(&["-n", &ns, "addr", "replace", &cidr, "dev", POD_IFACE])?;
    ip(&["-n", &ns, "link", "set", POD_IFACE, "up"])?;
    let via = gateway.to_string();
    ip(&[
        "-n", &ns, "route", "replace", "default", "via", &via, "dev", POD_IFACE,
    ])?;
    Ok(())
}

/// Removes pod `uid`'s host end (and so the pair), if it exists.
pub fn detach(uid: &str) {
    let host = host_name(uid);
    if link_exists(None, &host)
        && let Err(e) = ip(&["link", "delete", &host])
    {
        tracing::warn!(veth = %host, error = %e, "removing a pod's veth");
    }
}
