//! Modules that cannot run: each error names the file and the cause, is classed as the caller's
//! mistake (what the shim reports as a bad request), and holds no instance slot.

use std::path::Path;

use skiff_runtime::wasm::{Preopen, WasmError};

use crate::common::{Executor, probe, wat};

/// How a refusal is classed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// [`WasmError::is_not_found`]: the module file does not exist.
    NotFound,
    /// [`WasmError::is_invalid_input`]: a bad module, world, import or spec.
    Invalid,
}

fn cause(e: &WasmError) -> Option<Cause> {
    if e.is_not_found() {
        Some(Cause::NotFound)
    } else if e.is_invalid_input() {
        Some(Cause::Invalid)
    } else {
        None
    }
}

/// An executor of one slot: a refused start that kept its slot would show at the next start.
fn one_slot() -> Executor {
    Executor::with(|o| o.max_instances = 1)
}

/// Prepare and start both fail as `expected`, with one message containing every `needles`;
/// the only slot is still free afterwards.
async fn refused(ex: &Executor, module: &Path, expected: Cause, needles: &[&str]) {
    let e = ex.engine.prepare(module).await.err().unwrap();
    assert_eq!(cause(&e), Some(expected), "{e}");
    let text = e.to_string();
    for n in needles {
        assert!(text.contains(n), "{text:?} lacks {n:?}");
    }
    let e = ex
        .engine
        .start(ex.spec("bad", module, &[]))
        .await
        .err()
        .unwrap();
    assert_eq!(cause(&e), Some(expected), "{e}");
    assert_eq!(e.to_string(), text);
    slot_is_free(ex).await;
}

async fn slot_is_free(ex: &Executor) {
    let exit = ex.run(&ex.spec("next", &probe(), &["exit", "0"])).await;
    assert_eq!(exit.code, 0, "{exit:?}");
}

#[tokio::test]
async fn a_missing_file() {
    let ex = one_slot();
    let path = ex.dir.path().join("nope.wasm");
    let expected = format!("reading {}: No such file", path.display());
    refused(&ex, &path, Cause::NotFound, &[&expected]).await;
}

#[tokio::test]
async fn garbage_is_an_invalid_module() {
    let ex = one_slot();
    let path = ex.dir.path().join("garbage.wasm");
    std::fs::write(&path, [0xde, 0xad, 0xbe, 0xef, 0, 1, 2]).unwrap();
    let prefix = format!("invalid wasm module {}: ", path.display());
    refused(&ex, &path, Cause::Invalid, &[&prefix, "bad magic number"]).await;

    // A truncated real module: the wasmtime error says where.
    let bytes = std::fs::read(probe()).unwrap();
    let cut = ex.dir.path().join("truncated.wasm");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let prefix = format!("invalid wasm module {}: ", cut.display());
    refused(&ex, &cut, Cause::Invalid, &[&prefix]).await;
}

#[tokio::test]
async fn a_component_that_is_not_a_command() {
    let ex = one_slot();
    let empty = wat("runtime-empty-component", "(component)");
    refused(
        &ex,
        &empty,
        Cause::Invalid,
        &[
            "does not target world wasi:cli/command",
            "it exports nothing",
        ],
    )
    .await;
    let other = wat(
        "runtime-other-component",
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func (export "hello") (canon lift (core func $i "f"))))"#,
    );
    refused(
        &ex,
        &other,
        Cause::Invalid,
        &[
            "does not target world wasi:cli/command",
            "it exports `hello` but not wasi:cli/run",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_module_without_start() {
    let ex = one_slot();
    let reactor = wat(
        "runtime-no-start",
        r#"(module (func (export "_initialize")))"#,
    );
    let expected = format!(
        "module {} has no _start export (not a WASI command)",
        reactor.display()
    );
    refused(&ex, &reactor, Cause::Invalid, &[&expected]).await;
}

#[tokio::test]
async fn an_unknown_import_is_named() {
    let ex = one_slot();
    let module = wat(
        "runtime-unknown-import",
        r#"(module
            (import "env" "launch_missiles" (func))
            (func (export "_start")))"#,
    );
    refused(&ex, &module, Cause::Invalid, &["env::launch_missiles"]).await;
    let component = wat(
        "runtime-unknown-component-import",
        r#"(component
            (import "skiff:test/missiles" (instance (export "launch" (func))))
            (core module $m (func (export "run") (result i32) i32.const 0))
            (core instance $i (instantiate $m))
            (func $run (result (result)) (canon lift (core func $i "run")))
            (instance $e (export "run" (func $run)))
            (export "wasi:cli/run@0.2.0" (instance $e)))"#,
    );
    refused(&ex, &component, Cause::Invalid, &["skiff:test/missiles"]).await;
}

#[tokio::test]
async fn wat_text_runs() {
    let ex = Executor::new();
    let path = ex.dir.path().join("exit7.wat");
    std::fs::write(
        &path,
        r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") 1)
            (func (export "_start") (call $exit (i32.const 7))))"#,
    )
    .unwrap();
    assert_eq!(ex.run(&ex.spec("wat", &path, &[])).await.code, 7);
}

#[tokio::test]
async fn a_preopen_that_cannot_be_opened_is_named() {
    let ex = one_slot();
    let mut spec = ex.spec("missing-dir", &probe(), &[]);
    spec.preopens = vec![Preopen {
        host: ex.dir.path().join("no-such-dir"),
        guest: "/data".into(),
        read_only: false,
        beneath: None,
    }];
    let e = ex.engine.start(spec.clone()).await.err().unwrap();
    assert_eq!(cause(&e), Some(Cause::Invalid), "{e}");
    assert!(e.to_string().contains("no-such-dir"), "{e}");
    assert!(e.to_string().contains("/data"), "{e}");
    // An empty guest path is refused too, naming the host directory.
    spec.preopens = vec![Preopen {
        host: ex.dir.path().to_path_buf(),
        guest: String::new(),
        read_only: true,
        beneath: None,
    }];
    let e = ex.engine.start(spec).await.err().unwrap();
    assert_eq!(cause(&e), Some(Cause::Invalid), "{e}");
    assert!(e.to_string().contains("empty guest path"), "{e}");
    slot_is_free(&ex).await;
}
