//! The files kubelet (and containerd's CRI plugin) give every OCI container of a pod:
//! `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`, written once per pod under its
//! directory (`DATA_DIR/pods/<uid>/etc-hosts`, `resolv.conf`, `hostname`) and bind-mounted
//! into each of its containers.
//!
//! - `/etc/hosts`: kubelet's header, `localhost` and the IPv6 names, the pod's address with its
//!   hostname (and `HOST.SUBDOMAIN.NS.svc.D` when the pod has a `subdomain`), then
//!   `hostAliases`; a host-network pod gets the node's file with its aliases;
//! - `/etc/resolv.conf`: from `dnsPolicy` and `dnsConfig` ([`crate::dns::resolv_conf`]);
//! - `/etc/hostname`: `spec.hostname`, else the pod's name (at most 63 characters).
//!
//! A container that mounts a volume at one of these paths keeps its own. Wasm containers get
//! none (their name lookups use the pod's resolver settings directly).
//!
//! Must not: write outside the pod's directory, or change a file a container already has
//! mounted (an existing file is kept: containers may have edited it, as in Kubernetes).

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use skiff_api::v1::{Container, HostAlias, Pod};

use super::volumes::Mount;
use crate::dns::resolv_conf::{self, NodeDns};

/// kubelet's header lines.
const MANAGED_HEADER: &str = "# Kubernetes-managed hosts file.\n";
const MANAGED_HEADER_HOST_NETWORK: &str = "# Kubernetes-managed hosts file (host network).\n";

/// The node's hosts file, for host-network pods.
const NODE_HOSTS: &str = "/etc/hosts";

/// The pod's hostname: `spec.hostname`, else its name, cut to a DNS label's 63 characters
/// without a trailing `-` or `.` (kubelet's rule).
pub fn hostname(pod: &Pod) -> String {
    let name = pod.metadata.as_ref().map_or("", |m| m.name.as_str());
    let wanted = pod
        .spec
        .as_ref()
        .map(|s| s.hostname.as_str())
        .filter(|h| !h.is_empty())
        .unwrap_or(name);
    if wanted.len() <= 63 {
        return wanted.to_string();
    }
    let cut = wanted.get(..63).unwrap_or(wanted);
    cut.trim_end_matches(['-', '.']).to_string()
}

/// `SUBDOMAIN.NS.svc.D` for a pod with a `subdomain`.
pub fn host_domain(pod: &Pod, cluster_domain: &str) -> Option<String> {
    let subdomain = pod.spec.as_ref().map(|s| s.subdomain.as_str())?;
    let namespace = pod.metadata.as_ref().map_or("", |m| m.namespace.as_str());
    (!subdomain.is_empty()).then(|| format!("{subdomain}.{namespace}.svc.{cluster_domain}"))
}

fn aliases(out: &mut String, aliases: &[HostAlias]) {
    if aliases.is_empty() {
        return;
    }
    out.push_str("\n# Entries added by HostAliases.\n");
    for a in aliases {
        out.push_str(&format!("{}\t{}\n", a.ip, a.hostnames.join("\t")));
    }
}

