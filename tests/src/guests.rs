//! Test guests: Wasm modules and components built on demand from sources in `tests/guests/`.
//!
//! The Rust toolchain here has no wasm32 target, so guests are C (Debian's clang + wasi-libc) or
//! WAT (the `wat` crate). Outputs go to `<target dir>/guests/` and are rebuilt only when their
//! source is newer. Several test processes may ask for the same guest at once: each builds to a
//! private temp name in that directory and renames it into place, so readers only ever see
//! complete files.
//!
//! - [`guest`]: `tests/guests/NAME.c` as a WASI preview 1 core module (`NAME.wasm`).
//! - [`component`]: the same program as a WASI preview 2 command component
//!   (`NAME.component.wasm`), via `wit-component` and wasmtime 48's preview1 command adapter.
//! - [`socket_component`]: a C guest that also calls `wasi:sockets` directly (declared in
//!   `tests/guests/NAME.wit`), as a command component (`NAME.component.wasm`).
//! - [`function_component`]: a C wasi:http function (`tests/guests/NAME.c` + `NAME.wit`),
//!   built as a reactor with the preview1 reactor adapter (`NAME.component.wasm`).
//! - [`host_component`]: a C guest that imports skiff's host interfaces (`wit/`), as a command
//!   component (`NAME.component.wasm`).
//! - [`wat`]: an inline WAT text as a core module (`NAME.wasm`).
//! - [`hello_http`]: the WAT function of `examples/hello-http` as a component (`hello-http.wasm`).
//! - [`p3_component`]: `tests/guests/p3/NAME.c`, freestanding C with no libc, as a WASI 0.3
//!   component (`p3-NAME.component.wasm`) of the world `skiff:p3-guests/NAME`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
    WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_component::ComponentEncoder;

/// Debian packages the C guests need, for error messages.
const PACKAGES: &str = "clang lld wasi-libc libclang-rt-14-dev-wasm32";

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// `<target dir>/guests`, created if missing. The target dir is `$CARGO_TARGET_DIR` (relative to
/// the workspace root if relative), else `<workspace>/target`.
pub fn guests_dir() -> PathBuf {
    let root = workspace_root();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir), // `join` keeps an absolute path as it is
        None => root.join("target"),
    };
    let dir = target.join("guests");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// `tests/guests/{name}.c` compiled to a WASI preview 1 core module; returns its path.
///
/// Runs `clang --target=wasm32-wasi -O2 -o OUT SRC` when the output is missing or older than the
/// source. Debian's clang finds wasi-libc in `/usr/{include,lib}/wasm32-wasi` by itself; set
/// `WASI_SYSROOT` to use another sysroot (a `/usr/share/wasi-sysroot` is used if present).
pub fn guest(name: &str) -> PathBuf {
    let src = workspace_root()
        .join("tests/guests")
        .join(format!("{name}.c"));
    assert!(src.exists(), "no guest source {}", src.display());
    let out = guests_dir().join(format!("{name}.wasm"));
    let _serial = build_lock();
    if is_fresh(&out, &src) {
        return out;
    }

    let tmp = temp_path(&out);
    let mut cmd = Command::new("clang");
    cmd.arg("--target=wasm32-wasi");
    if let Some(sysroot) = sysroot() {
        cmd.arg(format!("--sysroot={}", sysroot.display()));
    }
    cmd.arg("-O2").arg("-o").arg(&tmp).arg(&src);
    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) => panic!("cannot run clang ({e}): install the Debian packages {PACKAGES}"),
    };
    if !output.status.success() {
        let _ = std::fs::remove_file(&tmp);
        let stderr = String::from_utf8_lossy(&output.stderr);
        panic!(
            "building guest {name} failed: {cmd:?} exited with {}.\n{}\n--- clang stderr\n{stderr}",
            output.status,
            diagnose(&stderr),
        );
    }
    rename_into_place(&tmp, &out);
    out
}

/// `tests/guests/{name}.c` as a WASI preview 2 command component; returns its path.
///
/// The core module from [`guest`] is wrapped with `wit-component`'s [`ComponentEncoder`] and the
/// preview1 *command* adapter shipped for wasmtime 48, so its `wasi_snapshot_preview1` imports
/// become `wasi:cli` / `wasi:filesystem` / ... imports and it exports `wasi:cli/run`.
pub fn component(name: &str) -> PathBuf {
    let core = guest(name);
    let out = guests_dir().join(format!("{name}.component.wasm"));
    let _serial = build_lock();
    if is_fresh(&out, &core) {
        return out;
    }
    let module =
        std::fs::read(&core).unwrap_or_else(|e| panic!("cannot read {}: {e}", core.display()));
    write_atomic(&out, &encode_command(name, &module));
    out
}

