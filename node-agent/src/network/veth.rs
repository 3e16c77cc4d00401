//! A pod's `eth0`: one end of a veth pair inside the pod's network namespace, with the pod's
//! address and a default route via the node bridge's gateway; the other end (`skv` + 12 hex
//! digits of the pod uid's hash) is a port of the bridge.
//!
//! Every step is idempotent (`replace`), so attaching again (a second container, an agent
//! restart) repairs rather than fails. A pod with an address gets its namespace here too (the
//! `netns add` rides in the same `ip -batch` as its veth pair): attaching costs two processes,
//! where one `ip` per step cost nine, some 20 ms of a function's scale from zero.
//!
//! Must not: give the pod any capability over its interface (containers get no CAP_NET_ADMIN
//! from here), or touch other pods' links. Blocking: call from `spawn_blocking`.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use skiff_api::cidr::Ipv4Cidr;

use super::NetworkError;
use super::bridge::fnv1a;
use super::iproute::{host_link_exists, ip, ip_batch};
use super::netns;

/// The pod's interface inside its namespace.
pub const POD_IFACE: &str = "eth0";

/// The host end of pod `uid`'s veth pair (15 characters).
pub fn host_name(uid: &str) -> String {
    format!("skv{:012x}", fnv1a(uid) & 0xffff_ffff_ffff)
}

/// Gives pod `uid` its namespace (made if missing, loopback up) and its `eth0` with `address` in
/// `block`, on `bridge`: two `ip -batch` processes, one in the agent's namespace, one in the
/// pod's. Returns the namespace file.
pub fn attach(
    uid: &str,
    bridge: &str,
    address: Ipv4Addr,
    block: Ipv4Cidr,
    gateway: Ipv4Addr,
) -> Result<PathBuf, NetworkError> {
    let ns = netns::name(uid);
    let host = host_name(uid);
    let fresh = !netns::path(uid).exists();
    // A veth pair is made whole in one step and dies whole with either end, so the host end
    // tells whether the pod has its `eth0`. In a namespace made just now it cannot, so a host end
    // of that name is a leftover (an earlier namespace of this pod still being destroyed).
    let host_end = host_link_exists(&host);
    let mut here = Vec::new();
    if fresh {
        here.push(format!("netns add {ns}"));
        if host_end {
            here.push(format!("link delete {host}"));
        }
    }
    if fresh || !host_end {
        here.push(format!(
            "link add {host} type veth peer name {POD_IFACE} netns {ns}"
        ));
    }
    here.push(format!("link set {host} master {bridge} up"));
    if let Err(e) = ip_batch(None, &here) {
        if fresh {
            netns::remove(uid);
        }
        return Err(e);
    }
    let inside = [
        "link set lo up".to_string(),
        format!("addr replace {address}/{} dev {POD_IFACE}", block.prefix()),
        format!("link set {POD_IFACE} up"),
        format!("route replace default via {gateway} dev {POD_IFACE}"),
    ];
    ip_batch(Some(&ns), &inside)?;
    Ok(netns::path(uid))
}

/// Removes pod `uid`'s host end (and so the pair), if it exists.
pub fn detach(uid: &str) {
    let host = host_name(uid);
    if host_link_exists(&host)
        && let Err(e) = ip(&["link", "delete", &host])
    {
        tracing::warn!(veth = %host, error = %e, "removing a pod's veth");
    }
}
