//! wasmtime's command-line habits on skiff, end to end: `skiff run --dir HOST[::GUEST]` with
//! absolute and relative guest names (`.` included) for core modules and components, `--env`
//! beside `-e`, a Wasm container's relative `mountPath` in a manifest, and the refusals: a
//! relative name with `..`, and a relative name in a Linux container (exit 2, naming the flag or
//! the field).

use skiff_tests::guests::{component, guest};
use skiff_tests::{Cluster, stderr, stdout, text};

fn cluster() -> Cluster {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    c
}

/// A directory holding `hello.txt` and `sub/inner.txt`.
fn files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello from the host\n").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/inner.txt"), "inner\n").unwrap();
    dir
}

fn run(c: &Cluster, args: &[&str]) -> String {
    let out = c.skiff(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    stdout(&out)
}

#[test]
fn skiff_run_takes_wasmtimes_dir_and_env() {
    let c = cluster();
    let dir = files();
    let host = dir.path().display().to_string();
    for image in [guest("probe"), component("probe")] {
        let image = format!("file:{}", image.display());
        // GUEST `.`: relative paths resolve in the host directory.
        let at_dot = format!("{host}::.");
        assert_eq!(
            run(
                &c,
                &[
                    "run",
                    "--rm",
                    "--dir",
                    &at_dot,
                    &image,
                    "--",
                    "cat",
                    "hello.txt"
                ]
            ),
            "hello from the host\n",
            "{image}"
        );
        assert_eq!(
            run(
                &c,
                &[
                    "run",
                    "--rm",
                    "--dir",
                    &at_dot,
                    &image,
                    "--",
                    "cat",
                    "sub/inner.txt"
                ]
            ),
            "inner\n"
        );
        // A relative name: the directory is `data` to the guest.
        let at_data = format!("{host}::data");
        assert_eq!(
            run(
                &c,
                &[
                    "run",
                    "--rm",
                    "--dir",
                    &at_data,
                    &image,
                    "--",
                    "cat",
                    "data/hello.txt"
                ]
            ),
            "hello from the host\n"
        );
        // No GUEST: the host path as written, as wasmtime does.
        let inner = format!("{host}/hello.txt");
        assert_eq!(
            run(
                &c,
                &["run", "--rm", "--dir", &host, &image, "--", "cat", &inner]
            ),
            "hello from the host\n"
        );
        // Writes land in the host directory.
        run(
            &c,
            &[
                "run", "--rm", "--dir", &at_dot, &image, "--", "write", "out.txt", "written",
            ],
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
            "written\n"
        );
        std::fs::remove_file(dir.path().join("out.txt")).unwrap();
        // --env beside -e.
        let env = run(
            &c,
            &[
                "run", "--rm", "--env", "ALPHA=1", "-e", "BETA=2", &image, "--", "env", "ALPHA",
                "BETA",
            ],
        );
        assert_eq!(env, "ALPHA=1\nBETA=2\n");
    }

    // Bad --dir: exit 2, naming the flag.
    let image = format!("file:{}", guest("probe").display());
    for (dir_arg, needle) in [
        (
            format!("{host}::../up"),
            "must not contain '..'".to_string(),
        ),
        (format!("{host}::a//b"), "empty component".to_string()),
        (
            format!("{host}/missing::."),
            "is not a directory".to_string(),
        ),
    ] {
        let out = c.skiff(&["run", "--rm", "--dir", &dir_arg, &image, "--", "ls"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("--dir {dir_arg:?}")) && err.contains(&needle),
            "{err}"
        );
    }
}

/// A Wasm container's `mountPath` may be a relative preopen name; a Linux container's may not.
#[test]
fn relative_mount_paths_are_wasm_preopen_names() {
    let c = cluster();
    let image = format!("file:{}", guest("probe").display());
    let pod = |name: &str, class: &str, mount: &str, args: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  {class}restartPolicy: Never\n  volumes: [{{name: work, emptyDir: {{}}}}]\n  initContainers:\n  - {{name: prepare, image: \"{image}\", command: [probe], args: [write, /work/note.txt, from-init], volumeMounts: [{{name: work, mountPath: /work}}]}}\n  containers:\n  - {{name: main, image: \"{image}\", command: [probe], args: [{args}], volumeMounts: [{{name: work, mountPath: \"{mount}\"}}]}}\n"
        )
    };
    c.apply(&pod(
        "dot",
        "runtimeClassName: wasm\n  ",
        ".",
        "cat, note.txt",
    ));
    c.apply(&pod(
        "named",
        "runtimeClassName: wasm\n  ",
        "notes",
        "cat, notes/note.txt",
    ));
    for name in ["dot", "named"] {
        let p = skiff_tests::wait_for(
            &format!("pod {name} ends"),
            std::time::Duration::from_secs(60),
            || {
                c.get_json("pod", name).filter(|p| {
                    matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
                })
            },
        );
        assert_eq!(
            p["status"]["phase"],
            "Succeeded",
            "{p:#}\n{}",
            c.agent(0).log()
        );
        assert_eq!(run(&c, &["logs", name, "-c", "main"]), "from-init\n");
    }

    // Refused before anything is written, naming the field: '..', and a Linux container.
    for (yaml, needle) in [
        (
            pod("up", "runtimeClassName: wasm\n  ", "../work", "ls"),
            "spec.containers[0].volumeMounts[0].mountPath",
        ),
        (
            pod("linux", "", "work", "ls"),
            "only a Wasm container may use",
        ),
    ] {
        let out = c.skiff_stdin(&["apply", "-f", "-"], &yaml);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(stderr(&out).contains(needle), "{needle}: {}", text(&out));
    }
}
