//! A pod's DNS settings: `dnsConfig` (with `dnsPolicy: None`, which needs it) and
//! `hostAliases`, with Kubernetes' limits and messages.

use super::FieldErrors;
use super::names::is_dns1123_subdomain;
use crate::v1::PodSpec;

/// Kubernetes' limits of a pod's resolver settings (glibc's, raised as kubelet does).
const MAX_DNS_NAMESERVERS: usize = 3;
const MAX_DNS_SEARCH_PATHS: usize = 32;
const MAX_DNS_SEARCH_LIST_CHARS: usize = 2048;

/// `dnsConfig` (and `dnsPolicy: None`, which needs it), with Kubernetes' rules and messages.
pub(super) fn validate_dns_config(spec: &PodSpec, path: &str, errors: &mut FieldErrors) {
    let none = spec.dns_policy == "None";
    let Some(config) = &spec.dns_config else {
        if none {
            errors.add(
                format!("{path}.dnsConfig"),
                "Required value: must provide `dnsConfig` when `dnsPolicy` is None",
            );
        }
        return;
    };
    let cpath = format!("{path}.dnsConfig");
    if none && config.nameservers.is_empty() {
        errors.add(
            format!("{cpath}.nameservers"),
            "Required value: must provide at least one DNS nameserver when `dnsPolicy` is None",
        );
    }
    if config.nameservers.len() > MAX_DNS_NAMESERVERS {
        errors.add(
            format!("{cpath}.nameservers"),
            format!("must not have more than {MAX_DNS_NAMESERVERS} nameservers"),
        );
    }
    for (i, ns) in config.nameservers.iter().enumerate() {
        if ns.parse::<std::net::IpAddr>().is_err() {
            errors.add(
                format!("{cpath}.nameservers[{i}]"),
                format!("{ns:?}: must be a valid IP address"),
            );
        }
    }
    if config.searches.len() > MAX_DNS_SEARCH_PATHS {
        errors.add(
            format!("{cpath}.searches"),
            format!("must not have more than {MAX_DNS_SEARCH_PATHS} search paths"),
        );
    }
    let chars = config.searches.iter().map(String::len).sum::<usize>()
        + config.searches.len().saturating_sub(1);
    if chars > MAX_DNS_SEARCH_LIST_CHARS {
        errors.add(
            format!("{cpath}.searches"),
            format!(
                "must not have more than {MAX_DNS_SEARCH_LIST_CHARS} characters (including spaces) in the search list"
            ),
        );
    }
    for (i, search) in config.searches.iter().enumerate() {
        // A trailing dot (a fully qualified name) is allowed, as in Kubernetes.
        let name = search.strip_suffix('.').unwrap_or(search);
        if !is_dns1123_subdomain(name) {
            errors.add(
                format!("{cpath}.searches[{i}]"),
                format!("{search:?} is not a valid DNS subdomain"),
            );
        }
    }
    for (i, option) in config.options.iter().enumerate() {
        if option.name.is_empty() {
            errors.add(
                format!("{cpath}.options[{i}].name"),
                "Required value: Option.Name must not be empty",
            );
        }
    }
}

/// `hostAliases`: each an IP address and the host names it gets in the pod's `/etc/hosts`.
pub(super) fn validate_host_aliases(spec: &PodSpec, path: &str, errors: &mut FieldErrors) {
    for (i, alias) in spec.host_aliases.iter().enumerate() {
        let apath = format!("{path}.hostAliases[{i}]");
        if alias.ip.parse::<std::net::IpAddr>().is_err() {
            errors.add(
                format!("{apath}.ip"),
                format!("{:?}: must be a valid IP address", alias.ip),
            );
        }
        for (j, host) in alias.hostnames.iter().enumerate() {
            if !is_dns1123_subdomain(host) {
                errors.add(
                    format!("{apath}.hostnames[{j}]"),
                    format!("{host:?} is not a valid DNS subdomain"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{HostAlias, PodDnsConfig, PodDnsConfigOption};

    fn errors_of(spec: &PodSpec) -> String {
        let mut errors = FieldErrors::default();
        validate_dns_config(spec, "spec", &mut errors);
        validate_host_aliases(spec, "spec", &mut errors);
        errors.to_string()
    }

    #[test]
    fn dns_policy_none_needs_a_dns_config_with_a_nameserver() {
        let mut spec = PodSpec {
            dns_policy: "None".into(),
            ..Default::default()
        };
        assert!(errors_of(&spec).contains("spec.dnsConfig: Required value"));
        spec.dns_config = Some(PodDnsConfig::default());
        assert!(errors_of(&spec).contains("spec.dnsConfig.nameservers: Required value"));
        spec.dns_config = Some(PodDnsConfig {
            nameservers: vec!["10.0.0.10".into()],
            searches: vec!["example.com.".into(), "svc.example".into()],
            options: vec![PodDnsConfigOption {
                name: "ndots".into(),
                value: Some("2".into()),
            }],
        });
        assert_eq!(errors_of(&spec), "");
    }

    #[test]
    fn bad_dns_config_and_host_aliases_name_the_field() {
        let spec = PodSpec {
            dns_config: Some(PodDnsConfig {
                nameservers: vec!["1.1.1.1".into(), "x".into(), "::1".into(), "1.0.0.1".into()],
                searches: vec!["Bad_Domain".into()],
                options: vec![PodDnsConfigOption::default()],
            }),
            host_aliases: vec![HostAlias {
                ip: "300.1.1.1".into(),
                hostnames: vec!["ok.example".into(), "not ok".into()],
            }],
            ..Default::default()
        };
        let shown = errors_of(&spec);
        for want in [
            "spec.dnsConfig.nameservers: must not have more than 3 nameservers",
            "spec.dnsConfig.nameservers[1]",
            "spec.dnsConfig.searches[0]",
            "spec.dnsConfig.options[0].name: Required value",
            "spec.hostAliases[0].ip",
            "spec.hostAliases[0].hostnames[1]",
        ] {
            assert!(shown.contains(want), "{want} in {shown}");
        }
        assert!(!shown.contains("hostnames[0]"), "{shown}");
        let many = PodSpec {
            dns_config: Some(PodDnsConfig {
                searches: (0..33).map(|i| format!("d{i}.example")).collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(errors_of(&many).contains("more than 32 search paths"));
    }
}
