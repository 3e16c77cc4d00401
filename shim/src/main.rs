//! containerd-shim-skiff-v1: a containerd shim v2 (runtime `io.containerd.skiff.v1`) over
//! skiff-runtime, so that a plain containerd runs skiff's Wasm and OCI workloads.
//!
//! Empty today (issue "containerd shim v2" fills it): it only says so and exits non-zero, so that
//! containerd reports a clear error instead of hanging.

fn main() {
    eprintln!("containerd-shim-skiff-v1: not implemented yet in this build of skiff");
    std::process::exit(1);
}
