//! `httpGet` probes, as kubelet's HTTP prober: `GET scheme://host:port/path` with the probe's
//! headers (a `User-Agent: kube-probe/...` and `Accept: */*` unless the probe sets its own),
//! one connection per probe, closed after the answer's head; a status of 200-399 is success.
//! HTTPS is not verified (kubelet's probes skip verification too).
//!
//! Unlike kubelet, redirects are not followed: a 3xx is already a success by the status rule,
//! so only a redirect to a failing page would be judged differently.
//!
//! Must not: read the body (the status line decides).

use std::sync::{Arc, OnceLock};

use hyper::Request;
use hyper::header::{ACCEPT, HOST, HeaderName, HeaderValue, USER_AGENT};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{authority, io_message};

/// The `User-Agent` of skiff's probes, kubelet's `kube-probe/<major>.<minor>` (skiff's version):
/// servers that tell probes from clients by it (Knative's, skiff's functions, which leave probes
/// out of the figures autoscaling reads) tell skiff's too.
pub const PROBE_USER_AGENT: &str = concat!(
    "kube-probe/",
    env!("CARGO_PKG_VERSION_MAJOR"),
    ".",
    env!("CARGO_PKG_VERSION_MINOR")
);

/// One HTTP probe.
pub struct Get<'a> {
    pub https: bool,
    pub host: &'a str,
    pub port: u16,
    pub path: &'a str,
    pub headers: &'a [(String, String)],
}

impl Get<'_> {
    fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!(
            "{scheme}://{}{}",
            authority(self.host, self.port),
            self.path
        )
    }

    /// Runs the probe.
    pub async fn check(&self) -> Result<(), String> {
        let url = self.url();
        let address = authority(self.host, self.port);
        let tcp = TcpStream::connect(&address).await.map_err(|e| {
            format!(
                "Get {url:?}: dial tcp {address}: connect: {}",
                io_message(&e)
            )
        })?;
        let _ = tcp.set_nodelay(true);
        let status = if self.https {
            let name = ServerName::try_from(self.host.to_string())
                .map_err(|e| format!("Get {url:?}: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(tls_config())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("Get {url:?}: tls: {e}"))?;
            self.send(tls).await
        } else {
            self.send(tcp).await
        }
        .map_err(|e| format!("Get {url:?}: {e}"))?;
        if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {status}"))
        }
    }

    /// Sends the request on `io`; the answer's status code.
    async fn send<IO>(&self, io: IO) -> Result<u16, String>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut request = Request::get(self.path)
            .body(String::new())
            .map_err(|e| e.to_string())?;
        let headers = request.headers_mut();
        let host = if self.port == 80 && !self.https || self.port == 443 && self.https {
            self.host.to_string()
        } else {
            authority(self.host, self.port)
        };
        for (name, value) in [
            (HOST, host.as_str()),
            (USER_AGENT, PROBE_USER_AGENT),
            (ACCEPT, "*/*"),
        ] {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
        // The probe's own headers replace the defaults (a `Host` among them too).
        for (name, value) in self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("header {name:?}: {e}"))?;
            let value =
                HeaderValue::from_str(value).map_err(|e| format!("header {name:?}: {e}"))?;
            headers.insert(name, value);
        }
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
        let answer = sender.send_request(request);
        tokio::pin!(connection, answer);
        // The connection is driven here, not by a task of its own: it goes with the probe.
        tokio::select! {
            biased;
            answer = &mut answer => {
                return answer.map(|a| a.status().as_u16()).map_err(|e| e.to_string());
            }
            ended = &mut connection => ended.map_err(|e| e.to_string())?,
        }
        // The server closed the connection after answering: the answer is there, or an error.
        answer
            .await
            .map(|a| a.status().as_u16())
            .map_err(|e| e.to_string())
    }
}

/// A TLS client that takes any certificate (the handshake's signatures are still checked
/// against the certificate presented).
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.dangerous()
                        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                        .with_no_client_auth()
                });
            match config {
                Ok(config) => Arc::new(config),
                // The ring provider supports the default versions: never reached.
                Err(e) => {
                    tracing::error!(error = %e, "probe TLS configuration");
                    Arc::new(
                        rustls::ClientConfig::builder()
                            .with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth(),
                    )
                }
            }
        })
        .clone()
}

/// Accepts every server certificate, as kubelet's probes do.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Answers each connection's request with `status`; returns the port and the requests seen.
    async fn server(status: u16) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.ends_with(b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
                let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        (port, rx)
    }

    fn get<'a>(port: u16, headers: &'a [(String, String)]) -> Get<'a> {
        Get {
            https: false,
            host: "127.0.0.1",
            port,
            path: "/healthz?full=1",
            headers,
        }
    }

    #[tokio::test]
    async fn two_hundreds_and_three_hundreds_pass_others_fail() {
        for (status, pass) in [
            (200, true),
            (302, true),
            (399, true),
            (404, false),
            (500, false),
        ] {
            let (port, _seen) = server(status).await;
            let result = get(port, &[]).check().await;
            assert_eq!(result.is_ok(), pass, "{status}: {result:?}");
            if !pass {
                assert_eq!(
                    result.unwrap_err(),
                    format!("HTTP probe failed with statuscode: {status}")
                );
            }
        }
    }

    #[tokio::test]
    async fn the_request_carries_the_path_kubelets_headers_and_the_probes() {
        let (port, mut seen) = server(200).await;
        let headers = [
            ("X-Probe".to_string(), "yes".to_string()),
            ("Host".to_string(), "web.local".to_string()),
        ];
        get(port, &headers).check().await.unwrap();
        let request = seen.recv().await.unwrap().to_ascii_lowercase();
        assert!(
            request.starts_with("get /healthz?full=1 http/1.1\r\n"),
            "{request}"
        );
        let agent = format!(
            "user-agent: kube-probe/{}.{}\r\n",
            env!("CARGO_PKG_VERSION_MAJOR"),
            env!("CARGO_PKG_VERSION_MINOR")
        );
        assert!(request.contains(&agent), "{request}");
        assert!(request.contains("accept: */*"), "{request}");
        assert!(request.contains("x-probe: yes"), "{request}");
        assert!(request.contains("host: web.local\r\n"), "{request}");
    }

    #[tokio::test]
    async fn nothing_listening_fails_naming_the_url() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = get(port, &[]).check().await.unwrap_err();
        assert_eq!(
            err,
            format!(
                "Get \"http://127.0.0.1:{port}/healthz?full=1\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            )
        );
    }

    #[tokio::test]
    async fn https_is_probed_without_verifying_the_certificate() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    continue;
                };
                let mut buf = vec![0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                let _ = tls.shutdown().await;
            }
        });
        let probe = Get {
            https: true,
            ..get(port, &[])
        };
        assert_eq!(probe.check().await, Ok(()));
    }
}
