//! skiff-runtime: the executors that run workloads, with no knowledge of the cluster.
//!
//! Owns the [`wasm`] executor (one shared wasmtime engine per process, modules compiled once per
//! digest and cached on disk, the pooling allocator, memory and CPU limits, instances as tokio
//! tasks; `containerd-shim-skiff-v1` hosts it, for the node agent and for containerd alike) and
//! container [`logs`] (the CRI format, rotation, reading and
//! following), and the [`image`] store (Wasm images pulled from OCI registries — Wasm artifacts
//! and OCI images whose entrypoint is a `.wasm` file — verified by digest and cached on disk).
//! The [`linux`] executor runs OCI containers (namespaces, cgroups v1 and v2, seccomp,
//! capabilities) from OCI bundles, with runc's lifecycle; [`image::unpack`] turns image layers
//! into overlayfs snapshots. [`bundle`] names the annotations of skiff's OCI bundle form, which
//! the agent writes and the shim reads. It takes its own small specs, never the API's cluster
//! objects.
//!
//! Must not: import `skiff-api`, talk to the control plane, or keep cluster state.

pub mod bundle;
pub mod image;
pub mod linux;
pub mod logs;
pub mod wasm;
