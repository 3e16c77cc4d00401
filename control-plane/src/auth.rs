//! Who is calling, and may they: bearer tokens checked in constant time, an [`Identity`] attached
//! to every request, and the rules of what each identity may do.
//!
//! Tokens: the admin token (in `config.yaml`) may do anything; the join token (`join-token`) is a
//! node's bootstrap identity and may do what a node agent needs (its Node, pod status, events,
//! reading what its pods use). Per-node certificates and roles build on this seam later.

use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::{Request, Status};

use crate::error::ApiError;

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Admin,
    /// A node agent joining with the cluster's join token.
    NodeBootstrap,
}

impl Identity {
    pub fn name(&self) -> &'static str {
        match self {
            Identity::Admin => "admin",
            Identity::NodeBootstrap => "system:node-bootstrap",
        }
    }
}

/// An API verb, for authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Create,
    Get,
    List,
    Watch,
    Update,
    UpdateStatus,
    Delete,
}

/// Checks bearer tokens.
#[derive(Clone)]
pub struct Authenticator {
    admin: Arc<[u8]>,
    join: Arc<[u8]>,
}

impl Authenticator {
    pub fn new(admin_token: &str, join_token: &str) -> Self {
        Self {
            admin: admin_token.as_bytes().into(),
            join: join_token.as_bytes().into(),
        }
    }

    fn identify(&self, token: &[u8]) -> Option<Identity> {
        // Compare against both, always, so timing does not tell which (or whether) one matched.
        let admin = bool::from(token.ct_eq(&self.admin));
        let join = bool::from(token.ct_eq(&self.join));
        match (admin, join) {
            (true, _) => Some(Identity::Admin),
            (false, true) => Some(Identity::NodeBootstrap),
            _ => None,
        }
    }
}

impl Authenticator {
    /// The identity of a request's bearer token.
    pub fn authenticate<T>(&self, request: &Request<T>) -> Result<Identity, ApiError> {
        let unauthenticated = |m: &str| ApiError::Unauthenticated(m.to_string());
        let header = request.metadata().get("authorization").ok_or_else(|| {
            unauthenticated("missing credentials: send `authorization: Bearer <token>`")
        })?;
        let token = header.as_bytes().strip_prefix(b"Bearer ").ok_or_else(|| {
            unauthenticated("malformed authorization header: expected `Bearer <token>`")
        })?;
        self.identify(token)
            .ok_or_else(|| unauthenticated("invalid bearer token"))
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let identity = self.authenticate(&request)?;
        request.extensions_mut().insert(identity);
        Ok(request)
    }
}

/// The identity the interceptor attached to `request`.
pub fn identity<T>(request: &Request<T>) -> Result<Identity, ApiError> {
    request
        .extensions()
        .get::<Identity>()
        .cloned()
        .ok_or_else(|| ApiError::Unauthenticated("unauthenticated request".into()))
}

/// May `identity` do `verb` on `kind` in `namespace` (empty: cluster-scoped, or a list or watch
/// across all namespaces)?
pub fn authorize(
    identity: &Identity,
    verb: Verb,
    kind: &str,
    namespace: &str,
) -> Result<(), ApiError> {
    let allowed = match identity {
        Identity::Admin => true,
        Identity::NodeBootstrap => match kind {
            "Node" | "NodeTunnel" => true,
            // wasi:keyvalue for its pods: the service checks the pod runs on the node.
            "KeyValue" => verb == Verb::Update,
            // Its pods' figures, the Services it holds for scale from zero, and their wakes.
            "NodeMetrics" | "ScaleFromZero" => true,
            // Heartbeats: a node renews its Lease in kube-node-lease, and touches no other.
            "Lease" => {
                namespace == skiff_api::validation::NODE_LEASE_NAMESPACE
                    && matches!(verb, Verb::Create | Verb::Get | Verb::Update)
            }
            "Pod" => matches!(
                verb,
                Verb::Get | Verb::List | Verb::Watch | Verb::UpdateStatus | Verb::Delete
            ),
            "Event" => matches!(verb, Verb::Create | Verb::Update | Verb::Get | Verb::List),
            "Secret"
            | "ConfigMap"
            | "PersistentVolumeClaim"
            | "Service"
            | "Endpoints"
            | "Namespace"
            // The ingress router serves the Ingresses of its class (and reads the TLS Secrets
            // they name).
            | "Ingress"
            | "IngressClass" => {
                matches!(verb, Verb::Get | Verb::List | Verb::Watch)
            }
            _ => false,
        },
    };
    if allowed {
        Ok(())
    } else if namespace.is_empty() {
        Err(ApiError::Forbidden(format!(
            "{} may not {verb:?} {kind} objects",
            identity.name()
        )))
    } else {
        Err(ApiError::Forbidden(format!(
            "{} may not {verb:?} {kind} objects in namespace {namespace}",
            identity.name()
        )))
    }
}

