//! skiff-outbound-hosts: where a function's outgoing requests may go, in Spin's
//! `allowed_outbound_hosts` syntax. The one parser of those entries: the API validates a pod's
//! `skiff.dev/function-allowed-outbound-hosts` with it at apply, and the runtime enforces the
//! same rules on each outgoing request, so an entry that passes validation never fails a pod.
//!
//! An entry is `SCHEME://HOST[:PORT]` (a trailing `/` is allowed, no other path):
//! - SCHEME: `http`, `https` or `*` (either);
//! - HOST: a name (labels of letters, digits, `-`, `_`, at most 63 bytes each, 253 in all), an
//!   IPv4 address, `[IPv6]`, `*` (any host), or `*.example.com` (any name under example.com,
//!   not example.com itself); names compare case-insensitively;
//! - PORT: a number, or `*` (any port); without one, the scheme's default port (80 for http,
//!   443 for https; for `*`, the request's scheme's). Ranges and CIDR blocks are refused.
//!
//! `insecure:allow-all` allows every request. An empty list allows none: deny by default.
//!
//! Owns [`AllowedHosts`] (parse, match) and [`EXAMPLES`], the table both users test against.
//! Must not: know pods, annotations or how a request is sent; depend on any skiff crate.

use http::Uri;

/// An allowlist entry that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allowed outbound host {entry:?}: {reason}")]
pub struct OutboundError {
    pub entry: String,
    pub reason: String,
}

/// A parsed allowlist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    allow_all: bool,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// `None`: any of http, https.
    scheme: Option<Scheme>,
    host: Host,
    port: Port,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Any,
    Exact(String),
    /// `.example.com`: names ending so.
    Under(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Port {
    Any,
    Exact(u16),
    /// The request's scheme's default port.
    Default,
}

impl AllowedHosts {
    /// Parses every entry; the first bad one is the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, OutboundError> {
        let mut hosts = AllowedHosts::default();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry == "insecure:allow-all" {
                hosts.allow_all = true;
                continue;
            }
            hosts
                .rules
                .push(parse_rule(entry).map_err(|reason| OutboundError {
                    entry: entry.to_string(),
                    reason,
                })?);
        }
        Ok(hosts)
    }

    /// True when no request is allowed.
    pub fn is_empty(&self) -> bool {
        !self.allow_all && self.rules.is_empty()
    }

    /// Whether a request to `uri` may be sent.
    pub fn permits(&self, uri: &Uri) -> bool {
        if self.allow_all {
            return true;
        }
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            _ => return false,
        };
        let Some(host) = uri.host() else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(scheme.default_port());
        self.rules.iter().any(|r| {
            r.scheme.is_none_or(|s| s == scheme)
                && match &r.host {
                    Host::Any => true,
                    Host::Exact(h) => host.eq_ignore_ascii_case(h),
                    Host::Under(suffix) => {
                        host.len() > suffix.len()
                            && host
                                .get(host.len() - suffix.len()..)
                                .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
                    }
                }
                && match r.port {
                    Port::Any => true,
                    Port::Exact(p) => p == port,
                    Port::Default => port == scheme.default_port(),
                }
        })
    }
}

fn parse_rule(entry: &str) -> Result<Rule, String> {
    let (scheme, rest) = entry
        .split_once("://")
        .ok_or("must be SCHEME://HOST[:PORT], e.g. https://example.com")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "*" => None,
        "http" => Some(Scheme::Http),
        "https" => Some(Scheme::Https),
        other => {
            return Err(format!(
                "scheme {other:?}: only http, https or * are served"
            ));
        }
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') || rest.contains('#') {
        return Err("a path is not allowed, only SCHEME://HOST[:PORT]".into());
    }
    if rest.contains('@') {
        return Err("user info is not allowed".into());
    }
    // `[v6]:port`, `[v6]`, `host:port`, `host`.
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after the IPv6 address")?),
        };
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("host [{addr}]: not an IPv6 address"))?;
        (Host::Exact(addr.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        (parse_host(host)?, port)
    };
    let port = match port {
        None => Port::Default,
        Some("*") => Port::Any,
        Some(p) if p.contains("..") => {
            return Err(format!("port {p:?}: port ranges are not supported"));
        }
        Some(p) => Port::Exact(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("port {p:?}: not a port number or *"))?,
        ),
    };
    Ok(Rule { scheme, host, port })
}

fn parse_host(host: &str) -> Result<Host, String> {
    if host == "*" {
        return Ok(Host::Any);
    }
    let (name, under) = match host.strip_prefix("*.") {
        Some(rest) => (rest, true),
        None => (host, false),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!(
            "host {host:?}: not a host name, an IP address, * or *.DOMAIN"
        ));
    }
    let name = name.to_ascii_lowercase();
    Ok(if under {
        Host::Under(format!(".{name}"))
    } else {
        Host::Exact(name)
    })
}

