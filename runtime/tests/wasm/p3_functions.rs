//! WASI 0.3 functions (`wasi:http/handler@0.3.0`, the `p3/http` guest) through the same server
//! as 0.2 ones: served in the spec's network namespace with its limits, counters and logs, and
//! several requests at once in one instance (the guest lifts `handle` async). Requests come from
//! curl inside the namespace (`nsenter --net`), as in `functions.rs`.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_runtime::wasm::{HttpOptions, Role, Wasi, WasmSpec};
use skiff_tests::guests::p3_component;

use crate::common::{Executor, kill};

/// A network namespace made for the test, loopback up; deleted on drop.
struct TestNetns(String);

impl TestNetns {
    fn new(letter: char) -> Self {
        let ns = TestNetns(format!("skiff-p3-{}-{letter}", std::process::id()));
        let _ = Command::new("ip").args(["netns", "delete", &ns.0]).output();
        for args in [
            vec!["netns", "add", &ns.0],
            vec!["-n", &ns.0, "link", "set", "lo", "up"],
        ] {
            let out = Command::new("ip").args(&args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}");
        }
        ns
    }

    fn path(&self) -> std::path::PathBuf {
        std::path::Path::new("/run/netns").join(&self.0)
    }

    /// GET `path` on `port` inside the namespace: (HTTP status, body).
    fn get(&self, port: u16, path: &str) -> (u16, String) {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path().display()))
            .args([
                "--",
                "curl",
                "-s",
                "--max-time",
                "20",
                "-w",
                "\n%{http_code}",
            ])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .output();
    }
}

fn spec(ex: &Executor, id: &str, ns: &TestNetns, http: HttpOptions) -> WasmSpec {
    WasmSpec {
        id: id.to_string(),
        module_path: p3_component("http"),
        env: vec![("GREETING".into(), "hi".into())],
        netns: Some(ns.path()),
        log_path: ex.log_path(id),
        http,
        ..WasmSpec::default()
    }
}

fn port(port: u16) -> HttpOptions {
    HttpOptions {
        ports: vec![port],
        ..HttpOptions::default()
    }
}

