//! What a host routes to and resolves through: the networks that skiff's own address ranges
//! (the service CIDR, the cluster CIDR) must never hide.
//!
//! Read from `/proc/net/route` and `/etc/resolv.conf`; used by the server to refuse a service CIDR
//! over them and by the node agent before it keeps both ranges on the node (unreachable routes).
//!
//! Must not: change routes, or read anything but those two files.

use std::net::Ipv4Addr;

use crate::cidr::Ipv4Cidr;

/// What the host routes to and resolves through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostNetworks {
    /// Destinations of the main routing table that lead somewhere (no default route, no
    /// unreachable, prohibit or blackhole route), with their device.
    pub routes: Vec<(Ipv4Cidr, String)>,
    /// The `nameserver` addresses of `/etc/resolv.conf`.
    pub resolvers: Vec<Ipv4Addr>,
}

/// `RTF_REJECT` of `/proc/net/route`'s flags: an unreachable or prohibit route.
const RTF_REJECT: u32 = 0x0200;

impl HostNetworks {
    /// This host's (the caller's network namespace's routes), from `/proc/net/route` and
    /// `/etc/resolv.conf` (a file that cannot be read counts as empty), less the routes on
    /// skiff's own node bridges (devices `skiff*`: a node's pod block, and the service CIDR its
    /// proxy keeps on the node), which a restarted server or agent must not take for the host's.
    pub fn of_this_host() -> Self {
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        let mut routes = parse_proc_routes(&read("/proc/net/route"));
        routes.retain(|(_, dev)| !is_skiff_device(dev));
        Self {
            routes,
            resolvers: parse_resolv_conf(&read("/etc/resolv.conf")),
        }
    }

    /// The first route overlapping `cidr`, if any.
    pub fn route_over(&self, cidr: &Ipv4Cidr) -> Option<&(Ipv4Cidr, String)> {
        self.routes.iter().find(|(r, _)| r.overlaps(cidr))
    }

    /// The first resolver inside `cidr`, if any.
    pub fn resolver_in(&self, cidr: &Ipv4Cidr) -> Option<Ipv4Addr> {
        self.resolvers.iter().copied().find(|r| cidr.contains(*r))
    }
}

/// Is `dev` one of skiff's node bridges (`skiff` and 8 hex digits)?
pub fn is_skiff_device(dev: &str) -> bool {
    dev.strip_prefix("skiff")
        .is_some_and(|rest| rest.len() == 8 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The routes of `/proc/net/route` (each address the hex of its network-order bytes read as a
/// native word) that lead somewhere: no default route, no reject route, no route
/// without a device (blackhole).
pub fn parse_proc_routes(text: &str) -> Vec<(Ipv4Cidr, String)> {
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dev, dst, flags, mask) = (
                f.first()?,
                hex(f.get(1)?)?,
                hex(f.get(3)?)?,
                hex(f.get(7)?)?,
            );
            if mask == 0 || flags & RTF_REJECT != 0 || *dev == "*" {
                return None;
            }
            // The kernel prints the network-order bytes read as a native word.
            let dst = Ipv4Addr::from(dst.to_ne_bytes());
            let mask = u32::from_be_bytes(mask.to_ne_bytes());
            let prefix = u8::try_from(mask.count_ones()).ok()?;
            Some((Ipv4Cidr::containing(dst, prefix)?, dev.to_string()))
        })
        .collect()
}

/// The IPv4 `nameserver`s of a resolv.conf.
pub fn parse_resolv_conf(text: &str) -> Vec<Ipv4Addr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            words.next()?.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn host_routes_and_resolvers_parse() {
        let routes = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
skiff491729e3\t0000F40A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
*\t0000600A\t00000000\t0201\t0\t0\t0\t0000F0FF\t0\t0\t0\n";
        let host = HostNetworks {
            routes: parse_proc_routes(routes),
            resolvers: parse_resolv_conf(
                "# generated\nnameserver 10.255.255.53\nnameserver fd00::53\nsearch x\n",
            ),
        };
        assert_eq!(
            host.routes,
            vec![
                (cidr("192.0.2.0/24"), "eth0".to_string()),
                (cidr("10.244.0.0/24"), "skiff491729e3".to_string()),
            ],
            "the default route and the unreachable 10.96.0.0/12 lead nowhere of the host's"
        );
        assert_eq!(host.resolvers, vec![Ipv4Addr::new(10, 255, 255, 53)]);
        assert_eq!(
            host.route_over(&cidr("192.0.0.0/16")).map(|r| r.1.as_str()),
            Some("eth0")
        );
        assert_eq!(host.route_over(&cidr("10.96.0.0/12")), None);
        assert_eq!(
            host.resolver_in(&cidr("10.255.0.0/16")),
            Some(Ipv4Addr::new(10, 255, 255, 53))
        );
        assert!(is_skiff_device("skiff491729e3"));
        assert!(!is_skiff_device("skiffy") && !is_skiff_device("eth0"));
    }
}
