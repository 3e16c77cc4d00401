//! WASI 0.3 commands (`wasi:cli@0.3.0`, component-model async) beside 0.2 and preview 1: args,
//! env, stdout and stderr into the log, exit codes, preopens, traps, kills and bad components.

use std::time::Duration;

use skiff_runtime::wasm::{ExitReason, ModuleKind, Preopen, Wasi};
use skiff_tests::guests::p3_component;

use crate::common::{Executor, RUN_TIMEOUT, exited, kill, probe, probe_component};

fn cli() -> std::path::PathBuf {
    p3_component("cli")
}

#[tokio::test]
async fn a_p3_command_prints_its_args_and_completes() {
    let ex = Executor::new();
    let prepared = ex.engine.prepare(&cli()).await.unwrap().prepared;
    assert_eq!(prepared.kind(), ModuleKind::Component);
    assert_eq!(prepared.wasi(), Wasi::P3);
    let spec = ex.spec("p3-echo", &cli(), &["echo", "hello", "wide world"]);
    let instance = ex.start(&spec).await;
    let exit = exited(&instance, RUN_TIMEOUT).await;
    assert_eq!(
        (exit.code, exit.reason),
        (0, ExitReason::Completed),
        "{exit:?}"
    );
    assert_eq!(
        ex.output("p3-echo"),
        ("hello wide world\n".into(), "".into())
    );
}

#[tokio::test]
async fn the_wasi_follows_the_run_export() {
    let ex = Executor::new();
    for (path, wasi) in [
        (probe(), Wasi::Preview1),
        (probe_component(), Wasi::P2),
        (cli(), Wasi::P3),
    ] {
        let prepared = ex.engine.prepare(&path).await.unwrap().prepared;
        assert_eq!(prepared.wasi(), wasi, "{}", path.display());
    }
}

#[tokio::test]
async fn a_p3_command_sees_exactly_the_given_env() {
    let ex = Executor::new();
    let mut spec = ex.spec("p3-env", &cli(), &["env", "A", "B", "HOME", "PATH"]);
    spec.env = vec![("A".into(), "1".into()), ("B".into(), "two words".into())];
    assert_eq!(ex.run(&spec).await.code, 0);
    assert_eq!(
        ex.output("p3-env").0,
        "A=1\nB=two words\nHOME unset\nPATH unset\n"
    );
}

#[tokio::test]
async fn p3_exit_codes_and_reasons() {
    let ex = Executor::new();
    for (code, reason) in [
        (0, ExitReason::Completed),
        (3, ExitReason::Error),
        (42, ExitReason::Error),
    ] {
        let id = format!("p3-exit-{code}");
        let exit = ex
            .run(&ex.spec(&id, &cli(), &["exit", &code.to_string()]))
            .await;
        assert_eq!((exit.code, exit.reason), (code, reason), "{exit:?}");
        assert_eq!(ex.output(&id).1, format!("exiting {code}\n"));
    }
    // run returning err is exit code 1, as for 0.2.
    let exit = ex.run(&ex.spec("p3-fail", &cli(), &["fail"])).await;
    assert_eq!((exit.code, exit.reason), (1, ExitReason::Error), "{exit:?}");
    assert_eq!(ex.output("p3-fail").1, "failing\n");
    // Bad usage of the guest itself: exit 2, the usage on stderr.
    let exit = ex.run(&ex.spec("p3-usage", &cli(), &["nope"])).await;
    assert_eq!(exit.code, 2, "{exit:?}");
    assert!(ex.output("p3-usage").1.starts_with("usage: cli"));
}

#[tokio::test]
async fn a_p3_trap_is_exit_134_with_the_trap_in_the_log() {
    let ex = Executor::new();
    let exit = ex.run(&ex.spec("p3-crash", &cli(), &["crash"])).await;
    assert_eq!(
        (exit.code, exit.reason),
        (134, ExitReason::Error),
        "{exit:?}"
    );
    assert!(exit.message.contains("wasm trap"), "{}", exit.message);
    let (_, stderr) = ex.output("p3-crash");
    assert!(stderr.starts_with("crashing\n"), "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
}

#[tokio::test]
async fn a_p3_command_reads_its_preopens_only() {
    let ex = Executor::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("hello.txt"), "hi from a preopen\n").unwrap();
    let preopen = Preopen {
        host: data.path().to_path_buf(),
        guest: "/data".into(),
        read_only: true,
        beneath: None,
    };

    let mut spec = ex.spec("p3-ls", &cli(), &["ls"]);
    spec.preopens = vec![preopen.clone()];
    assert_eq!(ex.run(&spec).await.code, 0);
    assert_eq!(ex.output("p3-ls").0, "/data\n");

    let mut spec = ex.spec("p3-cat", &cli(), &["cat", "/data", "hello.txt"]);
    spec.preopens = vec![preopen.clone()];
    assert_eq!(ex.run(&spec).await.code, 0);
    assert_eq!(ex.output("p3-cat").0, "hi from a preopen\n");

    // Out of the preopen: refused by wasmtime-wasi (not-permitted), exit 1.
    let mut spec = ex.spec("p3-escape", &cli(), &["cat", "/data", "../../etc/passwd"]);
    spec.preopens = vec![preopen];
    let exit = ex.run(&spec).await;
    assert_eq!(exit.code, 1, "{exit:?}");
    assert!(
        ex.output("p3-escape")
            .1
            .starts_with("cat: open-at: error code"),
        "{:?}",
        ex.output("p3-escape")
    );

    let spec = ex.spec("p3-none", &cli(), &["cat", "/data", "hello.txt"]);
    assert_eq!(ex.run(&spec).await.code, 1);
    assert_eq!(ex.output("p3-none").1, "cat: no preopen named /data\n");
}

