//! `resolv.conf`: the node's (`--resolv-conf`, read as kubelet reads it: `nameserver`,
//! `search`/`domain` and `options` lines) and each pod's, from its `dnsPolicy` and `dnsConfig`
//! with kubelet's rules:
//!
//! - `ClusterFirst` (the default): the node's DNS server, `search NS.svc.D svc.D D` then the
//!   node's search domains, `options ndots:5`;
//! - `Default`: the node's file as it is (nameservers, search, options);
//! - `None`: only what `dnsConfig` says;
//! - `ClusterFirstWithHostNet`: `ClusterFirst`; a host-network pod with `ClusterFirst` gets
//!   `Default` (kubelet's rule; skiff runs every pod in a network namespace of its own, so this
//!   only matters to the spelling);
//! - `dnsConfig` is then merged in: nameservers and search domains appended (duplicates dropped),
//!   options by name (the pod's value wins);
//! - at most 3 nameservers and 32 search domains of 2048 characters in all, as kubelet trims.
//!
//! Must not: read any file but the one it is given, or talk to a DNS server.

use std::net::IpAddr;
use std::path::Path;

use skiff_api::v1::PodSpec;

/// The most nameservers a resolver uses (glibc's MAXNS).
pub const MAX_NAMESERVERS: usize = 3;
/// The most search domains kubelet writes, and their most characters (spaces included).
pub const MAX_SEARCHES: usize = 32;
pub const MAX_SEARCH_CHARS: usize = 2048;

/// The settings of one `resolv.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub searches: Vec<String>,
    /// `ndots:5`, `edns0`, ... in order.
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Reads `text` as glibc does the lines skiff needs: `#` and `;` start comments, the last
    /// `search` or `domain` line wins, options accumulate; unparseable nameservers are skipped.
    pub fn parse(text: &str) -> Self {
        let mut conf = Self::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // A scoped IPv6 address (`fe80::1%eth0`) is the node's own link's: unusable
                    // from a pod.
                    if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                        conf.nameservers.push(ip);
                    }
                }
                Some("search") | Some("domain") => {
                    conf.searches = words.map(|w| w.trim_end_matches('.').to_string()).collect();
                    conf.searches.retain(|s| !s.is_empty());
                }
                Some("options") => conf.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        conf
    }

    /// The node's file `path`.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        std::fs::read_to_string(path).map(|t| Self::parse(&t))
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str("search ");
            out.push_str(&self.searches.join(" "));
            out.push('\n');
        }
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.options.is_empty() {
            out.push_str("options ");
            out.push_str(&self.options.join(" "));
            out.push('\n');
        }
        out
    }

    /// kubelet's trimming: the first [`MAX_NAMESERVERS`] nameservers, search domains while
    /// they fit in [`MAX_SEARCHES`] and [`MAX_SEARCH_CHARS`].
    fn trimmed(mut self) -> Self {
        self.nameservers.truncate(MAX_NAMESERVERS);
        let mut chars = 0;
        let mut kept = Vec::new();
        for s in self.searches {
            let cost = s.len() + usize::from(!kept.is_empty());
            if kept.len() == MAX_SEARCHES || chars + cost > MAX_SEARCH_CHARS {
                break;
            }
            chars += cost;
            kept.push(s);
        }
        self.searches = kept;
        self
    }
}

/// What a pod's resolver settings are made from on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDns {
    /// The cluster domain (`cluster.local`).
    pub domain: String,
    /// The node's DNS server, pods' nameserver under `ClusterFirst`; `None`: the node serves no
    /// DNS (no pod network yet), and `ClusterFirst` falls back to `Default`, as kubelet does
    /// without `--cluster-dns`.
    pub server: Option<IpAddr>,
    /// The node's own settings (`--resolv-conf`).
    pub host: ResolvConf,
}

/// The resolver settings of a pod in `namespace` with `spec`.
pub fn for_pod(node: &NodeDns, namespace: &str, spec: &PodSpec) -> ResolvConf {
    let policy = match spec.dns_policy.as_str() {
        "" | "ClusterFirst" if spec.host_network => "Default",
        "" => "ClusterFirst",
        "ClusterFirstWithHostNet" => "ClusterFirst",
        other => other,
    };
    let base = match (policy, node.server) {
        ("ClusterFirst", Some(server)) => {
            let d = &node.domain;
            let mut searches = vec![
                format!("{namespace}.svc.{d}"),
                format!("svc.{d}"),
                d.clone(),
            ];
            searches.extend(node.host.searches.iter().cloned());
            ResolvConf {
                nameservers: vec![server],
                searches: dedup(searches),
                options: vec!["ndots:5".into()],
            }
        }
        ("None", _) => ResolvConf::default(),
        // Default, and ClusterFirst on a node serving no DNS.
        _ => node.host.clone(),
    };
    merge(base, spec).trimmed()
}

