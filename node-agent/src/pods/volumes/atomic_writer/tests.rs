//! The atomic writer on a real file system: versions, swaps, no-op writes, bad paths, and writers
//! killed with SIGKILL mid-write.

use super::*;

fn payload(files: &[(&str, &str, u32)]) -> Payload {
    files
        .iter()
        .map(|(p, b, m)| {
            (
                p.to_string(),
                FileData {
                    bytes: b.as_bytes().to_vec(),
                    mode: *m,
                },
            )
        })
        .collect()
}

/// Every entry of `dir` by name (not recursive).
fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn versions(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| is_version_name(n))
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_payload_is_written_behind_data_links() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let p = payload(&[
        ("config.yaml", "a: 1\n", 0o644),
        ("conf/nested/app.conf", "x\n", 0o600),
        ("conf/other", "y", 0o640),
    ]);
    assert!(write(dir, &p).unwrap());

    assert_eq!(
        fs::read_to_string(dir.join("config.yaml")).unwrap(),
        "a: 1\n"
    );
    assert_eq!(
        fs::read_to_string(dir.join("conf/nested/app.conf")).unwrap(),
        "x\n"
    );
    let version = current_version(dir).unwrap();
    assert_eq!(
        names(dir),
        BTreeSet::from([
            "..data".to_string(),
            version.clone(),
            "conf".into(),
            "config.yaml".into()
        ])
    );
    assert_eq!(
        fs::read_link(dir.join("config.yaml")).unwrap(),
        Path::new("..data/config.yaml")
    );
    // The top component of a nested path is the link.
    assert_eq!(
        fs::read_link(dir.join("conf")).unwrap(),
        Path::new("..data/conf")
    );
    assert_eq!(
        fs::read_link(dir.join("..data")).unwrap(),
        Path::new(&version)
    );
    // Modes are honoured, whatever the umask; dirs are 0755.
    assert_eq!(mode(&dir.join("config.yaml")), 0o644);
    assert_eq!(mode(&dir.join("conf/nested/app.conf")), 0o600);
    assert_eq!(mode(&dir.join("conf/other")), 0o640);
    assert_eq!(mode(&dir.join(&version)), 0o755);
    assert_eq!(mode(&dir.join("conf/nested")), 0o755);
    // Version names are Kubernetes': ..YYYY_MM_DD_HH_MM_SS.<nanos>.
    assert_eq!(version.len(), "..2026_12_06_23_40_01.000123456".len());
}

#[test]
fn an_update_swaps_to_a_new_version_and_removes_the_old() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    write(dir, &payload(&[("a", "1", 0o644), ("gone/x", "x", 0o644)])).unwrap();
    let first = current_version(dir).unwrap();
    // A reader holding a file of the first version keeps reading it whole.
    let held = File::open(dir.join("a")).unwrap();

    assert!(write(dir, &payload(&[("a", "2", 0o644), ("b", "new", 0o644)])).unwrap());
    let second = current_version(dir).unwrap();
    assert_ne!(first, second);
    assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "2");
    assert_eq!(fs::read_to_string(dir.join("b")).unwrap(), "new");
    assert_eq!(io::read_to_string(held).unwrap(), "1");
    // The old version and the removed key's link are gone; nothing else is left.
    assert_eq!(
        names(dir),
        BTreeSet::from(["..data".to_string(), second, "a".into(), "b".into()])
    );
    // A mode change alone is an update.
    assert!(write(dir, &payload(&[("a", "2", 0o600), ("b", "new", 0o644)])).unwrap());
    assert_eq!(mode(&dir.join("a")), 0o600);
    // An empty payload (an optional object that is gone) leaves only an empty version.
    assert!(write(dir, &Payload::new()).unwrap());
    let empty = current_version(dir).unwrap();
    assert_eq!(names(dir), BTreeSet::from(["..data".to_string(), empty]));
}

