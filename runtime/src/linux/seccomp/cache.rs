//! Compiled seccomp filters kept between container starts, keyed by the profile.
//!
//! Compiling a profile of a few hundred names costs milliseconds (seccompiler builds its syscall
//! table per compile, and names this architecture lacks are found one probe at a time), and every
//! container init pays it. The filters depend only on the profile and the architecture, so the
//! first init to compile a profile leaves them in a directory of the runtime's own
//! (`DIR/<sha256 of arch + profile>`; the state root's `.seccomp` unless the runtime names one,
//! `/run/skiff/seccomp` for shims), and later inits read them back.
//!
//! The directory is the runtime's own, as its state root is: a file there that the caller does not
//! own, or that others may write, is ignored and compiled afresh, never trusted; so is one that
//! does not decode exactly. Writes go to a temporary file renamed into place, so a reader sees a
//! whole file or none.
//!
//! Must not: hold anything but compiled filters, or weaken one (a cached file is the same
//! compile's output, byte for byte).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;
use seccompiler::sock_filter;
use sha2::{Digest, Sha256};

use super::{Filters, compile_profile};
use crate::linux::error::LinuxError;

/// The cache file of `profile` in `dir`.
fn file_of(dir: &Path, profile: &LinuxSeccomp) -> Option<PathBuf> {
    let text = serde_json::to_vec(profile).ok()?;
    let mut hash = Sha256::new();
    hash.update(std::env::consts::ARCH.as_bytes());
    hash.update([0]);
    hash.update(&text);
    let name: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Some(dir.join(name))
}

/// `filters` as bytes: per filter, its instruction count (u32, little endian) then each
/// instruction as code (u16), jt, jf (u8) and k (u32).
fn encode(filters: &Filters) -> Vec<u8> {
    let mut out = Vec::new();
    for f in filters {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        for i in f {
            out.extend_from_slice(&i.code.to_le_bytes());
            out.extend_from_slice(&[i.jt, i.jf]);
            out.extend_from_slice(&i.k.to_le_bytes());
        }
    }
    out
}

/// The filters `encode` wrote, or None when `bytes` is not exactly that.
fn decode(mut bytes: &[u8]) -> Option<Filters> {
    let mut filters = Vec::new();
    while !bytes.is_empty() {
        let (count, rest) = bytes.split_first_chunk::<4>()?;
        let count = u32::from_le_bytes(*count) as usize;
        // BPF_MAXINSNS: a longer program is no compile's output.
        if count == 0 || count > 4096 || rest.len() < count * 8 {
            return None;
        }
        let (body, rest) = rest.split_at(count * 8);
        let program = body
            .chunks_exact(8)
            .map(|c| sock_filter {
                code: u16::from_le_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        filters.push(program);
        bytes = rest;
    }
    Some(filters)
}

/// Read back only what this user wrote and nobody else can have changed.
fn trusted(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let euid = nix::unistd::geteuid().as_raw();
    if !meta.is_file() || meta.uid() != euid || meta.mode() & 0o022 != 0 {
        return None;
    }
    let dir = std::fs::symlink_metadata(path.parent()?).ok()?;
    if !dir.is_dir() || dir.uid() != euid || dir.mode() & 0o022 != 0 {
        return None;
    }
    std::fs::read(path).ok()
}

fn store(path: &Path, filters: &Filters) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&encode(filters))?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Compiles `profile`, or reads back an earlier compile of it kept in `dir`; a failure to keep
/// it only costs the next start a compile.
pub fn compile_profile_cached(profile: &LinuxSeccomp, dir: &Path) -> Result<Filters, LinuxError> {
    let Some(path) = file_of(dir, profile) else {
        return compile_profile(profile);
    };
    if let Some(filters) = trusted(&path).and_then(|b| decode(&b)) {
        return Ok(filters);
    }
    let filters = compile_profile(profile)?;
    let _ = store(&path, &filters);
    Ok(filters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn profile() -> LinuxSeccomp {
        serde_json::from_value(super::super::runtime_default::<&str>(&[])).expect("a profile")
    }

    #[test]
    fn a_kept_compile_reads_back_the_same_filters() {
        let root = tempfile::tempdir().unwrap();
        let fresh = compile_profile(&profile()).unwrap();
        let first = compile_profile_cached(&profile(), root.path()).unwrap();
        let path = file_of(root.path(), &profile()).unwrap();
        assert!(path.is_file());
        let again = compile_profile_cached(&profile(), root.path()).unwrap();
        assert_eq!(encode(&first), encode(&fresh));
        assert_eq!(encode(&again), encode(&fresh));
    }

    #[test]
    fn a_file_others_may_write_or_that_does_not_decode_is_compiled_afresh() {
        let root = tempfile::tempdir().unwrap();
        let fresh = encode(&compile_profile(&profile()).unwrap());
        compile_profile_cached(&profile(), root.path()).unwrap();
        let path = file_of(root.path(), &profile()).unwrap();
        // An allow-everything program in place of the kept one, writable by others: ignored.
        let allow_all = encode(&vec![vec![sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0x7fff_0000,
        }]]);
        std::fs::write(&path, &allow_all).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let got = compile_profile_cached(&profile(), root.path()).unwrap();
        assert_eq!(encode(&got), fresh);
        // Truncated: compiled afresh (and kept whole again).
        std::fs::write(&path, &fresh[..fresh.len() - 3]).unwrap();
        let got = compile_profile_cached(&profile(), root.path()).unwrap();
        assert_eq!(encode(&got), fresh);
        assert_eq!(std::fs::read(&path).unwrap(), fresh);
    }

    #[test]
    fn another_profile_has_another_file() {
        let root = tempfile::tempdir().unwrap();
        let admin: LinuxSeccomp =
            serde_json::from_value(super::super::runtime_default(&["CAP_SYS_ADMIN"])).unwrap();
        assert_ne!(
            file_of(root.path(), &profile()),
            file_of(root.path(), &admin)
        );
    }
}
