//! End-to-end tests over real `skiff` processes (one test binary, as wasmtime's `tests/all`).
#![allow(clippy::unwrap_used)]

mod agent_shims;
mod api_limits;
mod auth;
mod autoscaling;
mod bad_input;
mod cluster;
mod durability;
mod examples;
mod functions;
mod host_interfaces;
mod hostile_images;
mod ingress;
mod kinds;
mod linux_executor;
mod mixed_pods;
mod namespaces;
mod oci_pods;
mod pod_network;
mod pod_security;
mod pod_workers;
mod port_forward;
mod private_registry;
mod probes;
mod registry;
mod rolling_update;
mod secrets_at_rest;
mod service_dns;
mod service_proxy;
mod services;
mod shim;
mod teardown;
mod wasi_p3;
mod wasm_pods;
mod wasmtime_habits;
mod watch;
