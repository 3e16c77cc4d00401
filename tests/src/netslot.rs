//! Address space for one test cluster's pod network, and the clean-up of what its agents made.
//!
//! Tests run in parallel processes on one host, and agents on 127.0.0.x share the host's network
//! namespace: two clusters with the same cluster CIDR would put bridges of the same block side by
//! side. So each [`Cluster`](crate::Cluster) holds a [`NetSlot`]: an index locked with `flock`
//! on a file under the temp dir (released by the kernel even if the test process dies), which
//! gives it its own cluster CIDR (`10.240.0.0/12` cut in `/20`s: 16 nodes of `/24`), its own
//! service CIDR (`10.112.0.0/12` cut in `/20`s, beside Kubernetes' default `10.96.0.0/12`) and,
//! for tests that build their own node namespaces, its own `/24` of node addresses in
//! `10.239.0.0/16`. A slot whose cluster or service CIDR covers one of the host's own routes or
//! resolvers is never taken (on these machines the resolver sits inside `10.240.0.0/12`, and
//! `skiff server` refuses a service CIDR over it).
//!
//! [`clean`] removes, from the test's own network namespace, the node bridges and the routes
//! inside a cluster CIDR; it runs when a slot is taken (what a killed test left) and when the
//! cluster is dropped.

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use nix::fcntl::{Flock, FlockArg};

/// How many clusters can have pod networks at once on one host.
const SLOTS: u32 = 256;

/// One cluster's share of the address space, held until dropped.
pub struct NetSlot {
    index: u32,
    _lock: Flock<File>,
}

impl NetSlot {
    /// The first free slot; panics if all are taken.
    pub fn take() -> Self {
        let dir = std::env::temp_dir().join("skiff-e2e-netslots");
        std::fs::create_dir_all(&dir).expect("netslot dir");
        let start = std::process::id() % SLOTS;
        let host = host_networks();
        for step in 0..SLOTS {
            let index = (start + step) % SLOTS;
            let cidrs = [cluster_cidr_of(index), service_cidr_of(index)];
            if let Some(used) = host.iter().find(|h| cidrs.iter().any(|c| overlaps(c, h))) {
                eprintln!("netslot {index}: skipped, {cidrs:?} would cover the host's {used}");
                continue;
            }
            let file = File::create(dir.join(format!("{index}.lock"))).expect("netslot lock file");
            if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                let slot = Self { index, _lock: lock };
                clean(&slot.cluster_cidr());
                clean_proxy(&slot.cluster_cidr(), &slot.service_cidr());
                return slot;
            }
        }
        panic!("all {SLOTS} test network slots are taken");
    }

    /// This cluster's `--cluster-cidr`: a `/20` of `10.240.0.0/12`.
    pub fn cluster_cidr(&self) -> String {
        cluster_cidr_of(self.index)
    }

    /// This cluster's `--service-cidr`: a `/20` of `10.112.0.0/12`.
    pub fn service_cidr(&self) -> String {
        service_cidr_of(self.index)
    }

    /// Node address `host` (1..=254) of this slot's node network, `10.239.<slot>.<host>`.
    pub fn node_address(&self, host: u8) -> String {
        format!("10.239.{}.{host}", self.index)
    }

    pub fn index(&self) -> u32 {
        self.index
    }
}

fn cluster_cidr_of(index: u32) -> String {
    let base = u32::from(Ipv4Addr::new(10, 240, 0, 0)) + index * 4096;
    format!("{}/20", Ipv4Addr::from(base))
}

fn service_cidr_of(index: u32) -> String {
    let base = u32::from(Ipv4Addr::new(10, 112, 0, 0)) + index * 4096;
    format!("{}/20", Ipv4Addr::from(base))
}

/// What this host routes to (its main table, not the default route, typed routes such as
/// `unreachable`, or the bridges and routes skiff's agents made) and the IPv4 resolvers of its
/// `/etc/resolv.conf`, as CIDRs.
fn host_networks() -> Vec<String> {
    let mut out: Vec<String> = ip(&["-o", "-4", "route", "show", "table", "main"])
        .lines()
        .filter(|l| !l.contains(" dev skiff") && !l.contains(" proto 77"))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|dst| dst.contains('.'))
        .map(|dst| {
            if dst.contains('/') {
                dst.to_string()
            } else {
                format!("{dst}/32")
            }
        })
        .collect();
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    out.extend(resolv.lines().filter_map(|l| {
        let mut w = l.split_whitespace();
        (w.next()? == "nameserver").then_some(())?;
        let addr: Ipv4Addr = w.next()?.parse().ok()?;
        Some(format!("{addr}/32"))
    }));
    out
}