#[test]
fn an_unchanged_payload_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let p = payload(&[("a", "1", 0o644), ("n/b", "2", 0o600)]);
    assert!(write(dir, &p).unwrap());
    let version = current_version(dir).unwrap();
    let data_link = fs::symlink_metadata(dir.join("..data")).unwrap();
    for _ in 0..3 {
        assert!(!write(dir, &p).unwrap());
    }
    assert_eq!(current_version(dir).unwrap(), version);
    assert_eq!(versions(dir), [version]);
    // Not even the link was made again.
    let again = fs::symlink_metadata(dir.join("..data")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(again.ino(), data_link.ino());
}

#[test]
fn leftovers_of_a_crash_are_never_visible_and_are_cleaned() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let p = payload(&[("a", "complete", 0o644)]);
    write(dir, &p).unwrap();
    let good = current_version(dir).unwrap();
    // A writer died after writing half a version and its ..data_tmp link, before the
    // rename; another died while replacing a user-visible link.
    let half = dir.join("..2026_12_06_23_59_59.000000001");
    fs::create_dir(&half).unwrap();
    fs::write(half.join("a"), "comp").unwrap();
    std::os::unix::fs::symlink(half.file_name().unwrap(), dir.join("..data_tmp")).unwrap();
    std::os::unix::fs::symlink("..data/a", dir.join("..link_tmp")).unwrap();
    // Readers still see the complete version.
    assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "complete");
    assert_eq!(current_version(dir).unwrap(), good);

    // The next write (unchanged payload) removes them and writes no version.
    assert!(!write(dir, &p).unwrap());
    assert_eq!(
        names(dir),
        BTreeSet::from(["..data".to_string(), good.clone(), "a".into()])
    );
    // And a changed one does not trip over a leftover ..data_tmp either.
    std::os::unix::fs::symlink(&good, dir.join("..data_tmp")).unwrap();
    assert!(write(dir, &payload(&[("a", "next", 0o644)])).unwrap());
    assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "next");
    assert_eq!(versions(dir).len(), 1);
    assert!(!dir.join("..data_tmp").exists());

    // A crash after the swap, before the links: the next write makes them.
    fs::remove_file(dir.join("a")).unwrap();
    assert!(!write(dir, &payload(&[("a", "next", 0o644)])).unwrap());
    assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "next");
}

#[test]
fn the_in_place_layout_of_older_agents_is_taken_over() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join("a"), "old").unwrap();
    fs::create_dir_all(dir.join("n")).unwrap();
    fs::write(dir.join("n/b"), "old").unwrap();
    fs::write(dir.join("removed"), "old").unwrap();
    assert!(write(dir, &payload(&[("a", "new", 0o644), ("n/b", "new", 0o644)])).unwrap());
    assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "new");
    assert_eq!(fs::read_to_string(dir.join("n/b")).unwrap(), "new");
    assert!(fs::symlink_metadata(dir.join("n")).unwrap().is_symlink());
    assert!(!dir.join("removed").exists());
}

#[test]
fn bad_paths_are_refused_and_nothing_is_written() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    for bad in [
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a/..",
        "..data",
        "..2026_01_01_00_00_00.1/a",
        "..hidden",
        "",
        "./",
        "nul\0",
    ] {
        let e = write(dir, &payload(&[(bad, "x", 0o644)])).unwrap_err();
        assert!(matches!(e, WriteError::BadPath { .. }), "{bad:?}: {e}");
    }
    // A file that is also another item's directory, and two spellings of one path.
    for pair in [["a", "a/b"], ["a", "./a"]] {
        let p = payload(&[(pair[0], "x", 0o644), (pair[1], "y", 0o644)]);
        assert!(write(dir, &p).is_err(), "{pair:?}");
    }
    assert!(names(dir).is_empty());
    // `.` components and doubled slashes are cleaned, as Kubernetes does.
    write(dir, &payload(&[("./x//y", "ok", 0o644)])).unwrap();
    assert_eq!(fs::read_to_string(dir.join("x/y")).unwrap(), "ok");
}

