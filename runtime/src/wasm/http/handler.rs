//! The handler kinds a function can export, and the one call the server makes on them.
//!
//! Owns [`Handler`] (today `P2`: `wasi:http/incoming-handler@0.2.x`, through wasmtime-wasi-http's
//! `ProxyPre`), its detection among a component's exports ([`Handler::detect`]) and
//! [`Handler::run`]: instantiate in the given store, hand the guest the request, send the response
//! on `respond` as soon as the guest sets one, and return when the guest is done (its body
//! written). This is the seam for another kind (a `wasi:http/handler@0.3.x` service): a variant
//! here, its detection, and its `run` arm (in a file of its own); the server does not change.
//! Must not: apply limits, count, or listen (that is `server`).

use hyper::body::Body;
use wasmtime::Store;
use wasmtime::component::InstancePre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiBody, WasiHttpView};

use super::super::state::ComponentState;
use super::p3;

/// The export prefix of a WASI 0.2 HTTP handler.
pub(crate) const P2_EXPORT: &str = "wasi:http/incoming-handler@0.2.";

/// Where the guest's response (or the error code it set instead) goes.
pub(crate) type Respond = tokio::sync::oneshot::Sender<Result<http::Response<WasiBody>, String>>;

/// A function's linked handler.
pub(crate) enum Handler {
    /// `wasi:http/incoming-handler@0.2.x`.
    P2(ProxyPre<ComponentState>),
    /// `wasi:http/handler@0.3.x` ([`p3`]).
    P3(wasmtime_wasi_http::p3::bindings::ServicePre<ComponentState>),
}

impl Handler {
    /// The handler `exports` name, linked from `pre`; `None` when they name none.
    pub(crate) fn detect(
        exports: &[String],
        pre: &InstancePre<ComponentState>,
    ) -> Option<wasmtime::Result<Handler>> {
        if exports.iter().any(|e| e.starts_with(P2_EXPORT)) {
            return Some(ProxyPre::new(pre.clone()).map(Handler::P2));
        }
        if exports.iter().any(|e| e.starts_with(p3::P3_EXPORT)) {
            return Some(p3::service_pre(pre).map(Handler::P3));
        }
        None
    }

    /// Whether export `name` is a handler this host serves.
    pub(crate) fn exported(name: &str) -> bool {
        name.starts_with(P2_EXPORT) || name.starts_with(p3::P3_EXPORT)
    }

    /// The linked component.
    pub(crate) fn component(&self) -> &wasmtime::component::Component {
        match self {
            Handler::P2(pre) => pre.instance_pre().component(),
            Handler::P3(pre) => pre.instance_pre().component(),
        }
    }

    /// The interface it serves, for messages.
    pub(crate) fn interface(&self) -> &'static str {
        match self {
            Handler::P2(_) => "wasi:http/incoming-handler@0.2",
            Handler::P3(_) => p3::INTERFACE,
        }
    }

    /// Serves one request in `store` (fresh, never used before): see the module doc. An error
    /// is a trap or an instantiation failure. `workers`: the function's 0.3 instances that may
    /// take the request instead ([`p3::Workers`]).
    pub(crate) async fn run<B>(
        &self,
        mut store: Store<ComponentState>,
        request: http::Request<B>,
        respond: Respond,
        workers: &std::sync::Arc<p3::Workers>,
    ) -> wasmtime::Result<()>
    where
        B: Body<Data = bytes::Bytes, Error = wasmtime_wasi_http::Error> + Send + 'static,
    {
        match self {
            Handler::P2(pre) => {
                let mut http = store.data_mut().http();
                let request = http.new_incoming_request(Scheme::Http, request)?;
                let out = http.new_response_outparam_from_callback(move |r| {
                    let _ = respond.send(r.map_err(|code| format!("{code:?}")));
                })?;
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, out)
                    .await
            }
            Handler::P3(pre) => p3::run(pre, workers, store, request, respond).await,
        }
    }
}
