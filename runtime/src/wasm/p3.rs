//! WASI 0.3 commands: components whose `wasi:cli/run@0.3.x` export is called through the
//! component model's async ABI (wasmtime 48's `p3`).
//!
//! Owns what tells the WASI generations of a component apart ([`Wasi`], [`command_target`]):
//! a component is a 0.3 command when it exports `wasi:cli/run@0.3.x`, a 0.2 command when it
//! exports `wasi:cli/run@0.2.x`, and is refused (naming both) when it exports both. Its imports
//! may mix 0.2 and 0.3 interfaces: the component linker serves both generations side by side, as
//! `wasmtime run` does. An import of another 0.3 draft than the one wasmtime 48 ships
//! (`wasi:*@0.3.0`; third-party toolchains may target `0.3.0-rc-...` drafts) cannot link, and
//! [`draft_hint`] says so. Running one ([`run_command`]) calls `run` inside the store's event
//! loop (`Store::run_concurrent`), so the guest's streams, futures and async imports make
//! progress while it waits. Must not: build stores or WASI contexts (that is `instance` and
//! `wasi_ctx`), or serve `wasi:http` (that is `http`).

use wasmtime::Store;
use wasmtime::component::Component;
use wasmtime_wasi::p3::bindings::{Command, CommandPre};

use super::exit::RunEnd;
use super::state::ComponentState;

/// The WASI a module or component was prepared against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wasi {
    /// A core module: WASI preview 1.
    Preview1,
    /// A component of WASI 0.2 (`wasi:cli/run@0.2.x`).
    P2,
    /// A component of WASI 0.3 (`wasi:cli/run@0.3.x`), run with the component model's async ABI.
    P3,
}

impl Wasi {
    /// How users name it: `preview1`, `0.2`, `0.3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Wasi::Preview1 => "preview1",
            Wasi::P2 => "0.2",
            Wasi::P3 => "0.3",
        }
    }
}

/// The version of WASI 0.3 wasmtime 48 serves.
pub(crate) const P3_VERSION: &str = "0.3.0";

/// Which `wasi:cli/run` of `exports` a command exports: `Ok(None)` for none, an error message
/// for both.
pub(crate) fn command_target(exports: &[String]) -> Result<Option<Wasi>, String> {
    let run_of = |prefix: &str| exports.iter().find(|e| e.starts_with(prefix));
    match (run_of("wasi:cli/run@0.2."), run_of("wasi:cli/run@0.3.")) {
        (Some(p2), Some(p3)) => Err(format!(
            "exports both `{p2}` and `{p3}`: a command targets one WASI (0.2 or 0.3), not both"
        )),
        (Some(_), None) => Ok(Some(Wasi::P2)),
        (None, Some(_)) => Ok(Some(Wasi::P3)),
        (None, None) => Ok(None),
    }
}

/// When an import failed to link: the WASI 0.3 imports of `component` at another version than
/// [`P3_VERSION`], as a sentence to add to the error (empty if there are none).
pub(crate) fn draft_hint(engine: &wasmtime::Engine, component: &Component) -> String {
    let drafts: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .filter(|name| is_other_p3_draft(name))
        .collect();
    match drafts.first() {
        None => String::new(),
        Some(first) => format!(
            "; `{first}`{} targets another WASI 0.3 draft than this host's wasi:*@{P3_VERSION} \
             (wasmtime 48): rebuild it against the WASI 0.3.0 WIT",
            match drafts.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            }
        ),
    }
}

/// `wasi:PKG/IFACE@0.3.Y...` other than `@0.3.0` exactly.
fn is_other_p3_draft(import: &str) -> bool {
    match import.strip_prefix("wasi:").and_then(|r| r.split_once('@')) {
        Some((_, version)) => version.starts_with("0.3.") && version != P3_VERSION,
        None => false,
    }
}

/// Links a 0.3 command's `run` export.
pub(crate) fn command_pre(
    pre: wasmtime::component::InstancePre<ComponentState>,
) -> wasmtime::Result<CommandPre<ComponentState>> {
    CommandPre::new(pre)
}

/// Calls `run` of an instantiated 0.3 command, driving the store's event loop until it returns.
pub(crate) async fn run_command(
    store: &mut Store<ComponentState>,
    command: Command,
) -> wasmtime::Result<RunEnd> {
    let ran = store
        .run_concurrent(async move |accessor| command.wasi_cli_run().call_run(accessor).await)
        .await;
    match ran?? {
        Ok(()) => Ok(RunEnd::Returned),
        Err(()) => Ok(RunEnd::RunFailed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_run_export_picks_the_wasi() {
        let p2 = names(&["wasi:cli/run@0.2.0"]);
        assert_eq!(command_target(&p2), Ok(Some(Wasi::P2)));
        let p3 = names(&["wasi:cli/run@0.3.0", "skiff:x/y"]);
        assert_eq!(command_target(&p3), Ok(Some(Wasi::P3)));
        let handler = names(&["wasi:http/handler@0.3.0"]);
        assert_eq!(command_target(&handler), Ok(None));
        let both = names(&["wasi:cli/run@0.2.6", "wasi:cli/run@0.3.0"]);
        let e = command_target(&both).unwrap_err();
        assert!(
            e.contains("`wasi:cli/run@0.2.6`") && e.contains("`wasi:cli/run@0.3.0`"),
            "{e}"
        );
    }

    #[test]
    fn other_drafts_are_told_apart() {
        assert!(is_other_p3_draft("wasi:cli/stdout@0.3.0-rc-2025-09-16"));
        assert!(is_other_p3_draft("wasi:http/types@0.3.1"));
        assert!(!is_other_p3_draft("wasi:cli/stdout@0.3.0"));
        assert!(!is_other_p3_draft("wasi:cli/stdout@0.2.3"));
        assert!(!is_other_p3_draft("skiff:kv/store@0.3.1"));
    }
}
