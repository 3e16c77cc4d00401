//! Joining: from `--server` and the join token to a verified API connection.
//!
//! The token carries the CA's fingerprint. The agent reads the certificate chain the server
//! presents (without trusting it), keeps the certificate whose SHA-256 matches, and then opens the
//! real gRPC channel with that CA, verifying the server as any client does. A server that cannot
//! show the matching CA is refused before a single API call.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use skiff_api::client::{ClientConfig, SERVER_NAME};
use skiff_api::join::{JoinToken, der_fingerprint, der_to_pem};

use crate::AgentError;

/// `127.0.0.1:7443` or `https://host:port`, comma-separated → normalised `https://` URLs.
pub fn server_urls(servers: &str) -> Result<Vec<String>, AgentError> {
    let urls: Vec<String> = servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.starts_with("https://") {
                s.to_string()
            } else {
                format!("https://{s}")
            }
        })
        .collect();
    if urls.is_empty() {
        return Err(AgentError::Usage("--server: no address given".into()));
    }
    Ok(urls)
}

/// Fetches and pins the CA, and returns the client config the agent uses from then on.
pub async fn join(servers: &str, token: &str) -> Result<ClientConfig, AgentError> {
    let parsed =
        JoinToken::parse(token).map_err(|e| AgentError::Usage(format!("bootstrap token: {e}")))?;
    let urls = server_urls(servers)?;
    let mut last_error = String::new();
    for url in &urls {
        match fetch_ca(url, &parsed.ca_sha256).await {
            Ok(ca_pem) => {
                return Ok(ClientConfig {
                    server: urls.join(","),
                    certificate_authority_data: ca_pem,
                    token: parsed.bearer(),
                });
            }
            Err(e) => last_error = format!("{url}: {e}"),
        }
    }
    Err(AgentError::Join(last_error))
}

/// Records the chain the server presents; trusts nothing by itself.
#[derive(Debug)]
struct ChainRecorder {
    chain: Mutex<Vec<Vec<u8>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainRecorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = self.chain.lock().unwrap_or_else(|e| e.into_inner());
        chain.push(end_entity.to_vec());
        chain.extend(intermediates.iter().map(|c| c.to_vec()));
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

async fn fetch_ca(url: &str, want_sha256: &str) -> Result<String, String> {
    let authority = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(ChainRecorder {
        chain: Mutex::new(Vec::new()),
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::net::TcpStream::connect(&authority),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(SERVER_NAME).map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let chain = recorder.chain.lock().unwrap_or_else(|e| e.into_inner());
    chain
        .iter()
        .find(|der| der_fingerprint(der) == want_sha256)
        .map(|der| der_to_pem(der))
        .ok_or_else(|| {
            "the server's certificate chain has no CA matching the join token's fingerprint \
             (wrong token, or not a skiff server)"
                .to_string()
        })
}
