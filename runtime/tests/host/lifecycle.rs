//! Start (idempotent), kill, remove, list, watch and info over the socket.

use std::time::{Duration, Instant};

use futures::StreamExt;
use skiff_runtime::host::{HostClient, InstanceEvent};
use skiff_runtime::wasm::ExitReason;
use tonic::Code;

use crate::common::{Host, probe};

#[tokio::test]
async fn start_twice_with_one_id_starts_once() {
    let host = Host::start().await;
    let spec = host.spec("once", &probe(), &["tick", "20", "5"]);
    let (first, created) = host.client.start(&spec).await.unwrap();
    assert!(created);
    let (second, created_again) = host.client.start(&spec).await.unwrap();
    assert!(!created_again);
    assert_eq!(second.started_at, first.started_at);

    // Concurrent starts of another id: exactly one creates it.
    let spec2 = host.spec("race", &probe(), &["tick", "20", "5"]);
    let starts = futures::future::join_all((0..8).map(|_| host.client.start(&spec2))).await;
    let created: Vec<bool> = starts.into_iter().map(|r| r.unwrap().1).collect();
    assert_eq!(created.iter().filter(|c| **c).count(), 1, "{created:?}");

    host.wait_exit("once", Duration::from_secs(10)).await;
    host.wait_exit("race", Duration::from_secs(10)).await;
    // One run each: every tick once.
    for id in ["once", "race"] {
        assert_eq!(
            host.output(id).0,
            "tick 1\ntick 2\ntick 3\ntick 4\ntick 5\n",
            "{id}"
        );
    }
    // A Start after exit still returns the exited instance, not a new run.
    let (again, created) = host.client.start(&spec).await.unwrap();
    assert!(!created);
    assert_eq!(again.exit.unwrap().code, 0);
    assert_eq!(host.client.list().await.unwrap().len(), 2);
}

/// As the runtime host runs: a multi-threaded runtime on this 2-core machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_guest_is_killed_within_a_second_and_others_keep_running() {
    let host = Host::start().await;
    let ticker = host.spec("ticker", &probe(), &["tick", "20", "0"]);
    host.client.start(&ticker).await.unwrap();
    let spinners: Vec<_> = (0..3)
        .map(|i| host.spec(&format!("spin-{i}"), &probe(), &["spin"]))
        .collect();
    for s in &spinners {
        host.client.start(s).await.unwrap();
    }
    // With three guests spinning on two cores, the ticker (every 20 ms) still ticks: each
    // spinner yields at every 10 ms epoch tick.
    let ticks = |host: &Host| host.output("ticker").0.lines().count();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = ticks(&host);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let during = ticks(&host) - before;
    eprintln!("ticker: {during} ticks in 1 s beside 3 spinners (at most 50)");
    // Without a driver-friendly yield the ticker waits ~0.6 s per tick (see `limits`).
    assert!(during >= 8, "ticker starved: {during} ticks in 1 s");

    for s in &spinners {
        let began = Instant::now();
        let info = host.client.kill(&s.id).await.unwrap();
        let took = began.elapsed();
        eprintln!("killed {} (spinning) in {took:?}", s.id);
        assert!(took < Duration::from_secs(1), "kill took {took:?}");
        let exit = info.exit.unwrap();
        assert_eq!(
            (exit.code, exit.reason),
            (137, ExitReason::Error),
            "{exit:?}"
        );
        assert_eq!(exit.message, "killed");
    }
    // The ticker is still running, and still ticking.
    let list = host.client.list().await.unwrap();
    assert!(list.iter().find(|i| i.id == "ticker").unwrap().running());
    let after = ticks(&host);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(ticks(&host) > after);
}

