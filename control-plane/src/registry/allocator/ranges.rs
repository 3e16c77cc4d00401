//! The ranges Services take from: `--service-cidr` (default `10.96.0.0/12`) and
//! `--service-node-port-range` (default `30000-32767`), as Kubernetes' API server flags.
//!
//! A server checks its flags ([`ServiceRanges::new`], [`ServiceRanges::check_placement`]: a
//! usable size, no special-purpose block, no overlap with the cluster CIDR, the host's routes or
//! its resolvers) and writes them to the store at start ([`ServiceRanges::save`]); every
//! registry reads them from there ([`ServiceRanges::load`]), so that all API servers sharing a
//! store allocate from the same ranges (the last server started with other flags wins, logged).
//! A store no server has configured (unit tests) uses the defaults.
//!
//! Must not: allocate, or touch interfaces and routes (the host's routes and resolvers are read by
//! [`skiff_api::host_networks`]).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use bytes::Bytes;
use prost::Message;
use skiff_api::cidr::Ipv4Cidr;
pub use skiff_api::host_networks::HostNetworks;

use crate::error::ApiError;
use crate::store::{Store, StoreError};

/// The store key of the configured ranges.
const KEY: &str = "/ranges/services";

/// Smallest service CIDR: 4 addresses (network, the kept first, one Service, broadcast).
const MAX_PREFIX: u8 = 30;
/// Largest: 2^20 addresses, Kubernetes' bound for IPv4 (`the mask must be >= 12`).
const MIN_PREFIX: u8 = 12;

/// Blocks that are no network for Services (RFC 6890 special purpose).
const SPECIAL: [(&str, [u8; 4], u8); 5] = [
    ("\"this network\"", [0, 0, 0, 0], 8),
    ("loopback", [127, 0, 0, 0], 8),
    ("link-local", [169, 254, 0, 0], 16),
    ("multicast", [224, 0, 0, 0], 4),
    ("reserved", [240, 0, 0, 0], 4),
];

/// An inclusive range of ports: `30000-32767`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    pub fn new(first: u16, last: u16) -> Result<Self, RangeError> {
        if first == 0 || last < first {
            return Err(RangeError::PortRange(format!("{first}-{last}")));
        }
        Ok(Self { first, last })
    }

    pub fn first(&self) -> u16 {
        self.first
    }

    pub fn last(&self) -> u16 {
        self.last
    }

    pub fn size(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// The `offset`-th port (clamped to the range).
    pub fn nth(&self, offset: u64) -> u16 {
        let offset = u16::try_from(offset).unwrap_or(u16::MAX);
        self.first.saturating_add(offset).min(self.last)
    }
}

impl Default for PortRange {
    fn default() -> Self {
        Self {
            first: 30000,
            last: 32767,
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for PortRange {
    type Err = RangeError;

    /// `FIRST-LAST`, `FIRST+COUNT` (the ports after FIRST) or one port, as Kubernetes parses
    /// `--service-node-port-range`.
    fn from_str(text: &str) -> Result<Self, RangeError> {
        let bad = || RangeError::PortRange(text.to_string());
        let port = |s: &str| s.trim().parse::<u16>().map_err(|_| bad());
        let (first, last) = if let Some((a, b)) = text.split_once('-') {
            (port(a)?, port(b)?)
        } else if let Some((a, n)) = text.split_once('+') {
            let a = port(a)?;
            (a, a.checked_add(port(n)?).ok_or_else(bad)?)
        } else {
            let a = port(text)?;
            (a, a)
        };
        Self::new(first, last).map_err(|_| bad())
    }
}

/// Why a service CIDR or node-port range cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error(
        "{0:?} is not a port range: expected FIRST-LAST with 1 <= FIRST <= LAST <= 65535 (such as 30000-32767)"
    )]
    PortRange(String),
    #[error(
        "{0} is too small: a service CIDR needs at least 4 addresses (a prefix of /{MAX_PREFIX} or shorter)"
    )]
    TooSmall(Ipv4Cidr),
    #[error(
        "{0} is too large: the prefix must be /{MIN_PREFIX} or longer (at most 1048576 addresses, as Kubernetes)"
    )]
    TooLarge(Ipv4Cidr),
    #[error("{cidr} overlaps the {what} block {block}, which is no network for Services")]
    Special {
        cidr: Ipv4Cidr,
        what: &'static str,
        block: Ipv4Cidr,
    },
    #[error(
        "{cidr} overlaps the cluster CIDR {cluster} (--cluster-cidr): pods and Services need addresses of their own"
    )]
    Cluster { cidr: Ipv4Cidr, cluster: Ipv4Cidr },
    #[error(
        "{cidr} overlaps the host's route to {route} (dev {dev}): service addresses would hide what it reaches"
    )]
    Route {
        cidr: Ipv4Cidr,
        route: Ipv4Cidr,
        dev: String,
    },
    #[error(
        "{cidr} holds the host's resolver {resolver} (/etc/resolv.conf): service addresses would hide it"
    )]
    Resolver { cidr: Ipv4Cidr, resolver: Ipv4Addr },
}

