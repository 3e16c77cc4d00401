//! `grpc` probes: grpc.health.v1 `Health/Check` for the probe's service (empty: the server's
//! overall health) over plain HTTP/2, as kubelet's gRPC prober; SERVING is success.
//!
//! Must not: use TLS (kubelet's gRPC probes have none either).

use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::authority;

/// Checks `service` on `host:port`; `timeout` bounds the connection (the prober bounds the rest).
pub async fn check(host: &str, port: u16, service: &str, timeout: Duration) -> Result<(), String> {
    let address = authority(host, port);
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| format!("bad address {address:?}: {e}"))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .user_agent(super::http::PROBE_USER_AGENT)
        .map_err(|e| e.to_string())?;
    let channel = endpoint.connect().await.map_err(|e| {
        format!(
            "failed to connect service {address:?} within {}s: {e}",
            timeout.as_secs()
        )
    })?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .map_err(|s| format!("rpc error: code = {:?} desc = {}", s.code(), s.message()))?;
    let status = answer.into_inner().status();
    if status == ServingStatus::Serving {
        Ok(())
    } else {
        Err(format!(
            "service unhealthy (responded with {:?})",
            status.as_str_name()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serving_passes_and_not_serving_fails() {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("db", tonic_health::ServingStatus::NotServing)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let incoming = futures::stream::unfold(listener, |l| async move {
            let accepted = l.accept().await.map(|(stream, _)| stream);
            Some((accepted, l))
        });
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        let t = Duration::from_secs(2);
        assert_eq!(check("127.0.0.1", port, "", t).await, Ok(()));
        let err = check("127.0.0.1", port, "db", t).await.unwrap_err();
        assert_eq!(err, "service unhealthy (responded with \"NOT_SERVING\")");
        let err = check("127.0.0.1", port, "nope", t).await.unwrap_err();
        assert!(err.contains("NotFound"), "{err}");
        server.abort();
        let _ = server.await;
        let err = check("127.0.0.1", port, "", t).await.unwrap_err();
        assert!(err.starts_with("failed to connect service"), "{err}");
    }
}
