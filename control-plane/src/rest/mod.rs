//! The Kubernetes REST API beside the gRPC one, so that kubectl, client libraries and operators
//! speak to skiff as to Kubernetes (docs/kubernetes-api.md).
//!
//! **One port.** Both protocols are served on the API address (127.0.0.1:7443 by default): the
//! listener ([`listener`]) terminates TLS itself with ALPN `h2` and `http/1.1` (client
//! certificates of the cluster CA optional, as for gRPC). HTTP/2 connections go to the tonic
//! server, where a layer ([`split`]) hands every request that is not `application/grpc` to the
//! REST router; HTTP/1.1 connections (kubectl's WebSocket exec and attach dial HTTP/1.1, curl
//! may) are served by hyper with upgrades, REST only. tonic's own TLS was not used because it
//! offers `h2` alone in ALPN and serves connections without upgrades.
//!
//! **One source of truth.** Every request on a kind goes to the same
//! [`Handler<K>`](crate::server::handler::Handler) the gRPC services call (authorization, then the
//! registry's rules); this module converts HTTP and JSON to and from the domain objects and
//! never touches the store or validates anything itself. Authentication is
//! [`Authenticator::authenticate_parts`](crate::auth::Authenticator::authenticate_parts) and the
//! rate limits and audit are the gRPC [`Gate`](crate::server::limits::Gate)'s.
//!
//! Layout: [`router`] (paths to [`Target`]s, dispatch), [`kind`] (the [`KindApi`] trait object
//! per kind over `Handler<K>`: get, list, watch, create, update, patch, delete, status, scale),
//! [`discovery`] (`/api`, `/apis`, aggregated discovery, `/version`), [`status`] (errors as
//! `metav1.Status`), [`query`] (query parameters), [`codec`] (objects to and from Kubernetes JSON),
//! [`watch`] (watch streams), [`patch`] (JSON, merge and strategic merge patches), [`table`]
//! (`metav1.Table` responses).
//!
//! Other lanes plug in: a kind of the kinds table is served as soon as it is in
//! [`skiff_api::kinds::KINDS`]; a subresource (`pods/log`, `pods/exec`, `pods/eviction`) is a
//! [`Subresource`] registered with [`Routes::subresource`] in [`Routes::new`].
//!
//! Must not: touch the store, apply kind rules, or authorize on its own (the handlers do).

pub mod access_review;
pub mod codec;
pub mod custom_metrics_api;
pub mod discovery;
pub mod eviction;
pub mod kind;
pub mod kubeconfig;
pub mod listener;
pub mod metrics_api;
pub mod openapi;
pub mod openapi_paths;
pub mod openapi_schema;
pub mod patch;
pub mod protobuf;
pub mod query;
pub mod router;
pub mod split;
pub mod status;
pub mod stream_channel;
pub mod stream_pods;
pub mod stream_session;
pub mod stream_ws;
pub mod table;
pub mod token_request;
pub mod watch;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use skiff_api::kinds::{KINDS, KindInfo};

use crate::auth::{Authenticator, Chain, Identity};
use crate::server::limits::{Call, Gate};
use crate::store::Store;

pub use kind::KindApi;
pub use router::Target;
pub use status::RestError;

/// The body of every REST response (tonic's, so that one service type serves both protocols).
pub type Body = tonic::body::Body;
/// A REST response.
pub type Response = http::Response<Body>;

/// What a request handler knows of a request once it is authenticated and routed. It is
/// `Sync` (the body waits in a slot), so handlers may hold `&Request` across awaits.
pub struct Request {
    pub who: Identity,
    /// The audit context (the gate's).
    pub call: Call,
    pub target: Target,
    pub query: query::Query,
    /// Method, URI, headers, extensions (the connection's upgrade for WebSockets:
    /// `hyper::upgrade::on(&mut req.http)`); the body is [`Request::body`] or
    /// [`Request::take_body`].
    pub http: http::Request<()>,
    body: std::sync::Mutex<Option<Body>>,
}

