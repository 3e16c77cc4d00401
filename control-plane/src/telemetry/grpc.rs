//! A span per gRPC call: a tower layer in front of the gRPC routes. The span is open while the
//! handler runs (its calls' spans and log lines are its children), is named for its verb and
//! resource (`/skiff.v1.PodApi/Create`: `create pods`; a call outside the kinds' APIs by its
//! service and method: `report nodemetrics`), gets the namespace and name the handler acted on
//! ([`super::request_object`]), and ends with the call's code.
//!
//! The code is the `grpc-status` of the response's headers (tonic sends errors of unary calls
//! as trailers-only responses), else OK: a stream that fails later ends its span OK.
//!
//! Must not: read bodies or metadata other than `traceparent`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tracing::Instrument;

/// Layers [`Spans`] over the gRPC routes.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanLayer;

impl<S> tower::Layer<S> for SpanLayer {
    type Service = Spans<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Spans(inner)
    }
}

/// The gRPC routes, each call in a span.
#[derive(Debug, Clone)]
pub struct Spans<S>(S);

impl<S, B, R> tower::Service<http::Request<B>> for Spans<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let (verb, resource) = verb_and_resource(req.uri().path());
        let span = super::request_span!("grpc", verb, resource);
        super::continue_trace(&span, req.headers());
        let future = {
            let _entered = span.enter();
            self.0.call(req)
        };
        let recorded = span.clone();
        Box::pin(
            async move {
                let result = future.await;
                if let Ok(response) = &result {
                    record_code(&recorded, response.headers());
                }
                result
            }
            .instrument(span),
        )
    }
}

/// The Kubernetes verb and resource of a gRPC path: `/skiff.v1.PodApi/UpdateStatus` →
/// (`update`, `pods`); outside the kinds, the lower-cased method and service
/// (`/skiff.v1.NodeMetricsApi/Report` → (`report`, `nodemetrics`)).
pub fn verb_and_resource(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or("");
    let method = parts.next().unwrap_or("");
    let service = service.rsplit('.').next().unwrap_or(service);
    let service = service.strip_suffix("Api").unwrap_or(service);
    let resource = skiff_api::kinds::KINDS
        .iter()
        .find(|k| k.kind == service)
        .map(|k| k.plural.to_string())
        .unwrap_or_else(|| service.to_ascii_lowercase());
    let verb = match method {
        "UpdateStatus" => "update".to_string(),
        m => m.to_ascii_lowercase(),
    };
    (verb, resource)
}

/// Records the call's gRPC code (and the HTTP code Kubernetes would answer with).
fn record_code(span: &tracing::Span, headers: &http::HeaderMap) {
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
        .unwrap_or(tonic::Code::Ok);
    span.record("rpc.grpc.status_code", code as i64);
    span.record("code", crate::audit::http_code(code));
    if code != tonic::Code::Ok {
        span.record("otel.status_code", "ERROR");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_names_its_verb_and_resource() {
        let v = |p: &str| verb_and_resource(p);
        assert_eq!(
            v("/skiff.v1.PodApi/Create"),
            ("create".into(), "pods".into())
        );
        assert_eq!(
            v("/skiff.v1.PodApi/UpdateStatus"),
            ("update".into(), "pods".into())
        );
        assert_eq!(
            v("/skiff.v1.DeploymentApi/Watch"),
            ("watch".into(), "deployments".into())
        );
        assert_eq!(
            v("/skiff.v1.NodeMetricsApi/Report"),
            ("report".into(), "nodemetrics".into())
        );
        assert_eq!(v(""), (String::new(), String::new()));
    }
}