/// Entries and how they parse: `None` valid, `Some(words)` refused with an error containing
/// `words`. The API's validation and this crate are tested against it.
#[doc(hidden)]
pub const EXAMPLES: &[(&str, Option<&str>)] = &[
    ("insecure:allow-all", None),
    ("http://127.0.0.1:8080", None),
    ("https://Example.com", None),
    ("https://example.com/", None),
    ("*://h:*", None),
    ("*://*:*", None),
    ("https://*.example.com", None),
    ("http://[::1]", None),
    ("http://[::1]:80/", None),
    ("http://under_score.example", None),
    ("example.com", Some("SCHEME://HOST")),
    ("ftp://example.com", Some("scheme \"ftp\"")),
    ("http://example.com/path", Some("path")),
    ("http://example.com?q", Some("path")),
    ("http://exa mple.com", Some("not a host name")),
    ("http://", Some("not a host name")),
    ("http://a..b", Some("not a host name")),
    ("http://*.", Some("not a host name")),
    ("http://*x.example.com", Some("not a host name")),
    (
        "http://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.com",
        Some("not a host name"),
    ),
    ("http://example.com:http", Some("not a port")),
    ("http://example.com:0", Some("not a port")),
    ("http://example.com:99999", Some("not a port")),
    ("http://example.com:", Some("not a port")),
    ("http://example.com:1..5", Some("ranges")),
    ("http://10.0.0.0/8", Some("path")),
    ("http://[::zz]:80", Some("IPv6")),
    ("http://[::1]x", Some("after the IPv6 address")),
    ("http://[::1", Some("unclosed [")),
    ("http://u@example.com", Some("user info")),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_examples_parse_as_the_table_says() {
        for &(entry, says) in EXAMPLES {
            match (AllowedHosts::parse(&[entry]), says) {
                (Ok(_), None) => {}
                (Err(e), Some(says)) => {
                    assert_eq!(e.entry, entry);
                    assert!(e.to_string().contains(says), "{entry}: {e}");
                }
                (got, _) => panic!("{entry}: {got:?}, expected {says:?}"),
            }
        }
        // 63 bytes is a label still.
        let longest = format!("http://{}.example.com", "a".repeat(63));
        assert!(AllowedHosts::parse(&[longest]).is_ok());
    }

    fn allows(entries: &[&str], uri: &str) -> bool {
        AllowedHosts::parse(entries)
            .unwrap()
            .permits(&uri.parse().unwrap())
    }

    #[test]
    fn deny_by_default() {
        assert!(AllowedHosts::parse::<&str>(&[]).unwrap().is_empty());
        assert!(!allows(&[], "http://127.0.0.1:8080/"));
    }

    #[test]
    fn exact_hosts_ports_and_schemes() {
        let e = ["http://127.0.0.1:8080"];
        assert!(allows(&e, "http://127.0.0.1:8080/x?y"));
        assert!(!allows(&e, "http://127.0.0.1:8081/"));
        assert!(!allows(&e, "https://127.0.0.1:8080/"));
        assert!(!allows(&e, "http://127.0.0.2:8080/"));
        // No port: the scheme's default.
        assert!(allows(&["https://Example.com"], "https://example.COM/"));
        assert!(allows(&["https://example.com"], "https://example.com:443/"));
        assert!(!allows(
            &["https://example.com"],
            "https://example.com:8443/"
        ));
        assert!(!allows(&["https://example.com"], "http://example.com/"));
        assert!(allows(&["http://[::1]:80/"], "http://[::1]/"));
    }

    #[test]
    fn wildcards() {
        let e = ["https://*.example.com"];
        assert!(allows(&e, "https://api.example.com/"));
        assert!(allows(&e, "https://a.b.example.com/"));
        assert!(!allows(&e, "https://example.com/"));
        assert!(!allows(&e, "https://evilexample.com/"));
        let any = ["*://host:*"];
        assert!(allows(&any, "http://host:1/"));
        assert!(allows(&any, "https://host:65535/"));
        assert!(!allows(&any, "http://other:1/"));
        assert!(allows(&["*://*:*"], "http://10.1.2.3:9/"));
        assert!(allows(&["*://h"], "http://h/") && allows(&["*://h"], "https://h/"));
        assert!(!allows(&["*://h"], "http://h:443/"));
        assert!(allows(&["insecure:allow-all"], "http://anything:1/"));
    }
}