/// A new random token: 32 bytes, hex.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    fn call(auth: &mut Authenticator, header: Option<&str>) -> Result<Identity, Status> {
        let mut req = Request::new(());
        if let Some(h) = header {
            req.metadata_mut()
                .insert("authorization", h.parse().unwrap());
        }
        let req = auth.call(req)?;
        Ok(identity(&req)?)
    }

    #[test]
    fn tokens_map_to_identities() {
        let mut auth = Authenticator::new("admintok", "jointok");
        assert_eq!(
            call(&mut auth, Some("Bearer admintok")).unwrap(),
            Identity::Admin
        );
        assert_eq!(
            call(&mut auth, Some("Bearer jointok")).unwrap(),
            Identity::NodeBootstrap
        );
        for bad in [
            None,
            Some("Bearer wrong"),
            Some("admintok"),
            Some("Bearer "),
            Some("Basic admintok"),
        ] {
            assert_eq!(
                call(&mut auth, bad).unwrap_err().code(),
                tonic::Code::Unauthenticated,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bootstrap_is_limited() {
        let node = Identity::NodeBootstrap;
        assert!(authorize(&node, Verb::Create, "Node", "").is_ok());
        assert!(authorize(&node, Verb::UpdateStatus, "Pod", "default").is_ok());
        assert_eq!(
            Status::from(authorize(&node, Verb::Create, "Pod", "default").unwrap_err()).code(),
            tonic::Code::PermissionDenied
        );
        assert!(authorize(&node, Verb::Update, "Secret", "default").is_err());
        // A node may not run commands in pods (its own or another node's).
        assert!(authorize(&node, Verb::Create, "PodExec", "").is_err());
        assert!(authorize(&Identity::Admin, Verb::Delete, "Namespace", "").is_ok());
        assert_eq!(new_token().len(), 64);
    }

    #[test]
    fn a_node_touches_leases_only_in_kube_node_lease() {
        let node = Identity::NodeBootstrap;
        for verb in [Verb::Get, Verb::Create, Verb::Update] {
            assert!(
                authorize(&node, verb, "Lease", "kube-node-lease").is_ok(),
                "{verb:?}"
            );
            let refused = authorize(&node, verb, "Lease", "default").unwrap_err();
            assert_eq!(
                refused.to_string(),
                format!(
                    "system:node-bootstrap may not {verb:?} Lease objects in namespace default"
                )
            );
        }
        for verb in [Verb::Delete, Verb::List, Verb::Watch, Verb::UpdateStatus] {
            assert!(
                authorize(&node, verb, "Lease", "kube-node-lease").is_err(),
                "{verb:?}"
            );
        }
        // A list or watch across namespaces is not one in kube-node-lease.
        assert!(authorize(&node, Verb::Get, "Lease", "").is_err());
        assert!(authorize(&Identity::Admin, Verb::Delete, "Lease", "default").is_ok());
    }
}