/// The pod's `/etc/hosts`, as kubelet writes it.
pub fn hosts(
    pod_ips: &[IpAddr],
    hostname: &str,
    domain: Option<&str>,
    extra: &[HostAlias],
) -> String {
    let mut out = String::from(MANAGED_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        match domain {
            Some(d) => out.push_str(&format!("{ip}\t{hostname}.{d}\t{hostname}\n")),
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    aliases(&mut out, extra);
    out
}

/// A host-network pod's `/etc/hosts`: the node's, with the pod's aliases.
pub fn host_network_hosts(node_hosts: &str, extra: &[HostAlias]) -> String {
    let mut out = String::from(MANAGED_HEADER_HOST_NETWORK);
    out.push_str(node_hosts);
    if !node_hosts.is_empty() && !node_hosts.ends_with('\n') {
        out.push('\n');
    }
    aliases(&mut out, extra);
    out
}

/// Writes `text` to `path` unless it exists (a temporary file renamed into place).
fn write_once(path: &Path, text: &str) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The pod's three files, written under `pod_dir` if missing; the mounts of `container` (none
/// for a path the container mounts a volume at). `pod_ip`: the pod's address, if it has one.
pub fn mounts(
    pod_dir: &Path,
    pod: &Pod,
    container: &Container,
    node: &NodeDns,
    pod_ip: Option<IpAddr>,
) -> Result<Vec<Mount>, String> {
    std::fs::create_dir_all(pod_dir).map_err(|e| format!("creating {}: {e}", pod_dir.display()))?;
    let spec = pod.spec.clone().unwrap_or_default();
    let namespace = pod.metadata.as_ref().map_or("", |m| m.namespace.as_str());
    let name = hostname(pod);
    let hosts_text = if spec.host_network {
        let node_hosts = std::fs::read_to_string(NODE_HOSTS).unwrap_or_default();
        host_network_hosts(&node_hosts, &spec.host_aliases)
    } else {
        let domain = host_domain(pod, &node.domain);
        hosts(
            &pod_ip.into_iter().collect::<Vec<_>>(),
            &name,
            domain.as_deref(),
            &spec.host_aliases,
        )
    };
    let resolv = resolv_conf::for_pod(node, namespace, &spec).render();
    let files: [(&str, &str, String); 3] = [
        ("etc-hosts", "/etc/hosts", hosts_text),
        ("resolv.conf", "/etc/resolv.conf", resolv),
        ("hostname", "/etc/hostname", format!("{name}\n")),
    ];
    let read_only_root = container
        .security_context
        .as_ref()
        .and_then(|s| s.read_only_root_filesystem)
        == Some(true);
    let mut out = Vec::new();
    for (file, guest, text) in files {
        let host: PathBuf = pod_dir.join(file);
        write_once(&host, &text)?;
        let own = container
            .volume_mounts
            .iter()
            .any(|m| m.mount_path.trim_end_matches('/') == guest);
        if own {
            continue;
        }
        out.push(Mount {
            host,
            guest: guest.to_string(),
            // kubelet's hosts file is writable; containerd's resolv.conf and hostname follow
            // the root file system.
            read_only: read_only_root && guest != "/etc/hosts",
            beneath: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::{ObjectMeta, PodSpec, VolumeMount};

    fn pod(name: &str, spec: PodSpec) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "shop".into(),
                uid: "u1".into(),
                ..Default::default()
            }),
            spec: Some(spec),
            ..Default::default()
        }
    }

    fn node() -> NodeDns {
        NodeDns {
            domain: "cluster.local".into(),
            server: Some("10.244.1.1".parse().unwrap()),
            host: resolv_conf::ResolvConf::parse("nameserver 192.0.2.53\nsearch corp.example\n"),
        }
    }

    #[test]
    fn hosts_is_kubelets() {
        let ip: IpAddr = "10.244.1.7".parse().unwrap();
        let alias = HostAlias {
            ip: "192.0.2.1".into(),
            hostnames: vec!["a.example".into(), "b.example".into()],
        };
        assert_eq!(
            hosts(&[ip], "web-0", Some("web.shop.svc.cluster.local"), &[alias]),
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n10.244.1.7\tweb-0.web.shop.svc.cluster.local\tweb-0\n\n# Entries added by HostAliases.\n192.0.2.1\ta.example\tb.example\n"
        );
        let plain = hosts(&[ip], "p", None, &[]);
        assert!(
            plain.ends_with("fe00::2\tip6-allrouters\n10.244.1.7\tp\n"),
            "{plain}"
        );
        let host_net = host_network_hosts("127.0.0.1 localhost", &[]);
        assert_eq!(
            host_net,
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"
        );
    }

    #[test]
    fn hostnames_are_the_spec_s_or_the_pod_name_cut_to_a_label() {
        assert_eq!(hostname(&pod("p", PodSpec::default())), "p");
        let spec = PodSpec {
            hostname: "h".into(),
            subdomain: "web".into(),
            ..Default::default()
        };
        let p = pod("p", spec);
        assert_eq!(hostname(&p), "h");
        assert_eq!(
            host_domain(&p, "cluster.local").as_deref(),
            Some("web.shop.svc.cluster.local")
        );
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        assert_eq!(hostname(&pod(&long, PodSpec::default())), "a".repeat(62));
    }

    #[test]
    fn the_files_are_written_once_and_mounted_unless_the_container_mounts_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let p = pod("web-0", PodSpec::default());
        let ip = Some("10.244.1.7".parse().unwrap());
        let mut c = Container {
            name: "c".into(),
            ..Default::default()
        };
        let mounts = mounts(dir.path(), &p, &c, &node(), ip).unwrap();
        let guests: Vec<&str> = mounts.iter().map(|m| m.guest.as_str()).collect();
        assert_eq!(guests, ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"]);
        assert!(mounts.iter().all(|m| !m.read_only));
        let resolv = std::fs::read_to_string(dir.path().join("resolv.conf")).unwrap();
        assert_eq!(
            resolv,
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.244.1.1\noptions ndots:5\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("hostname")).unwrap(),
            "web-0\n"
        );
        assert!(
            std::fs::read_to_string(dir.path().join("etc-hosts"))
                .unwrap()
                .contains("10.244.1.7\tweb-0\n")
        );
        // Kept as a container may have changed it.
        std::fs::write(dir.path().join("etc-hosts"), "edited\n").unwrap();
        c.volume_mounts = vec![VolumeMount {
            name: "v".into(),
            mount_path: "/etc/resolv.conf".into(),
            ..Default::default()
        }];
        let mounts = super::mounts(dir.path(), &p, &c, &node(), ip).unwrap();
        assert_eq!(mounts.len(), 2, "the container's own resolv.conf wins");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc-hosts")).unwrap(),
            "edited\n"
        );
    }
}