/// `dnsConfig` merged into `base`, as kubelet's `appendDNSConfig`.
fn merge(mut base: ResolvConf, spec: &PodSpec) -> ResolvConf {
    let Some(config) = &spec.dns_config else {
        return base;
    };
    for ns in config.nameservers.iter().filter_map(|n| n.parse().ok()) {
        if !base.nameservers.contains(&ns) {
            base.nameservers.push(ns);
        }
    }
    base.searches.extend(
        config
            .searches
            .iter()
            .map(|s| s.trim_end_matches('.').to_string()),
    );
    base.searches = dedup(std::mem::take(&mut base.searches));
    for option in &config.options {
        let text = match &option.value {
            Some(v) => format!("{}:{v}", option.name),
            None => option.name.clone(),
        };
        let name_of = |o: &str| o.split(':').next().unwrap_or(o).to_string();
        match base.options.iter_mut().find(|o| name_of(o) == option.name) {
            Some(existing) => *existing = text,
            None => base.options.push(text),
        }
    }
    base
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{PodDnsConfig, PodDnsConfigOption};

    fn node() -> NodeDns {
        NodeDns {
            domain: "cluster.local".into(),
            server: Some("10.244.1.1".parse().unwrap()),
            host: ResolvConf::parse(
                "# a comment\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver 10.0.0.3 ; old\nsearch corp.example. lab.example\noptions rotate timeout:1\n",
            ),
        }
    }

    #[test]
    fn the_node_file_is_read_as_glibc_reads_it() {
        let host = node().host;
        assert_eq!(
            host.nameservers,
            [
                "10.0.0.2".parse::<IpAddr>().unwrap(),
                "10.0.0.3".parse().unwrap()
            ]
        );
        assert_eq!(host.searches, ["corp.example", "lab.example"]);
        assert_eq!(host.options, ["rotate", "timeout:1"]);
        assert_eq!(ResolvConf::parse("domain a.b\n").searches, ["a.b"]);
        assert_eq!(ResolvConf::parse("search x\ndomain y\n").searches, ["y"]);
    }

    #[test]
    fn cluster_first_is_the_node_server_and_kubernetes_search_path() {
        let conf = for_pod(&node(), "shop", &PodSpec::default());
        assert_eq!(
            conf.render(),
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example\nnameserver 10.244.1.1\noptions ndots:5\n"
        );
        let with_host_net = PodSpec {
            dns_policy: "ClusterFirstWithHostNet".into(),
            host_network: true,
            ..Default::default()
        };
        assert_eq!(for_pod(&node(), "shop", &with_host_net), conf);
    }

    #[test]
    fn default_is_the_node_file_and_cluster_first_falls_back_to_it_without_a_server() {
        let spec = PodSpec {
            dns_policy: "Default".into(),
            ..Default::default()
        };
        assert_eq!(for_pod(&node(), "shop", &spec), node().host);
        let mut no_server = node();
        no_server.server = None;
        assert_eq!(
            for_pod(&no_server, "shop", &PodSpec::default()),
            node().host
        );
        let host_net = PodSpec {
            host_network: true,
            ..Default::default()
        };
        assert_eq!(for_pod(&node(), "shop", &host_net), node().host);
    }

    #[test]
    fn none_takes_only_dns_config_and_dns_config_merges_into_the_others() {
        let config = PodDnsConfig {
            nameservers: vec!["192.0.2.53".into(), "10.244.1.1".into()],
            searches: vec!["extra.example.".into(), "svc.cluster.local".into()],
            options: vec![
                PodDnsConfigOption {
                    name: "ndots".into(),
                    value: Some("2".into()),
                },
                PodDnsConfigOption {
                    name: "edns0".into(),
                    value: None,
                },
            ],
        };
        let none = PodSpec {
            dns_policy: "None".into(),
            dns_config: Some(config.clone()),
            ..Default::default()
        };
        assert_eq!(
            for_pod(&node(), "shop", &none).render(),
            "search extra.example svc.cluster.local\nnameserver 192.0.2.53\nnameserver 10.244.1.1\noptions ndots:2 edns0\n"
        );
        let merged = PodSpec {
            dns_config: Some(config),
            ..Default::default()
        };
        let conf = for_pod(&node(), "shop", &merged);
        assert_eq!(
            conf.nameservers,
            [
                "10.244.1.1".parse::<IpAddr>().unwrap(),
                "192.0.2.53".parse().unwrap()
            ]
        );
        assert_eq!(
            conf.searches.last().map(String::as_str),
            Some("extra.example")
        );
        assert_eq!(
            conf.searches
                .iter()
                .filter(|s| *s == "svc.cluster.local")
                .count(),
            1
        );
        assert_eq!(conf.options, ["ndots:2", "edns0"]);
    }

    #[test]
    fn limits_are_kubelets() {
        let mut n = node();
        n.host.searches = (0..40).map(|i| format!("d{i}.example")).collect();
        let conf = for_pod(&n, "ns", &PodSpec::default());
        assert_eq!(conf.searches.len(), MAX_SEARCHES);
        n.host.searches = vec!["x".repeat(1000), "y".repeat(1000), "z".repeat(100)];
        let conf = for_pod(&n, "ns", &PodSpec::default());
        assert!(conf.searches.join(" ").len() <= MAX_SEARCH_CHARS);
        assert!(!conf.searches.contains(&"z".repeat(100)));
        let spec = PodSpec {
            dns_policy: "None".into(),
            dns_config: Some(PodDnsConfig {
                nameservers: (1..=5).map(|i| format!("10.0.0.{i}")).collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(for_pod(&n, "ns", &spec).nameservers.len(), MAX_NAMESERVERS);
    }
}
