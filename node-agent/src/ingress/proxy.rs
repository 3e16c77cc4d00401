//! The HTTP side of the router: accepts HTTP/1.1 (plain, and TLS after the handshake), routes
//! each request by the latest [`Routing`] and forwards it to a ready endpoint of the backend over
//! a pooled upstream connection.
//!
//! Answers of its own, each with a one-line text body: 404 when no rule (and no default backend)
//! matches; 503 when the backend Service does not exist, lacks the port, or has no ready
//! endpoint (unless the node proxy holds it for scale from zero: then the request goes to its
//! cluster IP, where it is held until a pod serves it); 502 when the upstream connection or exchange fails; 504 when the upstream sends no
//! response head within [`UPSTREAM_TIMEOUT`]. A request without a body whose connection is
//! refused tries the next endpoint (at most [`MAX_TRIES`] in all).
//!
//! Forwarded requests keep their `Host` and carry `X-Forwarded-For` (appended to),
//! `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Forwarded-Port` and `X-Real-IP`; hop-by-hop
//! headers are dropped both ways, except that an upgrade (WebSocket) keeps `Connection: upgrade`
//! and `Upgrade`, and once the upstream answers 101 the two connections are joined byte for
//! byte. HTTP/2 is not served yet.
//!
//! Must not: decide routes (see [`super::routes`]) or read the API.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as _, Incoming};
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::backends::pick;
use super::sources::Routing;
use crate::catalog::Catalog;

/// How long an upstream may take to send its response head.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// How many endpoints a request without a body tries when connections are refused.
const MAX_TRIES: u32 = 3;

type Body = BoxBody<Bytes, hyper::Error>;

/// What every connection shares.
pub struct Router {
    routing: watch::Receiver<Arc<Routing>>,
    catalog: Arc<Catalog>,
    client: Client<HttpConnector, Body>,
    /// The node proxy, whose held Services (scale from zero) are reached by their cluster IP
    /// while they have no endpoint: the proxy holds the connection and wakes them.
    node_proxy: Option<Arc<crate::proxy::Proxy>>,
}

impl Router {
    pub fn new(routing: watch::Receiver<Arc<Routing>>, catalog: Arc<Catalog>) -> Arc<Self> {
        Self::with_node_proxy(routing, catalog, None)
    }