#[test]
fn a_link_planted_in_a_version_is_not_taken_as_the_payload() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    write(dir, &payload(&[("a", "1", 0o644)])).unwrap();
    let version = current_version(dir).unwrap();
    fs::remove_file(dir.join(&version).join("a")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", dir.join(&version).join("a")).unwrap();
    assert!(write(dir, &payload(&[("a", "1", 0o644)])).unwrap());
    let a = dir.join(current_version(dir).unwrap()).join("a");
    assert!(fs::symlink_metadata(&a).unwrap().is_file());
}

/// The two payloads the crash test alternates between: big enough that a write takes a
/// while, of different sizes, each file all one byte.
fn crash_payloads() -> [Payload; 2] {
    let file = |byte: u8, len: usize| FileData {
        bytes: vec![byte; len],
        mode: 0o644,
    };
    [
        Payload::from([
            ("f".to_string(), file(b'a', 3 << 20)),
            ("n/g".to_string(), file(b'a', 1 << 20)),
        ]),
        Payload::from([
            ("f".to_string(), file(b'b', 5 << 20)),
            ("n/g".to_string(), file(b'b', 2 << 20)),
        ]),
    ]
}

const CRASH_DIR_ENV: &str = "SKIFF_ATOMIC_WRITER_CRASH_DIR";

/// Not a test on its own: the writer the crash test runs in a process of its own (this test
/// binary again, with [`CRASH_DIR_ENV`] set) and kills. Writes the two payloads in turn,
/// forever.
#[test]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
        return;
    };
    let payloads = crash_payloads();
    loop {
        for p in &payloads {
            write(Path::new(&dir), p).unwrap();
        }
    }
}

/// `kill -9` of a writer at random moments: the visible files are always one whole version
/// (never truncated, never a mix of two), and the next write cleans up what the dead one left.
#[test]
fn kill_9_mid_write_never_leaves_a_truncated_file() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let payloads = crash_payloads();
    let name = module_path!().split_once("::").map_or("", |(_, rest)| rest);
    let exe = std::env::current_exe().unwrap();
    let mut kills = 0;
    let mut leftovers = 0;
    for round in 0..20u64 {
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                &format!("{name}::crash_child_writer"),
                "--nocapture",
            ])
            .env(CRASH_DIR_ENV, dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // 20-200 ms: a spread over the phases of a write (a pseudo-random step per round).
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64;
        let delay = 20 + (nanos / 1000 + round * 37) % 180;
        std::thread::sleep(std::time::Duration::from_millis(delay));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "the writer ended by itself: {status}"
        );
        kills += 1;
        let Some(version) = current_version(dir) else {
            // Killed before its first version: nothing may be visible.
            assert!(!dir.join("f").exists());
            continue;
        };
        // What `..data` names is whole, and so is what the user-visible names show (they
        // are missing only if the first writer died between its swap and its links).
        for base in [dir.join(DATA_DIR), dir.to_path_buf()] {
            let f = fs::read(base.join("f"));
            let g = fs::read(base.join("n/g"));
            let (f, g) = match (f, g) {
                (Ok(f), Ok(g)) => (f, g),
                (Err(_), Err(_)) if base == dir => continue,
                (f, g) => panic!("round {round}: one file of two: {f:?} {g:?}"),
            };
            let whole = payloads
                .iter()
                .any(|p| p["f"].bytes == f && p["n/g"].bytes == g);
            assert!(
                whole,
                "round {round}: f is {} bytes, n/g {} bytes (version {version})",
                f.len(),
                g.len()
            );
        }
        leftovers += names(dir).len().saturating_sub(4);
    }
    eprintln!("{kills} writers killed, {leftovers} leftover entries seen");
    // The next write removes whatever the dead writers left.
    write(dir, &payloads[0]).unwrap();
    assert_eq!(names(dir).len(), 4, "{:?}", names(dir));
    assert_eq!(fs::read(dir.join("f")).unwrap(), payloads[0]["f"].bytes);
}

#[test]
fn timestamps() {
    assert_eq!(utc_stamp(0), "1970_01_01_00_00_00");
    assert_eq!(utc_stamp(951_782_400), "2000_02_29_00_00_00");
    assert_eq!(utc_stamp(1_796_600_401), "2026_12_06_23_40_01");
}
