//! Functions (`wasi:http/incoming-handler` components, the `http` guest): served per request in
//! the spec's network namespace, with their limits, outbound allowlist, logs, counters and a
//! graceful stop. Requests come from curl inside the namespace (`nsenter --net`).

use std::process::Command;
use std::time::{Duration, Instant};

use skiff_runtime::wasm::{ExitReason, HttpOptions, Instance, Role, WasmError, WasmSpec};

use crate::common::{Executor, exited, kill};

fn http() -> std::path::PathBuf {
    skiff_tests::guests::function_component("http")
}

/// A network namespace made for the test, loopback up; deleted on drop.
struct TestNetns(String);

impl TestNetns {
    fn new(letter: char) -> Self {
        let ns = TestNetns(format!("skiff-fn-{}-{letter}", std::process::id()));
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

    /// curl `args` inside the namespace: (HTTP status, body, headers).
    fn curl(&self, args: &[&str]) -> (u16, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let headers = dir.path().join("h");
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path().display()))
            .args(["--", "curl", "-s", "--max-time", "20", "-D"])
            .arg(&headers)
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let headers = std::fs::read_to_string(&headers).unwrap_or_default();
        (code.trim().parse().unwrap_or(0), body.to_string(), headers)
    }

    fn get(&self, port: u16, path: &str) -> (u16, String) {
        let (code, body, _) = self.curl(&[&format!("http://127.0.0.1:{port}{path}")]);
        (code, body)
    }
}

/// Raw TCP clients inside a namespace: a thread that joined it and opens connections on demand.
struct RawClients(std::sync::mpsc::Sender<(u16, std::sync::mpsc::Sender<std::net::TcpStream>)>);

impl RawClients {
    fn new(ns: &TestNetns) -> Self {
        let file = std::fs::File::open(ns.path()).unwrap();
        let (tx, rx) =
            std::sync::mpsc::channel::<(u16, std::sync::mpsc::Sender<std::net::TcpStream>)>();
        std::thread::spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            for (port, back) in rx {
                let _ = back.send(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
            }
        });
        RawClients(tx)
    }

    /// A connection to `port`, with a read timeout long enough for any server timeout here.
    fn connect(&self, port: u16) -> std::net::TcpStream {
        let (tx, rx) = std::sync::mpsc::channel();
        self.0.send((port, tx)).unwrap();
        let stream = rx.recv().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
    }
}

/// Reads until the server closes `stream`: what it sent, or an error if it never closed it.
fn until_closed(stream: &mut std::net::TcpStream) -> std::io::Result<String> {
    use std::io::Read;
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => Ok(String::from_utf8_lossy(&got).into_owned()),
        // A reset is a close too.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            Ok(String::from_utf8_lossy(&got).into_owned())
        }
        Err(e) => Err(e),
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .output();
    }
}

fn function_spec(ex: &Executor, id: &str, ns: &TestNetns, http: HttpOptions) -> WasmSpec {
    WasmSpec {
        id: id.to_string(),
        module_path: self::http(),
        env: vec![("GREETING".into(), "hi".into())],
        netns: Some(ns.path()),
        log_path: ex.log_path(id),
        http,
        ..WasmSpec::default()
    }
}

fn options(port: u16) -> HttpOptions {
    HttpOptions {
        ports: vec![port],
        ..HttpOptions::default()
    }
}

