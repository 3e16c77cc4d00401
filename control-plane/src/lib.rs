//! skiff-control-plane: the API server and everything behind it.
//!
//! Owns the [`store`] (a trait with an embedded redb backend, and the conformance suite every
//! backend passes), the [`registry`] (the one write path: per-kind strategies, admission, store
//! keys and encoding, optimistic concurrency, status subresource, finalizers, watch), the gRPC
//! [`server`] (one generic handler authorizes and calls the registry for every kind), [`auth`] (TLS, bearer tokens,
//! the identity of each caller), [`pki`] (the cluster CA), the [`scheduler`] and the
//! [`controllers`]; node tunnels relay logs from agents (`server::tunnel`). The Kubernetes REST
//! API ([`rest`]) is served beside gRPC on the same port, over the same handlers.
//!
//! Must not: run workloads or reach into nodes; it only reads and writes objects.

pub mod audit;
pub mod auth;
pub mod controllers;
pub mod custom_metrics;
pub mod dashboard;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod pki;
pub mod pod_metrics;
pub mod registry;
pub mod resource_metrics;
pub mod rest;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod telemetry;
