//! The NodePort pool: the ports of `--service-node-port-range`, claimed at `/nodeports/<port>`
//! (one number for every protocol, as Kubernetes' port allocator: a Service may use one
//! nodePort for the TCP and the UDP side of a port, but two Services never share one).
//!
//! Must not: touch Services (the service layer fills their fields) or the store beyond its pool.

use super::pool::{Pool, static_band};
use super::ranges::PortRange;

/// The ports of one node-port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortPool {
    range: PortRange,
}

impl PortPool {
    pub fn new(range: PortRange) -> Self {
        Self { range }
    }

    /// Why `port` may not be asked for, in Kubernetes' words; None if it may (and is free).
    pub fn refuse_request(&self, port: u16) -> Option<String> {
        (!self.range.contains(port)).then(|| {
            format!(
                "provided port is not in the valid range. The range of valid ports is {}",
                self.range
            )
        })
    }
}

impl Pool for PortPool {
    type Value = u16;
    const PREFIX: &'static str = "/nodeports/";

    fn size(&self) -> u64 {
        self.range.size()
    }

    fn value(&self, offset: u64) -> u16 {
        self.range.nth(offset)
    }

    fn offset(&self, value: u16) -> Option<u64> {
        self.range
            .contains(value)
            .then(|| u64::from(value - self.range.first()))
    }

    fn dynamic(&self, _offset: u64) -> bool {
        true
    }

    /// Kubernetes' `calculateRangeOffset` for node ports: size/32, within 16..=128.
    fn static_band(&self) -> u64 {
        static_band(self.range.size(), 16, 128, 32)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_default_range_leaves_its_bottom_86_ports_to_requests() {
        let p = PortPool::new("30000-32767".parse().unwrap());
        assert_eq!(p.size(), 2768);
        assert_eq!(p.static_band(), 86);
        assert_eq!(p.value(0), 30000);
        assert_eq!(p.offset(32767), Some(2767));
        assert_eq!(p.offset(29999), None);
        assert_eq!(p.refuse_request(30080), None);
        assert_eq!(
            p.refuse_request(8080).unwrap(),
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
    }
}
