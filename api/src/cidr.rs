//! IPv4 CIDR blocks (`10.244.0.0/16`): the cluster CIDR, each node's `spec.podCIDR`, the service
//! CIDR, and the addresses inside one.
//!
//! Pure arithmetic over [`std::net::Ipv4Addr`]; shared by the control plane (which hands node
//! CIDRs out of the cluster CIDR), the agent (bridge gateway, pod addresses) and validation.
//! IPv6 pod and service networks are not supported yet: an IPv6 block is rejected with that
//! reason.
//!
//! Must not: touch interfaces or routes.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: a base address with every host bit clear, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

/// Why a text is not a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not a CIDR block (expected an IPv4 network such as 10.244.0.0/16)")]
    Syntax(String),
    #[error("{0:?}: IPv6 networks are not supported yet (give an IPv4 network)")]
    Ipv6(String),
    #[error("{text:?} has host bits set (the network is {network})")]
    HostBits { text: String, network: Ipv4Cidr },
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl Ipv4Cidr {
    /// The block of `prefix` bits holding `addr` (host bits cleared); `None` if `prefix > 32`.
    pub fn containing(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then(|| Self {
            network: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// How many addresses the block spans (2^(32-prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The `index`-th address of the block (0 is the network address), if inside it.
    pub fn nth(&self, index: u64) -> Option<Ipv4Addr> {
        (index < self.size()).then(|| {
            // index < 2^32 here, so the sum stays within u32 for a valid block.
            Ipv4Addr::from(u32::from(self.network).wrapping_add(index as u32))
        })
    }

    /// The offset of `addr` in the block, if inside it.
    pub fn index_of(&self, addr: Ipv4Addr) -> Option<u64> {
        self.contains(addr)
            .then(|| u64::from(u32::from(addr) - u32::from(self.network)))
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == u32::from(self.network)
    }

    /// Do the two blocks share an address?
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The `index`-th sub-block of `prefix` bits (`10.244.0.0/16`, 24, 3 → `10.244.3.0/24`).
    pub fn subnet(&self, prefix: u8, index: u64) -> Option<Ipv4Cidr> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let count = 1u64 << (prefix - self.prefix);
        if index >= count {
            return None;
        }
        let step = 1u64 << (32 - u32::from(prefix));
        let base = self.nth(index * step)?;
        Some(Ipv4Cidr {
            network: base,
            prefix,
        })
    }

    /// How many sub-blocks of `prefix` bits the block holds (0 if `prefix` is shorter).
    pub fn subnet_count(&self, prefix: u8) -> u64 {
        if prefix < self.prefix || prefix > 32 {
            0
        } else {
            1u64 << (prefix - self.prefix)
        }
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    /// `a.b.c.d/n` with no host bits set.
    fn from_str(text: &str) -> Result<Self, CidrError> {
        let syntax = || CidrError::Syntax(text.to_string());
        let (addr, prefix) = text.split_once('/').ok_or_else(syntax)?;
        if addr.contains(':') {
            return Err(CidrError::Ipv6(text.to_string()));
        }
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() > 2 {
            return Err(syntax());
        }
        let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
        let cidr = Ipv4Cidr::containing(addr, prefix).ok_or_else(syntax)?;
        if cidr.network != addr {
            return Err(CidrError::HostBits {
                text: text.to_string(),
                network: cidr,
            });
        }
        Ok(cidr)
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
    fn parses_and_prints() {
        assert_eq!(cidr("10.244.0.0/16").to_string(), "10.244.0.0/16");
        assert_eq!(cidr("0.0.0.0/0").size(), 1 << 32);
        for bad in [
            "10.244.0.0",
            "10.244.0.0/33",
            "x/8",
            "10.244.0.0/",
            "10.1.0.0/+8",
        ] {
            assert!(
                matches!(bad.parse::<Ipv4Cidr>(), Err(CidrError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "fd00::/64".parse::<Ipv4Cidr>(),
            Err(CidrError::Ipv6(_))
        ));
        let err = "10.244.1.5/16".parse::<Ipv4Cidr>().unwrap_err();
        assert!(err.to_string().contains("10.244.0.0/16"), "{err}");
    }

    #[test]
    fn subnets_addresses_and_overlaps() {
        let cluster = cidr("10.244.0.0/16");
        assert_eq!(cluster.subnet_count(24), 256);
        assert_eq!(cluster.subnet(24, 3), Some(cidr("10.244.3.0/24")));
        assert_eq!(cluster.subnet(24, 256), None);
        assert_eq!(cluster.subnet(8, 0), None);
        let node = cidr("10.244.3.0/24");
        assert_eq!(node.nth(1), Some(Ipv4Addr::new(10, 244, 3, 1)));
        assert_eq!(node.nth(256), None);
        assert_eq!(node.index_of(Ipv4Addr::new(10, 244, 3, 9)), Some(9));
        assert_eq!(node.index_of(Ipv4Addr::new(10, 244, 4, 9)), None);
        assert!(cluster.overlaps(&node) && node.overlaps(&cluster));
        assert!(!node.overlaps(&cidr("10.244.4.0/24")));
        assert_eq!(
            Ipv4Cidr::containing(Ipv4Addr::new(10, 1, 2, 3), 8),
            Some(cidr("10.0.0.0/8"))
        );
    }
}
