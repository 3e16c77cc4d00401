//! A function under a plain containerd (`ctr run --runtime io.containerd.skiff.v1`): a component
//! exporting `wasi:http/incoming-handler`, in a network namespace the task joins by path, serves
//! on 8080 with no skiff annotation; `ctr task metrics` still decodes its Stats (the function's
//! counters ride in a field containerd skips); SIGTERM lets a request in flight finish, then the
//! task exits 0.

use std::time::Duration;

use skiff_tests::images::wasm_entrypoint_archive;

use super::*;

const FN_IMAGE: &str = "skiff.test/http:latest";

/// curl in namespace `ns`: (status, body).
fn curl(ns: &str, url: &str) -> (u16, String) {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .args([
            "--",
            "curl",
            "-s",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            url,
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn a_function_under_containerd_serves_on_8080_and_drains_on_sigterm() {
    let c = containerd();
    let archive = c.dir().join("http.tar");
    let http = skiff_tests::guests::function_component("http");
    wasm_entrypoint_archive(&http, &archive, FN_IMAGE).expect("function image");
    c.import(&archive);
    let ns = format!("skiff-shimfn-{}", std::process::id());
    let ip = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .expect("ip");
        assert!(out.status.success(), "ip {args:?}");
    };
    let _ = std::process::Command::new("ip")
        .args(["netns", "delete", &ns])
        .output();
    ip(&["netns", "add", &ns]);
    struct Netns(String);
    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", &self.0])
                .output();
        }
    }
    let _netns = Netns(ns.clone());
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    let with_ns = format!("network:/run/netns/{ns}");

    // In the foreground: ctr's exit code is the task's.
    let mut run = c
        .ctr_command([
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            "--with-ns",
            &with_ns,
            FN_IMAGE,
            "w-fn",
            "/http.component.wasm",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctr run");
    let hello = (200, "hello from a skiff function\n".to_string());
    wait_for("the function on 8080", Duration::from_secs(30), || {
        (curl(&ns, "http://127.0.0.1:8080/") == hello).then_some(())
    });
    let metrics = c.ctr_ok(["task", "metrics", "w-fn"]);
    assert!(metrics.contains("pids.current"), "{metrics}");

    let slow = {
        let ns = ns.clone();
        std::thread::spawn(move || curl(&ns, "http://127.0.0.1:8080/sleep?ms=1000"))
    };
    std::thread::sleep(Duration::from_millis(300));
    c.ctr_ok(["task", "kill", "w-fn"]);
    assert_eq!(
        slow.join().expect("slow request"),
        (200, "slept 1000 ms\n".into())
    );
    let status = run.wait().expect("ctr run's end");
    let mut out = String::new();
    if let Some(mut s) = run.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut s, &mut out);
    }
    assert_eq!(status.code(), Some(0), "ctr run: {status:?}\n{out}");
    assert!(out.contains("http: GET /sleep?ms=1000"), "{out}");
    assert_nothing_left(&c);
}
