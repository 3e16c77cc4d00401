//! Authentication: a request's credentials to an [`Identity`], attached to the request by the
//! gRPC interceptor; bearer tokens are compared in constant time.
//!
//! Client certificates signed by the cluster CA come first ([`super::x509`]: a node's
//! `system:node:NAME`, or a user). Then bearer tokens: the admin token (in `config.yaml`) is
//! [`Identity::Admin`]; a bootstrap token (`<id>.<secret>`, [`super::bootstrap`]) is
//! [`Identity::NodeBootstrap`]. Must not: decide what an identity may do (the
//! [`Chain`](super::Chain) does).

use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::{Request, Status};

use super::Identity;
use super::bootstrap::BootstrapTokens;
use super::revocation::{Revocable, RevokedCertificates, RevokedNodes};
use super::x509::ClientCertificate;
use crate::error::ApiError;

/// Bearer tokens of other kinds, asked in turn when a token is neither the admin's nor the join
/// token: users of `--token-auth-file` ([`super::token_file`]), ServiceAccount tokens
/// ([`super::service_account`]).
pub trait TokenAuthenticator: Send + Sync {
    /// `None`: not a token of this kind; `Some(Err(why))`: one, refused.
    fn authenticate_token(&self, token: &[u8]) -> Option<Result<Identity, String>>;
}

/// Checks bearer tokens.
#[derive(Clone)]
pub struct Authenticator {
    admin: Arc<[u8]>,
    bootstrap: Arc<BootstrapTokens>,
    others: Arc<[Arc<dyn TokenAuthenticator>]>,
    /// Revoked node certificates ([`super::revocation`]); none: nothing is revoked.
    revoked: Option<Arc<RevokedNodes>>,
    /// Revoked user certificates; none: nothing is revoked.
    revoked_users: Option<Arc<RevokedCertificates>>,
}

impl Authenticator {
    pub fn new(admin_token: &str, bootstrap: Arc<BootstrapTokens>) -> Self {
        Self {
            admin: admin_token.as_bytes().into(),
            bootstrap,
            others: Arc::new([]),
            revoked: None,
            revoked_users: None,
        }
    }

    /// Refuses the node certificates `revoked` lists.
    pub fn with_revocations(mut self, revoked: Arc<RevokedNodes>) -> Self {
        self.revoked = Some(revoked);
        self
    }

    /// Refuses the user certificates `revoked` lists (its holder must be users).
    pub fn with_user_revocations(mut self, revoked: Arc<RevokedCertificates>) -> Self {
        self.revoked_users = Some(revoked);
        self
    }

    /// A client certificate's identity: not expired, and not revoked.
    fn certificate_identity(&self, leaf: &[u8]) -> Result<(Identity, Option<Revocable>), String> {
        let certificate = ClientCertificate::parse(leaf)?;
        let who = certificate.identity(skiff_api::time::now().seconds)?;
        let revocable = self.revocable(&who, &certificate);
        if let Some(r) = &revocable {
            r.revoked.check(&r.name, r.issued)?;
        }
        Ok((who, revocable))
    }

    /// The list a certificate's holder is revoked in, with when it was signed: a node's as the
    /// cluster CA signs them (backdated a minute), a user's at its `notBefore` (user certificates
    /// are made offline, `openssl x509 -req` backdates nothing; a certificate signed within the
    /// minute after a revocation by a signer that backdates is refused too).
    fn revocable(&self, who: &Identity, certificate: &ClientCertificate) -> Option<Revocable> {
        let (revoked, name, issued) = match (who, &self.revoked, &self.revoked_users) {
            (Identity::Node(node), Some(revoked), _) => (revoked, node, certificate.issued()),
            (Identity::User { name, .. }, _, Some(revoked)) => {
                (revoked, name, certificate.not_before)
            }
            _ => return None,
        };
        Some(Revocable {
            revoked: revoked.clone(),
            name: name.clone(),
            issued,
        })
    }

