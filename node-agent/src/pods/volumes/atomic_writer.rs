//! Kubelet-managed files: the files of a ConfigMap or Secret volume, written the way Kubernetes'
//! `AtomicWriter` writes them, so that a reader sees the old files or the new ones, never a mix
//! and never a truncated file, and so that an update reaches files already mounted.
//!
//! The volume's directory `D` is never removed or replaced (it is bind-mounted into OCI
//! containers and preopened for Wasm guests); everything happens inside it:
//!
//! ```text
//! D/..2026_12_06_23_40_01.000123456/   the payload: one complete version, written once
//! D/..data -> ..2026_12_06_23_40_01.000123456
//! D/KEY -> ..data/KEY                  one link per top-level component of the payload's paths
//! ```
//!
//! [`write`] (1) checks every path (relative, no `..`, not starting with `..`: those names are
//! the writer's); (2) compares the payload with what `..data` holds (paths, bytes and modes):
//! unchanged, nothing new is written; (3) else writes the files into a fresh timestamped dir,
//! each file and dir fsynced; (4) points `..data_tmp` at it and renames that over `..data` (the
//! one atomic step), then fsyncs `D`; (5) makes every user-visible link (a link is replaced by
//! `rename`, so it too is never missing) and removes everything else in `D`: older versions, the
//! links of removed keys, and the leftovers of a writer that died (`..data_tmp`, a half-written
//! version nothing links to, files of the in-place layout older agents wrote).
//!
//! Whatever instant a writer dies at, `..data` names a complete version; the next write cleans
//! up. Writers of one directory serialise on an `flock` of it.
//!
//! Must not: remove or replace `D`, follow a link it did not make, or write outside `D`.
//! Blocking: async callers use `spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The link that names the current version.
pub const DATA_DIR: &str = "..data";
/// The link made beside `..data` and renamed over it.
const DATA_DIR_TMP: &str = "..data_tmp";
/// A user-visible link made here and renamed into place.
const LINK_TMP: &str = "..link_tmp";
/// The mode of the directories of a version (readable by a container's non-root user; the
/// pod tree above is 0700).
const DIR_MODE: u32 = 0o755;

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileData {
    pub bytes: Vec<u8>,
    /// Permission bits (`& 0o777`).
    pub mode: u32,
}

/// The files of a volume: relative path → contents.
pub type Payload = BTreeMap<String, FileData>;

/// Why a payload could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("item path {path:?} {reason}")]
    BadPath { path: String, reason: &'static str },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> WriteError {
    let path = path.to_path_buf();
    move |source| WriteError::Io { what, path, source }
}

/// `path`'s components, if it is a path the writer may create: relative, no `..`, its first
/// component not starting with `..` (the writer's own names), not empty. `.` and repeated `/`
/// are dropped, as `filepath.Clean` does.
pub fn clean_path(path: &str) -> Result<Vec<&str>, WriteError> {
    let bad = |reason| WriteError::BadPath {
        path: path.to_string(),
        reason,
    };
    if path.starts_with('/') {
        return Err(bad("must be relative"));
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() {
        return Err(bad("must name a file"));
    }
    if parts.contains(&"..") {
        return Err(bad("must not contain '..'"));
    }
    if parts[0].starts_with("..") {
        return Err(bad("must not start with '..'"));
    }
    if parts.iter().any(|p| p.contains('\0')) {
        return Err(bad("must not contain a NUL byte"));
    }
    Ok(parts)
}

/// What a version holds: every file (path → contents) and every directory, by relative path.
#[derive(Debug, Default, PartialEq, Eq)]
struct Listing {
    files: BTreeMap<String, (Vec<u8>, u32)>,
    dirs: BTreeSet<String>,
}

/// The listing `payload` makes; refuses bad paths, and paths that are both a file and a dir.
fn listing_of(payload: &Payload) -> Result<Listing, WriteError> {
    let mut out = Listing::default();
    for (path, file) in payload {
        let parts = clean_path(path)?;
        for i in 1..parts.len() {
            out.dirs.insert(parts[..i].join("/"));
        }
        let clean = parts.join("/");
        if out
            .files
            .insert(clean, (file.bytes.clone(), file.mode & 0o777))
            .is_some()
        {
            return Err(WriteError::BadPath {
                path: path.clone(),
                reason: "names the same file as another item",
            });
        }
    }
    if let Some(both) = out.files.keys().find(|f| out.dirs.contains(*f)) {
        return Err(WriteError::BadPath {
            path: both.clone(),
            reason: "is both a file and a directory of other items",
        });
    }
    Ok(out)
}

/// What the version at `dir` holds; `None` if it is not a plain tree of files and dirs.
fn listing_at(dir: &Path) -> io::Result<Option<Listing>> {
    let mut out = Listing::default();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        for entry in fs::read_dir(&path)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                return Ok(None);
            };
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let md = entry.metadata()?;
            if md.is_dir() {
                out.dirs.insert(rel.clone());
                stack.push((entry.path(), rel));
            } else if md.is_file() {
                let bytes = fs::read(entry.path())?;
                out.files
                    .insert(rel, (bytes, md.permissions().mode() & 0o777));
            } else {
                return Ok(None);
            }
        }
    }
    Ok(Some(out))
}

