//! skiff-api: the one definition of skiff's objects and how they travel.
//!
//! Owns the protobuf messages and tonic services generated from `proto/` (one service per kind,
//! all with the same verbs), their Kubernetes-shaped YAML/JSON form, manifest parsing with field
//! paths in every error, validation (names, quantities, selectors, pod specs), and the client side
//! of a connection (config file, TLS, bearer token).
//!
//! Must not: touch the store, run workloads, or know how the server enforces anything. The server
//! and the CLI both call [`validation`] so that a manifest is judged the same way on either side.

pub mod cidr;
pub mod client;
pub mod cluster_dns;
pub mod events;
pub mod functions;
pub mod host_interfaces;
pub mod host_networks;
pub mod intstr;
pub mod join;
pub mod json;
pub mod kinds;
pub mod manifest;
pub mod pod_security;
pub mod printers;
pub mod quantity;
pub mod redact;
pub mod resource;
pub mod selector;
pub mod time;
pub mod validation;
pub mod workload;

#[cfg(test)]
mod property_tests;

pub use intstr::{IntOrString, IntOrStringValue};
pub use resource::{Resource, ResourceExt};

/// Generated messages and services of package `skiff.v1`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/skiff.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/skiff.v1.serde.rs"));
}

pub use pbjson_types::Timestamp;

/// The protos' descriptors, comments included (protoc's `--include_source_info`): the REST API's
/// OpenAPI documents are generated from them.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/skiff_descriptor.bin"));
