//! skiff-bench: benchmarks that run skiff (and, where one runs here, its anchor) in one run and
//! print a table whose last line is `NAME: <figure> (<ratio> vs <anchor>)`. Run via `bench/run NAME`.
//!
//! Must not: be run as a timed unit test; figures belong in bench/README.md.

mod api;
mod client;
mod cold_start;
mod dashboard;
mod dns;
mod heartbeats;
mod http;
mod instantiate;
mod kube_api;
mod metrics;
mod objects;
mod oci_start;
mod scheduler;
mod service;
mod shim_start;
mod stats;
mod wasm_start;

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let result = match name.as_str() {
        "api" => api::run(),
        "api-etcd" => api::run_etcd(
            std::env::args()
                .nth(2)
                .and_then(|n| n.parse().ok())
                .unwrap_or(2_000),
        ),
        "wasm-start" => wasm_start::run(),
        "oci-start" => oci_start::run(),
        "scheduler" => scheduler::run(),
        "scheduler-etcd" => scheduler::run_etcd(),
        "shim-start" => shim_start::run(),
        "service" => service::run(),
        "dns" => dns::run(),
        "http" => http::run(),
        "cold-start" => cold_start::run(),
        "kube-api" => kube_api::run(),
        "metrics" => metrics::run(),
        "dashboard" => dashboard::run(),
        other => Err(format!(
            "unknown benchmark {other:?}; available: api, api-etcd, wasm-start, oci-start, scheduler, scheduler-etcd, shim-start, dns, service, http, cold-start, kube-api, dashboard, metrics"
        )),
    };
    if let Err(e) = result {
        eprintln!("skiff-bench: {e}");
        std::process::exit(1);
    }
}