/// Whether `name` is a version directory's name (`..` then a timestamp).
fn is_version_name(name: &str) -> bool {
    name.len() > 2
        && name.starts_with("..")
        && name[2..].starts_with(|c: char| c.is_ascii_digit())
        && !name.contains('/')
}

/// The version `..data` names in `dir`, if it names one.
pub fn current_version(dir: &Path) -> Option<String> {
    let target = fs::read_link(dir.join(DATA_DIR)).ok()?;
    let name = target.to_str()?.to_string();
    let is_dir = fs::symlink_metadata(dir.join(&name)).is_ok_and(|m| m.is_dir());
    (is_version_name(&name) && is_dir).then_some(name)
}

/// Writes `payload` into `dir` (which must exist) as described in the module doc. Returns whether
/// a new version was written (false: the payload was what `..data` already held).
pub fn write(dir: &Path, payload: &Payload) -> Result<bool, WriteError> {
    let want = listing_of(payload)?;
    let _lock = lock(dir)?;
    let old = current_version(dir);
    let unchanged = match &old {
        Some(name) => listing_at(&dir.join(name))
            .map_err(io_err("reading", &dir.join(name)))?
            .is_some_and(|have| have == want),
        None => false,
    };
    let current = match old {
        Some(name) if unchanged => name,
        _ => {
            let version = new_version_dir(dir)?;
            let name = version
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
                .unwrap_or_default();
            write_version(&version, &want)?;
            swap_data_link(dir, &name)?;
            name
        }
    };
    let tops: BTreeSet<&str> = want
        .files
        .keys()
        .filter_map(|p| p.split('/').next())
        .collect();
    let mut changed_links = false;
    for top in &tops {
        changed_links |= link_visible(dir, top)?;
    }
    let removed = remove_strays(dir, &current, &tops)?;
    if changed_links || removed {
        sync_dir(dir)?;
    }
    Ok(!unchanged)
}

/// An exclusive `flock` of `dir`, held until dropped.
fn lock(dir: &Path) -> Result<nix::fcntl::Flock<File>, WriteError> {
    let file = File::open(dir).map_err(io_err("opening", dir))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, errno)| {
        WriteError::Io {
            what: "locking",
            path: dir.to_path_buf(),
            source: io::Error::from(errno),
        }
    })
}

/// A fresh, empty `..<UTC timestamp>.<nanoseconds>` directory in `dir`.
fn new_version_dir(dir: &Path) -> Result<PathBuf, WriteError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let stamp = utc_stamp(now.as_secs());
    for attempt in 0u32..1000 {
        let path = dir.join(format!(
            "..{stamp}.{:09}",
            (now.subsec_nanos() + attempt) % 1_000_000_000
        ));
        match fs::DirBuilder::new().mode(DIR_MODE).create(&path) {
            Ok(()) => {
                set_mode(&path, DIR_MODE)?;
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("creating", &path)(e)),
        }
    }
    Err(WriteError::Io {
        what: "creating a version in",
        path: dir.to_path_buf(),
        source: io::Error::from(io::ErrorKind::AlreadyExists),
    })
}

