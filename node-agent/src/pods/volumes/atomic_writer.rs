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
mod tests;
