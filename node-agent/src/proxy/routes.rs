//! Keeping the service CIDR and the cluster CIDR on the node: what no rule or route of skiff's
//! claims fails here, fast, instead of following the default route out.
//!
//! - the cluster CIDR gets an `unreachable` route: the node's own block (its bridge) and other
//!   nodes' blocks (host-gw routes) are more specific, so an unknown pod address is refused
//!   (EHOSTUNREACH on the node, ICMP host unreachable to a pod);
//! - the service CIDR gets a route to the node bridge, never used to deliver anything: the node's
//!   own sockets need a usable route to connect to a cluster IP at all (the route is looked up
//!   before the output hook DNATs; an `unreachable` route would refuse every Service from the
//!   node itself), and what is still addressed to the service CIDR after DNAT is refused by the
//!   proxy's filter chains (see [`super::render`]).
//!
//! The routes carry protocol [`ROUTE_PROTOCOL`] (the pod network's are 77). Neither is added
//! over one of the host's own routes or resolvers: the agent refuses with an error naming the
//! CIDR (the same check the server makes of `--service-cidr`, [`HostNetworks`]).
//!
//! Must not: touch routes it did not make; run on an async thread.

use std::collections::BTreeSet;
use std::fmt;

use skiff_api::cidr::Ipv4Cidr;
use skiff_api::host_networks::HostNetworks;

use super::ProxyError;
use super::nft::Host;

/// The `proto` of the proxy's routes.
pub const ROUTE_PROTOCOL: &str = "78";
/// The pod network's (`network::routes`), skiff's too.
const POD_ROUTE_PROTOCOL: &str = "77";

/// One route the proxy keeps.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Route {
    /// `unreachable CIDR`.
    Unreachable(Ipv4Cidr),
    /// `CIDR dev DEV`.
    Dev(Ipv4Cidr, String),
}

impl Route {
    pub fn cidr(&self) -> Ipv4Cidr {
        match self {
            Route::Unreachable(c) | Route::Dev(c, _) => *c,
        }
    }

    /// Its `ip route` words, without the verb.
    fn words(&self) -> Vec<String> {
        let mut w = match self {
            Route::Unreachable(c) => vec!["unreachable".to_string(), c.to_string()],
            Route::Dev(c, dev) => vec![c.to_string(), "dev".into(), dev.clone()],
        };
        w.extend(["proto".to_string(), ROUTE_PROTOCOL.to_string()]);
        w
    }

    /// Parses [`Route`]'s `Display` form (the proxy's state file).
    pub fn parse(text: &str) -> Option<Self> {
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            ["unreachable", cidr] => Some(Route::Unreachable(cidr.parse().ok()?)),
            [cidr, "dev", dev] => Some(Route::Dev(cidr.parse().ok()?, dev.to_string())),
            _ => None,
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Unreachable(c) => write!(f, "unreachable {c}"),
            Route::Dev(c, dev) => write!(f, "{c} dev {dev}"),
        }
    }
}

/// Refuses `cidr` (`what`: `service CIDR` or `cluster CIDR`) when it would hide one of the
/// host's routes or resolvers.
pub fn check(cidr: Ipv4Cidr, what: &str, host: &HostNetworks) -> Result<(), ProxyError> {
    if let Some((route, dev)) = host.route_over(&cidr) {
        return Err(ProxyError::Covers {
            what: what.to_string(),
            cidr,
            host: format!("route to {route} (dev {dev})"),
        });
    }
    if let Some(resolver) = host.resolver_in(&cidr) {
        return Err(ProxyError::Covers {
            what: what.to_string(),
            cidr,
            host: format!("resolver {resolver} (/etc/resolv.conf)"),
        });
    }
    Ok(())
}

/// The destinations of routes of protocol `proto`.
fn destinations(host: &Host, proto: &str) -> Result<BTreeSet<Ipv4Cidr>, ProxyError> {
    let out = host.run("ip", &["-4", "-o", "route", "show", "proto", proto], None)?;
    Ok(out
        .lines()
        .filter_map(|l| {
            l.split_whitespace().take(2).find_map(|w| {
                w.parse::<Ipv4Cidr>()
                    .ok()
                    .or_else(|| Ipv4Cidr::containing(w.parse().ok()?, 32))
            })
        })
        .collect())
}

/// The host's routes and resolvers, less what skiff made: routes on node bridges (left out by
/// [`HostNetworks::of_this_host`]), pod network routes and the proxy's own routes.
pub fn host_networks(host: &Host) -> Result<HostNetworks, ProxyError> {
    let mut networks = HostNetworks::of_this_host();
    let mut ours = destinations(host, POD_ROUTE_PROTOCOL)?;
    ours.extend(destinations(host, ROUTE_PROTOCOL)?);
    networks.routes.retain(|(dst, _)| !ours.contains(dst));
    Ok(networks)
}

/// Makes the routes `wanted` and removes those of `previous` no longer wanted.
pub fn sync(host: &Host, wanted: &[Route], previous: &[Route]) -> Result<(), ProxyError> {
    for gone in previous.iter().filter(|r| !wanted.contains(r)) {
        delete(host, gone);
    }
    for route in wanted {
        let words = route.words();
        let mut args = vec!["route", "replace"];
        args.extend(words.iter().map(String::as_str));
        host.run("ip", &args, None)?;
    }
    Ok(())
}

/// Deletes `route`, if it is there.
pub fn delete(host: &Host, route: &Route) {
    let words = route.words();
    let mut args = vec!["route", "delete"];
    args.extend(words.iter().map(String::as_str));
    if let Err(e) = host.run("ip", &args, None)
        && !e.to_string().contains("No such process")
    {
        tracing::warn!(%route, error = %e, "removing a proxy route");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::Ipv4Addr;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn a_range_over_a_host_route_or_resolver_is_refused_by_name() {
        let host = HostNetworks {
            routes: vec![(cidr("192.168.1.0/24"), "eth0".into())],
            resolvers: vec![Ipv4Addr::new(10, 255, 255, 53)],
        };
        assert!(check(cidr("10.96.0.0/12"), "service CIDR", &host).is_ok());
        assert_eq!(
            check(cidr("192.168.0.0/16"), "cluster CIDR", &host)
                .unwrap_err()
                .to_string(),
            "the cluster CIDR 192.168.0.0/16 would hide the host's route to 192.168.1.0/24 (dev eth0): not keeping it on the node"
        );
        assert_eq!(
            check(cidr("10.240.0.0/12"), "cluster CIDR", &host)
                .unwrap_err()
                .to_string(),
            "the cluster CIDR 10.240.0.0/12 would hide the host's resolver 10.255.255.53 (/etc/resolv.conf): not keeping it on the node"
        );
    }

    #[test]
    fn routes_round_trip_through_their_text() {
        for r in [
            Route::Unreachable(cidr("10.240.0.0/20")),
            Route::Dev(cidr("10.112.0.0/20"), "skiff0011aabb".into()),
        ] {
            assert_eq!(Route::parse(&r.to_string()), Some(r.clone()));
        }
        assert_eq!(
            Route::Unreachable(cidr("10.240.0.0/20")).words(),
            ["unreachable", "10.240.0.0/20", "proto", "78"]
        );
        assert_eq!(Route::parse("nonsense"), None);
    }
}
