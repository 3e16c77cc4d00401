//! Calls without valid credentials, or without TLS, are refused.

use skiff_api::client::ClientConfig;
use skiff_api::v1::{ListRequest, pod_api_client::PodApiClient};
use skiff_tests::{Cluster, stderr, text};

fn with_config(c: &Cluster, name: &str, config: &ClientConfig) -> std::path::PathBuf {
    let path = c.data_dir().join(name);
    std::fs::write(&path, config.to_yaml()).unwrap();
    path
}

#[test]
fn missing_or_wrong_token_is_unauthenticated() {
    let c = Cluster::start();
    for (name, token) in [("no-token.yaml", ""), ("wrong-token.yaml", "not-the-token")] {
        let config = ClientConfig {
            token: token.into(),
            ..c.config()
        };
        let path = with_config(&c, name, &config);
        let out = std::process::Command::new(skiff_tests::skiff_bin())
            .args(["get", "pods", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
        assert!(
            stderr(&out).contains("Unauthorized"),
            "{name}: {}",
            text(&out)
        );
    }
}

#[test]
fn join_token_cannot_act_as_admin() {
    let c = Cluster::start();
    let join = std::fs::read_to_string(c.data_dir().join("join-token")).unwrap();
    // The agent's bearer credential is the bootstrap token part of the join token.
    let bootstrap = skiff_api::join::JoinToken::parse(&join).unwrap().bearer();
    let config = ClientConfig {
        token: bootstrap,
        ..c.config()
    };
    let path = with_config(&c, "join.yaml", &config);
    let out = std::process::Command::new(skiff_tests::skiff_bin())
        .args(["apply", "-f", "-", "--config"])
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("Forbidden"), "{}", text(&out));
}

#[test]
fn plaintext_and_untrusted_ca_are_refused() {
    let c = Cluster::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let token = c.config().token;
    rt.block_on(async {
        // Plain HTTP/2 to the TLS port: the call fails, whatever the token.
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", c.addr))
            .unwrap()
            .connect_lazy();
        let mut client = PodApiClient::new(channel);
        let mut req = tonic::Request::new(ListRequest::default());
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let err = client
            .list(req)
            .await
            .expect_err("plaintext must be refused");
        assert_ne!(err.code(), tonic::Code::Ok);
    });
    // A client that does not trust the cluster CA does not connect.
    let other_ca = tempfile::tempdir().unwrap();
    let stranger = std::process::Command::new(skiff_tests::skiff_bin())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(other_ca.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stranger = KillOnDrop(stranger);
    let foreign = skiff_tests::wait_for("second CA", std::time::Duration::from_secs(20), || {
        ClientConfig::load(&other_ca.path().join("config.yaml")).ok()
    });
    let config = ClientConfig {
        certificate_authority_data: foreign.certificate_authority_data,
        ..c.config()
    };
    let path = with_config(&c, "foreign-ca.yaml", &config);
    let out = std::process::Command::new(skiff_tests::skiff_bin())
        .args(["get", "pods", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let _ = stranger.0.kill();
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
