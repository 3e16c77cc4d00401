//! `--metrics-addr ADDR` of `up`, `server` and `agent`: the process's Prometheus metrics at
//! `GET /metrics`, plain HTTP/1.1 on the address given (off by default).
//!
//! kube-apiserver and the kubelet serve `/metrics` on their authenticated TLS port; skiff serves
//! it on a port of its own, unauthenticated, like kube-scheduler's and kube-controller-manager's
//! `--bind-address` before they moved to TLS, and like node exporters: bind it to loopback or a
//! management network (docs/metrics.md). It shows no secret: label values are verbs, kinds,
//! codes, controller names and the names of pods and nodes.
//!
//! The text format follows the scraper's `Accept` header: OpenMetrics 1.0 when it names
//! `application/openmetrics-text` (Prometheus does), else Prometheus' text format 0.0.4.
//! `skiff up` serves the server's and its agent's families on one endpoint.
//!
//! Must not: hold metrics itself (the library crates do), or serve anything but `/metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::error::{CliError, Result};

/// Where a process's families come from: appends them in OpenMetrics text (`true`, no `# EOF`)
/// or Prometheus' text format 0.0.4.
pub type Source = fn(bool, &mut String) -> std::result::Result<(), std::fmt::Error>;

/// Binds `--metrics-addr` (bad or unbindable: exit 2, naming the flag).
/// `:PORT` is on loopback, as `--dashboard-addr`'s.
pub async fn bind(addr: &str) -> Result<TcpListener> {
    let full = match addr.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => addr.to_string(),
    };
    let parsed: SocketAddr = full.parse().map_err(|_| {
        CliError::usage(format!(
            "error: --metrics-addr {addr:?}: not an IP:PORT address (127.0.0.1:9090, :9090, [::1]:9090)"
        ))
    })?;
    TcpListener::bind(parsed)
        .await
        .map_err(|e| CliError::usage(format!("error: --metrics-addr {addr}: {e}")))
}

/// Serves `sources` on `listener` until the process ends; `who` names the process in the line
/// that says where (`skiff server: metrics at http://127.0.0.1:9090/metrics`).
pub fn serve(listener: TcpListener, sources: &'static [Source], who: &str) {
    if let Ok(addr) = listener.local_addr() {
        eprintln!("{who}: metrics at http://{addr}/metrics");
    }
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics listener: accept");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req| async move { answer(&req, sources) });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn answer(
    req: &Request<Incoming>,
    sources: &[Source],
) -> std::result::Result<Response<Full<Bytes>>, Infallible> {
    let reply = |code: StatusCode, content_type: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = code;
        if let Ok(v) = header::HeaderValue::from_str(content_type) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        Ok(r)
    };
    if req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "404 page not found: metrics are at /metrics\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "405 method not allowed\n".into(),
        );
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (openmetrics, body) = exposition(accept, sources);
    let content_type = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    match body {
        Ok(text) => reply(StatusCode::OK, content_type, text),
        Err(_) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            "encoding the metrics failed\n".into(),
        ),
    }
}

/// The exposition for a scraper whose `Accept` is `accept`: whether it is OpenMetrics, and the
/// text.
fn exposition(
    accept: &str,
    sources: &[Source],
) -> (bool, std::result::Result<String, std::fmt::Error>) {
    let openmetrics = accept.contains("application/openmetrics-text");
    let mut out = String::with_capacity(64 * 1024);
    let mut encoded = sources.iter().try_for_each(|s| s(openmetrics, &mut out));
    if openmetrics && encoded.is_ok() {
        encoded = prometheus_client::encoding::text::encode_eof(&mut out);
    }
    (openmetrics, encoded.map(|()| out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn one(openmetrics: bool, out: &mut String) -> std::result::Result<(), std::fmt::Error> {
        out.push_str(if openmetrics { "# om\n" } else { "# text\n" });
        Ok(())
    }

    #[test]
    fn the_format_follows_accept_and_openmetrics_ends_once() {
        let sources: &[Source] = &[one, one];
        let (om, text) = exposition(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            sources,
        );
        assert!(om);
        assert_eq!(text.unwrap(), "# om\n# om\n# EOF\n");
        let (om, text) = exposition("*/*", sources);
        assert!(!om);
        assert_eq!(text.unwrap(), "# text\n# text\n");
    }

    #[tokio::test]
    async fn a_bad_address_names_the_flag() {
        for bad in ["localhost", "9090", "1.2.3.4.5:80", ":http"] {
            let e = bind(bad).await.unwrap_err();
            assert!(e.to_string().contains("--metrics-addr"), "{e}");
        }
    }
}
