//! What a function is given: [`HttpOptions`], part of a [`super::super::WasmSpec`].
//!
//! Owns the options and their defaults (Knative's and Spin's habits where they have one). Must
//! not: parse user input beyond the outbound host patterns (the caller validates its own).

use std::time::Duration;

/// The port a function serves on when its spec names none (Knative's and Spin's default).
pub const DEFAULT_PORT: u16 = 8080;

/// How a function (a component exporting `wasi:http/incoming-handler`) is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// TCP ports to listen on (all addresses of the spec's network namespace); empty:
    /// [`DEFAULT_PORT`].
    pub ports: Vec<u16>,
    /// The longest a request may take, from its arrival to the guest's return: past it, 504 (or
    /// a cut body if the response had begun). Zero: no limit.
    pub timeout: Duration,
    /// The largest request body accepted: past it, 413. Zero: no limit.
    pub max_body_bytes: u64,
    /// Requests served at once; beyond, 503 with `Retry-After`. Zero: no cap but the engine's
    /// instance slots (a request that finds none free gets 503 too), which lets one function
    /// take every slot of the engine: only on purpose.
    /// [`HttpOptions::DEFAULT_CONCURRENCY`] by default.
    pub concurrency: u32,
    /// Where `wasi:http/outgoing-handler` may send requests, in Spin's `allowed_outbound_hosts`
    /// syntax ([`super::AllowedHosts`]); empty: nowhere.
    pub allowed_outbound_hosts: Vec<String>,
    /// The spec expects a function: a component that is not one fails to start (rather than
    /// running as a command).
    pub required: bool,
    /// Client connections open at once; a connection beyond it is closed as soon as it is
    /// accepted. Zero: [`HttpOptions::DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: u32,
}

impl HttpOptions {
    /// 30 s per request (Knative's default is 300 s; functions here are meant to be short),
    /// 10 MiB bodies, 100 requests at once, no outbound hosts.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 << 20;
    /// Requests at once per function: a finite default, so that one function cannot take the
    /// whole pooling allocator of a shim (1100 instance slots shared by its pods) and leave other
    /// functions 503 and other Wasm pods unable to instantiate (Knative's target per replica is
    /// 100 too).
    pub const DEFAULT_CONCURRENCY: u32 = 100;
    /// Open connections per function: enough for many keep-alive clients, few enough that
    /// idle or slow ones (each holds a task and hyper's buffers) cannot exhaust the shim.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
    /// How long a connection may take to send a request's head, counted from when the server
    /// waits for one: a new connection, or a kept-alive one between requests (so it is the
    /// idle keep-alive timeout too). Past it the connection is closed.
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

    /// The ports in effect.
    pub fn effective_ports(&self) -> Vec<u16> {
        if self.ports.is_empty() {
            vec![DEFAULT_PORT]
        } else {
            self.ports.clone()
        }
    }
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            ports: Vec::new(),
            timeout: Self::DEFAULT_TIMEOUT,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            concurrency: Self::DEFAULT_CONCURRENCY,
            allowed_outbound_hosts: Vec::new(),
            required: false,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        }
    }
}