/// `tests/guests/{name}.c`, which imports `wasi:sockets` functions by their canonical ABI names
/// beside its WASI preview 1 calls, as a command component; returns its path.
///
/// The world `skiff:test-guests/{name}` of `tests/guests/{name}.wit` declares those imports:
/// it is embedded in the core module (as wit-bindgen would), then the module is encoded as
/// [`component`] does.
pub fn socket_component(name: &str) -> PathBuf {
    let core = guest(name);
    let wit = workspace_root()
        .join("tests/guests")
        .join(format!("{name}.wit"));
    let out = guests_dir().join(format!("{name}.component.wasm"));
    let _serial = build_lock();
    if is_fresh(&out, &core) && is_fresh(&out, &wit) {
        return out;
    }
    let text = std::fs::read_to_string(&wit)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", wit.display()));
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve
        .push_str(&wit, &text)
        .unwrap_or_else(|e| panic!("{}: {e:#}", wit.display()));
    let world = resolve
        .select_world(&[package], Some(&format!("skiff:test-guests/{name}")))
        .unwrap_or_else(|e| panic!("{}: {e:#}", wit.display()));
    let mut module =
        std::fs::read(&core).unwrap_or_else(|e| panic!("cannot read {}: {e}", core.display()));
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap_or_else(|e| panic!("embedding {} in {}: {e:#}", wit.display(), core.display()));
    write_atomic(&out, &encode_command(name, &module));
    out
}

/// `tests/guests/p3/{name}.c` as a WASI 0.3 component; returns its path.
///
/// The guest imports WASI 0.3.0 (the WIT of `tests/guests/p3/deps/`, as wasmtime-wasi and
/// wasmtime-wasi-http 48 ship it) by canonical ABI names, async ones included, and uses no libc,
/// so nothing in it imports WASI preview 1 and no adapter is needed: it is compiled freestanding
/// (`clang --target=wasm32 -nostdlib`), the world `skiff:p3-guests/{name}` of
/// `tests/guests/p3/guests.wit` is embedded, and wit-component encodes it as it is.
pub fn p3_component(name: &str) -> PathBuf {
    let dir = workspace_root().join("tests/guests/p3");
    let src = dir.join(format!("{name}.c"));
    assert!(src.exists(), "no guest source {}", src.display());
    let out = guests_dir().join(format!("p3-{name}.component.wasm"));
    let _serial = build_lock();
    let inputs = [src.clone(), dir.join("abi.h"), dir.join("guests.wit")];
    if inputs.iter().all(|input| is_fresh(&out, input)) {
        return out;
    }

    let core = temp_path(&guests_dir().join(format!("p3-{name}.wasm")));
    let mut cmd = Command::new("clang");
    cmd.args([
        "--target=wasm32",
        "-O2",
        "-nostdlib",
        "-Wl,--no-entry",
        "-o",
    ])
    .arg(&core)
    .arg(&src);
    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) => panic!("cannot run clang ({e}): install the Debian packages {PACKAGES}"),
    };
    if !output.status.success() {
        let _ = std::fs::remove_file(&core);
        let stderr = String::from_utf8_lossy(&output.stderr);
        panic!(
            "building WASI 0.3 guest {name} failed: {cmd:?} exited with {}.\n{}\n--- clang stderr\n{stderr}",
            output.status,
            diagnose(&stderr),
        );
    }
    let module = std::fs::read(&core);
    let _ = std::fs::remove_file(&core);
    let mut module = module.unwrap_or_else(|e| panic!("cannot read {}: {e}", core.display()));

    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
    let world = resolve
        .select_world(&[package], Some(&format!("skiff:p3-guests/{name}")))
        .unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap_or_else(|e| panic!("embedding world {name} in {}: {e:#}", src.display()));
    let component = ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .and_then(|mut encoder| encoder.encode())
        .unwrap_or_else(|e| panic!("encoding WASI 0.3 guest {name} as a component: {e:#}"));
    write_atomic(&out, &component);
    out
}