/// `YYYY_MM_DD_HH_MM_SS` (UTC) of `secs` since the epoch, as Kubernetes names versions.
fn utc_stamp(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}_{month:02}_{day:02}_{:02}_{:02}_{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn set_mode(path: &Path, mode: u32) -> Result<(), WriteError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", path))
}

fn sync_dir(path: &Path) -> Result<(), WriteError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing", path))
}

/// Writes every file and dir of `listing` into the empty `version`, each fsynced.
fn write_version(version: &Path, listing: &Listing) -> Result<(), WriteError> {
    // Parents before children: a BTreeSet orders "a" before "a/b".
    for dir in &listing.dirs {
        let path = version.join(dir);
        fs::DirBuilder::new()
            .mode(DIR_MODE)
            .create(&path)
            .map_err(io_err("creating", &path))?;
        set_mode(&path, DIR_MODE)?;
    }
    for (rel, (bytes, mode)) in &listing.files {
        let path = version.join(rel);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(*mode)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io_err("creating", &path))?;
        f.write_all(bytes).map_err(io_err("writing", &path))?;
        // The umask may have taken bits away.
        f.set_permissions(fs::Permissions::from_mode(*mode))
            .map_err(io_err("chmod", &path))?;
        f.sync_all().map_err(io_err("syncing", &path))?;
    }
    // Children before parents, the version itself last.
    for dir in listing.dirs.iter().rev() {
        sync_dir(&version.join(dir))?;
    }
    sync_dir(version)
}

/// Points `..data` at `version`: a new link renamed over the old one, then `dir` fsynced.
fn swap_data_link(dir: &Path, version: &str) -> Result<(), WriteError> {
    let tmp = dir.join(DATA_DIR_TMP);
    remove_entry(&tmp)?;
    std::os::unix::fs::symlink(version, &tmp).map_err(io_err("linking", &tmp))?;
    let data = dir.join(DATA_DIR);
    fs::rename(&tmp, &data).map_err(io_err("renaming over", &data))?;
    sync_dir(dir)
}

/// Makes `dir/top` the link `..data/top`; returns whether anything changed.
fn link_visible(dir: &Path, top: &str) -> Result<bool, WriteError> {
    let path = dir.join(top);
    let target = Path::new(DATA_DIR).join(top);
    if fs::read_link(&path).is_ok_and(|t| t == target) {
        return Ok(false);
    }
    let tmp = dir.join(LINK_TMP);
    remove_entry(&tmp)?;
    std::os::unix::fs::symlink(&target, &tmp).map_err(io_err("linking", &tmp))?;
    if let Err(e) = fs::rename(&tmp, &path) {
        // A directory in the way (the in-place layout of older agents): it goes first.
        if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            return Err(io_err("renaming over", &path)(e));
        }
        remove_entry(&path)?;
        fs::rename(&tmp, &path).map_err(io_err("renaming over", &path))?;
    }
    Ok(true)
}

/// Removes every entry of `dir` but `..data`, the `current` version and the links `tops`;
/// returns whether anything was removed.
fn remove_strays(dir: &Path, current: &str, tops: &BTreeSet<&str>) -> Result<bool, WriteError> {
    let mut removed = false;
    for entry in fs::read_dir(dir).map_err(io_err("reading", dir))? {
        let entry = entry.map_err(io_err("reading", dir))?;
        let name = entry.file_name();
        let keep = name
            .to_str()
            .is_some_and(|n| n == DATA_DIR || n == current || tops.contains(n));
        if !keep {
            remove_entry(&entry.path())?;
            removed = true;
        }
    }
    Ok(removed)
}

/// Removes a file, link or directory tree (never following a link); missing is fine.
fn remove_entry(path: &Path) -> Result<(), WriteError> {
    let result = match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing", path)(e)),
    }
}

#[cfg(test)]
mod tests {
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
}
