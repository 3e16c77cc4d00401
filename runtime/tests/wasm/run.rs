//! Args, env, exit codes, traps, and components.

use skiff_runtime::wasm::{ExitReason, ModuleKind};

use crate::common::{Executor, RUN_TIMEOUT, exited, probe, probe_component};

#[tokio::test]
async fn args_reach_the_guest_and_output_reaches_the_log() {
    let ex = Executor::new();
    let spec = ex.spec("echo", &probe(), &["echo", "hello", "wide world"]);
    let instance = ex.start(&spec).await;
    assert_eq!(instance.kind(), ModuleKind::Module);
    assert!(instance.digest().starts_with("sha256:"));
    let exit = exited(&instance, RUN_TIMEOUT).await;
    assert_eq!(
        (exit.code, exit.reason),
        (0, ExitReason::Completed),
        "{exit:?}"
    );
    assert!(exit.success() && exit.message.is_empty(), "{exit:?}");
    assert!(exit.finished_at >= instance.started_at());
    assert_eq!(ex.output("echo").0, "hello wide world\n");
}

#[tokio::test]
async fn the_guest_sees_exactly_the_given_env() {
    let ex = Executor::new();
    let mut spec = ex.spec("env", &probe(), &["env", "A", "B", "HOME", "PATH"]);
    spec.env = vec![("A".into(), "1".into()), ("B".into(), "two words".into())];
    assert_eq!(ex.run(&spec).await.code, 0);
    assert_eq!(
        ex.output("env").0,
        "A=1\nB=two words\nHOME unset\nPATH unset\n"
    );
}

#[tokio::test]
async fn exit_codes_and_reasons() {
    let ex = Executor::new();
    for (code, reason) in [
        (0, ExitReason::Completed),
        (3, ExitReason::Error),
        (42, ExitReason::Error),
    ] {
        let id = format!("exit-{code}");
        let exit = ex
            .run(&ex.spec(&id, &probe(), &["exit", &code.to_string()]))
            .await;
        assert_eq!((exit.code, exit.reason), (code, reason), "{exit:?}");
        assert!(!exit.oom_killed);
        assert!(ex.output(&id).1.contains(&format!("exiting {code}")));
    }
    // Bad usage of the probe itself: exit 2.
    let exit = ex
        .run(&ex.spec("usage", &probe(), &["no-such-command"]))
        .await;
    assert_eq!(exit.code, 2, "{exit:?}");
}

#[tokio::test]
async fn a_trap_is_exit_134_with_the_trap_in_message_and_log() {
    let ex = Executor::new();
    let exit = ex.run(&ex.spec("crash", &probe(), &["crash"])).await;
    assert_eq!(
        (exit.code, exit.reason),
        (134, ExitReason::Error),
        "{exit:?}"
    );
    assert!(exit.message.contains("wasm trap"), "{}", exit.message);
    assert!(exit.message.contains("unreachable"), "{}", exit.message);
    let (_, stderr) = ex.output("crash");
    assert!(stderr.starts_with("crashing\n"), "{stderr}");
    // The full trap, with its wasm backtrace, follows in the log.
    assert!(stderr.contains("unreachable"), "{stderr}");
}

#[tokio::test]
async fn a_component_runs() {
    let ex = Executor::new();
    let spec = ex.spec(
        "c-echo",
        &probe_component(),
        &["echo", "from", "a component"],
    );
    let instance = ex.start(&spec).await;
    assert_eq!(instance.kind(), ModuleKind::Component);
    let exit = exited(&instance, RUN_TIMEOUT).await;
    assert_eq!(
        (exit.code, exit.reason),
        (0, ExitReason::Completed),
        "{exit:?}"
    );
    assert_eq!(ex.output("c-echo").0, "from a component\n");

    let mut spec = ex.spec("c-env", &probe_component(), &["env", "A", "HOME"]);
    spec.env = vec![("A".into(), "1".into())];
    assert_eq!(ex.run(&spec).await.code, 0);
    assert_eq!(ex.output("c-env").0, "A=1\nHOME unset\n");

    // Through the preview 1 adapter a non-zero exit is `wasi:cli/exit.exit(err)`: code 1.
    let exit = ex
        .run(&ex.spec("c-exit", &probe_component(), &["exit", "3"]))
        .await;
    assert_eq!((exit.code, exit.reason), (1, ExitReason::Error), "{exit:?}");

    let exit = ex
        .run(&ex.spec("c-crash", &probe_component(), &["crash"]))
        .await;
    assert_eq!(exit.code, 134, "{exit:?}");
}
