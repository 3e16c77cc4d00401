//! A span per gRPC call: a tower layer in front of the gRPC routes. The span is open while the
//! handler runs (its calls' spans and log lines are its children), is named for the method
//! (`skiff.v1.PodApi/Create`) until the handler names what it acted on (`create pods`, see
//! [`super::request_object`]), and ends with the call's code.
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
        let method = req.uri().path().trim_start_matches('/').to_string();
        let span = super::request_span!(method, "grpc");
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