#[tokio::test]
async fn a_p3_command_waiting_on_the_clock_is_killed() {
    let ex = Executor::new();
    let spec = ex.spec("p3-sleep-short", &cli(), &["sleep", "20"]);
    assert_eq!(ex.run(&spec).await.code, 0);
    assert_eq!(ex.output("p3-sleep-short").0, "slept\n");

    let spec = ex.spec("p3-sleep", &cli(), &["sleep", "60000"]);
    let instance = ex.start(&spec).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(instance.status().is_none(), "ended early");
    let exit = kill(&instance).await;
    assert_eq!((exit.code, exit.message.as_str()), (137, "killed"));
}

#[tokio::test]
async fn a_spinning_p3_command_yields_and_is_killed() {
    let ex = Executor::new();
    let spin = ex.start(&ex.spec("p3-spin", &cli(), &["spin"])).await;
    // It yields at every epoch tick: another guest runs to its end beside it.
    let exit = ex
        .run(&ex.spec("p3-beside", &cli(), &["echo", "beside"]))
        .await;
    assert_eq!(exit.code, 0, "{exit:?}");
    assert_eq!(ex.output("p3-beside").0, "beside\n");
    assert!(
        spin.status().is_none(),
        "the spinner ended: {:?}",
        spin.status()
    );
    let exit = kill(&spin).await;
    assert_eq!((exit.code, exit.message.as_str()), (137, "killed"));
}

/// A network namespace with only its loopback up; deleted on drop.
struct TestNetns(String);

impl TestNetns {
    fn new() -> Self {
        let ns = TestNetns(format!("skiff-p3-{}-dns", std::process::id()));
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &ns.0])
            .output();
        for args in [
            vec!["netns", "add", &ns.0],
            vec!["-n", &ns.0, "link", "set", "lo", "up"],
        ] {
            let out = std::process::Command::new("ip")
                .args(&args)
                .output()
                .unwrap();
            assert!(out.status.success(), "ip {args:?}: {out:?}");
        }
        ns
    }

    fn path(&self) -> std::path::PathBuf {
        std::path::Path::new("/run/netns").join(&self.0)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.0])
            .output();
    }
}

/// WASI 0.3 name lookups ask the spec's resolver (its search path included) from the guest's
/// namespace, as 0.2 ones do, and none without outbound sockets.
#[tokio::test]
async fn p3_lookups_ask_the_spec_resolver() {
    use skiff_runtime::wasm::{Network, Resolver};
    let ns = TestNetns::new();
    let upstream = skiff_tests::dns::Upstream::start_in(
        Some(&ns.path()),
        "127.0.0.1".parse().unwrap(),
        &[(
            "web.shop.svc.cluster.local.",
            std::net::Ipv4Addr::new(10, 96, 0, 10),
        )],
    );
    let ex = Executor::new();
    let network = Network {
        allow_outbound: true,
        resolver: Some(Resolver::parse(
            "search shop.svc.cluster.local\nnameserver 127.0.0.1\noptions ndots:5 timeout:2\n",
        )),
        ..Network::default()
    };
    let mut spec = ex.spec(
        "p3-lookup",
        &cli(),
        &["lookup", "web", "missing.example", "10.1.2.3"],
    );
    spec.network = network.clone();
    spec.netns = Some(ns.path());
    let exit = ex.run(&spec).await;
    let (out, err) = ex.output("p3-lookup");
    assert_eq!(
        out, "web 10.96.0.10\nmissing.example error: name-unresolvable\n10.1.2.3 10.1.2.3\n",
        "{err}"
    );
    assert_eq!(exit.code, 1, "one name did not resolve: {exit:?}");
    assert!(
        upstream
            .asked()
            .contains(&"web.shop.svc.cluster.local.".to_string()),
        "{:?}",
        upstream.asked()
    );

    let mut spec = ex.spec("p3-denied", &cli(), &["lookup", "web"]);
    spec.network = Network {
        allow_outbound: false,
        allow_bind_ports: vec![18390],
        ..network
    };
    spec.netns = Some(ns.path());
    assert_eq!(ex.run(&spec).await.code, 1);
    assert_eq!(
        ex.output("p3-denied").0,
        "web error: permanent-resolver-failure\n"
    );
}

/// A component importing another WASI 0.3 draft than the host's 0.3.0 (as third-party toolchains
/// may build) fails to prepare, naming the import and why.
#[tokio::test]
async fn another_p3_draft_is_refused_naming_the_import() {
    let draft = crate::common::wat(
        "p3-draft-import",
        r#"(component
            (import "wasi:cli/environment@0.3.0-rc-2025-09-16" (instance
              (export "get-arguments" (func (result (list string))))))
            (core module $m (func (export "run") (result i32) i32.const 0))
            (core instance $i (instantiate $m))
            (func $run (result (result)) (canon lift (core func $i "run")))
            (instance $cli (export "run" (func $run)))
            (export "wasi:cli/run@0.3.0" (instance $cli)))"#,
    );
    let ex = Executor::new();
    let e = match ex.engine.prepare(&draft).await {
        Ok(_) => panic!("a draft import was linked"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("imports what this host does not provide"), "{e}");
    assert!(
        e.contains(
            "`wasi:cli/environment@0.3.0-rc-2025-09-16` targets another WASI 0.3 draft than this host's wasi:*@0.3.0"
        ),
        "{e}"
    );
}
