//! The ingress router: an HTTP/1.1 reverse proxy on every node serving the `networking.k8s.io/v1`
//! Ingresses of IngressClasses whose controller is `skiff.dev/ingress` (the server's default
//! class `skiff`; an Ingress naming no class gets the default one), as an ingress controller
//! does for Kubernetes.
//!
//! - [`routes`]: the routing table (host, then path; Kubernetes' precedence), pure.
//! - [`backends`]: a backend Service port → its ready endpoints (from the shared catalog),
//!   round robin.
//! - [`tls`]: certificates by SNI from `kubernetes.io/tls` Secrets, and the default certificate.
//! - [`sources`]: list+watch of Ingresses and IngressClasses, watches of the named Secrets, and
//!   the routing state rebuilt on each change.
//! - [`proxy`]: the listeners and the forwarding (404, 503, 502 answers; X-Forwarded-* headers).
//!
//! Listening (`--ingress-addr`): by default HTTP on the node address's port 80 and HTTPS on 443
//! when the agent runs as root, 8080 and 8443 otherwise; a default port that cannot be bound is
//! logged and skipped (the agent runs on). `--ingress-addr IP` takes the default ports on `IP`;
//! `IP:PORT` serves HTTP only there and `IP:PORT,IP:PORT` HTTP and HTTPS; `off` turns the router
//! off (so does an empty value). An address given explicitly that cannot be bound stops the agent.
//!
//! Ingress status (the nodes' addresses) and Events about missing backend Services are the
//! control plane's ingress controller's; each router serves and writes nothing.
//!
//! The router lives in the agent's process: while an agent is down (a restart, an upgrade) its
//! node's router does not answer, unlike the Service proxy's kernel rules, which outlive it; the
//! other nodes' routers do, and a node that stops heartbeating leaves the Ingresses' status.
//!
//! Must not: write objects, or keep Services or endpoints of its own (the catalog is the copy).

pub mod backends;
pub mod proxy;
pub mod routes;
pub mod sources;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use skiff_api::client::Transport;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::catalog::Catalog;

/// Where the router listens (`--ingress-addr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngressAddr {
    /// The node address, ports 80/443 as root (8080/8443 otherwise); unbindable ports are skipped.
    Default,
    /// No router.
    Off,
    /// Given explicitly: HTTP, and HTTPS if set.
    At {
        http: SocketAddr,
        https: Option<SocketAddr>,
    },
}

/// A bad `--ingress-addr`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--ingress-addr {value:?}: {why}")]
pub struct IngressAddrError {
    pub value: String,
    pub why: String,
}

/// The default ports: 80 and 443 as root, 8080 and 8443 otherwise.
pub fn default_ports() -> (u16, u16) {
    if rustix::process::geteuid().is_root() {
        (80, 443)
    } else {
        (8080, 8443)
    }
}