/// `tests/guests/{name}.c`, a wasi:http 0.2 function: a reactor module (`-mexec-model=reactor`,
/// no `main`) exporting `wasi:http/incoming-handler@0.2.0#handle` by its canonical ABI name, with
/// the world `skiff:test-guests/{name}` of `tests/guests/{name}.wit` embedded, wrapped with the
/// preview1 *reactor* adapter (no `wasi:cli/run`; `_initialize` runs at instantiation). Returns
/// the component's path (`NAME.component.wasm`).
pub fn function_component(name: &str) -> PathBuf {
    let dir = workspace_root().join("tests/guests");
    let (src, wit) = (
        dir.join(format!("{name}.c")),
        dir.join(format!("{name}.wit")),
    );
    let out = guests_dir().join(format!("{name}.component.wasm"));
    let _serial = build_lock();
    if is_fresh(&out, &src) && is_fresh(&out, &wit) {
        return out;
    }
    let core = temp_path(&guests_dir().join(format!("{name}.reactor.wasm")));
    let mut cmd = Command::new("clang");
    cmd.arg("--target=wasm32-wasi");
    if let Some(sysroot) = sysroot() {
        cmd.arg(format!("--sysroot={}", sysroot.display()));
    }
    cmd.args(["-mexec-model=reactor", "-O2", "-o"])
        .arg(&core)
        .arg(&src);
    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) => panic!("cannot run clang ({e}): install the Debian packages {PACKAGES}"),
    };
    if !output.status.success() {
        let _ = std::fs::remove_file(&core);
        let stderr = String::from_utf8_lossy(&output.stderr);
        panic!(
            "building function guest {name} failed: {cmd:?} exited with {}.\n{}\n--- clang stderr\n{stderr}",
            output.status,
            diagnose(&stderr),
        );
    }
    let module = std::fs::read(&core);
    let _ = std::fs::remove_file(&core);
    let mut module = module.unwrap_or_else(|e| panic!("cannot read {}: {e}", core.display()));
    let text = std::fs::read_to_string(&wit)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", wit.display()));
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve
        .push_str(&wit, &text)
        .unwrap_or_else(|e| panic!("{}: {e:#}", wit.display()));
    let world = resolve
        .select_world(&[package], Some(&format!("skiff:test-guests/{name}")))
        .unwrap_or_else(|e| panic!("{}: {e:#}", wit.display()));
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap_or_else(|e| panic!("embedding {} in {name}: {e:#}", wit.display()));
    let component = ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .unwrap_or_else(|e| panic!("guest {name}: not a usable core module: {e:#}"))
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .unwrap_or_else(|e| panic!("loading the preview1 reactor adapter: {e:#}"))
        .encode()
        .unwrap_or_else(|e| panic!("encoding {name} as a component: {e:#}"));
    write_atomic(&out, &component);
    out
}

/// A core module as a command component, with the preview1 command adapter.
fn encode_command(name: &str, module: &[u8]) -> Vec<u8> {
    ComponentEncoder::default()
        .validate(true)
        .module(module)
        .unwrap_or_else(|e| panic!("guest {name}: not a usable core module: {e:#}"))
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        )
        .unwrap_or_else(|e| panic!("loading the preview1 command adapter: {e:#}"))
        .encode()
        .unwrap_or_else(|e| panic!("encoding {name} as a component: {e:#}"))
}

/// `tests/guests/{name}.c`, which imports skiff's host interfaces by their canonical ABI names,
/// as a command component; returns its path (`NAME.component.wasm`).
///
/// Its world `skiff:test-guests/{name}` (`tests/guests/{name}.wit`) imports them from the
/// packages of the workspace's top-level `wit/` (config, keyvalue, logging), loaded first: the
/// guest is built against the very WIT the host's bindings are generated from.
pub fn host_component(name: &str) -> PathBuf {
    let core = guest(name);
    let root = workspace_root();
    let wit = root.join("tests/guests").join(format!("{name}.wit"));
    let packages = ["config", "keyvalue", "logging"].map(|p| root.join("wit").join(p));
    let out = guests_dir().join(format!("{name}.component.wasm"));
    let _serial = build_lock();
    let wit_files: Vec<PathBuf> = packages
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
        .map(|e| e.path())
        .collect();
    if is_fresh(&out, &core) && is_fresh(&out, &wit) && wit_files.iter().all(|f| is_fresh(&out, f))
    {
        return out;
    }
    let mut resolve = wit_parser::Resolve::default();
    for dir in &packages {
        resolve
            .push_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
    }
    let text = std::fs::read_to_string(&wit)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", wit.display()));
    let package = resolve
        .push_str(&wit, &text)
        .unwrap_or_else(|e| panic!("{}: {e:#}", wit.display()));
    let world = resolve
        .select_world(&[package], Some(&format!("skiff:test-guests/{name}")))
        .unwrap_or_else(|e| panic!("{}: {e:#}", wit.display()));
    let mut module =
        std::fs::read(&core).unwrap_or_else(|e| panic!("cannot read {}: {e}", core.display()));
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap_or_else(|e| panic!("embedding {} in {}: {e:#}", wit.display(), core.display()));
    write_atomic(&out, &encode_command(name, &module));
    out
}

