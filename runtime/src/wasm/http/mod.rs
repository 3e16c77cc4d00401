//! Functions: components that export `wasi:http/incoming-handler`, served over HTTP/1.1 with a
//! fresh instance per request.
//!
//! Owns serving. [`WasmEngine::start`](super::WasmEngine::start) of a [`Prepared`](super::Prepared)
//! whose [`Role`](super::Role) is `Function` lands in `server::start`: it binds the spec's
//! ports ([`HttpOptions::ports`], 8080 when none) inside the spec's network namespace (the
//! sockets are made on that namespace's thread, `super::netns`), then accepts on the caller's
//! runtime with hyper (HTTP/1.1, keep-alive). Per request, in this order:
//!
//! 1. a declared `Content-Length` past [`HttpOptions::max_body_bytes`] → 413 (a streamed body
//!    that grows past it fails the guest's read and the request ends 413 too);
//! 2. past [`HttpOptions::concurrency`] requests in flight → 503 with `Retry-After: 1`;
//! 3. a store on the engine's pooling allocator (its WASI context built from the spec: env,
//!    preopens, stdout/stderr into the container's log; no raw `wasi:sockets`: a function talks
//!    through `wasi:http` only), an instance from the handler pre-instantiated at prepare, and
//!    the guest's handle call in a task of its own, under [`HttpOptions::timeout`]: past it the
//!    task is dropped at the guest's next epoch tick and the request ends 504 (if no response
//!    had begun; else its body is cut);
//! 4. a trap, or a handler that returns without a response → 500 (the trap goes to the log);
//!    the server keeps serving.
//!
//! Outgoing requests (`wasi:http/outgoing-handler`) are checked against
//! [`HttpOptions::allowed_outbound_hosts`] ([`outbound`], Spin's `allowed_outbound_hosts`
//! syntax): deny by default, with `HttpRequestDenied` to the guest and a line in its log;
//! allowed ones connect from inside the namespace.
//!
//! Stopping: [`Instance::stop`](super::Instance::stop) (SIGTERM) stops accepting, lets
//! in-flight requests finish (keep-alive connections close after their current request), then
//! the instance exits 0; [`Instance::kill`](super::Instance::kill) drops everything at once.
//! [`FunctionStats`] ([`stats`]) are the counters of one function instance.
//!
//! # The seam for other handler kinds
//!
//! `handler::Handler` is an enum of the handler kinds a function can have (`P2`:
//! `wasi:http/incoming-handler@0.2.x`; `P3`: `wasi:http/handler@0.3.x`, in `p3.rs`). The
//! server makes a fresh store per request and calls `Handler::run(store, request, respond)`:
//! the kind instantiates (or, for 0.3, may hand the request to an instance already running,
//! `p3::Workers`), sends the response on the `respond` oneshot as soon as the guest has one,
//! and returns when the guest is done with the request; `Handler::detect` picks the kind from
//! a component's exports at prepare. Limits, counters, listeners and stopping stay in
//! `server`, the same for every kind.
//!
//! Must not: know about pods, Services or the cluster (ports, limits and hosts come in the spec).

pub(crate) mod body;
pub(crate) mod handler;
pub(crate) mod options;
pub mod outbound;
pub(crate) mod p3;
pub(crate) mod server;
pub mod stats;
pub(crate) mod trace;

pub use options::{DEFAULT_PORT, HttpOptions};
pub use outbound::{AllowedHosts, OutboundError};
pub use stats::FunctionStats;
