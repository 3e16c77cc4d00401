//! skiff-control-plane: the API server and everything behind it.
//!
//! Owns the [`store`] (a trait with an embedded redb backend, and the conformance suite every
//! backend passes), the gRPC [`server`] (one generic handler serves every kind: validation,
//! optimistic concurrency, status subresource, finalizers, watch), [`auth`] (TLS, bearer tokens,
//! the identity of each caller), [`pki`] (the cluster CA), the [`scheduler`] and the
//! [`controllers`]; node tunnels relay logs from agents (`server::tunnel`).
//!
//! Must not: run workloads or reach into nodes; it only reads and writes objects.

pub mod auth;
pub mod controllers;
pub mod error;
pub mod pki;
pub mod scheduler;
pub mod server;
pub mod store;
