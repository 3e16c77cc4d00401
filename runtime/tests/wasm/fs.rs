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
