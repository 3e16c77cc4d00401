//! CRI log files through the shim: a task Create gives no stdio (`ctr run --null-io`, as a skiff
//! agent creates its tasks) and whose spec names `io.containerd.skiff.v1.log-path` writes its
//! stdout and stderr there as CRI records, a Linux task as a Wasm one; every line written before
//! the exit is in the file when the exit is reported; the file rotates past
//! `io.containerd.skiff.v1.log-max-bytes`; FIFOs given at Create still win.

use std::path::Path;

use skiff_tests::images::BUSYBOX_IMAGE;

use super::{PROBE_IMAGE, RUNTIME, assert_nothing_left, containerd};

const LOG_PATH: &str = "io.containerd.skiff.v1.log-path";
const LOG_MAX_BYTES: &str = "io.containerd.skiff.v1.log-max-bytes";

/// (stream, tag, content) of each record of a CRI log.
fn records(path: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let time = parts.next().unwrap_or_default();
            assert!(time.ends_with('Z'), "not a CRI record: {l:?}");
            let stream = parts.next().unwrap_or_default().to_string();
            let tag = parts.next().unwrap_or_default().to_string();
            let content = parts.next().unwrap_or_default().to_string();
            assert!(
                matches!(stream.as_str(), "stdout" | "stderr") && matches!(tag.as_str(), "F" | "P"),
                "not a CRI record: {l:?}"
            );
            (stream, tag, content)
        })
        .collect()
}

/// `ctr run --rm --null-io` with the log annotations; the exit code.
fn run_logged(
    c: &skiff_tests::containerd::Containerd,
    image: &str,
    id: &str,
    log: &Path,
    max_bytes: Option<u64>,
    args: &[&str],
) -> i32 {
    let path = format!("{LOG_PATH}={}", log.display());
    let max = max_bytes.map(|m| format!("{LOG_MAX_BYTES}={m}"));
    let mut all = vec![
        "run",
        "--rm",
        "--null-io",
        "--runtime",
        RUNTIME,
        "--annotation",
        &path,
    ];
    if let Some(max) = &max {
        all.extend(["--annotation", max]);
    }
    all.extend([image, id]);
    all.extend_from_slice(args);
    let out = c.ctr(&all);
    assert!(
        out.stdout.is_empty(),
        "output went to ctr, not the log: {out:?}"
    );
    out.status.code().unwrap_or(-1)
}

#[test]
fn a_linux_task_without_fifos_writes_its_output_to_the_cri_log() {
    let c = containerd();
    let logs = c.dir().join("logs");
    let log = logs.join("b-log/0.log");
    // More output than a pipe holds, then a line on stderr and one left unfinished, all just
    // before the exit: every byte is in the file by the time `ctr run` hears of the exit.
    let script = "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done; \
                  echo oops >&2; printf unfinished; exit 3";
    let code = run_logged(
        &c,
        BUSYBOX_IMAGE,
        "b-log",
        &log,
        None,
        &["sh", "-c", script],
    );
    assert_eq!(code, 3, "{}", c.log());
    let got = records(&log);
    let stdout: Vec<&(String, String, String)> = got.iter().filter(|r| r.0 == "stdout").collect();
    assert_eq!(stdout.len(), 3001, "stdout records");
    for (i, r) in stdout.iter().take(3000).enumerate() {
        assert_eq!((r.1.as_str(), r.2.clone()), ("F", format!("line {i}")));
    }
    assert_eq!(
        (stdout[3000].1.as_str(), stdout[3000].2.as_str()),
        ("P", "unfinished")
    );
    assert!(
        got.contains(&("stderr".into(), "F".into(), "oops".into())),
        "{got:?}"
    );

    // Rotation: past the threshold the file moves to `.1` and a new one starts.
    let small = logs.join("b-rot/0.log");
    let script = "i=0; while [ $i -lt 100 ]; do echo rotated line $i; i=$((i+1)); done";
    let code = run_logged(
        &c,
        BUSYBOX_IMAGE,
        "b-rot",
        &small,
        Some(1024),
        &["sh", "-c", script],
    );
    assert_eq!(code, 0);
    let rotated = logs.join("b-rot/0.log.1");
    assert!(rotated.exists(), "no rotated log");
    assert!(std::fs::metadata(&small).unwrap().len() < 1024);
    // The last two files hold the last lines, in order, up to the very last.
    let mut last: Vec<String> = records(&rotated).into_iter().map(|r| r.2).collect();
    last.extend(records(&small).into_iter().map(|r| r.2));
    let first: usize = last[0].trim_start_matches("rotated line ").parse().unwrap();
    let want: Vec<String> = (first..100).map(|i| format!("rotated line {i}")).collect();
    assert_eq!(last, want);

    // With FIFOs (plain `ctr run`), the output goes to them and no log file is made.
    let fifo_log = logs.join("b-fifo/0.log");
    let annotation = format!("{LOG_PATH}={}", fifo_log.display());
    let out = c.ctr([
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--annotation",
        &annotation,
        BUSYBOX_IMAGE,
        "b-fifo",
        "echo",
        "to the fifo",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to the fifo\n");
    assert!(!fifo_log.exists(), "a log file was made beside the FIFOs");
    assert_nothing_left(&c);
}

#[test]
fn a_wasm_task_without_fifos_writes_its_output_to_the_cri_log() {
    let c = containerd();
    let log = c.dir().join("logs/w-log/0.log");
    let code = run_logged(
        &c,
        PROBE_IMAGE,
        "w-log",
        &log,
        None,
        &["/probe.wasm", "lines", "500"],
    );
    assert_eq!(code, 0, "{}", c.log());
    let got = records(&log);
    assert_eq!(got.len(), 500, "{:?}", got.last());
    assert!(got.iter().all(|r| r.0 == "stdout" && r.1 == "F"));
    assert_nothing_left(&c);
}