/// The function's figures once no request is in flight (a guest finishes just after its client
/// has the whole response).
async fn settled(instance: &Instance) -> skiff_runtime::wasm::FunctionStats {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = instance.function_stats().unwrap();
        if stats.in_flight == 0 || Instant::now() > deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `f` on a thread (curl blocks) and awaits it.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_serves_each_request_with_a_fresh_instance_and_logs_its_output() {
    let ex = Executor::new();
    let prepared = ex.engine.prepare(&http()).await.unwrap().prepared;
    assert_eq!(prepared.role(), Role::Function);
    let ns = std::sync::Arc::new(TestNetns::new('a'));
    let instance = ex
        .start(&function_spec(&ex, "fn-a", &ns, options(18080)))
        .await;
    assert!(instance.is_function());
    let n = ns.clone();
    let (hello, echo, env, missing) = blocking(move || {
        (
            n.get(18080, "/"),
            n.curl(&["--data-binary", "ping-pong", "http://127.0.0.1:18080/echo"]),
            n.get(18080, "/env"),
            n.get(18080, "/nope"),
        )
    })
    .await;
    assert_eq!(hello, (200, "hello from a skiff function\n".into()));
    assert_eq!((echo.0, echo.1.as_str()), (200, "ping-pong"));
    assert_eq!(env, (200, "GREETING=hi\n".into()));
    assert_eq!(missing.0, 404);
    // HTTP/1.0 without a Host header: served, as from this listener.
    let n = ns.clone();
    let old = blocking(move || n.curl(&["-0", "-H", "Host:", "http://127.0.0.1:18080/"])).await;
    assert_eq!(
        (old.0, old.1.as_str()),
        (200, "hello from a skiff function\n")
    );
    // A probe's request is served, but left out of the figures autoscaling reads.
    let n = ns.clone();
    let probe =
        blocking(move || n.curl(&["-A", "kube-probe/1.31", "http://127.0.0.1:18080/"])).await;
    assert_eq!(probe.0, 200);
    let stats = settled(&instance).await;
    assert_eq!((stats.requests_total, stats.instantiations), (5, 6));
    assert_eq!(
        (stats.in_flight, stats.errors),
        (0, 0),
        "{:?}",
        ex.output("fn-a")
    );
    assert_eq!(stats.duration_buckets.iter().sum::<u64>(), 5);
    let status = kill(&instance).await;
    assert_eq!(status.code, 137);
    let (stdout, _) = ex.output("fn-a");
    assert!(stdout.contains("http: GET /\n"), "{stdout}");
    assert!(stdout.contains("http: POST /echo\n"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_answer_504_413_503_and_500_and_the_function_keeps_serving() {
    let ex = Executor::new();
    let ns = std::sync::Arc::new(TestNetns::new('b'));
    let http = HttpOptions {
        timeout: Duration::from_millis(800),
        max_body_bytes: 16,
        concurrency: 2,
        ..options(18081)
    };
    let instance = ex.start(&function_spec(&ex, "fn-b", &ns, http)).await;

    // A guest that loops is stopped at its timeout while another request is served.
    let n = ns.clone();
    let looping = tokio::task::spawn_blocking(move || {
        let began = Instant::now();
        (n.get(18081, "/loop"), began.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let n = ns.clone();
    let hello = blocking(move || n.get(18081, "/")).await;
    assert_eq!(hello.0, 200);
    let ((code, _), took) = looping.await.unwrap();
    assert_eq!(code, 504);
    assert!(took < Duration::from_secs(5), "{took:?}");

    // 413: declared, and streamed (chunked, no Content-Length).
    let n = ns.clone();
    let (declared, chunked, small) = blocking(move || {
        let big = "x".repeat(100);
        (
            n.curl(&["--data-binary", &big, "http://127.0.0.1:18081/echo"])
                .0,
            n.curl(&[
                "-H",
                "Transfer-Encoding: chunked",
                "--data-binary",
                &big,
                "http://127.0.0.1:18081/echo",
            ])
            .0,
            n.curl(&["--data-binary", "small", "http://127.0.0.1:18081/echo"]),
        )
    })
    .await;
    assert_eq!((declared, chunked), (413, 413));
    assert_eq!((small.0, small.1.as_str()), (200, "small"));

    // 503 with Retry-After past 2 in flight.
    let mut sleepers = Vec::new();
    for _ in 0..2 {
        let n = ns.clone();
        sleepers.push(tokio::task::spawn_blocking(move || {
            n.get(18081, "/sleep?ms=600")
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n = ns.clone();
    let ((code, _, headers), probe) = blocking(move || {
        (
            n.curl(&["http://127.0.0.1:18081/"]),
            n.curl(&["-A", "kube-probe/1.31", "http://127.0.0.1:18081/"])
                .0,
        )
    })
    .await;
    assert_eq!(code, 503);
    assert_eq!(probe, 503, "a probe is held to the cap too");
    assert!(
        headers.to_ascii_lowercase().contains("retry-after: 1"),
        "{headers}"
    );
    for s in sleepers {
        assert_eq!(s.await.unwrap(), (200, "slept 600 ms\n".into()));
    }

    // A trap is a 500, and the next request is served; so is a handler that sets no response.
    let n = ns.clone();
    let (trap, after, none) = blocking(move || {
        (
            n.get(18081, "/trap").0,
            n.get(18081, "/").0,
            n.get(18081, "/noresponse").0,
        )
    })
    .await;
    assert_eq!((trap, after, none), (500, 200, 500));

    let stats = settled(&instance).await;
    assert_eq!(stats.timed_out, 1, "{stats:?}");
    assert_eq!(stats.rejected_too_large, 2, "{stats:?}");
    assert_eq!(stats.rejected_busy, 2, "{stats:?}");
    assert_eq!(stats.errors, 2, "{stats:?}");
    assert_eq!(stats.in_flight, 0, "{stats:?}");
    kill(&instance).await;
    let (_, stderr) = ex.output("fn-b");
    assert!(stderr.contains("trapping on purpose"), "{stderr}");
    assert!(stderr.contains("request timed out"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_requests_go_only_where_the_allowlist_says() {
    let ex = Executor::new();
    let ns = std::sync::Arc::new(TestNetns::new('c'));
    let http = HttpOptions {
        allowed_outbound_hosts: vec!["http://127.0.0.1:18082".into()],
        ..options(18082)
    };
    let instance = ex.start(&function_spec(&ex, "fn-c", &ns, http)).await;
    let n = ns.clone();
    let (allowed, denied) = blocking(move || {
        (
            n.get(18082, "/fetch?url=http://127.0.0.1:18082/"),
            n.get(18082, "/fetch?url=http://localhost:18082/secret-path"),
        )
    })
    .await;
    assert_eq!(
        allowed,
        (200, "fetched 200: hello from a skiff function\n".into())
    );
    assert_eq!(denied, (502, "fetch failed: HTTP-request-denied\n".into()));
    kill(&instance).await;
    let (_, stderr) = ex.output("fn-c");
    assert!(
        stderr.contains("outgoing request to http://localhost:18082 denied"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret-path"),
        "the path is not logged: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_finishes_the_requests_in_flight_then_exits_0() {
    let ex = Executor::new();
    let ns = std::sync::Arc::new(TestNetns::new('d'));
    let instance: Instance = ex
        .start(&function_spec(&ex, "fn-d", &ns, options(18083)))
        .await;
    let n = ns.clone();
    let slow = tokio::task::spawn_blocking(move || n.get(18083, "/sleep?ms=1000"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    instance.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let n = ns.clone();
    let refused = blocking(move || n.get(18083, "/").0).await;
    assert_eq!(refused, 0, "a new connection after the stop");
    assert_eq!(slow.await.unwrap(), (200, "slept 1000 ms\n".into()));
    let status = exited(&instance, Duration::from_secs(5)).await;
    assert_eq!((status.code, status.reason), (0, ExitReason::Completed));
}

#[tokio::test]
async fn a_command_where_a_function_is_required_and_a_component_that_is_neither_are_refused() {
    let ex = Executor::new();
    let ns = TestNetns::new('e');
    let mut spec = function_spec(&ex, "fn-e", &ns, options(18084));
    spec.module_path = skiff_tests::guests::component("probe");
    spec.http.required = true;
    let e = ex.engine.start(spec).await.err().unwrap();
    assert!(matches!(e, WasmError::NotFunction { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("does not export wasi:http/incoming-handler"),
        "{e}"
    );
    let neither = skiff_tests::guests::wat("fn-neither", "(component)");
    let e = ex.engine.prepare(&neither).await.err().unwrap().to_string();
    assert!(
        e.contains("wasi:cli/run, a function wasi:http/incoming-handler"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_and_connections_past_the_cap_refused() {
    use std::io::Write;
    let ex = Executor::new();
    let ns = std::sync::Arc::new(TestNetns::new('f'));
    let http = HttpOptions {
        max_connections: 2,
        ..options(18085)
    };
    let instance = ex.start(&function_spec(&ex, "fn-f", &ns, http)).await;
    let raw = RawClients::new(&ns);
    // Two connections hold the cap: one sends half a request head (slowloris), one is served
    // a request and then stays idle on keep-alive.
    let mut slow = raw.connect(18085);
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut idle = raw.connect(18085);
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // A third is closed at once, with no answer.
    let mut third = raw.connect(18085);
    third.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").ok();
    assert_eq!(
        blocking(move || until_closed(&mut third)).await.unwrap(),
        ""
    );
    // The server closes both held ones itself (header read and idle keep-alive timeout): the
    // idle one after its answer, the slow one without any.
    let (slow, idle) = blocking(move || (until_closed(&mut slow), until_closed(&mut idle))).await;
    assert_eq!(slow.unwrap(), "");
    let idle = idle.unwrap();
    assert!(idle.starts_with("HTTP/1.1 200"), "{idle}");
    assert!(idle.contains("hello from a skiff function\n"), "{idle}");
    // Their places are free again.
    let n = ns.clone();
    assert_eq!(blocking(move || n.get(18085, "/")).await.0, 200);
    let stats = settled(&instance).await;
    assert_eq!(stats.requests_total, 2, "{stats:?}");
    kill(&instance).await;
}
