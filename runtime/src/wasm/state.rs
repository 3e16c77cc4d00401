//! The data each wasmtime `Store` holds: the WASI context and the instance's limits.
//!
//! Owns [`ModuleState`] (core modules: a WASI preview 1 context) and [`ComponentState`]
//! (components: a WASI preview 2 context and its resource table), and the [`Guarded`] trait that
//! lets the run loop reach the limits of either. Must not: decide policy (that is `limits`).

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::Limits;

/// Store data of a core module.
pub struct ModuleState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limits: Limits,
}

/// Store data of a component.
pub struct ComponentState {
    pub(crate) ctx: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: Limits,
    /// How `wasi:sockets/ip-name-lookup` resolves ([`super::name_lookup`]).
    pub(crate) lookup: super::name_lookup::NameLookup,
    /// The host interfaces beyond WASI ([`super::host`]).
    pub(crate) host: super::host::HostCtx,
    /// `wasi:http` state (functions' requests, and outgoing requests).
    pub(crate) http: wasmtime_wasi_http::WasiHttpCtx,
    /// Where outgoing `wasi:http` requests may go ([`super::http::outbound`]; nowhere for a
    /// command).
    pub(crate) outbound: super::http::outbound::Outbound,
}

impl wasmtime_wasi_http::WasiHttpView for ComponentState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl super::host::HostView for ComponentState {
    fn host(&mut self) -> super::host::HostParts<'_> {
        super::host::HostParts {
            ctx: &mut self.host,
            table: &mut self.table,
        }
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// Store data that carries [`Limits`].
pub(crate) trait Guarded: Send + 'static {
    fn limits(&mut self) -> &mut Limits;
}

impl Guarded for ModuleState {
    fn limits(&mut self) -> &mut Limits {
        &mut self.limits
    }
}

impl Guarded for ComponentState {
    fn limits(&mut self) -> &mut Limits {
        &mut self.limits
    }
}
