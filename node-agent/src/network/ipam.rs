//! Pod addresses of this node, CNI host-local style: one file per address in use,
//! `<data dir>/ipam/<ip>`, holding the uid of the pod that has it, and `last_reserved_ip`, so
//! that addresses are handed out round-robin (a just-freed address is the last to be reused,
//! and traffic meant for a deleted pod does not reach its successor at once).
//!
//! The files outlive the agent: a restarted agent finds which pod has which address, keeps
//! those of pods that still exist and frees the others ([`Ipam::retain`]).
//!
//! The first address of the block is the network, the second the bridge's (the pods' gateway),
//! the last the broadcast address: none of them is handed out.
//!
//! Must not: touch interfaces. Blocking (small file I/O): call from `spawn_blocking`.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use skiff_api::cidr::Ipv4Cidr;

use super::NetworkError;

const LAST_RESERVED: &str = "last_reserved_ip";

/// The address files of one node.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
}

impl Ipam {
    /// Addresses kept in `dir` (made when the first one is handed out).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn io(&self, path: &Path) -> impl Fn(std::io::Error) -> NetworkError + '_ {
        let path = path.to_path_buf();
        move |source| NetworkError::Io {
            path: path.clone(),
            source,
        }
    }

    /// Every address in use and its pod's uid.
    pub fn allocations(&self) -> Result<BTreeMap<Ipv4Addr, String>, NetworkError> {
        let mut out = BTreeMap::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(self.io(&self.dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(self.io(&self.dir))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let uid = std::fs::read_to_string(entry.path()).map_err(self.io(&entry.path()))?;
            out.insert(ip, uid.trim().to_string());
        }
        Ok(out)
    }

    /// The address pod `uid` has in `block`, if any.
    pub fn address_of(&self, uid: &str, block: Ipv4Cidr) -> Result<Option<Ipv4Addr>, NetworkError> {
        Ok(self
            .allocations()?
            .into_iter()
            .find(|(ip, owner)| owner == uid && block.contains(*ip))
            .map(|(ip, _)| ip))
    }

    /// Pod `uid`'s address in `block`: the one it has, else the next free one after the last
    /// handed out.
    pub fn allocate(&self, uid: &str, block: Ipv4Cidr) -> Result<Ipv4Addr, NetworkError> {
        let taken = self.allocations()?;
        if let Some((ip, _)) = taken
            .iter()
            .find(|(ip, owner)| *owner == uid && block.contains(**ip))
        {
            return Ok(*ip);
        }
        std::fs::create_dir_all(&self.dir).map_err(self.io(&self.dir))?;
        // Host addresses: after the network address and the gateway, before the broadcast.
        let (first, end) = (2u64, block.size().saturating_sub(1));
        let last = std::fs::read_to_string(self.dir.join(LAST_RESERVED))
            .ok()
            .and_then(|t| t.trim().parse::<Ipv4Addr>().ok())
            .and_then(|ip| block.index_of(ip))
            .filter(|i| (first..end).contains(i));
        let span = end.saturating_sub(first);
        let start = last.map_or(first, |i| i + 1);
        for step in 0..span {
            let index = first + (start - first + step) % span;
            let Some(ip) = block.nth(index) else { continue };
            if taken.contains_key(&ip) {
                continue;
            }
            let path = self.dir.join(ip.to_string());
            let mut file = match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(self.io(&path)(e)),
            };
            file.write_all(uid.as_bytes()).map_err(self.io(&path))?;
            let last_path = self.dir.join(LAST_RESERVED);
            std::fs::write(&last_path, ip.to_string()).map_err(self.io(&last_path))?;
            return Ok(ip);
        }
        Err(NetworkError::Exhausted(block))
    }

    /// Frees every address of pod `uid`.
    pub fn release(&self, uid: &str) -> Result<(), NetworkError> {
        for (ip, owner) in self.allocations()? {
            if owner == uid {
                self.remove(ip)?;
            }
        }
        Ok(())
    }

    /// Frees the addresses of pods not in `live`; returns their pods' uids.
    pub fn retain(&self, live: &HashSet<String>) -> Result<Vec<String>, NetworkError> {
        let mut freed = Vec::new();
        for (ip, owner) in self.allocations()? {
            if !live.contains(&owner) {
                self.remove(ip)?;
                freed.push(owner);
            }
        }
        Ok(freed)
    }

    fn remove(&self, ip: Ipv4Addr) -> Result<(), NetworkError> {
        let path = self.dir.join(ip.to_string());
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(&path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn block(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_handed_out_round_robin_and_kept_per_pod() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path().join("ipam"));
        let b = block("10.244.3.0/24");
        assert_eq!(ipam.allocate("a", b).unwrap(), ip("10.244.3.2"));
        assert_eq!(ipam.allocate("b", b).unwrap(), ip("10.244.3.3"));
        assert_eq!(
            ipam.allocate("a", b).unwrap(),
            ip("10.244.3.2"),
            "idempotent"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ipam/10.244.3.2")).unwrap(),
            "a"
        );
        ipam.release("a").unwrap();
        assert_eq!(
            ipam.allocate("c", b).unwrap(),
            ip("10.244.3.4"),
            "a freed address is not reused at once"
        );
        // Another Ipam over the same files (an agent restart) sees the same state.
        let again = Ipam::new(dir.path().join("ipam"));
        assert_eq!(again.address_of("b", b).unwrap(), Some(ip("10.244.3.3")));
        assert_eq!(again.address_of("a", b).unwrap(), None);
        assert_eq!(again.allocate("d", b).unwrap(), ip("10.244.3.5"));
    }

    #[test]
    fn a_full_block_wraps_around_then_is_exhausted() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path().to_path_buf());
        // A /29: .0 network, .1 gateway, .7 broadcast: five pods.
        let b = block("10.1.0.0/29");
        let got: Vec<Ipv4Addr> = (0..5)
            .map(|i| ipam.allocate(&format!("p{i}"), b).unwrap())
            .collect();
        assert_eq!(got.first(), Some(&ip("10.1.0.2")));
        assert_eq!(got.last(), Some(&ip("10.1.0.6")));
        assert!(matches!(
            ipam.allocate("p5", b),
            Err(NetworkError::Exhausted(_))
        ));
        ipam.release("p1").unwrap();
        assert_eq!(ipam.allocate("p5", b).unwrap(), ip("10.1.0.3"), "wraps");
    }

    #[test]
    fn retain_frees_the_addresses_of_pods_that_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path().to_path_buf());
        let b = block("10.244.0.0/24");
        for uid in ["live", "gone"] {
            ipam.allocate(uid, b).unwrap();
        }
        let live = HashSet::from(["live".to_string()]);
        assert_eq!(ipam.retain(&live).unwrap(), ["gone"]);
        let left: Vec<String> = ipam.allocations().unwrap().into_values().collect();
        assert_eq!(left, ["live"]);
    }
}