/// Do two CIDRs share an address?
fn overlaps(a: &str, b: &str) -> bool {
    let net = |c: &str| c.split('/').next().unwrap_or("").to_string();
    inside(a, &net(b)) || inside(b, &net(a))
}

fn ip(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn inside(cidr: &str, addr: &str) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(bits), Ok(addr)) = (
        net.parse::<Ipv4Addr>(),
        bits.parse::<u32>(),
        addr.parse::<Ipv4Addr>(),
    ) else {
        return false;
    };
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    u32::from(addr) & mask == u32::from(net) & mask
}

/// Removes the bridges holding an address in `cluster_cidr`, and the routes into it, from this
/// process's network namespace.
pub fn clean(cluster_cidr: &str) {
    // `5: skiff1a2b3c4d    inet 10.240.0.1/24 brd ... scope global skiff1a2b3c4d ...`
    for line in ip(&["-o", "-4", "addr", "show", "type", "bridge"]).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(name), Some(addr)) = (fields.get(1), fields.get(3)) else {
            continue;
        };
        let addr = addr.split('/').next().unwrap_or("");
        if inside(cluster_cidr, addr) {
            let _ = Command::new("ip")
                .args(["link", "delete", name, "type", "bridge"])
                .stderr(Stdio::null())
                .status();
        }
    }
    for line in ip(&["-o", "-4", "route", "show", "proto", "77"]).lines() {
        let Some(dst) = line.split_whitespace().next() else {
            continue;
        };
        if inside(cluster_cidr, dst.split('/').next().unwrap_or("")) {
            let _ = Command::new("ip")
                .args(["route", "delete", dst, "proto", "77"])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Removes, from this process's network namespace, what node proxies of a cluster with these
/// CIDRs left when their test was killed: their nft tables (whose comment names the service
/// CIDR) and their routes (protocol 78) to either CIDR.
pub fn clean_proxy(cluster_cidr: &str, service_cidr: &str) {
    let tables = Command::new("nft")
        .args(["list", "tables", "ip"])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for table in tables
        .lines()
        .filter_map(|l| l.strip_prefix("table ip skiff_"))
    {
        let name = format!("skiff_{}", table.trim());
        let listing = Command::new("nft")
            .args(["-t", "list", "table", "ip", &name])
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        if listing.contains(&format!("Services of {service_cidr}\"")) {
            let _ = Command::new("nft")
                .args(["delete", "table", "ip", &name])
                .stderr(Stdio::null())
                .status();
        }
    }
    for line in ip(&["-o", "-4", "route", "show", "proto", "78"]).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let dst = if words.first() == Some(&"unreachable") {
            words.get(1)
        } else {
            words.first()
        };
        if let Some(dst) = dst.filter(|d| **d == cluster_cidr || **d == service_cidr) {
            let mut args = vec!["route", "delete"];
            if words.first() == Some(&"unreachable") {
                args.push("unreachable");
            }
            args.extend([*dst, "proto", "78"]);
            let _ = Command::new("ip")
                .args(&args)
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cut_disjoint_pools_and_skip_what_the_host_uses() {
        assert_eq!(cluster_cidr_of(255), "10.255.240.0/20");
        assert_eq!(service_cidr_of(0), "10.112.0.0/20");
        assert_eq!(service_cidr_of(255), "10.127.240.0/20");
        assert!(
            !overlaps(&service_cidr_of(0), "10.96.0.0/12"),
            "not Kubernetes' default"
        );
        assert!(!overlaps(&service_cidr_of(255), &cluster_cidr_of(0)));
        // The resolver of these machines: slot 255's cluster CIDR covers it.
        assert!(overlaps(&cluster_cidr_of(255), "10.255.255.53/32"));
        assert!(!overlaps(&cluster_cidr_of(254), "10.255.255.53/32"));
    }
}
