//! Network namespaces that stand for separate machines on one link, for agents that must not
//! share the test's network (pod traffic between nodes, routed host-gw style).
//!
//! [`NodeNetwork::new`] makes a bridge in the test's own namespace (`10.239.<slot>.254/24`, where
//! the test's server listens, so that every node and the test's CLI reach it) and one namespace
//! per node, `skiff-t-<pid>-<letter>`, joined to the bridge by a veth pair whose inside end is
//! the node's `eth0` with `10.239.<slot>.<n>/24`. Dropping it deletes the namespaces (and with
//! them everything agents made inside: their bridges, routes and pods' veths) and the bridge.

use std::process::Command;

use crate::netslot::NetSlot;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Node namespaces on one test bridge; removed when dropped.
pub struct NodeNetwork {
    bridge: String,
    /// The host ends of the nodes' veth pairs, the bridge's ports.
    ports: Vec<String>,
    namespaces: Vec<String>,
    addresses: Vec<String>,
    host_address: String,
}

impl NodeNetwork {
    /// `count` node namespaces (at most 26) on a bridge of `slot`'s node addresses.
    pub fn new(slot: &NetSlot, count: usize) -> Self {
        assert!(count <= 26, "at most 26 node namespaces");
        let pid = std::process::id();
        let mut net = Self {
            bridge: format!("sktb{}", slot.index()),
            ports: Vec::new(),
            namespaces: Vec::new(),
            addresses: Vec::new(),
            host_address: slot.node_address(254),
        };
        // Left by a killed test of the same slot.
        delete_link(&net.bridge);
        ip(&["link", "add", &net.bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.host_address),
            "dev",
            &net.bridge,
        ]);
        ip(&["link", "set", &net.bridge, "up"]);
        for i in 0..count {
            let letter = char::from(b'a' + u8::try_from(i).unwrap_or(0));
            let ns = format!("skiff-t-{pid}-{letter}");
            ip(&["netns", "add", &ns]);
            net.namespaces.push(ns.clone());
            let outside = format!("sktv{}{letter}", slot.index());
            // Left by an earlier test of the same slot: a namespace's links die after `ip netns
            // delete` returns (the kernel tears namespaces down in the background), so a pair
            // of a test that just ended may still be there ("File exists").
            delete_link(&outside);
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            net.ports.push(outside.clone());
            ip(&["link", "set", &outside, "master", &net.bridge, "up"]);
            let address = slot.node_address(u8::try_from(i + 1).unwrap_or(1));
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            net.addresses.push(address);
        }
        net
    }

    /// Node `i`'s namespace name.
    pub fn namespace(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    /// Node `i`'s address.
    pub fn address(&self, i: usize) -> &str {
        &self.addresses[i]
    }

    /// The test namespace's address on the bridge (where a server for the nodes listens).
    pub fn host_address(&self) -> &str {
        &self.host_address
    }
}

/// Deletes link `name` of the test's namespace, if it exists (and with a veth, its peer).
fn delete_link(name: &str) {
    let _ = Command::new("ip")
        .args(["link", "delete", name])
        .stderr(std::process::Stdio::null())
        .status();
}

impl Drop for NodeNetwork {
    fn drop(&mut self) {
        // The bridge's ports first, at once: deleting a namespace frees its end of a pair only
        // later, and the next test of this slot makes pairs of the same names.
        for port in &self.ports {
            delete_link(port);
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
        delete_link(&self.bridge);
    }
}
