//! The node bridge: one Linux bridge per node holding the first address of the node's podCIDR
//! (the pods' gateway), with every pod's host-side veth as a port; and IPv4 forwarding, so that
//! traffic between the bridge and other nodes' pods (or another bridge in the same namespace) is
//! routed.
//!
//! `net.ipv4.ip_forward` is per network namespace: it is switched on in the agent's own one (on a
//! real node, the host's) and never switched off again (other bridges may rely on it).
//!
//! Must not: add routes or addresses other than the gateway's. Blocking: call from
//! `spawn_blocking`.

use std::net::Ipv4Addr;

use skiff_api::cidr::Ipv4Cidr;

use super::NetworkError;
use super::iproute::{ip, link_exists};

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// 64-bit FNV-1a, for short stable interface names.
pub(super) fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The bridge of node `node` with block `block`: `skiff` and 8 hex digits (13 characters, under
/// the kernel's 15). Several agents can share one host (127.0.0.x test clusters), and several
/// test clusters one host: the name hashes both the node and its block, which are unique there.
pub fn name(node: &str, block: Ipv4Cidr) -> String {
    format!(
        "skiff{:08x}",
        fnv1a(&format!("{node}/{block}")) & 0xffff_ffff
    )
}

/// The gateway of `block`: its first host address.
pub fn gateway(block: Ipv4Cidr) -> Option<Ipv4Addr> {
    block.nth(1)
}

/// Makes bridge `name` (if missing) with the gateway of `block`, up, and forwarding on.
pub fn ensure(name: &str, block: Ipv4Cidr) -> Result<Ipv4Addr, NetworkError> {
    let gateway = gateway(block).ok_or(NetworkError::Exhausted(block))?;
    if !link_exists(None, name)
        && let Err(e) = ip(&["link", "add", name, "type", "bridge"])
        && !link_exists(None, name)
    {
        return Err(e);
    }
    ip(&[
        "addr",
        "replace",
        &format!("{gateway}/{}", block.prefix()),
        "dev",
        name,
    ])?;
    ip(&["link", "set", name, "up"])?;
    enable_forwarding()?;
    Ok(gateway)
}

/// Deletes bridge `name`, if it exists.
pub fn remove(name: &str) {
    if link_exists(None, name)
        && let Err(e) = ip(&["link", "delete", name, "type", "bridge"])
    {
        tracing::warn!(bridge = %name, error = %e, "removing the node bridge");
    }
}

fn enable_forwarding() -> Result<(), NetworkError> {
    let io = |source| NetworkError::Io {
        path: IP_FORWARD.into(),
        source,
    };
    if std::fs::read_to_string(IP_FORWARD).map_err(io)?.trim() != "1" {
        std::fs::write(IP_FORWARD, "1\n").map_err(io)?;
        tracing::info!("enabled net.ipv4.ip_forward in the agent's network namespace");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_are_short_stable_and_distinct() {
        let a: Ipv4Cidr = "10.244.0.0/24".parse().unwrap();
        let b: Ipv4Cidr = "10.244.1.0/24".parse().unwrap();
        let n = name("node-1", a);
        assert!(n.len() <= 15 && n.starts_with("skiff"), "{n}");
        assert_eq!(n, name("node-1", a));
        assert_ne!(n, name("node-2", a));
        assert_ne!(n, name("node-1", b));
        assert_eq!(gateway(a), Some(Ipv4Addr::new(10, 244, 0, 1)));
    }
}
