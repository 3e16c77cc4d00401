//! `tcpSocket` probes: a connection that opens is success (kubelet's TCP prober).
//!
//! Must not: send anything on the connection.

use tokio::net::TcpStream;

use super::{authority, io_message};

/// Connects to `host:port`.
pub async fn check(host: &str, port: u16) -> Result<(), String> {
    let address = authority(host, port);
    match TcpStream::connect(&address).await {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("dial tcp {address}: connect: {}", io_message(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_open_port_passes_and_a_closed_one_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(check("127.0.0.1", port).await, Ok(()));
        drop(listener);
        let err = check("127.0.0.1", port).await.unwrap_err();
        assert_eq!(
            err,
            format!("dial tcp 127.0.0.1:{port}: connect: connection refused")
        );
    }
}