/// `examples/hello-http` (the function `skiff up --demo` deploys: a WAT core module with its
/// `world.wit` embedded, no adapter) as a component at `<target dir>/guests/hello-http.wasm`;
/// returns its path. The benchmarks serve it under skiff and under `wasmtime serve`.
pub fn hello_http() -> PathBuf {
    let dir = workspace_root().join("examples/hello-http");
    let (wat_file, wit) = (dir.join("hello.wat"), dir.join("world.wit"));
    let out = guests_dir().join("hello-http.wasm");
    let _serial = build_lock();
    if is_fresh(&out, &wat_file) && is_fresh(&out, &wit) {
        return out;
    }
    let mut module =
        wat::parse_file(&wat_file).unwrap_or_else(|e| panic!("{}: {e}", wat_file.display()));
    let text = std::fs::read_to_string(&wit)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", wit.display()));
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve
        .push_str(&wit, &text)
        .unwrap_or_else(|e| panic!("{}: {e:#}", wit.display()));
    let world = resolve
        .select_world(&[package], Some("skiff:examples/hello-http"))
        .unwrap_or_else(|e| panic!("{}: {e:#}", wit.display()));
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap_or_else(|e| panic!("embedding {}: {e:#}", wit.display()));
    let component = ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .and_then(|mut encoder| encoder.encode())
        .unwrap_or_else(|e| panic!("encoding examples/hello-http: {e:#}"));
    write_atomic(&out, &component);
    out
}

/// `text` (WAT) compiled to a core module at `<target dir>/guests/{name}.wasm`; returns its path.
///
/// For small inline guests. Pick names that do not clash with a C guest in `tests/guests/`.
pub fn wat(name: &str, text: &str) -> PathBuf {
    let bytes = wat::parse_str(text).unwrap_or_else(|e| panic!("WAT guest {name}: {e}"));
    let out = guests_dir().join(format!("{name}.wasm"));
    // Leave an identical file alone, so concurrent users never see it replaced.
    if std::fs::read(&out).ok().as_deref() != Some(bytes.as_slice()) {
        write_atomic(&out, &bytes);
    }
    out
}

/// Serialises builds within this process (threads of one test binary); other processes are kept
/// apart by the temp-name-then-rename writes.
fn build_lock() -> MutexGuard<'static, ()> {
    static BUILD: Mutex<()> = Mutex::new(());
    // A panicking build leaves nothing half-written behind, so a poisoned lock is still usable.
    BUILD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A sysroot to pass to clang, if one is needed.
fn sysroot() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WASI_SYSROOT") {
        return Some(PathBuf::from(dir));
    }
    let wasi_sdk_style = Path::new("/usr/share/wasi-sysroot");
    wasi_sdk_style
        .is_dir()
        .then(|| wasi_sdk_style.to_path_buf())
}

/// Names the likely missing Debian package from clang's error output.
fn diagnose(stderr: &str) -> String {
    let missing = if stderr.contains("wasm-ld") {
        Some("lld (clang could not run wasm-ld)")
    } else if stderr.contains("libclang_rt.builtins-wasm32") {
        Some("libclang-rt-14-dev-wasm32 (no wasm32 compiler-rt builtins)")
    } else if stderr.contains(".h' file not found")
        || stderr.contains("crt1")
        || stderr.contains("-lc")
    {
        Some("wasi-libc (no wasm32-wasi headers or libc)")
    } else {
        None
    };
    match missing {
        Some(package) => format!("Missing Debian package: {package}. The guests need {PACKAGES}."),
        None => format!(
            "If this is not an error in the C source, check the Debian packages {PACKAGES} are installed."
        ),
    }
}

