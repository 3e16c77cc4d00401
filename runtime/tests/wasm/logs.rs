//! Guest output in the CRI log format: records, rotation, reading and following.

use std::time::Duration;

use futures::StreamExt;
use skiff_runtime::logs::{LogStream, read_log};

use crate::common::{Executor, RUN_TIMEOUT, exited, output_of, probe};

fn rotated(path: &std::path::Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(".1");
    p.into()
}

#[tokio::test]
async fn records_are_cri_lines() {
    let ex = Executor::new();
    assert_eq!(
        ex.run(&ex.spec("cri", &probe(), &["exit", "1"])).await.code,
        1
    );
    let text = std::fs::read_to_string(ex.log_path("cri")).unwrap();
    // `2024-05-01T10:00:00.123456789Z stderr F exiting 1`
    let line = text.lines().next().unwrap();
    let mut parts = line.splitn(4, ' ');
    let stamp = parts.next().unwrap();
    assert!(stamp.ends_with('Z') && stamp.contains('T'), "{line}");
    assert_eq!(parts.next(), Some("stderr"));
    assert_eq!(parts.next(), Some("F"));
    assert_eq!(parts.next(), Some("exiting 1"));
}

#[tokio::test]
async fn logs_rotate_past_their_limit() {
    let ex = Executor::new();
    let mut spec = ex.spec("rotate", &probe(), &["lines", "300"]);
    spec.log_max_bytes = 8000;
    assert_eq!(ex.run(&spec).await.code, 0);
    let path = ex.log_path("rotate");
    let old = std::fs::metadata(rotated(&path)).unwrap().len();
    let new = std::fs::metadata(&path).unwrap().len();
    assert!(old >= 8000, "rotated file has {old} bytes");
    assert!(new < 8000 + 2000, "current file has {new} bytes");

    // .1 then the current file: consecutive lines, ending with the last one.
    let (a, _) = output_of(&rotated(&path));
    let (b, _) = output_of(&path);
    let joined = a + &b;
    let numbers: Vec<usize> = joined
        .lines()
        .filter(|l| l.len() == 99)
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(*numbers.last().unwrap(), 300);
    for w in numbers.windows(2) {
        assert_eq!(w[0] + 1, w[1], "lines lost across rotation");
    }
    assert!(numbers.len() > 50);
}

#[tokio::test]
async fn a_running_instance_can_be_followed() {
    let ex = Executor::new();
    let mut spec = ex.spec("follow", &probe(), &["tick", "30", "20"]);
    spec.log_max_bytes = 600;
    let instance = ex.start(&spec).await;
    // The log exists once the instance has started: follow it from the start to the 20th
    // tick, across several rotations.
    let path = ex.log_path("follow");
    assert!(path.exists());
    let mut lines = Box::pin(read_log(&path, true, None));
    let mut seen = Vec::new();
    while seen.len() < 20 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next())
            .await
            .expect("a tick within 10 s")
            .unwrap()
            .unwrap();
        assert_eq!(line.stream, LogStream::Stdout);
        assert!(!line.partial);
        seen.push(String::from_utf8(line.content).unwrap());
    }
    let expected: Vec<String> = (1..=20).map(|i| format!("tick {i}")).collect();
    assert_eq!(seen, expected);
    assert!(rotated(&path).exists());
    // Not following: the current file, then the end.
    let tail: Vec<_> = read_log(&path, false, Some(1)).collect().await;
    assert_eq!(tail.len(), 1);
    assert_eq!(tail[0].as_ref().unwrap().content, b"tick 20");
    assert_eq!(exited(&instance, RUN_TIMEOUT).await.code, 0);
}