/// Where Services get their cluster IPs and node ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceRanges {
    cidr: Ipv4Cidr,
    node_ports: PortRange,
}

impl Default for ServiceRanges {
    /// Kubernetes' defaults: `10.96.0.0/12` (kubeadm's) and `30000-32767`.
    fn default() -> Self {
        Self {
            cidr: Ipv4Cidr::containing(Ipv4Addr::new(10, 96, 0, 0), 12)
                .unwrap_or_else(|| unreachable!("12 <= 32")),
            node_ports: PortRange::default(),
        }
    }
}

/// The stored form of [`ServiceRanges`].
#[derive(Clone, PartialEq, prost::Message)]
struct Stored {
    #[prost(string, tag = "1")]
    service_cidr: String,
    #[prost(string, tag = "2")]
    node_port_range: String,
}

impl ServiceRanges {
    /// A service CIDR of a usable size outside the special-purpose blocks, and a port range.
    pub fn new(cidr: Ipv4Cidr, node_ports: PortRange) -> Result<Self, RangeError> {
        if cidr.prefix() > MAX_PREFIX {
            return Err(RangeError::TooSmall(cidr));
        }
        if cidr.prefix() < MIN_PREFIX {
            return Err(RangeError::TooLarge(cidr));
        }
        for (what, net, prefix) in SPECIAL {
            let block = Ipv4Cidr::containing(Ipv4Addr::from(net), prefix)
                .unwrap_or_else(|| unreachable!("prefixes <= 32"));
            if block.overlaps(&cidr) {
                return Err(RangeError::Special { cidr, what, block });
            }
        }
        Ok(Self { cidr, node_ports })
    }

    pub fn cidr(&self) -> Ipv4Cidr {
        self.cidr
    }

    pub fn node_ports(&self) -> PortRange {
        self.node_ports
    }

    /// The service CIDR leaves the cluster CIDR, the host's routes and its resolvers alone.
    pub fn check_placement(
        &self,
        cluster_cidr: Ipv4Cidr,
        host: &HostNetworks,
    ) -> Result<(), RangeError> {
        let cidr = self.cidr;
        if cidr.overlaps(&cluster_cidr) {
            return Err(RangeError::Cluster {
                cidr,
                cluster: cluster_cidr,
            });
        }
        if let Some((route, dev)) = host.routes.iter().find(|(r, _)| r.overlaps(&cidr)) {
            return Err(RangeError::Route {
                cidr,
                route: *route,
                dev: dev.clone(),
            });
        }
        if let Some(resolver) = host.resolvers.iter().find(|r| cidr.contains(**r)) {
            return Err(RangeError::Resolver {
                cidr,
                resolver: *resolver,
            });
        }
        Ok(())
    }

    /// The ranges the store holds (the defaults if no server has written any).
    pub async fn load(store: &dyn Store) -> Result<Self, ApiError> {
        let Some(kv) = store
            .get(KEY)
            .await
            .map_err(|e| ApiError::Internal(format!("reading the service ranges: {e}")))?
        else {
            return Ok(Self::default());
        };
        let corrupt = |e: String| ApiError::Internal(format!("corrupt service ranges {KEY}: {e}"));
        let stored = Stored::decode(kv.value.as_ref()).map_err(|e| corrupt(e.to_string()))?;
        let cidr = stored
            .service_cidr
            .parse()
            .map_err(|e: skiff_api::cidr::CidrError| corrupt(e.to_string()))?;
        let ports = stored
            .node_port_range
            .parse()
            .map_err(|e: RangeError| corrupt(e.to_string()))?;
        Self::new(cidr, ports).map_err(|e| corrupt(e.to_string()))
    }