/// True if `out` exists and is not older than `src`.
fn is_fresh(out: &Path, src: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(out), modified(src)) {
        (Some(out), Some(src)) => out >= src,
        _ => false,
    }
}

/// A fresh name next to `out` that no other thread or process is using.
fn temp_path(out: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let file = out
        .file_name()
        .expect("output path has a file name")
        .to_string_lossy();
    out.with_file_name(format!(".{file}.{}.{n}.{nanos}.tmp", std::process::id()))
}

fn write_atomic(out: &Path, bytes: &[u8]) {
    let tmp = temp_path(out);
    std::fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
    rename_into_place(&tmp, out);
}

fn rename_into_place(tmp: &Path, out: &Path) {
    if let Err(e) = std::fs::rename(tmp, out) {
        let _ = std::fs::remove_file(tmp);
        panic!("cannot rename {} to {}: {e}", tmp.display(), out.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8] = b"\0asm";
    /// Core module: version 1, layer 0.
    const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
    /// Component: version 0x0d, layer 1.
    const COMPONENT_VERSION: [u8; 4] = [0x0d, 0, 1, 0];

    fn read(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[test]
    fn probe_is_a_core_module_importing_wasi_preview1() {
        let bytes = read(&guest("probe"));
        assert_eq!(&bytes[..4], MAGIC);
        assert_eq!(bytes[4..8], CORE_VERSION);
        assert!(contains(&bytes, "wasi_snapshot_preview1"));
    }

    #[test]
    fn probe_component_has_the_component_encoding() {
        let bytes = read(&component("probe"));
        assert_eq!(&bytes[..4], MAGIC);
        assert_eq!(bytes[4..8], COMPONENT_VERSION);
        assert!(contains(&bytes, "wasi:cli/run"));
    }

    #[test]
    fn concurrent_builds_all_see_a_complete_module() {
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| read(&guest("probe"))))
            .collect();
        let first = read(&guest("probe"));
        for t in threads {
            assert_eq!(t.join().expect("builder thread"), first);
        }
        // An up-to-date output is not rebuilt.
        let path = guest("probe");
        let before = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let again = guest("probe");
        let after = std::fs::metadata(&again).and_then(|m| m.modified()).ok();
        assert_eq!(before, after);
    }

    #[test]
    fn net_component_imports_wasi_sockets_and_is_a_command() {
        let bytes = read(&socket_component("net"));
        assert!(bytes.starts_with(b"\0asm\x0d\0\x01\0"), "a component");
        for name in ["wasi:sockets/tcp@0.2.0", "wasi:cli/run@0.2"] {
            assert!(contains(&bytes, name), "{name}");
        }
    }

    #[test]
    fn p3_guests_are_wasi_0_3_components_without_preview1() {
        for (name, names) in [
            ("cli", ["wasi:cli/run@0.3.0", "wasi:cli/stdout@0.3.0"]),
            ("http", ["wasi:http/handler@0.3.0", "wasi:http/types@0.3.0"]),
        ] {
            let bytes = read(&p3_component(name));
            assert_eq!(bytes[4..8], COMPONENT_VERSION, "{name}");
            for wanted in names {
                assert!(contains(&bytes, wanted), "{name} lacks {wanted}");
            }
            for unwanted in ["wasi_snapshot_preview1", "@0.2."] {
                assert!(!contains(&bytes, unwanted), "{name} has {unwanted}");
            }
        }
    }

    #[test]
    fn inline_wat_guest() {
        let path = wat(
            "guests-unit-inline",
            r#"(module (func (export "_start")) (memory (export "memory") 1))"#,
        );
        let bytes = read(&path);
        assert_eq!(&bytes[..4], MAGIC);
        assert_eq!(bytes[4..8], CORE_VERSION);
    }

    #[test]
    fn hello_example_parses() {
        let path = workspace_root().join("examples/hello/hello.wat");
        let bytes = wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(bytes[4..8], CORE_VERSION);
        for name in [
            "wasi_snapshot_preview1",
            "fd_write",
            "poll_oneoff",
            "_start",
            "memory",
        ] {
            assert!(contains(&bytes, name), "hello.wat lacks {name}");
        }
    }
}
