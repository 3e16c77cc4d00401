//! The cluster's DNS domain (`skiff server --cluster-domain`, default `cluster.local`) and how
//! node agents learn it: the server publishes it in the ConfigMap
//! `skiff-system/kubelet-config` (key `clusterDomain`), as kubeadm publishes the kubelet's
//! configuration in `kube-system/kubelet-config`; an agent reads it once when it starts.
//!
//! Must not: hold anything but what agents need to serve and render cluster DNS.

use crate::validation::is_dns1123_subdomain;

/// `--cluster-domain` unless given, as Kubernetes'.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// The namespace of the ConfigMap agents read.
pub const CONFIG_NAMESPACE: &str = "skiff-system";
/// The ConfigMap agents read.
pub const CONFIG_NAME: &str = "kubelet-config";
/// Its key holding the cluster domain.
pub const CLUSTER_DOMAIN_KEY: &str = "clusterDomain";

/// A cluster domain: a DNS subdomain (lower-case labels of letters, digits and `-`, joined by
/// `.`), without a leading or trailing dot; `cluster.local` or `example.internal`.
pub fn check_cluster_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("must not be empty".into());
    }
    if !is_dns1123_subdomain(domain) {
        return Err(format!(
            "{domain:?} is not a DNS domain: lower-case labels of letters, digits and '-', separated by '.'"
        ));
    }
    // Service names are DNS labels and the longest name is NAME.NS.svc.DOMAIN.: leave them room.
    if domain.len() > 253 - 2 * 64 - 4 {
        return Err(format!(
            "{domain:?} is too long for Service names to fit under it"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_domains_are_dns_subdomains() {
        for ok in ["cluster.local", "example.internal", "c1", "a-b.c"] {
            assert!(check_cluster_domain(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".cluster.local",
            "cluster.local.",
            "Cluster.Local",
            "a..b",
            "-a.b",
            "a_b",
        ] {
            assert!(check_cluster_domain(bad).is_err(), "{bad:?}");
        }
        assert!(check_cluster_domain(&"a.".repeat(60)).is_err());
    }
}