    /// Writes these ranges for every registry on the store; the ranges they replace, if others.
    pub async fn save(&self, store: &dyn Store) -> Result<Option<Self>, StoreError> {
        let value = Bytes::from(
            Stored {
                service_cidr: self.cidr.to_string(),
                node_port_range: self.node_ports.to_string(),
            }
            .encode_to_vec(),
        );
        loop {
            match store.get(KEY).await? {
                None => match store.create(KEY, value.clone()).await {
                    Ok(_) => return Ok(None),
                    Err(StoreError::AlreadyExists(_)) => continue,
                    Err(e) => return Err(e),
                },
                Some(kv) => {
                    let before = Self::load(store).await.ok();
                    if before == Some(*self) {
                        return Ok(None);
                    }
                    match store
                        .update(KEY, value.clone(), Some(kv.mod_revision))
                        .await
                    {
                        Ok(_) => return Ok(before),
                        Err(StoreError::Conflict { .. }) => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn port_ranges_parse_as_kubernetes_flags() {
        assert_eq!(
            "30000-32767".parse::<PortRange>().unwrap(),
            PortRange::default()
        );
        assert_eq!(
            "30000+2767".parse::<PortRange>().unwrap(),
            PortRange::default()
        );
        assert_eq!("31000".parse::<PortRange>().unwrap().size(), 1);
        for bad in ["", "a-b", "0-10", "32767-30000", "30000-70000", "65535+1"] {
            assert!(
                matches!(bad.parse::<PortRange>(), Err(RangeError::PortRange(t)) if t == bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn service_cidrs_must_be_usable_networks() {
        let ports = PortRange::default();
        assert!(ServiceRanges::new(cidr("10.96.0.0/12"), ports).is_ok());
        assert!(ServiceRanges::new(cidr("10.96.0.0/30"), ports).is_ok());
        assert_eq!(
            ServiceRanges::new(cidr("10.96.0.0/31"), ports),
            Err(RangeError::TooSmall(cidr("10.96.0.0/31")))
        );
        assert_eq!(
            ServiceRanges::new(cidr("10.0.0.0/8"), ports),
            Err(RangeError::TooLarge(cidr("10.0.0.0/8")))
        );
        let err = ServiceRanges::new(cidr("127.0.0.0/16"), ports).unwrap_err();
        assert_eq!(
            err.to_string(),
            "127.0.0.0/16 overlaps the loopback block 127.0.0.0/8, which is no network for Services"
        );
        assert!(ServiceRanges::new(cidr("224.0.0.0/12"), ports).is_err());
    }

    #[test]
    fn a_service_cidr_leaves_the_cluster_cidr_routes_and_resolvers_alone() {
        let r = ServiceRanges::new(cidr("10.96.0.0/12"), PortRange::default()).unwrap();
        let host = HostNetworks {
            routes: vec![(cidr("192.0.2.0/24"), "eth0".into())],
            resolvers: vec![Ipv4Addr::new(10, 255, 255, 53)],
        };
        assert_eq!(r.check_placement(cidr("10.244.0.0/16"), &host), Ok(()));
        assert!(matches!(
            r.check_placement(cidr("10.100.0.0/16"), &host),
            Err(RangeError::Cluster { .. })
        ));
        let routed = HostNetworks {
            routes: vec![(cidr("10.100.0.0/24"), "eth1".into())],
            ..Default::default()
        };
        assert_eq!(
            r.check_placement(cidr("10.244.0.0/16"), &routed)
                .unwrap_err()
                .to_string(),
            "10.96.0.0/12 overlaps the host's route to 10.100.0.0/24 (dev eth1): service addresses would hide what it reaches"
        );
        let resolver = ServiceRanges::new(cidr("10.240.0.0/12"), PortRange::default()).unwrap();
        assert_eq!(
            resolver
                .check_placement(cidr("10.244.0.0/30"), &host)
                .map_err(|e| matches!(e, RangeError::Cluster { .. })),
            Err(true)
        );
        let resolver = ServiceRanges::new(cidr("10.255.0.0/16"), PortRange::default()).unwrap();
        assert_eq!(
            resolver.check_placement(cidr("10.244.0.0/16"), &host),
            Err(RangeError::Resolver {
                cidr: cidr("10.255.0.0/16"),
                resolver: Ipv4Addr::new(10, 255, 255, 53)
            })
        );
    }

    #[tokio::test]
    async fn ranges_are_kept_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::embedded::EmbeddedStore::open(
            &dir.path().join("s.redb"),
            Default::default(),
        )
        .unwrap();
        assert_eq!(
            ServiceRanges::load(&store).await.unwrap(),
            ServiceRanges::default()
        );
        let small =
            ServiceRanges::new(cidr("10.112.0.0/20"), "31000-31010".parse().unwrap()).unwrap();
        assert_eq!(small.save(&store).await.unwrap(), None);
        assert_eq!(ServiceRanges::load(&store).await.unwrap(), small);
        assert_eq!(small.save(&store).await.unwrap(), None, "unchanged");
        assert_eq!(
            ServiceRanges::default().save(&store).await.unwrap(),
            Some(small),
            "replaced ranges are reported"
        );
    }
}
