//! The cluster IP pool: the addresses of `--service-cidr`, claimed at `/ipaddresses/<ip>` (the
//! key Kubernetes' IPAddress objects take), and Kubernetes' rules for which may be handed out.
//!
//! The network and broadcast addresses are never handed out nor may be asked for (Kubernetes'
//! valid range leaves them out). The first address is kept for the `default/kubernetes` Service,
//! as Kubernetes' bootstrap controller takes it for the API server's Service: skiff's control
//! plane does not create that Service yet (it comes with the Kubernetes REST API), but no other
//! Service may take the address meanwhile, so that the well-known `10.96.0.1` stays free for it.
//!
//! Must not: touch Services (the service layer fills their fields) or the store beyond its pool.

use std::net::Ipv4Addr;

use skiff_api::cidr::Ipv4Cidr;

use super::pool::{Pool, static_band};

/// The namespace and name of the Service that may take the first address.
pub const KUBERNETES_SERVICE: (&str, &str) = ("default", "kubernetes");

/// The addresses of one service CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPool {
    cidr: Ipv4Cidr,
}

impl IpPool {
    pub fn new(cidr: Ipv4Cidr) -> Self {
        Self { cidr }
    }

    /// The address kept for the `default/kubernetes` Service.
    pub fn first(&self) -> Option<Ipv4Addr> {
        self.cidr.nth(1)
    }

    /// Why `ip` may not be given to the Service `namespace/name`, in Kubernetes' words (after
    /// "failed to allocate IP {ip}: "); None if it may (and is free).
    pub fn refuse_request(&self, ip: Ipv4Addr, namespace: &str, name: &str) -> Option<String> {
        let inside = self
            .cidr
            .index_of(ip)
            .is_some_and(|o| o != 0 && o + 1 != self.cidr.size());
        if !inside {
            return Some(format!(
                "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                self.cidr
            ));
        }
        if Some(ip) == self.first() && (namespace, name) != KUBERNETES_SERVICE {
            return Some(format!(
                "the first address of the service CIDR {} is reserved for the {}/{} Service",
                self.cidr, KUBERNETES_SERVICE.0, KUBERNETES_SERVICE.1
            ));
        }
        None
    }
}

impl Pool for IpPool {
    type Value = Ipv4Addr;
    const PREFIX: &'static str = "/ipaddresses/";

    fn size(&self) -> u64 {
        self.cidr.size()
    }

    fn value(&self, offset: u64) -> Ipv4Addr {
        self.cidr.nth(offset).unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    fn offset(&self, value: Ipv4Addr) -> Option<u64> {
        self.cidr.index_of(value)
    }

    /// Not the network address, the first (kept), nor the broadcast address.
    fn dynamic(&self, offset: u64) -> bool {
        offset > 1 && offset + 1 < self.cidr.size()
    }

    /// Kubernetes' `calculateRangeOffset` for service IPs: size/16, within 16..=256.
    fn static_band(&self) -> u64 {
        static_band(self.cidr.size(), 16, 256, 16)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pool(cidr: &str) -> IpPool {
        IpPool::new(cidr.parse().unwrap())
    }

    #[test]
    fn network_broadcast_and_the_first_address_are_not_handed_out() {
        let p = pool("10.96.0.0/29");
        let dynamic: Vec<Ipv4Addr> = (0..p.size())
            .filter(|o| p.dynamic(*o))
            .map(|o| p.value(o))
            .collect();
        assert_eq!(
            dynamic,
            (2..=6)
                .map(|h| Ipv4Addr::new(10, 96, 0, h))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            p.static_band(),
            0,
            "a range smaller than 16 has no static band"
        );
        assert_eq!(pool("10.96.0.0/12").static_band(), 256);
        assert_eq!(pool("10.96.0.0/24").static_band(), 16);
    }

    #[test]
    fn requests_are_judged_in_kubernetes_words() {
        let p = pool("10.96.0.0/24");
        assert_eq!(
            p.refuse_request(Ipv4Addr::new(10, 96, 0, 10), "a", "b"),
            None
        );
        assert_eq!(
            p.refuse_request(Ipv4Addr::new(10, 97, 0, 10), "a", "b")
                .unwrap(),
            "the provided IP (10.97.0.10) is not in the valid range. The range of valid IPs is 10.96.0.0/24"
        );
        for edge in [0, 255] {
            assert!(
                p.refuse_request(Ipv4Addr::new(10, 96, 0, edge), "a", "b")
                    .unwrap()
                    .contains("not in the valid range")
            );
        }
        let first = Ipv4Addr::new(10, 96, 0, 1);
        assert!(
            p.refuse_request(first, "default", "web")
                .unwrap()
                .contains("reserved for the default/kubernetes Service")
        );
        assert_eq!(p.refuse_request(first, "default", "kubernetes"), None);
    }
}
