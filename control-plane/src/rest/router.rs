//! Paths to [`Target`]s (Kubernetes' request info: `/api/v1/namespaces/NS/pods/NAME/status`),
//! authentication and the gate, then dispatch by method to the kind, a registered subresource,
//! discovery or a non-resource path.
//!
//! Must not: serve a kind itself (the [`KindApi`](super::KindApi) does).

use std::time::Instant;

use super::status::{RestError, json_response};
use super::{Body, Request, Response, Rest, discovery, query::Query};
use crate::audit::RequestInfo;
use crate::server::limits::Call;

/// What a resource request names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    /// The plural: `pods`.
    pub resource: String,
    /// Empty: cluster-scoped, or a collection across namespaces.
    pub namespace: String,
    /// Empty: the collection.
    pub name: String,
    /// `status`, `scale`, `log`, `exec`, ...
    pub subresource: String,
}

/// A path, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/api`, `/apis`.
    Root {
        legacy: bool,
    },
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`.
    GroupVersion {
        group: String,
        version: String,
    },
    Resource(Target),
    /// Anything else (`/version`, `/healthz`, `/openapi/v2`).
    Other,
}

/// Kubernetes' request info parsing of `path`.
pub fn parse(path: &str) -> Route {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return Route::Root { legacy: true },
        ["apis"] => return Route::Root { legacy: false },
        ["apis", g] => return Route::Group((*g).to_string()),
        ["api", v] => {
            return Route::GroupVersion {
                group: String::new(),
                version: (*v).to_string(),
            };
        }
        ["apis", g, v] => {
            return Route::GroupVersion {
                group: (*g).to_string(),
                version: (*v).to_string(),
            };
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::Other,
    };
    let mut target = Target {
        group: group.to_string(),
        version: version.to_string(),
        ..Default::default()
    };
    let mut rest = rest;
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        target.namespace = rest[1].to_string();
        // `namespaces/NS/status` and `/finalize` are the namespace's own subresources.
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest = &rest[2..];
        }
    }
    target.resource = rest.first().map(|s| s.to_string()).unwrap_or_default();
    target.name = rest.get(1).map(|s| s.to_string()).unwrap_or_default();
    target.subresource = rest.get(2..).map(|s| s.join("/")).unwrap_or_default();
    if target.resource == "namespaces" {
        // A namespace is cluster-scoped: its name was read as the namespace.
        target.namespace.clear();
    }
    Route::Resource(target)
}

/// The Kubernetes verb of a request on a resource (for the audit log).
fn verb(method: &http::Method, target: &Target, query: &Query) -> &'static str {
    match *method {
        http::Method::GET if target.name.is_empty() && query.flag("watch") => "watch",
        http::Method::GET if target.name.is_empty() => "list",
        http::Method::GET => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if target.name.is_empty() => "deletecollection",
        http::Method::DELETE => "delete",
        _ => "unknown",
    }
}

fn request_info(req: &http::Request<Body>) -> RequestInfo {
    type Tls = tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>;
    RequestInfo {
        audit_id: uuid::Uuid::new_v4().to_string(),
        uri: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        source_ip: req
            .extensions()
            .get::<Tls>()
            .and_then(|i| i.get_ref().remote_addr())
            .map(|a| a.ip()),
        user_agent: req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        received: time::OffsetDateTime::now_utc(),
    }
}

/// The client certificate's leaf and the authorization header of a request.
fn credentials(req: &http::Request<Body>) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    type Tls = tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>;
    let leaf = req
        .extensions()
        .get::<Tls>()
        .and_then(|i| i.peer_certs())
        .and_then(|certs| certs.first().map(|c| c.as_ref().to_vec()));
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|h| h.as_bytes().to_vec());
    (leaf, header)
}

/// Serves one request.
pub async fn handle(rest: &Rest, http: http::Request<Body>) -> Response {
    let started = Instant::now();
    let path = http.uri().path().to_string();
    let method = http.method().clone();
    let span = crate::telemetry::rest::span(&http);
    let response = match tracing::Instrument::instrument(route(rest, http), span.clone()).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    crate::telemetry::rest::record_status(&span, response.status());
    tracing::debug!(%method, %path, status = response.status().as_u16(), elapsed = ?started.elapsed(), "REST");
    response
}

async fn route(rest: &Rest, http: http::Request<Body>) -> Result<Response, RestError> {
    let path = http.uri().path().to_string();
    // The dashboard's page and scripts are public; its data calls come back here with a token.
    if let Some(page) = crate::dashboard::respond(&http) {
        return Ok(page);
    }
    // What Kubernetes lets anyone read (system:public-info-viewer).
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" | "/healthz/ping" | "/livez/ping" | "/readyz/ping" => {
            return Ok(text_response(200, "ok"));
        }
        "/version" | "/version/" => return Ok(json_response(200, &discovery::version())),
        _ => {}
    }
    // CBOR is not served (a client falls back to JSON on 415); protobuf bodies are read for the
    // few kinds kubectl sends that way (super::protobuf), refused with 415 otherwise.
    let content_type = http
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/cbor") {
        return Err(RestError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"
        )));
    }
    let query = Query::parse(http.uri().query());
    let route = parse(&path);
    let (verb, handler_audits) = match &route {
        Route::Resource(t) => (verb(http.method(), t, &query), true),
        _ => ("get", false),
    };
    let info = request_info(&http);
    let (leaf, header) = credentials(&http);
    let gate = &rest.gate;
    let authenticated = gate
        .authenticator()
        .authenticate_parts(leaf.as_deref(), header.as_deref())
        .map_err(tonic::Status::from);
    // Only callers without a client certificate count toward holding their source (as gRPC).
    let (who, context) = gate
        .admit_as(info, verb, authenticated, handler_audits, leaf.is_none())
        .map_err(|s| RestError::from_grpc(&s))?;
    let call = Call::from_context(context);
    let (who, http) = impersonation(rest, who, http, &call)?;
    let accept = http
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let routes = rest.routes();
    match route {
        Route::Root { legacy } if http.method() == http::Method::GET => {
            if discovery::wants_aggregated(&accept) {
                return Ok(discovery::aggregated_response(routes, legacy));
            }
            if legacy {
                let host = http
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                Ok(json_response(200, &discovery::api_versions(&host)))
            } else {
                Ok(json_response(200, &discovery::group_list(routes)))
            }
        }
        Route::Group(g) if http.method() == http::Method::GET => discovery::group(routes, &g)
            .map(|v| json_response(200, &v))
            .ok_or_else(|| not_found_path(&path)),
        Route::GroupVersion { group, version } if http.method() == http::Method::GET => {
            discovery::resource_list(routes, &group, &version)
                .map(|v| json_response(200, &v))
                .ok_or_else(|| not_found_path(&path))
        }
        Route::Resource(target) => {
            resource(rest, Request::new(who, call, target, query, http)).await
        }
        Route::Other => match routes.path_of(&path) {
            Some(handler) => {
                let req = Request::new(who, call, Target::default(), query, http);
                Ok(handler.serve(req).await)
            }
            None => Err(not_found_path(&path)),
        },
        _ => Err(RestError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({path})"
        ))),
    }
}

/// The identity a request acts as: its caller's, or the one its `Impersonate-*` headers name
/// if the caller may impersonate it ([`crate::auth::impersonation`]; the impersonation is kept
/// in the request's extensions for `kubectl auth whoami`). A refusal is audited as the caller's
/// `impersonate` request.
fn impersonation(
    rest: &Rest,
    who: crate::auth::Identity,
    mut http: http::Request<Body>,
    call: &Call,
) -> Result<(crate::auth::Identity, http::Request<Body>), RestError> {
    use crate::auth::impersonation::{ImpersonationError, Wanted, impersonate};
    let impersonated = Wanted::from_headers(http.headers()).and_then(|w| {
        w.map(|w| impersonate(&rest.context().authz, &who, &w))
            .transpose()
    });
    match impersonated {
        Ok(None) => Ok((who, http)),
        Ok(Some(i)) => {
            tracing::debug!(user = %who.name(), as_user = %i.identity.name(), "impersonating");
            let acting = i.identity.clone();
            call.impersonated_by(&who);
            http.extensions_mut().insert(i);
            Ok((acting, http))
        }
        Err(e) => {
            let (error, object) = match e {
                ImpersonationError::BadRequest(m) => (
                    RestError::bad_request(m),
                    crate::audit::ObjectRef::default(),
                ),
                ImpersonationError::Forbidden {
                    resource,
                    group,
                    name,
                    message,
                } => (
                    RestError::new(403, "Forbidden", message).with_details(
                        serde_json::json!({ "name": name, "group": group, "kind": resource }),
                    ),
                    crate::audit::ObjectRef {
                        resource: resource.into(),
                        name,
                        api_group: group.into(),
                        ..Default::default()
                    },
                ),
            };
            call.done::<()>(&who, "impersonate", object, &Err(error.to_grpc()));
            Err(error)
        }
    }
}

fn not_found_path(path: &str) -> RestError {
    RestError::not_found(format!(
        "the server could not find the requested resource ({path})"
    ))
    .with_details(serde_json::json!({ "causes": [{ "reason": "UnexpectedServerResponse", "message": "404 page not found" }] }))
}

async fn resource(rest: &Rest, req: Request) -> Result<Response, RestError> {
    let routes = rest.routes();
    let t = &req.target;
    if !t.subresource.is_empty()
        && let Some(handler) = routes.subresource_of(t)
    {
        return Ok(handler.serve(req).await);
    }
    if let Some(handler) = routes.resource_of(t) {
        return Ok(handler.serve(req).await);
    }
    let Some(api) = routes.kind_of(&t.group, &t.version, &t.resource) else {
        return Err(RestError::not_found(format!(
            "the server could not find the requested resource ({})",
            req.http.uri().path()
        )));
    };
    let api = api.clone();
    if !api.info().namespaced && !t.namespace.is_empty() {
        return Err(RestError::not_found(format!(
            "the server could not find the requested resource: {} are not namespaced",
            t.resource
        )));
    }
    let method = req.http.method().clone();
    let named = !t.name.is_empty();
    match method {
        http::Method::GET if named => api.get(req).await,
        http::Method::GET if req.query.flag("watch") => api.watch(req).await,
        http::Method::GET => api.list(req).await,
        http::Method::POST if !named => api.create(req).await,
        http::Method::PUT if named => api.update(req).await,
        http::Method::PATCH if named => api.patch(req).await,
        http::Method::DELETE if named => api.delete(req).await,
        http::Method::DELETE => api.delete_collection(req).await,
        _ => Err(RestError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {})",
            method,
            req.http.uri().path()
        ))),
    }
}

fn text_response(code: u16, text: &'static str) -> Response {
    http::Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::new(http_body_util::Full::new(
            bytes::Bytes::from_static(text.as_bytes()),
        )))
        .unwrap_or_else(|_| http::Response::new(Body::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        match parse(path) {
            Route::Resource(t) => t,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths_parse_as_kubernetes_request_info() {
        assert_eq!(parse("/api"), Route::Root { legacy: true });
        assert_eq!(parse("/apis/"), Route::Root { legacy: false });
        assert_eq!(parse("/apis/apps"), Route::Group("apps".into()));
        assert_eq!(
            parse("/apis/apps/v1"),
            Route::GroupVersion {
                group: "apps".into(),
                version: "v1".into()
            }
        );
        assert_eq!(parse("/version"), Route::Other);
        let t = target("/api/v1/namespaces/shop/pods/web/log");
        assert_eq!(
            (
                t.group.as_str(),
                t.version.as_str(),
                t.resource.as_str(),
                t.namespace.as_str(),
                t.name.as_str(),
                t.subresource.as_str()
            ),
            ("", "v1", "pods", "shop", "web", "log")
        );
        let t = target("/apis/apps/v1/deployments");
        assert_eq!(
            (t.resource.as_str(), t.namespace.as_str(), t.name.as_str()),
            ("deployments", "", "")
        );
        let t = target("/api/v1/namespaces/shop");
        assert_eq!(
            (t.resource.as_str(), t.namespace.as_str(), t.name.as_str()),
            ("namespaces", "", "shop")
        );
        let t = target("/api/v1/namespaces/shop/status");
        assert_eq!(
            (t.resource.as_str(), t.name.as_str(), t.subresource.as_str()),
            ("namespaces", "shop", "status")
        );
        let t = target("/api/v1/nodes/n1/status");
        assert_eq!(
            (t.resource.as_str(), t.name.as_str(), t.subresource.as_str()),
            ("nodes", "n1", "status")
        );
        let t = target("/api/v1/namespaces/shop/pods");
        assert_eq!(
            (t.resource.as_str(), t.namespace.as_str(), t.name.as_str()),
            ("pods", "shop", "")
        );
    }

    #[test]
    fn verbs_follow_methods() {
        let q = Query::parse(Some("watch=true"));
        let coll = target("/api/v1/pods");
        assert_eq!(verb(&http::Method::GET, &coll, &q), "watch");
        assert_eq!(verb(&http::Method::GET, &coll, &Query::default()), "list");
        assert_eq!(
            verb(&http::Method::DELETE, &coll, &Query::default()),
            "deletecollection"
        );
        let one = target("/api/v1/namespaces/a/pods/b");
        assert_eq!(verb(&http::Method::PATCH, &one, &Query::default()), "patch");
    }
}
