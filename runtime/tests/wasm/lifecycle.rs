//! Instances: handles, kill (of a spinning guest, of one blocked in the host), exit status kept
//! after exit, instance slots, the engine's own report, and dropping a runtime under spinning
//! guests.

use std::time::{Duration, Instant};

use skiff_runtime::wasm::{ExitReason, WasmError};

use crate::common::{Executor, RUN_TIMEOUT, exited, kill, probe};

#[tokio::test]
async fn every_start_is_a_new_instance_and_clones_are_handles_to_it() {
    let ex = Executor::new();
    let spec = ex.spec("twice", &probe(), &["tick", "20", "3"]);
    let first = ex.start(&spec).await;
    let handle = first.clone();
    assert!(handle.is_same(&first));
    // The executor keeps no registry: the same id started again is another instance (a
    // caller that wants one instance per id keeps its own map, as the shim does).
    let mut again = spec.clone();
    again.log_path = ex.log_path("twice-again");
    let second = ex.start(&again).await;
    assert_eq!(second.id(), first.id());
    assert!(!second.is_same(&first));
    assert!(second.started_at() >= first.started_at());

    // A kill through one handle is seen through the other; the second instance runs on.
    first.kill();
    let killed = exited(&handle, Duration::from_secs(5)).await;
    assert_eq!(killed.code, 137, "{killed:?}");
    let ran = exited(&second, RUN_TIMEOUT).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert_eq!(ex.output("twice-again").0, "tick 1\ntick 2\ntick 3\n");
}

/// As a shim runs: a multi-threaded runtime on this 2-core machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_guest_is_killed_within_a_second_and_others_keep_running() {
    let ex = Executor::new();
    let ticker = ex
        .start(&ex.spec("ticker", &probe(), &["tick", "20", "0"]))
        .await;
    let mut spinners = Vec::new();
    for i in 0..3 {
        let spec = ex.spec(&format!("spin-{i}"), &probe(), &["spin"]);
        spinners.push(ex.start(&spec).await);
    }
    // With three guests spinning on two cores, the ticker (every 20 ms) still ticks: each
    // spinner yields at every 10 ms epoch tick.
    let ticks = |ex: &Executor| ex.output("ticker").0.lines().count();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = ticks(&ex);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let during = ticks(&ex) - before;
    eprintln!("ticker: {during} ticks in 1 s beside 3 spinners (at most 50)");
    // Without a driver-friendly yield the ticker waits ~0.6 s per tick (see `limits`).
    assert!(during >= 8, "ticker starved: {during} ticks in 1 s");

    for s in &spinners {
        let began = Instant::now();
        let exit = kill(s).await;
        let took = began.elapsed();
        eprintln!("killed {} (spinning) in {took:?}", s.id());
        assert!(took < Duration::from_secs(1), "kill took {took:?}");
        assert_eq!(
            (exit.code, exit.reason),
            (137, ExitReason::Error),
            "{exit:?}"
        );
        assert_eq!(exit.message, "killed");
        assert!(!exit.oom_killed);
    }
    // The ticker is still running, and still ticking.
    assert!(ticker.status().is_none());
    let after = ticks(&ex);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(ticks(&ex) > after);
    kill(&ticker).await;
}

#[tokio::test]
async fn a_guest_blocked_in_the_host_is_killed_at_once() {
    let ex = Executor::new();
    let sleeper = ex
        .start(&ex.spec("sleeper", &probe(), &["sleep", "0"]))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(sleeper.status().is_none());
    let began = Instant::now();
    let exit = kill(&sleeper).await;
    assert!(
        began.elapsed() < Duration::from_millis(500),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(exit.code, 137);
    // Killing again changes nothing: the same final state.
    let again = kill(&sleeper).await;
    assert_eq!(again, exit);
}

#[tokio::test]
async fn an_exited_instance_keeps_its_status_and_a_late_kill_changes_nothing() {
    let ex = Executor::new();
    let done = ex.start(&ex.spec("done", &probe(), &["exit", "5"])).await;
    let exit = exited(&done, RUN_TIMEOUT).await;
    assert_eq!((exit.code, exit.reason), (5, ExitReason::Error), "{exit:?}");
    assert_eq!(done.status(), Some(exit.clone()));
    // A stop that comes after the exit (a restarted caller's) does not turn it into a kill.
    done.kill();
    assert_eq!(done.wait().await, exit);
    assert_eq!(done.clone().status(), Some(exit));
}

#[tokio::test]
async fn the_engine_reports_its_sizing_and_what_it_prepared() {
    let ex = Executor::with(|o| o.max_instances = 7);
    assert_eq!(ex.engine.prepared_count(), 0);
    assert_eq!(
        ex.run(&ex.spec("one", &probe(), &["exit", "0"])).await.code,
        0
    );
    let options = ex.engine.options();
    assert_eq!(options.max_instances, 7);
    assert_eq!(options.epoch_tick, Duration::from_millis(10));
    assert!(options.memory_init_cow);
    assert_eq!(ex.engine.prepared_count(), 1);
    // The same module again, from memory: still one.
    assert_eq!(
        ex.run(&ex.spec("two", &probe(), &["exit", "0"])).await.code,
        0
    );
    assert_eq!(ex.engine.prepared_count(), 1);
}

#[tokio::test]
async fn instance_slots_run_out_cleanly() {
    let ex = Executor::with(|o| o.max_instances = 2);
    let mut running = Vec::new();
    for id in ["a", "b"] {
        running.push(ex.start(&ex.spec(id, &probe(), &["sleep", "0"])).await);
    }
    let e = ex
        .engine
        .start(ex.spec("c", &probe(), &["sleep", "0"]))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, WasmError::Exhausted(_)), "{e:?}");
    assert!(e.to_string().starts_with("no free instance slot: "), "{e}");
    assert!(!e.is_invalid_input() && !e.is_not_found(), "{e:?}");
    // The refusal took nothing from the running instances.
    assert!(running.iter().all(|i| i.status().is_none()));
    // A slot freed by a kill is usable again once the instance has ended.
    kill(&running[0]).await;
    let c = ex.start(&ex.spec("c", &probe(), &["sleep", "0"])).await;
    assert!(c.status().is_none());
    for i in [&running[1], &c] {
        kill(i).await;
    }
}

/// Dropping a runtime whose tasks run guests (a test that panics, a shim that exits) must not
/// hang on a guest that spins: deadlines keep coming while any store lives.
#[test]
fn a_runtime_with_spinning_guests_can_be_dropped() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (ex, instances) = rt.block_on(async {
            let ex = Executor::new();
            let mut instances = vec![
                ex.start(&ex.spec("t", &probe(), &["tick", "20", "0"]))
                    .await,
            ];
            for i in 0..3 {
                let spec = ex.spec(&format!("s{i}"), &probe(), &["spin"]);
                instances.push(ex.start(&spec).await);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            (ex, instances)
        });
        drop(rt);
        drop(instances);
        drop(ex);
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(10))
        .expect("runtime drop hung with guests spinning");
}