#[tokio::test]
async fn a_guest_blocked_in_the_host_is_killed_at_once() {
    let host = Host::start().await;
    host.client
        .start(&host.spec("sleeper", &probe(), &["sleep", "0"]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let began = Instant::now();
    let info = host.client.kill("sleeper").await.unwrap();
    assert!(
        began.elapsed() < Duration::from_millis(500),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(info.exit.unwrap().code, 137);
    // Killing again returns the same final state.
    let again = host.client.kill("sleeper").await.unwrap();
    assert_eq!(again.exit.unwrap().code, 137);
}

#[tokio::test]
async fn exited_instances_stay_until_removed() {
    let host = Host::start().await;
    host.run(&host.spec("done", &probe(), &["exit", "5"])).await;
    // Another client (a restarted agent) still sees the exit code.
    let agent = HostClient::connect(&host.socket).await.unwrap();
    let list = agent.list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].exit.as_ref().unwrap().code, 5);

    let removed = agent.remove("done").await.unwrap();
    assert_eq!(removed.exit.unwrap().code, 5);
    assert!(agent.list().await.unwrap().is_empty());
    let e = agent.remove("done").await.unwrap_err();
    assert_eq!(e.code(), Some(Code::NotFound));
    let e = agent.kill("done").await.unwrap_err();
    assert_eq!(e.code(), Some(Code::NotFound));

    // Removing a running instance kills it first; its id can then be used again.
    host.client
        .start(&host.spec("again", &probe(), &["sleep", "0"]))
        .await
        .unwrap();
    let removed = agent.remove("again").await.unwrap();
    assert_eq!(removed.exit.unwrap().code, 137);
    let (_, created) = host
        .client
        .start(&host.spec("again", &probe(), &["exit", "0"]))
        .await
        .unwrap();
    assert!(created);
}

#[tokio::test]
async fn watch_sends_the_state_then_every_change() {
    let host = Host::start().await;
    host.run(&host.spec("before", &probe(), &["exit", "0"]))
        .await;
    let mut events = Box::pin(host.client.watch().await.unwrap());
    let mut next = async || -> InstanceEvent {
        tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("stream open")
            .unwrap()
    };
    let first = next().await;
    assert_eq!(first.instance.id, "before");
    assert!(!first.instance.running() && !first.removed);

    host.client
        .start(&host.spec("w", &probe(), &["exit", "4"]))
        .await
        .unwrap();
    let started = next().await;
    assert_eq!(started.instance.id, "w");
    assert!(started.instance.running());
    let exited = next().await;
    assert_eq!(exited.instance.id, "w");
    assert_eq!(exited.instance.exit.unwrap().code, 4);

    host.client.remove("before").await.unwrap();
    let removed = next().await;
    assert_eq!(removed.instance.id, "before");
    assert!(removed.removed);
}

#[tokio::test]
async fn info_describes_the_host() {
    let host = Host::start_with(|o| o.max_instances = 7).await;
    host.run(&host.spec("one", &probe(), &["exit", "0"])).await;
    let info = host.client.info().await.unwrap();
    assert_eq!(info.pid, std::process::id());
    assert_eq!(info.instances, 1);
    assert_eq!(info.running, 0);
    let engine = info.engine.unwrap();
    assert_eq!(engine.max_instances, 7);
    assert_eq!(engine.epoch_tick_nanos, 10_000_000);
    assert!(engine.memory_init_cow);
    assert_eq!(engine.prepared_modules, 1);
}

#[tokio::test]
async fn instance_slots_run_out_cleanly() {
    let host = Host::start_with(|o| o.max_instances = 2).await;
    for id in ["a", "b"] {
        host.client
            .start(&host.spec(id, &probe(), &["sleep", "0"]))
            .await
            .unwrap();
    }
    let e = host
        .client
        .start(&host.spec("c", &probe(), &["sleep", "0"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::ResourceExhausted), "{e}");
    assert_eq!(host.client.list().await.unwrap().len(), 2);
    // A freed slot is usable again.
    host.client.remove("a").await.unwrap();
    host.client
        .start(&host.spec("c", &probe(), &["sleep", "0"]))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_second_host_refuses_a_live_socket() {
    let host = Host::start().await;
    let options = skiff_runtime::host::HostOptions {
        socket: host.socket.clone(),
        cache_dir: host.dir.path().join("cache"),
        max_instances: 2,
        ..Default::default()
    };
    let e = skiff_runtime::host::HostServer::bind(&options)
        .await
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("in use by a running runtime host"),
        "{e}"
    );
    // The socket is private to this user.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&host.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A socket file nobody listens on (a host that died) is replaced.
    let stale = host.dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let options = skiff_runtime::host::HostOptions {
        socket: stale.clone(),
        ..options
    };
    let server = skiff_runtime::host::HostServer::bind(&options)
        .await
        .unwrap();
    drop(server);
}

#[tokio::test]
async fn shutdown_ends_watch_streams_and_kills_instances() {
    let host = Host::start().await;
    host.client
        .start(&host.spec("long", &probe(), &["sleep", "0"]))
        .await
        .unwrap();
    let mut events = Box::pin(host.client.watch().await.unwrap());
    assert_eq!(events.next().await.unwrap().unwrap().instance.id, "long");
    let socket = host.socket.clone();
    tokio::time::timeout(Duration::from_secs(5), host.stop())
        .await
        .expect("shutdown with an open watch stream");
    // The stream ends (cleanly or with an error), and the socket is gone.
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = events.next().await {}
    })
    .await;
    assert!(rest.is_ok(), "watch stream still open after shutdown");
    assert!(!socket.exists());
}

/// Dropping a runtime whose tasks run guests (a test that panics, a host that exits) must not
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
        let host = rt.block_on(async {
            let host = Host::start().await;
            host.client
                .start(&host.spec("t", &probe(), &["tick", "20", "0"]))
                .await
                .unwrap();
            for i in 0..3 {
                host.client
                    .start(&host.spec(&format!("s{i}"), &probe(), &["spin"]))
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            host
        });
        drop(rt);
        drop(host);
        let _ = done.send(());
    });
    finished
        .recv_timeout(Duration::from_secs(10))
        .expect("runtime drop hung with guests spinning");
}
