//! The tower layer in front of the tonic routes on HTTP/2 connections: `application/grpc`
//! requests go on to gRPC, every other request to the REST router.
//!
//! Must not: authenticate or read bodies (each side does its own).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Body, Response, Rest};

/// Layers [`Split`] over the gRPC routes.
#[derive(Clone)]
pub struct SplitLayer(pub Rest);

impl<S> tower::Layer<S> for SplitLayer {
    type Service = Split<S>;
    fn layer(&self, grpc: S) -> Self::Service {
        Split {
            grpc,
            rest: self.0.clone(),
        }
    }
}

/// gRPC or REST, by content type.
#[derive(Clone)]
pub struct Split<S> {
    grpc: S,
    rest: Rest,
}

/// Whether a request is gRPC (`application/grpc`, `application/grpc+proto`, ...).
pub fn is_grpc<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

impl<S> tower::Service<http::Request<Body>> for Split<S>
where
    S: tower::Service<http::Request<Body>, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.grpc.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if is_grpc(&req) {
            Box::pin(self.grpc.call(req))
        } else {
            let rest = self.rest.clone();
            Box::pin(async move { Ok(rest.handle(req).await) })
        }
    }
}
