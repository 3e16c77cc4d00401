//! `CertificateApi.SignNodeCertificate`: a node's client certificate, signed by the cluster CA
//! (Kubernetes' CSR flow for kubelet client certificates, approved by rule rather than stored).
//!
//! The request must ask for `system:node:NAME` in `system:nodes` and nothing else, NAME a DNS
//! subdomain. Who may ask is the chain's business (`create` on `certificatesigningrequests`
//! named for the node): a bootstrap token for any node, a node only for itself (renewal). The
//! certificate lives [`NodeCertificateLifetime`]; the agent renews it at 70 % of that.
//!
//! Must not: store anything, or sign for anyone but nodes (user certificates are the admin's,
//! made offline from the CA).

use std::time::Duration;

use skiff_api::v1::*;
use tonic::{Request, Response, Status};

use crate::auth::{Attributes, Chain, NODE_PREFIX, NODES, Verb, identity};
use crate::error::ApiError;
use crate::pki::{Pki, csr_subject};

/// How long a node's client certificate is valid (`skiff server --node-certificate-lifetime`).
#[derive(Debug, Clone, Copy)]
pub struct NodeCertificateLifetime(pub Duration);

impl Default for NodeCertificateLifetime {
    /// A day, as the docs say: short enough that a stolen key is soon worthless, long enough
    /// that an agent down for a few hours renews on return.
    fn default() -> Self {
        Self(Duration::from_secs(24 * 3600))
    }
}

/// Signs nodes' certificates.
#[derive(Clone)]
pub struct CertificateService {
    pub pki: Pki,
    pub authz: Chain,
    pub lifetime: NodeCertificateLifetime,
}

impl CertificateService {
    fn sign(&self, who: &crate::auth::Identity, csr: &str) -> Result<NodeCertificate, ApiError> {
        let invalid = |m: String| ApiError::BadRequest(format!("csr: {m}"));
        let subject = csr_subject(csr).map_err(|e| invalid(e.to_string()))?;
        let node = subject
            .common_name
            .strip_prefix(NODE_PREFIX)
            .filter(|n| skiff_api::validation::is_dns1123_subdomain(n))
            .ok_or_else(|| {
                invalid(format!(
                    "subject CN {:?} is not {NODE_PREFIX}NAME with NAME a DNS subdomain",
                    subject.common_name
                ))
            })?;
        if subject.organizations != [NODES] {
            return Err(invalid(format!(
                "subject O {:?}: a node's certificate is in {NODES:?} alone",
                subject.organizations
            )));
        }
        let attrs = Attributes::new(Verb::Create, "CertificateSigningRequest", "").name(node);
        self.authz.check(who, &attrs)?;
        let (certificate, not_after) = self
            .pki
            .sign_client(csr, &subject, self.lifetime.0)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        tracing::info!(%node, by = %who.name(), not_after, "node certificate signed");
        Ok(NodeCertificate {
            certificate,
            not_after,
        })
    }
}

#[tonic::async_trait]
impl certificate_api_server::CertificateApi for CertificateService {
    async fn sign_node_certificate(
        &self,
        req: Request<NodeCertificateRequest>,
    ) -> Result<Response<NodeCertificate>, Status> {
        let who = identity(&req)?;
        Ok(Response::new(self.sign(&who, &req.get_ref().csr)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Identity;
    use rcgen::{CertificateParams, DnType, KeyPair};
    use std::sync::Arc;

    fn csr(cn: &str, os: &[&str]) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        for o in os {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn service(dir: &std::path::Path) -> CertificateService {
        CertificateService {
            pki: Pki::load_or_create(dir).unwrap(),
            authz: Chain::new(vec![
                Arc::new(crate::auth::AdminAuthorizer),
                Arc::new(crate::auth::node::NodeAuthorizer::default()),
            ]),
            lifetime: NodeCertificateLifetime(Duration::from_secs(600)),
        }
    }

    #[test]
    fn bootstrap_signs_any_node_and_a_node_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let n1 = csr("system:node:n1", &["system:nodes"]);
        let signed = s.sign(&Identity::NodeBootstrap, &n1).unwrap();
        let now = skiff_api::time::now().seconds;
        assert!((now + 590..=now + 610).contains(&signed.not_after));
        assert!(s.sign(&Identity::Node("n1".into()), &n1).is_ok());
        let refused = s.sign(&Identity::Node("n2".into()), &n1).unwrap_err();
        assert!(matches!(refused, ApiError::Forbidden(_)), "{refused}");
        assert!(
            refused
                .to_string()
                .contains("cannot create resource \"certificatesigningrequests\""),
            "{refused}"
        );
        let user = Identity::User {
            name: "jane".into(),
            groups: vec![],
        };
        assert!(s.sign(&user, &n1).is_err());
    }

    #[test]
    fn only_node_subjects_are_signed() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        for (cn, os) in [
            ("jane", &["system:nodes"][..]),
            ("system:node:n1", &["system:masters"][..]),
            ("system:node:n1", &["system:nodes", "system:masters"][..]),
            ("system:node:N_1", &["system:nodes"][..]),
            ("system:node:", &["system:nodes"][..]),
        ] {
            let e = s.sign(&Identity::Admin, &csr(cn, os)).unwrap_err();
            assert!(matches!(e, ApiError::BadRequest(_)), "{cn} {os:?}: {e}");
        }
        let e = s.sign(&Identity::Admin, "garbage").unwrap_err();
        assert!(e.to_string().starts_with("csr: "), "{e}");
    }
}
