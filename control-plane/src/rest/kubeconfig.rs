//! The kubeconfig `skiff server` and `skiff up` write beside `config.yaml` (`DIR/kubeconfig`,
//! mode 0600): cluster, context and user all named `skiff`, the cluster CA, the API address, the
//! admin token; `skiff config kubeconfig` prints it. kubectl and client libraries read it as
//! they read any kubeconfig.
//!
//! Must not: hold anything but what `config.yaml` holds.

use base64::Engine;
use skiff_api::client::ClientConfig;

/// The kubeconfig's names (cluster, context, user).
pub const NAME: &str = "skiff";

/// The file name in the data dir.
pub const FILE: &str = "kubeconfig";

/// The kubeconfig of a client config (YAML).
pub fn render(config: &ClientConfig) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(&config.certificate_authority_data);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {NAME}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\ncontexts:\n- name: {NAME}\n  context:\n    cluster: {NAME}\n    user: {NAME}\ncurrent-context: {NAME}\nusers:\n- name: {NAME}\n  user:\n    token: {token}\npreferences: {{}}\n",
        server = config.server,
        token = config.token,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubeconfig_names_skiff_and_carries_the_ca_and_token() {
        let config = ClientConfig {
            server: "https://127.0.0.1:7443".into(),
            certificate_authority_data:
                "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n".into(),
            token: "abc".into(),
        };
        let text = render(&config);
        let v: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(v["current-context"], "skiff");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:7443"
        );
        assert_eq!(v["users"][0]["user"]["token"], "abc");
        let ca = v["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .unwrap();
        let pem = base64::engine::general_purpose::STANDARD
            .decode(ca)
            .unwrap();
        assert_eq!(pem, config.certificate_authority_data.as_bytes());
    }
}
