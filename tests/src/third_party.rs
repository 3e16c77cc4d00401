//! Components built by third-party toolchains from the committed sources in `examples/`: the
//! Python function (`examples/function-python`, componentize-py) and the JavaScript one
//! (`examples/function-js`, componentize-js), both `wasi:http/proxy` components.
//!
//! The toolchains are installed at pinned versions by `scripts/third-party-toolchains` (which
//! `scripts/test` runs first) under `<target dir>/third-party`; a test that needs one and finds
//! it missing fails saying to run that script. Each example's own `build.sh` does the build, so
//! the tests build exactly what a user would. Outputs go to `<target dir>/guests/` and are
//! rebuilt only when a file of the example's directory is newer; each build writes a private
//! temp name, renamed into place, so concurrent test processes only ever see whole files.
//!
//! [`world_of`] decodes a component's world (wit-component), and [`jco_wit`] has jco print it,
//! for checks that a build is the `wasi:http/proxy` component it should be.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use crate::guests::{guests_dir, workspace_root};

/// A third-party function example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `examples/function-python`: componentize-py, `wasi:http/proxy@0.2.12`.
    Python,
    /// `examples/function-js`: componentize-js (StarlingMonkey), `wasi:http/proxy@0.2.10`.
    JavaScript,
}

impl Function {
    /// The example's directory name under `examples/`.
    pub fn example(self) -> &'static str {
        match self {
            Self::Python => "function-python",
            Self::JavaScript => "function-js",
        }
    }

    /// What its responses begin with.
    pub fn greeting(self) -> &'static str {
        match self {
            Self::Python => "hello from python: ",
            Self::JavaScript => "hello from javascript: ",
        }
    }

    /// The `wasi:http` version its world targets.
    pub fn wasi_version(self) -> &'static str {
        match self {
            Self::Python => "0.2.12",
            Self::JavaScript => "0.2.10",
        }
    }
}

/// `<target dir>/third-party`, where `scripts/third-party-toolchains` installs (or
/// `$SKIFF_TOOLCHAINS`).
pub fn toolchains_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SKIFF_TOOLCHAINS") {
        return PathBuf::from(dir);
    }
    guests_dir()
        .parent()
        .expect("the guests dir is in the target dir")
        .join("third-party")
}

/// The component `function`'s example builds, built if missing or older than its sources;
/// returns its path.
pub fn component(function: Function) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _serial = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let example = workspace_root().join("examples").join(function.example());
    let out = guests_dir().join(format!("{}.wasm", function.example()));
    if newest(&example).is_some_and(|src| modified(&out).is_some_and(|out| out >= src)) {
        return out;
    }
    let tmp = out.with_file_name(format!(
        ".{}.{}.{}.tmp",
        function.example(),
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    ));
    let started = Instant::now();
    let output = Command::new(example.join("build.sh"))
        .arg(&tmp)
        .env("SKIFF_TOOLCHAINS", toolchains_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}/build.sh: {e}", example.display()));
    if !output.status.success() {
        let _ = std::fs::remove_file(&tmp);
        panic!(
            "building {} failed ({}): run scripts/third-party-toolchains first if the toolchain is missing\n--- stdout\n{}--- stderr\n{}",
            example.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    eprintln!(
        "built {} in {:.1} s",
        function.example(),
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = std::fs::rename(&tmp, &out) {
        let _ = std::fs::remove_file(&tmp);
        panic!("cannot rename {} to {}: {e}", tmp.display(), out.display());
    }
    out
}

/// The world a component's binary declares: `(imports, exports)` as interface names
/// (`wasi:http/incoming-handler@0.2.12`).
pub fn world_of(component: &Path) -> (Vec<String>, Vec<String>) {
    let bytes = std::fs::read(component)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", component.display()));
    let (resolve, world) = match wit_component::decode(&bytes)
        .unwrap_or_else(|e| panic!("{}: not a component: {e:#}", component.display()))
    {
        wit_component::DecodedWasm::Component(resolve, world) => (resolve, world),
        wit_component::DecodedWasm::WitPackage(..) => {
            panic!("{}: a WIT package, not a component", component.display())
        }
    };
    let names = |items: &mut dyn Iterator<Item = &wit_parser::WorldKey>| -> Vec<String> {
        items
            .map(|key| match key {
                wit_parser::WorldKey::Interface(id) => resolve
                    .id_of(*id)
                    .unwrap_or_else(|| format!("interface {id:?}")),
                wit_parser::WorldKey::Name(name) => name.clone(),
            })
            .collect()
    };
    let w = &resolve.worlds[world];
    (names(&mut w.imports.keys()), names(&mut w.exports.keys()))
}

/// The world of `component` as jco prints it (`jco wit`), a second decoder beside
/// wit-component's.
pub fn jco_wit(component: &Path) -> String {
    let jco = toolchains_dir().join("node/node_modules/.bin/jco");
    let mut command = Command::new(&jco);
    // The Node.js scripts/third-party-toolchains installed when the machine's is older than 20.
    let node = toolchains_dir().join("nodejs/bin");
    if node.join("node").exists() {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let paths = std::iter::once(node).chain(std::env::split_paths(&path));
        if let Ok(joined) = std::env::join_paths(paths) {
            command.env("PATH", joined);
        }
    }
    let out = command
        .arg("wit")
        .arg(component)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): run scripts/third-party-toolchains",
                jco.display()
            )
        });
    assert!(
        out.status.success(),
        "jco wit {}: {}",
        component.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of the files under `dir` (skipping built outputs).
fn newest(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_dir(&path)
        } else if path.extension().is_some_and(|e| e == "wasm") {
            continue;
        } else {
            modified(&path)
        };
        newest = newest.max(time);
    }
    newest
}

fn newest_dir(dir: &Path) -> Option<SystemTime> {
    newest(dir).max(modified(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each toolchain's build is a `wasi:http/proxy` component of the version its world names:
    /// it exports the incoming handler (and no other WASI interface) and imports nothing outside
    /// WASI (the toolchains' runtimes import other WASI 0.2 releases beside it).
    fn check(function: Function) {
        let path = component(function);
        let (imports, exports) = world_of(&path);
        let handler = format!("wasi:http/incoming-handler@{}", function.wasi_version());
        // componentize-py also exports an instance of its own ("exports"): no other wasi:
        // interface may be exported.
        let wasi: Vec<&String> = exports.iter().filter(|e| e.starts_with("wasi:")).collect();
        assert_eq!(wasi, [&handler], "{}: {exports:?}", path.display());
        assert!(
            imports.iter().all(|i| i.starts_with("wasi:")),
            "{}: {imports:?}",
            path.display()
        );
        assert!(
            imports
                .iter()
                .any(|i| i == &format!("wasi:http/types@{}", function.wasi_version())),
            "{imports:?}"
        );
        // jco reads the same world.
        let wit = jco_wit(&path);
        assert!(wit.contains(&format!("export {handler};")), "{wit}");
    }

    #[test]
    fn python_function_is_a_wasi_http_proxy_component() {
        check(Function::Python);
    }

    #[test]
    fn javascript_function_is_a_wasi_http_proxy_component() {
        check(Function::JavaScript);
    }
}
