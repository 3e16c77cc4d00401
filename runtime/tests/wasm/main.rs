//! Integration tests of the wasm executor, driven directly as `containerd-shim-skiff-v1` drives
//! it: prepare, start, kill, wait, with real guests, files, logs and network namespaces.
//!
//! One binary (wasmtime's `tests/all` habit) so the heavy dependencies link once; the memory and
//! CPU limit tests have binaries of their own because they measure the whole process.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod cache;
mod errors;
mod fs;
mod functions;
mod host_interfaces;
mod lifecycle;
mod logs;
mod name_lookup;
mod network;
mod p3;
mod p3_functions;
mod run;