    /// Also takes the tokens `other` knows.
    pub fn with(mut self, other: Arc<dyn TokenAuthenticator>) -> Self {
        let mut all: Vec<_> = self.others.iter().cloned().collect();
        all.push(other);
        self.others = all.into();
        self
    }

    fn identify(&self, token: &[u8]) -> Option<Identity> {
        if bool::from(token.ct_eq(&self.admin)) {
            return Some(Identity::Admin);
        }
        let (id, secret) = std::str::from_utf8(token)
            .ok()
            .and_then(skiff_api::join::split_bootstrap_token)?;
        match self
            .bootstrap
            .check(id, secret, skiff_api::time::now().seconds)
        {
            Ok(()) => Some(Identity::NodeBootstrap),
            Err(why) => {
                tracing::debug!(token = id, ?why, "bootstrap token refused");
                None
            }
        }
    }
}

impl Authenticator {
    /// The identity of a request's client certificate, else of its bearer token.
    pub fn authenticate<T>(&self, request: &Request<T>) -> Result<Identity, ApiError> {
        let certs = request.peer_certs();
        let leaf = certs.as_ref().and_then(|c| c.first()).map(|c| c.as_ref());
        let header = request
            .metadata()
            .get("authorization")
            .map(|h| h.as_bytes());
        self.authenticate_parts(leaf, header)
    }

    /// The identity of a client certificate's leaf (DER), else of an `authorization` header's
    /// bearer token: the one function both front ends (gRPC and REST) authenticate with.
    pub fn authenticate_parts(
        &self,
        leaf_certificate: Option<&[u8]>,
        authorization: Option<&[u8]>,
    ) -> Result<Identity, ApiError> {
        let unauthenticated = |m: &str| ApiError::Unauthenticated(m.to_string());
        if let Some(leaf) = leaf_certificate {
            return self
                .certificate_identity(leaf)
                .map(|(who, _)| who)
                .map_err(|why| unauthenticated(&why));
        }
        let header = authorization.ok_or_else(|| {
            unauthenticated("missing credentials: send `authorization: Bearer <token>`")
        })?;
        let token = header.strip_prefix(b"Bearer ").ok_or_else(|| {
            unauthenticated("malformed authorization header: expected `Bearer <token>`")
        })?;
        if let Some(who) = self.identify(token) {
            return Ok(who);
        }
        for other in self.others.iter() {
            match other.authenticate_token(token) {
                Some(Ok(who)) => return Ok(who),
                Some(Err(why)) => {
                    return Err(unauthenticated(&format!("invalid bearer token: {why}")));
                }
                None => {}
            }
        }
        Err(unauthenticated("invalid bearer token"))
    }
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let identity = self.authenticate(&request)?;
        // Streams opened with a client certificate end when it is revoked: they need to know
        // which one.
        let revocable = request
            .peer_certs()
            .and_then(|certs| certs.first().map(|c| ClientCertificate::parse(c.as_ref())))
            .and_then(Result::ok)
            .and_then(|c| self.revocable(&identity, &c));
        if let Some(revocable) = revocable {
            request.extensions_mut().insert(revocable);
        }
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
        use crate::auth::feed::Index;
        let bootstrap = Arc::new(BootstrapTokens::default());
        let join = skiff_api::join::JoinToken::parse(&format!(
            "skiff-join.{}.abcdef.0123456789abcdef",
            "ab".repeat(32)
        ))
        .unwrap();
        bootstrap.put(skiff_api::join::bootstrap_secret(&join, None, ""));
        let mut auth = Authenticator::new("admintok", bootstrap);
        assert_eq!(
            call(&mut auth, Some("Bearer admintok")).unwrap(),
            Identity::Admin
        );
        assert_eq!(
            call(&mut auth, Some("Bearer abcdef.0123456789abcdef")).unwrap(),
            Identity::NodeBootstrap
        );
        for bad in [
            None,
            Some("Bearer wrong"),
            Some("Bearer abcdef.0123456789abcdeg"),
            Some("Bearer abcdeg.0123456789abcdef"),
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
    fn tokens_are_random_hex() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