impl std::str::FromStr for IngressAddr {
    type Err = IngressAddrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| IngressAddrError {
            value: text.to_string(),
            why: why.to_string(),
        };
        let text = text.trim();
        if text.is_empty() || text == "off" {
            return Ok(Self::Off);
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            let (http, https) = default_ports();
            return Ok(Self::At {
                http: SocketAddr::new(ip, http),
                https: Some(SocketAddr::new(ip, https)),
            });
        }
        let mut parts = text.split(',');
        let addr = |part: Option<&str>| -> Result<Option<SocketAddr>, IngressAddrError> {
            part.map(|p| {
                p.trim().parse::<SocketAddr>().map_err(|_| {
                    bad("expected off, an IP, IP:PORT (HTTP) or IP:PORT,IP:PORT (HTTP, HTTPS)")
                })
            })
            .transpose()
        };
        let http = addr(parts.next())?.ok_or_else(|| bad("no address"))?;
        let https = addr(parts.next())?;
        if parts.next().is_some() {
            return Err(bad("at most two addresses: HTTP, then HTTPS"));
        }
        if https.is_some_and(|s| s == http && s.port() != 0) {
            return Err(bad("HTTP and HTTPS need different ports"));
        }
        Ok(Self::At { http, https })
    }
}

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("ingress: listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("ingress: {0}")]
    Tls(#[from] tls::CertError),
}

/// The running router: its tasks stop when it is dropped.
pub struct Running {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Where it listens (HTTP, HTTPS), as bound.
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Binds `addr` (a default one that fails is skipped with a warning).
async fn bind(addr: SocketAddr, explicit: bool) -> Result<Option<TcpListener>, IngressError> {
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(Some(l)),
        Err(source) if explicit => Err(IngressError::Listen { addr, source }),
        Err(e) => {
            tracing::warn!(%addr, error = %e, "ingress: a default port is not available; not serving it (set --ingress-addr)");
            Ok(None)
        }
    }
}

/// Starts the router on `addr` (the node's address `node_ip` for [`IngressAddr::Default`]).
/// `None` when it is off or no default port could be bound.
pub async fn start(
    addr: &IngressAddr,
    node_ip: IpAddr,
    transport: Transport,
    catalog: Arc<Catalog>,
    node_proxy: Option<Arc<crate::proxy::Proxy>>,
) -> Result<Option<Running>, IngressError> {
    let (http, https, explicit) = match addr {
        IngressAddr::Off => return Ok(None),
        IngressAddr::Default => {
            let (http, https) = default_ports();
            (
                SocketAddr::new(node_ip, http),
                Some(SocketAddr::new(node_ip, https)),
                false,
            )
        }
        IngressAddr::At { http, https } => (*http, *https, true),
    };
    let http = bind(http, explicit).await?;
    let https = match https {
        Some(a) => bind(a, explicit).await?,
        None => None,
    };
    if http.is_none() && https.is_none() {
        return Ok(None);
    }
    let (routing_tx, routing_rx) = watch::channel(Arc::new(sources::Routing::default()));
    let (certs_tx, certs_rx) = watch::channel(Arc::new(tls::Certificates::default()));
    let router = proxy::Router::with_node_proxy(routing_rx, catalog, node_proxy);
    let mut running = Running {
        tasks: vec![tokio::spawn(
            sources::Sources::new(transport).run(routing_tx, certs_tx),
        )],
        http: None,
        https: None,
    };
    if let Some(listener) = http {
        running.http = listener.local_addr().ok();
        running
            .tasks
            .push(tokio::spawn(router.clone().serve_http(listener)));
    }
    if let Some(listener) = https {
        let fallback = Arc::new(tls::default_certificate()?);
        let config = tls::server_config(tls::Resolver {
            current: certs_rx,
            fallback,
        })?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        running.https = listener.local_addr().ok();
        running
            .tasks
            .push(tokio::spawn(router.serve_https(listener, acceptor)));
    }
    tracing::info!(http = ?running.http, https = ?running.https, "ingress router listening");
    Ok(Some(running))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_addr_forms() {
        let (http, https) = default_ports();
        assert_eq!("off".parse(), Ok(IngressAddr::Off));
        assert_eq!("".parse(), Ok(IngressAddr::Off));
        assert_eq!(
            "10.0.0.5".parse(),
            Ok(IngressAddr::At {
                http: SocketAddr::from(([10, 0, 0, 5], http)),
                https: Some(SocketAddr::from(([10, 0, 0, 5], https))),
            })
        );
        assert_eq!(
            "127.0.0.2:8080".parse(),
            Ok(IngressAddr::At {
                http: SocketAddr::from(([127, 0, 0, 2], 8080)),
                https: None,
            })
        );
        assert_eq!(
            "127.0.0.2:8080,127.0.0.2:8443".parse(),
            Ok(IngressAddr::At {
                http: SocketAddr::from(([127, 0, 0, 2], 8080)),
                https: Some(SocketAddr::from(([127, 0, 0, 2], 8443))),
            })
        );
        for bad in [
            "nonsense",
            "1.2.3.4:80,1.2.3.4:80",
            "1.2.3.4:1,1.2.3.4:2,1.2.3.4:3",
        ] {
            let err = bad.parse::<IngressAddr>().unwrap_err();
            assert!(err.to_string().starts_with("--ingress-addr "), "{err}");
        }
    }
}