impl Request {
    /// A request of `http` (its body kept for [`Request::body`]).
    pub fn new(
        who: Identity,
        call: Call,
        target: Target,
        query: query::Query,
        http: http::Request<Body>,
    ) -> Self {
        let (parts, body) = http.into_parts();
        Self {
            who,
            call,
            target,
            query,
            http: http::Request::from_parts(parts, ()),
            body: std::sync::Mutex::new(Some(body)),
        }
    }

    /// The body as a stream (once; empty afterwards).
    pub fn take_body(&mut self) -> Body {
        match self.body.get_mut() {
            Ok(slot) => slot.take().unwrap_or_else(Body::empty),
            Err(poisoned) => poisoned.into_inner().take().unwrap_or_else(Body::empty),
        }
    }

    /// The body, read whole (up to the API's request size limit).
    pub async fn body(&mut self) -> Result<Bytes, RestError> {
        use http_body_util::BodyExt;
        let body = self.take_body();
        let limited = http_body_util::Limited::new(body, crate::server::MAX_REQUEST_BYTES);
        limited
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| RestError::bad_request(format!("reading the request body: {e}")))
    }

    /// A header as text ("" when absent or not text).
    pub fn header(&self, name: &str) -> &str {
        self.http
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A subresource served by another module (`pods/log`, `pods/exec`, `pods/eviction`).
#[async_trait::async_trait]
pub trait Subresource: Send + Sync {
    /// Serves one request; authorization is the subresource's own (through the [`Chain`] in
    /// [`Context`]).
    async fn serve(&self, req: Request) -> Response;

    /// What discovery lists for it (the kind it answers with and its verbs).
    fn discovery(&self) -> discovery::SubresourceDiscovery {
        discovery::SubresourceDiscovery {
            group: "",
            version: "v1",
            kind: "",
            verbs: &["get"],
        }
    }

    /// Whether a resource served this way (not a kind) lives in namespaces (metrics.k8s.io's
    /// pods); discovery lists it so.
    fn namespaced(&self) -> bool {
        false
    }

    /// The names discovery lists for a resource served this way: its own by default; the
    /// custom metrics API lists `pods/METRIC` per metric, as prometheus-adapter does.
    fn discovery_names(&self, resource: &str) -> Vec<String> {
        vec![resource.to_string()]
    }
}

/// What subresources and kinds are built from.
#[derive(Clone)]
pub struct Context {
    pub store: Arc<dyn Store>,
    pub authz: Chain,
    /// The node tunnels (logs, exec, attach, port-forward).
    pub tunnels: crate::server::tunnel::TunnelService,
    /// The agents' figures (metrics.k8s.io).
    pub metrics: crate::resource_metrics::ResourceMetrics,
    /// ServiceAccount tokens (`serviceaccounts/token`).
    pub tokens: crate::auth::service_account::ServiceAccountTokens,
}

/// The route table: kinds by (group, version, resource), subresources by (group, version,
/// resource, subresource).
pub struct Routes {
    kinds: HashMap<(&'static str, &'static str, &'static str), Arc<dyn KindApi>>,
    subresources: HashMap<(String, String, String, String), Arc<dyn Subresource>>,
    /// Non-resource paths by prefix (`/openapi/`), for any authenticated caller.
    paths: Vec<(String, Arc<dyn Subresource>)>,
    /// Resources that are not kinds of the store (reviews, answered and never kept), by (group,
    /// version, resource).
    resources: HashMap<(String, String, String), Arc<dyn Subresource>>,
}

impl Routes {
    /// Every kind of the kinds table, and the subresources other modules register.
    pub fn new(context: &Context) -> Self {
        let mut routes = Self {
            kinds: HashMap::new(),
            subresources: HashMap::new(),
            paths: Vec::new(),
            resources: HashMap::new(),
        };
        for info in KINDS {
            let api: Arc<dyn KindApi> = skiff_api::with_kind!(info, K => Arc::new(
                kind::KindRoutes::<K>::new(info, context.store.clone(), context.authz.clone())
            ));
            routes.kind(api);
        }
        access_review::register(&mut routes, &context.authz);
        stream_pods::register(&mut routes, context);
        eviction::register(&mut routes, context);
        token_request::register(&mut routes, context);
        metrics_api::register(&mut routes, context);
        custom_metrics_api::register(&mut routes, context);
        // The documents describe the kinds registered above.
        openapi::register(&mut routes);
        routes
    }

    /// Serves a kind.
    pub fn kind(&mut self, api: Arc<dyn KindApi>) {
        let info = api.info();
        let (group, version) = group_version(info);
        self.kinds.insert((group, version, info.plural), api);
    }

    /// Serves `resource/subresource` of `group/version` with `handler`.
    pub fn subresource(
        &mut self,
        group: &str,
        version: &str,
        resource: &str,
        subresource: &str,
        handler: Arc<dyn Subresource>,
    ) {
        self.subresources.insert(
            (
                group.to_string(),
                version.to_string(),
                resource.to_string(),
                subresource.to_string(),
            ),
            handler,
        );
    }

    /// Serves `group/version` `resource` (a resource that is not a kind of the store: a review)
    /// with `handler`; its [`Subresource::discovery`] says what discovery lists.
    pub fn resource(
        &mut self,
        group: &str,
        version: &str,
        resource: &str,
        handler: Arc<dyn Subresource>,
    ) {
        self.resources.insert(
            (group.to_string(), version.to_string(), resource.to_string()),
            handler,
        );
    }

    /// The handler of a resource that is not a kind.
    pub fn resource_of(&self, target: &Target) -> Option<&Arc<dyn Subresource>> {
        self.resources.get(&(
            target.group.clone(),
            target.version.clone(),
            target.resource.clone(),
        ))
    }

    /// The resources that are not kinds: ((group, version, resource), handler).
    pub fn other_resources(
        &self,
    ) -> impl Iterator<Item = (&(String, String, String), &Arc<dyn Subresource>)> {
        self.resources.iter()
    }

    /// Serves the non-resource paths under `prefix` (`/openapi/`) with `handler`; the target of
    /// its requests is empty.
    pub fn path(&mut self, prefix: &str, handler: Arc<dyn Subresource>) {
        self.paths.push((prefix.to_string(), handler));
    }

    /// The handler of a non-resource path.
    pub fn path_of(&self, path: &str) -> Option<&Arc<dyn Subresource>> {
        self.paths
            .iter()
            .filter(|(prefix, _)| path.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, h)| h)
    }

    pub fn kind_of(&self, group: &str, version: &str, resource: &str) -> Option<&Arc<dyn KindApi>> {
        self.kinds
            .iter()
            .find(|((g, v, r), _)| *g == group && *v == version && *r == resource)
            .map(|(_, api)| api)
    }

    pub fn subresource_of(&self, target: &Target) -> Option<&Arc<dyn Subresource>> {
        self.subresources.get(&(
            target.group.clone(),
            target.version.clone(),
            target.resource.clone(),
            target.subresource.clone(),
        ))
    }

    /// The served kinds.
    pub fn kinds(&self) -> impl Iterator<Item = &Arc<dyn KindApi>> {
        self.kinds.values()
    }

    /// The registered subresources of a kind's resource: (subresource, handler).
    pub fn subresources_with_handlers<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
        resource: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Arc<dyn Subresource>)> + 'a {
        self.subresources
            .iter()
            .filter(move |((g, v, r, _), _)| g == group && v == version && r == resource)
            .map(|((_, _, _, s), h)| (s.as_str(), h))
    }
}

/// ("apps", "v1") of `apps/v1`; ("", "v1") of `v1`.
pub fn group_version(info: &KindInfo) -> (&'static str, &'static str) {
    match info.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", info.api_version),
    }
}

/// The API group of kind `K` (`""` for the core group).
pub fn group_of<K: skiff_api::Resource>() -> &'static str {
    K::API_VERSION.split_once('/').map_or("", |(g, _)| g)
}

/// The REST front end: authentication and limits, then the router.
#[derive(Clone)]
pub struct Rest {
    routes: Arc<Routes>,
    gate: Gate<Authenticator>,
    context: Context,
}

impl Rest {
    pub fn new(routes: Routes, gate: Gate<Authenticator>, context: Context) -> Self {
        Self {
            routes: Arc::new(routes),
            gate,
            context,
        }
    }

    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Serves one request.
    pub async fn handle(&self, req: http::Request<Body>) -> Response {
        router::handle(self, req).await
    }
}
