//! `CertificateApi.SignNodeCertificate`: a node's client certificate, signed by the cluster CA
//! (Kubernetes' CSR flow for kubelet client certificates, approved by rule rather than stored).
//!
//! The request must ask for `system:node:NAME` in `system:nodes` and nothing else, NAME a DNS
//! subdomain. Who may ask is the chain's business (`create` on `certificatesigningrequests`
//! named for the node): a bootstrap token for any node, a node only for itself (renewal). Beyond
//! Kubernetes, a bootstrap token may not take the name of a live node (one whose Lease in
//! `kube-node-lease` was renewed within its duration): that node renews its own certificate. The
//! certificate lives [`NodeCertificateLifetime`]; the agent renews it at 70 % of that.
//!
//! Must not: store anything, or sign for anyone but nodes (user certificates are the admin's,
//! made offline from the CA).

use std::time::Duration;

use skiff_api::v1::*;
use tonic::{Request, Response, Status};

use crate::auth::{Attributes, Chain, Identity, NODE_PREFIX, NODES, Verb, identity};
use crate::error::ApiError;
use crate::pki::{Pki, csr_subject};
use crate::registry::Registry;

/// A Lease without `leaseDurationSeconds` counts as live this long after its renewal.
const DEFAULT_LEASE_SECONDS: i64 = 40;

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
    /// Nodes' heartbeat Leases: which nodes are live.
    pub leases: Registry<Lease>,
}

impl CertificateService {
    /// Refuses a bootstrap token the name of a node that heartbeats.
    async fn refuse_live_node(&self, node: &str) -> Result<(), ApiError> {
        let lease = match self
            .leases
            .get(skiff_api::validation::NODE_LEASE_NAMESPACE, node)
            .await
        {
            Ok(lease) => lease,
            Err(ApiError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let spec = lease.spec.unwrap_or_default();
        let renewed = spec.renew_time.map_or(0, |t| t.seconds);
        let duration = spec
            .lease_duration_seconds
            .map_or(DEFAULT_LEASE_SECONDS, i64::from);
        let ago = skiff_api::time::now().seconds - renewed;
        if ago < duration {
            return Err(ApiError::Forbidden(format!(
                "node {node:?} is live (its Lease was renewed {ago}s ago): it renews its own certificate, and a bootstrap token may not take its name"
            )));
        }
        Ok(())
    }

    async fn sign(&self, who: &Identity, csr: &str) -> Result<NodeCertificate, ApiError> {
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
        if *who == Identity::NodeBootstrap {
            self.refuse_live_node(node).await?;
        }
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
        Ok(Response::new(self.sign(&who, &req.get_ref().csr).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    async fn service(
        dir: &std::path::Path,
    ) -> (crate::registry::tests::Harness, CertificateService) {
        let h = crate::registry::tests::Harness::new().await;
        let leases = Registry::new(h.store.clone());
        let service = CertificateService {
            pki: Pki::load_or_create(dir).unwrap(),
            authz: Chain::new(vec![
                Arc::new(crate::auth::AdminAuthorizer),
                Arc::new(crate::auth::node::NodeAuthorizer::default()),
            ]),
            lifetime: NodeCertificateLifetime(Duration::from_secs(600)),
            leases,
        };
        (h, service)
    }

    #[tokio::test]
    async fn bootstrap_signs_any_node_and_a_node_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (_h, s) = service(dir.path()).await;
        let n1 = csr("system:node:n1", &["system:nodes"]);
        let signed = s.sign(&Identity::NodeBootstrap, &n1).await.unwrap();
        let now = skiff_api::time::now().seconds;
        assert!((now + 590..=now + 610).contains(&signed.not_after));
        assert!(s.sign(&Identity::Node("n1".into()), &n1).await.is_ok());
        let refused = s.sign(&Identity::Node("n2".into()), &n1).await.unwrap_err();
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
        assert!(s.sign(&user, &n1).await.is_err());
    }

    #[tokio::test]
    async fn a_bootstrap_token_may_not_take_a_live_node_s_name() {
        let dir = tempfile::tempdir().unwrap();
        let (h, s) = service(dir.path()).await;
        let ns = Namespace {
            metadata: Some(ObjectMeta {
                name: skiff_api::validation::NODE_LEASE_NAMESPACE.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        Registry::new(h.store.clone())
            .create(&Identity::Admin, ns)
            .await
            .unwrap();
        let lease = |name: &str, renewed: i64| Lease {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: skiff_api::validation::NODE_LEASE_NAMESPACE.into(),
                ..Default::default()
            }),
            spec: Some(LeaseSpec {
                holder_identity: Some(name.into()),
                lease_duration_seconds: Some(40),
                renew_time: Some({
                    let mut at = skiff_api::time::now();
                    at.seconds = renewed;
                    at
                }),
                ..Default::default()
            }),
        };
        let now = skiff_api::time::now().seconds;
        let admin = Identity::Admin;
        s.leases
            .create(&admin, lease("live", now - 2))
            .await
            .unwrap();
        s.leases
            .create(&admin, lease("gone", now - 600))
            .await
            .unwrap();
        let live = csr("system:node:live", &["system:nodes"]);
        let e = s.sign(&Identity::NodeBootstrap, &live).await.unwrap_err();
        assert!(matches!(e, ApiError::Forbidden(_)), "{e}");
        assert!(e.to_string().contains("node \"live\" is live"), "{e}");
        // The node itself renews; a node long gone may join again.
        assert!(s.sign(&Identity::Node("live".into()), &live).await.is_ok());
        let gone = csr("system:node:gone", &["system:nodes"]);
        assert!(s.sign(&Identity::NodeBootstrap, &gone).await.is_ok());
    }

    #[tokio::test]
    async fn only_node_subjects_are_signed() {
        let dir = tempfile::tempdir().unwrap();
        let (_h, s) = service(dir.path()).await;
        for (cn, os) in [
            ("jane", &["system:nodes"][..]),
            ("system:node:n1", &["system:masters"][..]),
            ("system:node:n1", &["system:nodes", "system:masters"][..]),
            ("system:node:N_1", &["system:nodes"][..]),
            ("system:node:", &["system:nodes"][..]),
        ] {
            let e = s.sign(&Identity::Admin, &csr(cn, os)).await.unwrap_err();
            assert!(matches!(e, ApiError::BadRequest(_)), "{cn} {os:?}: {e}");
        }
        let e = s.sign(&Identity::Admin, "garbage").await.unwrap_err();
        assert!(e.to_string().starts_with("csr: "), "{e}");
    }
}