/// GETs `paths` at once, each from a thread of its own: (status, body) in order.
async fn get_all(ns: &Arc<TestNetns>, port: u16, paths: Vec<String>) -> Vec<(u16, String)> {
    let ns = ns.clone();
    tokio::task::spawn_blocking(move || {
        std::thread::scope(|s| {
            let threads: Vec<_> = paths
                .iter()
                .map(|p| {
                    let ns = &ns;
                    s.spawn(move || ns.get(port, p))
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        })
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p3_function_serves_like_a_p2_one() {
    let ex = Executor::new();
    let prepared = ex
        .engine
        .prepare(&p3_component("http"))
        .await
        .unwrap()
        .prepared;
    assert_eq!(
        (prepared.role(), prepared.wasi()),
        (Role::Function, Wasi::P3)
    );
    let ns = Arc::new(TestNetns::new('a'));
    let instance = ex.start(&spec(&ex, "p3-fn-a", &ns, port(18380))).await;
    assert!(instance.is_function());
    let got = get_all(
        &ns,
        18380,
        vec!["/".into(), "/env/GREETING".into(), "/env/HOME".into()],
    )
    .await;
    assert_eq!(got[0], (200, "hello from a WASI 0.3 function\n".into()));
    assert_eq!(got[1], (200, "GREETING=hi\n".into()));
    assert_eq!(got[2], (200, "HOME unset\n".into()));
    // A trap is a 500, and the function keeps serving.
    let got = get_all(&ns, 18380, vec!["/trap".into()]).await;
    assert_eq!(got[0].0, 500, "{got:?}");
    let got = get_all(&ns, 18380, vec!["/again".into()]).await;
    assert_eq!(got[0], (200, "hello from a WASI 0.3 function\n".into()));

    // A request leaves the figures once its body has ended, just after the client has it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let stats = loop {
        let stats = instance.function_stats().unwrap();
        if stats.in_flight == 0 || Instant::now() > deadline {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((stats.requests_total, stats.errors), (5, 1), "{stats:?}");
    assert_eq!(stats.in_flight, 0);
    let status = kill(&instance).await;
    assert_eq!(status.code, 137);
    // The guest's stdout and the trap reached the container's log.
    let (stdout, stderr) = ex.output("p3-fn-a");
    for line in ["handled /\n", "handled /env/GREETING\n", "handled /again\n"] {
        assert!(stdout.contains(line), "{line:?} not in {stdout:?}");
    }
    assert!(stderr.contains("unreachable"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p3_function_times_out_with_504_and_keeps_serving() {
    let ex = Executor::new();
    let ns = Arc::new(TestNetns::new('b'));
    let http = HttpOptions {
        timeout: Duration::from_millis(500),
        ..port(18381)
    };
    let instance = ex.start(&spec(&ex, "p3-fn-b", &ns, http)).await;
    let got = get_all(&ns, 18381, vec!["/sleep/5000".into(), "/sleep/10".into()]).await;
    assert_eq!(got[0].0, 504, "{got:?}");
    assert_eq!(got[1].0, 200, "{got:?}");
    assert!(got[1].1.starts_with("slept 10 ms"), "{got:?}");
    let got = get_all(&ns, 18381, vec!["/".into()]).await;
    assert_eq!(got[0].0, 200, "{got:?}");
    let stats = instance.function_stats().unwrap();
    assert_eq!(stats.timed_out, 1, "{stats:?}");

    // A guest that loops is stopped at its timeout: its instance goes (no memory left).
    let got = get_all(&ns, 18381, vec!["/spin".into()]).await;
    assert_eq!(got[0].0, 504, "{got:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while instance.usage().memory_bytes > 0 {
        assert!(
            Instant::now() < deadline,
            "the looping instance still holds {} bytes",
            instance.usage().memory_bytes
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = get_all(&ns, 18381, vec!["/".into()]).await;
    assert_eq!(got[0].0, 200, "{got:?}");
    kill(&instance).await;
}

/// The guest's `handle` is lifted async: requests that overlap share an instance. Each
/// `/sleep` answer says how many requests its instance had taken when it began (`request K of
/// its instance`): past 1, requests ran together in one instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_requests_share_one_p3_instance() {
    let ex = Executor::new();
    let ns = Arc::new(TestNetns::new('c'));
    let instance = ex.start(&spec(&ex, "p3-fn-c", &ns, port(18382))).await;
    let n = 8;
    let sleep_ms = 400;
    let began = Instant::now();
    let got = get_all(&ns, 18382, vec![format!("/sleep/{sleep_ms}"); n]).await;
    let elapsed = began.elapsed();
    let mut ks = Vec::new();
    for (code, body) in &got {
        assert_eq!(*code, 200, "{got:?}");
        let k: u32 = body
            .split("request ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|k| k.parse().ok())
            .unwrap_or_else(|| panic!("no count in {body:?}"));
        ks.push(k);
    }
    ks.sort_unstable();
    let stats = instance.function_stats().unwrap();
    eprintln!(
        "{n} overlapping /sleep/{sleep_ms} requests: {elapsed:?}; per-instance counts {ks:?}; {stats:?}"
    );
    assert!(
        *ks.last().unwrap() > 1,
        "no two requests shared an instance: {ks:?}"
    );
    assert_eq!(stats.requests_total, n as u64);
    kill(&instance).await;
}

/// GETs `path` `n` times, 300 ms apart (time for the guest to begin), all overlapping (each takes longer than the spread):
/// the per-instance counts of the answers, sorted.
async fn staggered_counts(ns: &Arc<TestNetns>, port: u16, path: &str, n: usize) -> Vec<u32> {
    let ns = ns.clone();
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        std::thread::scope(|s| {
            let threads: Vec<_> = (0..n)
                .map(|i| {
                    let (ns, path) = (&ns, &path);
                    s.spawn(move || {
                        std::thread::sleep(Duration::from_millis(300 * i as u64));
                        ns.get(port, path)
                    })
                })
                .collect();
            let mut ks: Vec<u32> = threads
                .into_iter()
                .map(|t| {
                    let (code, body) = t.join().unwrap();
                    assert_eq!(code, 200, "{body}");
                    body.split("request ")
                        .nth(1)
                        .and_then(|rest| rest.split(' ').next())
                        .and_then(|k| k.parse().ok())
                        .unwrap_or_else(|| panic!("no count in {body:?}"))
                })
                .collect();
            ks.sort_unstable();
            ks
        })
    })
    .await
    .unwrap()
}

/// The component decides: the same overlapping requests share one instance while the guest
/// lets them (`/sleep`), and get an instance each while it holds backpressure on (`/alone`:
/// backpressure.inc for the length of the request), which wasmtime reports as not ready for a
/// concurrent call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_p3_instance_takes_overlapping_requests_only_while_the_guest_allows() {
    let ex = Executor::new();
    let ns = Arc::new(TestNetns::new('d'));
    let instance = ex.start(&spec(&ex, "p3-fn-d", &ns, port(18383))).await;
    let shared = staggered_counts(&ns, 18383, "/sleep/2000", 4).await;
    assert_eq!(shared, [1, 2, 3, 4]);
    assert_eq!(instance.function_stats().unwrap().instantiations, 1);
    let alone = staggered_counts(&ns, 18383, "/alone/2000", 4).await;
    assert_eq!(alone, [1, 1, 1, 1]);
    assert_eq!(instance.function_stats().unwrap().instantiations, 5);
    kill(&instance).await;
}
