//! A span per REST request (HTTP/1.1 and HTTP/2 alike), opened by the router around its
//! routing: named for its Kubernetes verb and resource (`list pods`, `watch deployments`,
//! `get pods/log`; outside the API's resources the method and `/`-led path head: `GET /version`),
//! with the namespace and name the handler acted on ([`super::request_object`]), ending with the
//! HTTP status code.
//!
//! Must not: read bodies, or put the URL's query (it may hold a label selector a user typed, or
//! a watch's bookmark) or any header but `traceparent` in the span.

/// The span of a REST request (enter it, or instrument the request's future with it).
pub fn span<B>(req: &http::Request<B>) -> tracing::Span {
    let (verb, resource) = verb_and_resource(req.method(), req.uri());
    let span = super::request_span!("http", verb, resource);
    super::continue_trace(&span, req.headers());
    span
}

/// Kubernetes' verb (its request-info rules) and the resource of a request.
fn verb_and_resource(method: &http::Method, uri: &http::Uri) -> (String, String) {
    use crate::rest::router::{Route, parse};
    let Route::Resource(t) = parse(uri.path()) else {
        // Discovery, OpenAPI, health, version: the first segment of the path only.
        let head = uri.path().split('/').find(|s| !s.is_empty()).unwrap_or("");
        return (method.as_str().to_string(), format!("/{head}"));
    };
    let watch = uri.query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "watch=1" || kv == "watch=true" || kv == "watch")
    });
    let verb = match *method {
        http::Method::GET | http::Method::HEAD if watch => "watch",
        http::Method::GET | http::Method::HEAD if t.name.is_empty() => "list",
        http::Method::GET | http::Method::HEAD => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if t.name.is_empty() => "deletecollection",
        http::Method::DELETE => "delete",
        _ => method.as_str(),
    };
    let resource = match t.subresource.is_empty() {
        true => t.resource.clone(),
        false => format!("{}/{}", t.resource, t.subresource),
    };
    (verb.to_string(), resource)
}

/// Records the response's status on `span`.
pub fn record_status(span: &tracing::Span, status: http::StatusCode) {
    span.record("code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_as_kubernetes_names_them() {
        let v = |m: http::Method, u: &str| verb_and_resource(&m, &u.parse().expect("uri"));
        let get = http::Method::GET;
        assert_eq!(
            v(get.clone(), "/api/v1/namespaces/default/pods"),
            ("list".into(), "pods".into())
        );
        assert_eq!(
            v(get.clone(), "/api/v1/pods?watch=1&resourceVersion=5"),
            ("watch".into(), "pods".into())
        );
        assert_eq!(
            v(
                get.clone(),
                "/api/v1/namespaces/default/pods/web/log?follow=true"
            ),
            ("get".into(), "pods/log".into())
        );
        assert_eq!(
            v(
                http::Method::POST,
                "/apis/apps/v1/namespaces/default/deployments"
            ),
            ("create".into(), "deployments".into())
        );
        assert_eq!(
            v(http::Method::DELETE, "/api/v1/namespaces/default/pods/web"),
            ("delete".into(), "pods".into())
        );
        assert_eq!(v(get, "/version"), ("GET".into(), "/version".into()));
    }
}
