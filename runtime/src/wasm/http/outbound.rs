//! Where a function's outgoing requests may go: [`AllowedHosts`], in Spin's
//! `allowed_outbound_hosts` syntax, and [`Outbound`], the wasi:http hooks that enforce it.
//!
//! An entry is `SCHEME://HOST[:PORT]` (a trailing `/` is allowed, no other path):
//! - SCHEME: `http`, `https` or `*` (either);
//! - HOST: a name or an IP address (`[::1]` for IPv6), `*` (any host), or `*.example.com`
//!   (any name under example.com, not example.com itself); names compare case-insensitively;
//! - PORT: a number, or `*` (any port); without one, the scheme's default port (80 for http,
//!   443 for https; for `*`, the request's scheme's).
//!
//! `insecure:allow-all` allows every request. An empty list allows none: deny by default. A
//! denied request gets `HttpRequestDenied` (its future resolves to that error code), and a line
//! saying so goes to the guest's stderr log. An allowed one is sent from inside the function's
//! network namespace (its connection made on the namespace's thread), in tasks that end when
//! wasmtime drops the request (a guest past its timeout, trapped or killed leaves no request
//! running), and waits for its connection and its response's first byte no longer than the
//! function's timeout.
//!
//! Must not: look names up or connect itself beyond handing the request to wasmtime-wasi-http's
//! `default_send_request`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

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

/// What a denial is reported through (the guest's stderr log).
pub(crate) type DenialLog = Arc<dyn Fn(&str) + Send + Sync>;

/// The wasi:http hooks of one store: the allowlist, and where allowed requests connect from.
#[derive(Clone)]
pub(crate) struct Outbound {
    allowed: Arc<AllowedHosts>,
    /// The runtime of the thread inside the function's network namespace; `None`: the caller's.
    connect_on: Option<tokio::runtime::Handle>,
    denied: Option<DenialLog>,
    /// The function's timeout: the longest an outgoing request waits to connect or for its
    /// first byte (zero: wasmtime-wasi-http's defaults).
    limit: Duration,
}

impl Default for Outbound {
    /// Nothing allowed (a command's, which has no allowlist).
    fn default() -> Self {
        Outbound {
            allowed: Arc::default(),
            connect_on: None,
            denied: None,
            limit: Duration::ZERO,
        }
    }
}

impl Outbound {
    pub(crate) fn new(
        allowed: Arc<AllowedHosts>,
        connect_on: Option<tokio::runtime::Handle>,
        denied: Option<DenialLog>,
        limit: Duration,
    ) -> Self {
        Outbound {
            allowed,
            connect_on,
            denied,
            limit,
        }
    }

    /// `options` with its connect and first-byte timeouts no longer than the function's.
    fn capped(&self, options: Option<RequestOptions>) -> Option<RequestOptions> {
        if self.limit.is_zero() {
            return options;
        }
        let mut options = options.unwrap_or_default();
        let cap = |t: Option<Duration>| Some(t.map_or(self.limit, |t| t.min(self.limit)));
        options.connect_timeout = cap(options.connect_timeout);
        options.first_byte_timeout = cap(options.first_byte_timeout);
        Some(options)
    }
}

/// A task on another runtime, aborted when dropped (as wasmtime's own handles are): an outgoing
/// request's send or connection task goes with the guest's request.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        if !self.allowed.permits(request.uri()) {
            let line = format!(
                "outgoing request to {} denied: not in the function's allowed outbound hosts\n",
                request.uri()
            );
            tracing::info!(uri = %request.uri(), "outgoing request denied");
            if let Some(log) = &self.denied {
                log(&line);
            }
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let options = self.capped(options);
        let send = async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok::<_, HttpError>((response.map(BodyExt::boxed_unsync), io))
        };
        match self.connect_on.clone() {
            None => Box::new(async move {
                let (response, io) = send.await?;
                Ok((response, Box::new(io) as Box<dyn Future<Output = _> + Send>))
            }),
            // The connection (and its name lookup, on a blocking thread started from there) is
            // made in the namespace; the connection's task runs there too.
            Some(runtime) => Box::new(async move {
                let (response, io) = AbortOnDrop(runtime.spawn(send))
                    .await
                    .map_err(|e| HttpError::InternalError(Some(e.to_string())))??;
                let io = AbortOnDrop(runtime.spawn(io));
                let io = async move {
                    io.await
                        .map_err(|e| HttpError::InternalError(Some(e.to_string())))?
                };
                Ok((response, Box::new(io) as Box<dyn Future<Output = _> + Send>))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(entries: &[&str], uri: &str) -> bool {
        AllowedHosts::parse(entries)
            .unwrap()
            .permits(&uri.parse().unwrap())
    }

    #[test]
    fn outgoing_timeouts_are_capped_at_the_functions() {
        let limited = Outbound::new(Arc::default(), None, None, Duration::from_secs(2));
        let o = limited.capped(None).unwrap();
        assert_eq!(o.connect_timeout, Some(Duration::from_secs(2)));
        assert_eq!(o.first_byte_timeout, Some(Duration::from_secs(2)));
        assert_eq!(o.between_bytes_timeout, None);
        let shorter = RequestOptions {
            connect_timeout: Some(Duration::from_millis(100)),
            first_byte_timeout: Some(Duration::from_secs(60)),
            between_bytes_timeout: None,
        };
        let o = limited.capped(Some(shorter)).unwrap();
        assert_eq!(o.connect_timeout, Some(Duration::from_millis(100)));
        assert_eq!(o.first_byte_timeout, Some(Duration::from_secs(2)));
        assert_eq!(Outbound::default().capped(None), None);
    }

    #[test]
    fn a_dropped_outgoing_task_is_aborted() {
        let other = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = AbortOnDrop(other.spawn(async move {
            // Holds `tx` until aborted: the receiver sees it dropped only then.
            std::future::pending::<()>().await;
            drop(tx);
        }));
        let runs = std::thread::spawn(move || {
            other.block_on(async { tokio::time::timeout(Duration::from_secs(10), rx).await })
        });
        drop(task);
        let ended = runs.join().unwrap().expect("the task still runs");
        assert!(ended.is_err(), "the task was aborted, dropping its sender");
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

    #[test]
    fn bad_entries_are_named() {
        for (entry, says) in [
            ("example.com", "SCHEME://HOST"),
            ("ftp://example.com", "scheme \"ftp\""),
            ("http://example.com/path", "path"),
            ("http://exa mple.com", "not a host name"),
            ("http://example.com:http", "not a port"),
            ("http://example.com:0", "not a port"),
            ("http://example.com:1..5", "ranges"),
            ("http://[::zz]:80", "IPv6"),
            ("http://u@example.com", "user info"),
        ] {
            let e = AllowedHosts::parse(&[entry]).unwrap_err();
            assert_eq!(e.entry, entry);
            assert!(e.to_string().contains(says), "{entry}: {e}");
        }
    }
}