    /// A router that sends a held Service's requests to its cluster IP while it has no endpoint.
    pub fn with_node_proxy(
        routing: watch::Receiver<Arc<Routing>>,
        catalog: Arc<Catalog>,
        node_proxy: Option<Arc<crate::proxy::Proxy>>,
    ) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build(connector);
        Arc::new(Self {
            routing,
            catalog,
            client,
            node_proxy,
        })
    }

    /// The cluster IP and port of `backend`'s Service when the node proxy holds it.
    fn held_upstream(&self, backend: &super::routes::Backend) -> Option<SocketAddr> {
        let proxy = self.node_proxy.as_ref()?;
        if !proxy.is_held(&backend.namespace, &backend.service) {
            return None;
        }
        let svc = self.catalog.service(&backend.namespace, &backend.service)?;
        let spec = svc.spec.as_ref()?;
        let ip: std::net::IpAddr = spec.cluster_ip.parse().ok()?;
        let port = spec.ports.iter().find(|p| match &backend.port {
            super::routes::PortRef::Number(n) => p.port == *n,
            super::routes::PortRef::Name(name) => p.name == *name,
        })?;
        Some(SocketAddr::new(ip, u16::try_from(port.port).ok()?))
    }

    /// Returns once the first routing state is published and the catalog has listed Services and
    /// Endpoints: until then connections wait in the listen queue, so a starting (or restarted)
    /// agent answers no false 404 or 503.
    async fn ready(&self) {
        let mut routing = self.routing.clone();
        if routing.borrow().table.is_empty() {
            // An error means the sender is gone: the state there is is the last one.
            let _ = routing.changed().await;
        }
        self.catalog.synced().await;
    }

    /// Serves plain HTTP on `listener` until the task is aborted.
    pub async fn serve_http(self: Arc<Self>, listener: TcpListener) {
        self.ready().await;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        loop {
            let Ok((stream, remote)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let router = self.clone();
            tokio::spawn(async move {
                router
                    .serve_connection(TokioIo::new(stream), remote, Scheme::Http, port)
                    .await
            });
        }
    }

    /// Serves HTTPS on `listener` until the task is aborted.
    pub async fn serve_https(
        self: Arc<Self>,
        listener: TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
    ) {
        self.ready().await;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        loop {
            let Ok((stream, remote)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let router = self.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                match handshake.await {
                    Ok(Ok(tls)) => {
                        router
                            .serve_connection(TokioIo::new(tls), remote, Scheme::Https, port)
                            .await
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "ingress TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(%remote, "ingress TLS handshake timed out"),
                }
            });
        }
    }

    async fn serve_connection<I>(
        self: Arc<Self>,
        io: I,
        remote: SocketAddr,
        scheme: Scheme,
        port: u16,
    ) where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let service = hyper::service::service_fn(move |req| {
            let router = self.clone();
            async move { Ok::<_, Infallible>(router.handle(req, remote, scheme, port).await) }
        });
        // A timer gives hyper's 30 s limit on reading a request head (no slow-loris clients).
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .keep_alive(true)
            .serve_connection(io, service)
            .with_upgrades()
            .await;
        if let Err(e) = served {
            tracing::debug!(%remote, error = %e, "ingress connection ended");
        }
    }

    /// Routes and forwards one request.
    async fn handle(
        &self,
        req: Request<Incoming>,
        remote: SocketAddr,
        scheme: Scheme,
        port: u16,
    ) -> Response<Body> {
        let host = request_host(&req);
        let path = req.uri().path().to_string();
        let backend = {
            let routing = self.routing.borrow();
            routing.table.route(&host, &path).cloned()
        };
        let Some(backend) = backend else {
            return text(
                StatusCode::NOT_FOUND,
                "404 page not found: no ingress rule matches\n",
            );
        };
        let (mut parts, body) = req.into_parts();
        // An upgrade (WebSocket): the protocol asked for, and the client's side of the tunnel.
        let upgrade = upgrade_protocol(&parts.headers);
        let mut client_side = upgrade
            .as_ref()
            .and_then(|_| parts.extensions.remove::<OnUpgrade>());
        forwarding_headers(&mut parts.headers, remote, scheme, &host, port);
        if let Some(protocol) = &upgrade {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, protocol.clone());
        }
        // A request without a body can go to another endpoint when a connection is refused (a
        // pod that just went away): nginx's `proxy_next_upstream error`.
        let replayable = body.is_end_stream();
        let mut body = Some(body.boxed());
        let mut tries = 0;
        loop {
            let upstream = match pick(&self.catalog, &backend) {
                Ok(address) => address,
                Err(super::backends::Unavailable::NoEndpoints(_))
                    if let Some(held) = self.held_upstream(&backend) =>
                {
                    held
                }
                Err(e) => {
                    return text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("503 service unavailable: {e}\n"),
                    );
                }
            };
            let uri = match upstream_uri(&parts.uri, upstream) {
                Ok(uri) => uri,
                Err(e) => {
                    return text(StatusCode::BAD_REQUEST, &format!("400 bad request: {e}\n"));
                }
            };
            let mut forwarded = Request::new(body.take().unwrap_or_else(empty));
            *forwarded.method_mut() = parts.method.clone();
            *forwarded.uri_mut() = uri;
            *forwarded.headers_mut() = parts.headers.clone();
            tries += 1;
            match tokio::time::timeout(UPSTREAM_TIMEOUT, self.client.request(forwarded)).await {
                Ok(Ok(mut response)) => {
                    if response.status() == StatusCode::SWITCHING_PROTOCOLS
                        && let Some(client_side) = client_side.take()
                    {
                        // The 101 keeps its Connection and Upgrade headers; both sides are
                        // joined once the client has it.
                        let upstream_side = hyper::upgrade::on(&mut response);
                        tokio::spawn(tunnel(client_side, upstream_side, upstream));
                        return response.map(BodyExt::boxed);
                    }
                    strip_hop_by_hop(response.headers_mut());
                    return response.map(BodyExt::boxed);
                }
                Ok(Err(e)) if e.is_connect() && replayable && tries < MAX_TRIES => {
                    tracing::debug!(%upstream, error = %e, "ingress upstream refused; trying the next");
                }
                Ok(Err(e)) => {
                    tracing::debug!(%upstream, error = %e, "ingress upstream failed");
                    return text(
                        StatusCode::BAD_GATEWAY,
                        &format!("502 bad gateway: upstream {upstream}: {e}\n"),
                    );
                }
                Err(_) => {
                    return text(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!(
                            "504 gateway timeout: upstream {upstream} sent no response in {UPSTREAM_TIMEOUT:?}\n"
                        ),
                    );
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The host a request is for: the `Host` header, else the URI's authority (absolute-form).
fn request_host<B>(req: &Request<B>) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

/// The protocol an upgrade request asks for (`Upgrade`, with `upgrade` among `Connection`'s
/// tokens).
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asked = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    asked
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Copies bytes both ways between an upgraded client connection and its upstream.
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, address: SocketAddr) {
    match tokio::join!(client, upstream) {
        (Ok(client), Ok(upstream)) => {
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(%address, error = %e, "ingress upgraded connection ended");
            }
        }
        (client, upstream) => tracing::debug!(
            %address,
            client = ?client.err(),
            upstream = ?upstream.err(),
            "ingress upgrade failed"
        ),
    }
}

/// `upstream` as the authority of an origin-form request for `uri`'s path and query.
fn upstream_uri(uri: &Uri, upstream: SocketAddr) -> Result<Uri, http::Error> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Uri::builder()
        .scheme("http")
        .authority(upstream.to_string())
        .path_and_query(path)
        .build()
}

/// The request's headers as they go upstream: hop-by-hop ones dropped, forwarding ones added
/// (`X-Forwarded-For` appended to), `Host` kept.
fn forwarding_headers(
    headers: &mut HeaderMap,
    remote: SocketAddr,
    scheme: Scheme,
    host: &str,
    port: u16,
) {
    strip_hop_by_hop(headers);
    let client = remote.ip().to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(before) => format!("{before}, {client}"),
        None => client.clone(),
    };
    set(headers, "x-forwarded-for", &xff);
    set(headers, "x-forwarded-proto", scheme.as_str());
    set(headers, "x-forwarded-port", &port.to_string());
    set(headers, "x-real-ip", &client);
    if !host.is_empty() {
        set(headers, "x-forwarded-host", host);
        if !headers.contains_key(header::HOST) {
            set(headers, "host", host);
        }
    }
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// Removes the headers that belong to one connection (RFC 9110 §7.6.1), and those it names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
