//! Preopens: what a guest can read and write, and that it cannot get out of them.

use skiff_runtime::wasm::{ExitReason, Preopen};

use crate::common::{Executor, probe, probe_component};

fn preopen(dir: &std::path::Path, read_only: bool) -> Preopen {
    Preopen {
        host: dir.to_path_buf(),
        guest: "/data".into(),
        read_only,
        beneath: None,
    }
}

#[tokio::test]
async fn a_read_only_preopen_can_be_read_not_written() {
    let ex = Executor::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("hello.txt"), "hi there\n").unwrap();

    let mut spec = ex.spec("ro-cat", &probe(), &["cat", "/data/hello.txt"]);
    spec.preopens = vec![preopen(data.path(), true)];
    assert_eq!(ex.run(&spec).await.code, 0);
    assert_eq!(ex.output("ro-cat").0, "hi there\n");

    let mut spec = ex.spec("ro-write", &probe(), &["write", "/data/new.txt", "nope"]);
    spec.preopens = vec![preopen(data.path(), true)];
    let exit = ex.run(&spec).await;
    assert_ne!(exit.code, 0, "{exit:?}");
    assert!(!data.path().join("new.txt").exists());

    let mut spec = ex.spec("ro-over", &probe(), &["write", "/data/hello.txt", "nope"]);
    spec.preopens = vec![preopen(data.path(), true)];
    assert_ne!(ex.run(&spec).await.code, 0);
    assert_eq!(
        std::fs::read_to_string(data.path().join("hello.txt")).unwrap(),
        "hi there\n"
    );
}

#[tokio::test]
async fn a_read_write_preopen_can_be_written() {
    let ex = Executor::new();
    let data = tempfile::tempdir().unwrap();
    let mut spec = ex.spec("rw-write", &probe(), &["write", "/data/out.txt", "written"]);
    spec.preopens = vec![preopen(data.path(), false)];
    assert_eq!(ex.run(&spec).await.code, 0);
    assert_eq!(
        std::fs::read_to_string(data.path().join("out.txt")).unwrap(),
        "written\n"
    );
    let mut spec = ex.spec("rw-ls", &probe(), &["ls", "/data"]);
    spec.preopens = vec![preopen(data.path(), false)];
    assert_eq!(ex.run(&spec).await.code, 0);
    assert_eq!(ex.output("rw-ls").0, "out.txt\n");
}

#[tokio::test]
async fn without_preopens_there_is_no_filesystem() {
    let ex = Executor::new();
    let exit = ex
        .run(&ex.spec("nofs", &probe(), &["cat", "/etc/passwd"]))
        .await;
    assert_eq!(exit.code, 1);
    let exit = ex.run(&ex.spec("nofs-ls", &probe(), &["ls", "/"])).await;
    assert_ne!(exit.code, 0);
}

/// The probe's battery: `..`, absolute paths, symlinks out (to a file, a dir, `/`), hardlinks
/// to outside files, renames and mkdir out of the preopen. Exit 0 means all were refused.
async fn escape_is_blocked(module: std::path::PathBuf, id: &str, read_only: bool) {
    let ex = Executor::new();
    // The preopen is a subdirectory, with a canary next to it that must stay unreachable.
    let outer = tempfile::tempdir().unwrap();
    let data = outer.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(outer.path().join("canary"), "secret\n").unwrap();
    let mut spec = ex.spec(id, &module, &["escape", "/data"]);
    spec.preopens = vec![preopen(&data, read_only)];
    let exit = ex.run(&spec).await;
    let (stdout, stderr) = ex.output(id);
    assert_eq!(
        (exit.code, exit.reason),
        (0, ExitReason::Completed),
        "escape attempts:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stdout.contains("ESCAPED"), "{stdout}");
    assert!(
        stdout.lines().count() >= 10,
        "too few attempts ran:\n{stdout}"
    );
    assert!(
        !stderr.contains("secret") && !stderr.contains("root:"),
        "{stderr}"
    );
    // Nothing was created outside the preopen.
    let mut names: Vec<_> = std::fs::read_dir(outer.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["canary", "data"]);
}

#[tokio::test]
async fn escapes_from_a_read_write_preopen_are_blocked() {
    escape_is_blocked(probe(), "escape-rw", false).await;
}

#[tokio::test]
async fn escapes_from_a_read_only_preopen_are_blocked() {
    escape_is_blocked(probe(), "escape-ro", true).await;
}

#[tokio::test]
async fn escapes_from_a_component_are_blocked() {
    escape_is_blocked(probe_component(), "escape-c", false).await;
}

/// A subPath preopen (`beneath` its volume) whose directory another container keeps swapping for
/// a symlink to a host directory, started again and again: each start either refuses the link (or
/// finds no directory, caught mid-swap) or gives the guest the volume's own directory; the guest's
/// writes never reach the host.
#[tokio::test]
async fn a_subpath_swapped_for_a_symlink_never_reaches_the_host() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let ex = Executor::new();
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("volume");
    let sub = volume.join("sub");
    let host = dir.path().join("host");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::create_dir_all(&host).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let racer = {
        let (sub, host, stop) = (sub.clone(), host.clone(), stop.clone());
        std::thread::spawn(move || {
            let (aside, link) = (sub.with_extension("aside"), sub.with_extension("link"));
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = std::fs::remove_file(&link);
                let _ = std::os::unix::fs::symlink(&host, &link);
                let _ = std::fs::rename(&sub, &aside);
                let _ = std::fs::rename(&link, &sub);
                // Each state held a moment: starts meet the link and the directory alike.
                std::thread::sleep(std::time::Duration::from_micros(300));
                let _ = std::fs::remove_file(&sub);
                let _ = std::fs::rename(&aside, &sub);
                std::thread::sleep(std::time::Duration::from_micros(300));
                swaps += 1;
            }
            swaps
        })
    };
    // At least 40 starts, and on until both outcomes were met (a loaded machine may schedule the
    // racer seldom), bounded so a broken race cannot spin forever.
    let (mut ran, mut refused) = (0, 0);
    for i in 0..400 {
        if i >= 40 && ran > 0 && refused > 0 {
            break;
        }
        let id = format!("race-{i}");
        let mut spec = ex.spec(&id, &probe(), &["write", "/data/marker", "x"]);
        spec.preopens = vec![Preopen {
            host: sub.clone(),
            guest: "/data".into(),
            read_only: false,
            beneath: Some(volume.clone()),
        }];
        match ex.engine.start(spec).await {
            Ok(instance) => {
                crate::common::exited(&instance, crate::common::RUN_TIMEOUT).await;
                ran += 1;
            }
            Err(e) => {
                // The link refused, or the directory caught mid-swap (renamed aside): both
                // are refusals; anything else is not.
                let e = e.to_string();
                assert!(
                    e.contains("a symlink or a path out of") || e.contains("ENOENT"),
                    "{e}"
                );
                refused += 1;
            }
        }
        assert_eq!(
            std::fs::read_dir(&host).unwrap().count(),
            0,
            "start {i} reached the host directory"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = racer.join().unwrap();
    assert!(
        ran > 0 && refused > 0,
        "the race was not met: {ran} ran, {refused} refused, {swaps} swaps"
    );
}
