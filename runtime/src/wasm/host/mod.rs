//! The host interfaces skiff offers components beyond WASI: the WIT packages of the top-level
//! `wit/` directory, the single source of truth for their bindings.
//!
//! - `wasi:config/store` ([`config`]): the values a spec gives (a pod's ConfigMaps and Secrets,
//!   resolved by the node agent), served by `wasmtime-wasi-config` (`wit/config` holds the same
//!   WIT; a test checks they agree).
//! - `wasi:keyvalue/{store,atomics,batch}` ([`keyvalue`]): bindings generated from
//!   `wit/keyvalue`; every call goes over a unix socket to the node agent serving the guest's pod
//!   ([`keyvalue::wire`]), which keeps the data in the cluster's store.
//! - `wasi:logging/logging` ([`logging`]): bindings generated from `wit/logging`; each record is
//!   one line of the instance's log (stderr).
//!
//! A component gets an interface only if its spec grants it ([`HostGrants`]): every one is in
//! the linker, and [`check_imports`] refuses, before instantiation, a component that imports an
//! interface its spec does not grant, naming the import. Store data reaches its part through
//! [`HostView`], so any store type (a command's, a function's) can link these interfaces.
//!
//! Must not: know about pods or the cluster (the agent resolves sources and serves the socket).

pub mod config;
pub mod keyvalue;
pub mod logging;

use std::path::{Path, PathBuf};

use wasmtime::component::{Component, Linker, ResourceTable};

use super::error::WasmError;

/// What a spec grants beyond WASI. The default grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostGrants {
    /// `wasi:config/store`.
    pub config: bool,
    /// `wasi:keyvalue/store`, `atomics`, `batch`.
    pub keyvalue: bool,
    /// `wasi:logging/logging`.
    pub logging: bool,
    /// What `wasi:config/store` answers.
    pub config_values: ConfigValues,
    /// The unix socket of the node agent serving `wasi:keyvalue` for this guest; `None` (no
    /// agent: a plain containerd) makes every `open` fail with an error saying so.
    pub keyvalue_socket: Option<PathBuf>,
}

/// `wasi:config` keys and values. Values may be Secrets': its `Debug` shows only the keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConfigValues(pub Vec<(String, String)>);

impl std::fmt::Debug for ConfigValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| format!("{k}=<redacted>")))
            .finish()
    }
}

/// The per-instance state of the host interfaces, in a store's data.
pub struct HostCtx {
    pub(crate) config: wasmtime_wasi_config::WasiConfigVariables,
    pub(crate) keyvalue: keyvalue::Client,
    pub(crate) log: logging::Sink,
}

impl HostCtx {
    /// The state for an instance of a spec granting `grants`, logging to `log`.
    pub fn new(grants: &HostGrants, log: logging::Sink) -> Self {
        let config = if grants.config {
            grants.config_values.0.iter().cloned().collect()
        } else {
            Default::default()
        };
        HostCtx {
            config,
            keyvalue: keyvalue::Client::new(grants.keyvalue_socket.clone()),
            log,
        }
    }

    /// Nothing granted (benchmarks; stores whose component imports none of these).
    pub fn none() -> Self {
        Self::new(&HostGrants::default(), logging::Sink::Discard)
    }
}

/// The parts of a store's data the host interfaces use.
pub struct HostParts<'a> {
    pub ctx: &'a mut HostCtx,
    pub table: &'a mut ResourceTable,
}

/// Store data that carries a [`HostCtx`] and a resource table.
pub trait HostView: Send + 'static {
    fn host(&mut self) -> HostParts<'_>;
}

/// Adds every host interface to `linker` (async: keyvalue calls wait on the agent).
pub fn add_to_linker<T: HostView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    config::add_to_linker(linker)?;
    keyvalue::add_to_linker(linker)?;
    logging::add_to_linker(linker)?;
    Ok(())
}

/// The grant an import needs, if it is one of these interfaces: (package prefix, grant name).
const PACKAGES: [(&str, &str); 3] = [
    ("wasi:config/", "config"),
    ("wasi:keyvalue/", "keyvalue"),
    ("wasi:logging/", "logging"),
];

/// Fails if `component` imports a host interface that `grants` does not give, naming the
/// import and the grant it needs.
pub(crate) fn check_imports(
    engine: &wasmtime::Engine,
    component: &Component,
    grants: &HostGrants,
    path: &Path,
) -> Result<(), WasmError> {
    for (name, _) in component.component_type().imports(engine) {
        let Some((_, grant)) = PACKAGES.iter().find(|(p, _)| name.starts_with(p)) else {
            continue;
        };
        let granted = match *grant {
            "config" => grants.config,
            "keyvalue" => grants.keyvalue,
            _ => grants.logging,
        };
        if !granted {
            return Err(WasmError::NotGranted {
                path: path.to_path_buf(),
                import: name.to_string(),
                grant,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
