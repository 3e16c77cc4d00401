//! Authentication: a request's credentials to an [`Identity`], attached to the request by the
//! gRPC interceptor; bearer tokens are compared in constant time.
//!
//! Tokens: the admin token (in `config.yaml`) is [`Identity::Admin`]; the join token
//! (`join-token`) is [`Identity::NodeBootstrap`]. Must not: decide what an identity may do (the
//! [`Chain`](super::Chain) does).

use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::{Request, Status};

use super::Identity;
use crate::error::ApiError;

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
    fn tokens_are_random_hex() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
