//! The API port's listener: TLS with ALPN `h2` and `http/1.1`, then each connection to the
//! server that speaks its protocol: HTTP/2 to the tonic server (gRPC and REST, split by
//! [`super::split`]), HTTP/1.1 to hyper with upgrades (REST only: WebSockets, curl).
//!
//! Client certificates of the cluster CA are asked for and optional (callers without one send a
//! bearer token), as tonic's own TLS did. Must not: look at requests (the services do).

use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use super::Rest;

/// A TLS handshake that takes longer is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS set-up failed (bad PEM in the data dir).
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(String);

fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("certificate PEM: {e}")))
}

/// The server's TLS configuration: its certificate chain (the CA last, so that a joining agent
/// can pin it), client certificates of `ca_pem` optional, ALPN `h2` then `http/1.1`.
pub fn tls_config(chain_pem: &str, key_pem: &str, ca_pem: &str) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(ca_pem)? {
        roots
            .add(ca)
            .map_err(|e| TlsError(format!("cluster CA: {e}")))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError(format!("client verifier: {e}")))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| TlsError(format!("key PEM: {e}")))?
        .ok_or_else(|| TlsError("no private key in the server key PEM".into()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(chain_pem)?, key)
        .map_err(|e| TlsError(format!("server certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts connections until `shutdown` turns true: HTTP/2 ones are sent to `h2` (the tonic
/// server's incoming stream), the others served here by `rest`.
pub async fn accept(
    listener: TcpListener,
    tls: ServerConfig,
    h2: mpsc::Sender<TlsStream<TcpStream>>,
    rest: Rest,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    loop {
        let accepted = tokio::select! {
            () = stopped(&mut shutdown) => return,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "accepting a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Without it, Nagle + delayed ACKs add ~40 ms to every small response.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let h2 = h2.clone();
        let rest = rest.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            };
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                let _ = h2.send(tls).await;
            } else {
                serve_http1(tls, rest, shutdown).await;
            }
        });
    }
}

/// Completes once the server is stopping.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves one HTTP/1.1 connection (with upgrades) until it closes or the server stops.
async fn serve_http1(tls: TlsStream<TcpStream>, rest: Rest, mut shutdown: watch::Receiver<bool>) {
    let info = tls.connect_info();
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let rest = rest.clone();
        let info = info.clone();
        async move {
            let mut req = req.map(tonic::body::Body::new);
            req.extensions_mut().insert(info);
            Ok::<_, std::convert::Infallible>(rest.handle(req).await)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "HTTP/1.1 connection");
            }
        }
        () = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}
