//! Modules that cannot run: each error names the file and the cause, and leaves no instance.

use std::path::Path;

use tonic::Code;

use crate::common::{Host, probe, wat};

/// Prepare and Start both fail with `code` and a message containing every `needles`; nothing
/// is left listed.
async fn refused(host: &Host, module: &Path, code: Code, needles: &[&str]) {
    let e = host.client.prepare(module).await.unwrap_err();
    assert_eq!(e.code(), Some(code), "{e}");
    let text = e.to_string();
    for n in needles {
        assert!(text.contains(n), "{text:?} lacks {n:?}");
    }
    let spec = host.spec("bad", module, &[]);
    let e = host.client.start(&spec).await.unwrap_err();
    assert_eq!(e.code(), Some(code), "{e}");
    assert_eq!(e.to_string(), text);
    assert!(host.client.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_file() {
    let host = Host::start().await;
    let path = host.dir.path().join("nope.wasm");
    let expected = format!("reading {}: No such file", path.display());
    refused(&host, &path, Code::NotFound, &[&expected]).await;
}

#[tokio::test]
async fn garbage_is_an_invalid_module() {
    let host = Host::start().await;
    let path = host.dir.path().join("garbage.wasm");
    std::fs::write(&path, [0xde, 0xad, 0xbe, 0xef, 0, 1, 2]).unwrap();
    let prefix = format!("invalid wasm module {}: ", path.display());
    refused(
        &host,
        &path,
        Code::InvalidArgument,
        &[&prefix, "bad magic number"],
    )
    .await;

    // A truncated real module: the wasmtime error says where.
    let bytes = std::fs::read(probe()).unwrap();
    let cut = host.dir.path().join("truncated.wasm");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let prefix = format!("invalid wasm module {}: ", cut.display());
    refused(&host, &cut, Code::InvalidArgument, &[&prefix]).await;
}

#[tokio::test]
async fn a_component_that_is_not_a_command() {
    let host = Host::start().await;
    let empty = wat("runtime-empty-component", "(component)");
    refused(
        &host,
        &empty,
        Code::InvalidArgument,
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
        &host,
        &other,
        Code::InvalidArgument,
        &[
            "does not target world wasi:cli/command",
            "it exports `hello` but not wasi:cli/run",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_module_without_start() {
    let host = Host::start().await;
    let reactor = wat(
        "runtime-no-start",
        r#"(module (func (export "_initialize")))"#,
    );
    let expected = format!(
        "module {} has no _start export (not a WASI command)",
        reactor.display()
    );
    refused(&host, &reactor, Code::InvalidArgument, &[&expected]).await;
}

#[tokio::test]
async fn an_unknown_import_is_named() {
    let host = Host::start().await;
    let module = wat(
        "runtime-unknown-import",
        r#"(module
            (import "env" "launch_missiles" (func))
            (func (export "_start")))"#,
    );
    refused(
        &host,
        &module,
        Code::InvalidArgument,
        &["env::launch_missiles"],
    )
    .await;
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
    refused(
        &host,
        &component,
        Code::InvalidArgument,
        &["skiff:test/missiles"],
    )
    .await;
}

#[tokio::test]
async fn wat_text_runs() {
    let host = Host::start().await;
    let path = host.dir.path().join("exit7.wat");
    std::fs::write(
        &path,
        r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") 1)
            (func (export "_start") (call $exit (i32.const 7))))"#,
    )
    .unwrap();
    let info = host.run(&host.spec("wat", &path, &[])).await;
    assert_eq!(info.exit.unwrap().code, 7);
}

#[tokio::test]
async fn a_bad_spec_names_the_field() {
    let host = Host::start().await;
    let mut spec = host.spec("", &probe(), &[]);
    let e = host.client.start(&spec).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::InvalidArgument));
    assert_eq!(e.to_string(), "spec.id: required");
    spec.id = "missing-dir".into();
    spec.preopens = vec![skiff_runtime::wasm::Preopen {
        host: host.dir.path().join("no-such-dir"),
        guest: "/data".into(),
        read_only: false,
    }];
    let e = host.client.start(&spec).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::InvalidArgument), "{e}");
    assert!(e.to_string().contains("no-such-dir"), "{e}");
    assert!(host.client.list().await.unwrap().is_empty());
}
