//! Args, env, exit codes, traps, and components.

use skiff_runtime::wasm::{ExitReason, ModuleKind};

use crate::common::{Host, probe, probe_component};

#[tokio::test]
async fn args_reach_the_guest_and_output_reaches_the_log() {
    let host = Host::start().await;
    let spec = host.spec("echo", &probe(), &["echo", "hello", "wide world"]);
    let info = host.run(&spec).await;
    let exit = info.exit.clone().unwrap();
    assert_eq!(
        (exit.code, exit.reason),
        (0, ExitReason::Completed),
        "{exit:?}"
    );
    assert_eq!(info.kind, Some(ModuleKind::Module));
    assert!(info.digest.starts_with("sha256:"));
    assert_eq!(host.output("echo").0, "hello wide world\n");
}

#[tokio::test]
async fn the_guest_sees_exactly_the_given_env() {
    let host = Host::start().await;
    let mut spec = host.spec("env", &probe(), &["env", "A", "B", "HOME", "PATH"]);
    spec.env = vec![("A".into(), "1".into()), ("B".into(), "two words".into())];
    let info = host.run(&spec).await;
    assert_eq!(info.exit.unwrap().code, 0);
    assert_eq!(
        host.output("env").0,
        "A=1\nB=two words\nHOME unset\nPATH unset\n"
    );
}

#[tokio::test]
async fn exit_codes_and_reasons() {
    let host = Host::start().await;
    for (code, reason) in [
        (0, ExitReason::Completed),
        (3, ExitReason::Error),
        (42, ExitReason::Error),
    ] {
        let id = format!("exit-{code}");
        let info = host
            .run(&host.spec(&id, &probe(), &["exit", &code.to_string()]))
            .await;
        let exit = info.exit.unwrap();
        assert_eq!((exit.code, exit.reason), (code, reason), "{exit:?}");
        assert!(!exit.oom_killed);
        assert!(host.output(&id).1.contains(&format!("exiting {code}")));
    }
    // Bad usage of the probe itself: exit 2.
    let info = host
        .run(&host.spec("usage", &probe(), &["no-such-command"]))
        .await;
    assert_eq!(info.exit.unwrap().code, 2);
}

#[tokio::test]
async fn a_trap_is_exit_134_with_the_trap_in_message_and_log() {
    let host = Host::start().await;
    let info = host.run(&host.spec("crash", &probe(), &["crash"])).await;
    let exit = info.exit.unwrap();
    assert_eq!(
        (exit.code, exit.reason),
        (134, ExitReason::Error),
        "{exit:?}"
    );
    assert!(exit.message.contains("wasm trap"), "{}", exit.message);
    assert!(exit.message.contains("unreachable"), "{}", exit.message);
    let (_, stderr) = host.output("crash");
    assert!(stderr.starts_with("crashing\n"), "{stderr}");
    // The full trap, with its wasm backtrace, follows in the log.
    assert!(stderr.contains("unreachable"), "{stderr}");
}

#[tokio::test]
async fn a_component_runs() {
    let host = Host::start().await;
    let spec = host.spec(
        "c-echo",
        &probe_component(),
        &["echo", "from", "a component"],
    );
    let info = host.run(&spec).await;
    assert_eq!(info.kind, Some(ModuleKind::Component));
    let exit = info.exit.unwrap();
    assert_eq!(
        (exit.code, exit.reason),
        (0, ExitReason::Completed),
        "{exit:?}"
    );
    assert_eq!(host.output("c-echo").0, "from a component\n");

    let mut spec = host.spec("c-env", &probe_component(), &["env", "A", "HOME"]);
    spec.env = vec![("A".into(), "1".into())];
    host.run(&spec).await;
    assert_eq!(host.output("c-env").0, "A=1\nHOME unset\n");

    // Through the preview 1 adapter a non-zero exit is `wasi:cli/exit.exit(err)`: code 1.
    let info = host
        .run(&host.spec("c-exit", &probe_component(), &["exit", "3"]))
        .await;
    let exit = info.exit.unwrap();
    assert_eq!((exit.code, exit.reason), (1, ExitReason::Error), "{exit:?}");

    let info = host
        .run(&host.spec("c-crash", &probe_component(), &["crash"]))
        .await;
    assert_eq!(info.exit.unwrap().code, 134);
}
