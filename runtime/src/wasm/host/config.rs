//! `wasi:config/store`: the values of the spec's [`super::HostGrants::config_values`], served by
//! `wasmtime-wasi-config` (whose WIT is `wit/config`'s: a test instantiates a component built
//! from `wit/config` against it).
//!
//! Keys are answered exactly as given (a ConfigMap's key, a Secret's key); `get-all` returns
//! every one. Nothing is read at call time: the values were fixed when the instance started.
//! Must not: log values (Secrets' among them).

use wasmtime::component::Linker;
use wasmtime_wasi_config::WasiConfig;

use super::{HostParts, HostView};

/// The package and version served, as `wit/config/world.wit` declares it.
pub const PACKAGE: &str = "wasi:config@0.2.0-rc.1";

pub(super) fn add_to_linker<T: HostView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wasmtime_wasi_config::add_to_linker(linker, view::<T>)
}

fn view<T: HostView>(data: &mut T) -> WasiConfig<'_> {
    let HostParts { ctx, .. } = data.host();
    let ctx: &super::HostCtx = ctx;
    WasiConfig::new(&ctx.config)
}
