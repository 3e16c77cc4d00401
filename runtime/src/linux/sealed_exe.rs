//! The executor's own binary, out of a container's reach for writing (the CVE-2019-5736 class).
//!
//! A container init runs this binary until it execs the container's program. A hostile image
//! can make that program `#!/proc/self/exe`, so that the init re-executes the host's binary as
//! the container's process; another process of the container then holds `/proc/PID/exe` open
//! and, once it exits, writes it: the next executor run on the host is the attacker's. The
//! init's non-dumpability ([`super::init`]) keeps other processes from `/proc/PID/exe` while it
//! runs, not after the re-exec. So every init (and `skiff oci`'s in-process create) runs from a
//! file that cannot be written at all, made once per process (a shim serves many containers from
//! one), never copied per container:
//!
//! - first choice, no copy: a read-only bind mount of `/proc/self/exe`, opened `O_PATH` and then
//!   detached (`MNT_DETACH`), so no path reaches it and nothing can remount it; a write through
//!   any descriptor or `/proc/PID/exe` link of it fails with EROFS;
//! - where mounting is refused (no CAP_SYS_ADMIN): a `memfd` copy sealed against writes, shrinks,
//!   grows and further sealing (a copy of the whole binary, once per process).
//!
//! [`init_program`] is the path an init is executed from (`/proc/self/fd/N`, kept open for the
//! process's life); [`reexec_sealed`] lets a single-threaded command (`skiff oci`) run itself from
//! it before forking inits of its own.
//!
//! Must not: write the binary, leave a mount or a temporary file behind, or make more than one
//! sealed copy per process.

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::fcntl::{FcntlArg, OFlag, SealFlag, fcntl, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;

use super::error::{LinuxError, SysContext};

/// How the binary was sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    /// A detached read-only bind mount of the binary itself.
    ReadOnlyMount,
    /// A sealed memfd copy.
    SealedMemfd,
}

/// This process's binary, sealed: an open descriptor the inits are executed through.
#[derive(Debug)]
pub struct SealedExe {
    fd: OwnedFd,
    pub sealing: Sealing,
}

impl SealedExe {
    /// `/proc/self/fd/N`: executing it runs the sealed binary (the descriptor is close-on-exec,
    /// which does not stop `execve` from resolving it first).
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

static SEALED: OnceLock<Result<SealedExe, String>> = OnceLock::new();

/// This process's sealed binary, made on first use.
pub fn sealed() -> Result<&'static SealedExe, LinuxError> {
    SEALED
        .get_or_init(|| seal(Path::new("/proc/self/exe")).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| {
            LinuxError::io(
                format!("sealing the executor's binary: {e}"),
                std::io::Error::other("the container init cannot run unprotected"),
            )
        })
}

/// The program that runs this binary's container init (`linux-init`), sealed.
pub fn init_program() -> Result<OsString, LinuxError> {
    Ok(sealed()?.path().into_os_string())
}

/// Seals `binary`: a read-only detached mount of it, else a sealed memfd copy.
pub fn seal(binary: &Path) -> Result<SealedExe, LinuxError> {
    match read_only_mount(binary) {
        Ok(fd) => Ok(SealedExe {
            fd,
            sealing: Sealing::ReadOnlyMount,
        }),
        Err(mount_error) => sealed_memfd(binary)
            .map(|fd| SealedExe {
                fd,
                sealing: Sealing::SealedMemfd,
            })
            .map_err(|memfd_error| {
                LinuxError::io(
                    format!("read-only mount: {mount_error}; sealed copy: {memfd_error}"),
                    std::io::Error::other("cannot seal the binary"),
                )
            }),
    }
}

fn read_only_mount(binary: &Path) -> Result<OwnedFd, LinuxError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let point = std::env::temp_dir().join(format!(
        ".skiff-exe-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let made = open(
        &point,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::from_bits_truncate(0o600),
    )
    .ctx(|| format!("creating the mount point {}", point.display()))?;
    drop(made);
    let result = (|| {
        mount(
            Some(binary),
            &point,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx(|| format!("bind-mounting {}", binary.display()))?;
        let sealed = (|| {
            mount(
                None::<&str>,
                &point,
                None::<&str>,
                MsFlags::MS_BIND
                    | MsFlags::MS_REMOUNT
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV,
                None::<&str>,
            )
            .ctx(|| "remounting the binary read-only".into())?;
            let fd = open(&point, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                .ctx(|| "opening the read-only binary".into())?;
            let vfs = nix::sys::statvfs::fstatvfs(&fd).ctx(|| "statvfs".into())?;
            if !vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
                return Err(LinuxError::io(
                    "the binary's mount",
                    std::io::Error::other("is not read-only"),
                ));
            }
            Ok(fd)
        })();
        // Detached: the descriptor keeps the mount alive, no path reaches it any more.
        let detached = umount2(&point, MntFlags::MNT_DETACH).ctx(|| "detaching".into());
        let fd = sealed?;
        detached?;
        Ok(fd)
    })();
    let _ = std::fs::remove_file(&point);
    result
}

fn sealed_memfd(binary: &Path) -> Result<OwnedFd, LinuxError> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let fd = memfd_create(
        "skiff-exe",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .ctx(|| "memfd_create".into())?;
    let mut source = std::fs::File::open(binary).ctx(|| format!("opening {}", binary.display()))?;
    let mut copy = std::fs::File::from(fd);
    std::io::copy(&mut source, &mut copy).ctx(|| "copying the binary".into())?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(&copy, FcntlArg::F_ADD_SEALS(seals)).ctx(|| "sealing the copy".into())?;
    Ok(OwnedFd::from(copy))
}

/// Whether this process runs from a sealed binary (a read-only mount or a write-sealed memfd).
pub fn running_sealed() -> bool {
    let Ok(fd) = open(
        "/proc/self/exe",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    if let Ok(seals) = fcntl(&fd, FcntlArg::F_GET_SEALS)
        && SealFlag::from_bits_truncate(seals).contains(SealFlag::F_SEAL_WRITE)
    {
        return true;
    }
    nix::sys::statvfs::fstatvfs(&fd)
        .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// Replaces this (single-threaded) process by its binary run from the sealed copy, with the same
/// arguments and environment, unless it runs sealed already. Returns only on failure.
pub fn reexec_sealed(args: &[OsString]) -> Result<(), LinuxError> {
    if running_sealed() {
        return Ok(());
    }
    let exe = sealed()?;
    let cstr = |s: &std::ffi::OsStr| {
        CString::new(s.as_encoded_bytes())
            .map_err(|_| LinuxError::io("argument", std::io::ErrorKind::InvalidInput.into()))
    };
    let argv = args
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let env = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            cstr(&kv)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let program = cstr(exe.path().as_os_str())?;
    nix::unistd::execve(&program, &argv, &env).ctx(|| "re-executing the sealed binary".into())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_fails_through(path: &Path) -> std::io::Error {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .expect_err("the sealed binary opened for writing")
    }

    #[test]
    fn the_sealed_binary_cannot_be_written_and_still_runs() {
        let dir = tempfile::tempdir().unwrap();
        let original = dir.path().join("true");
        std::fs::copy("/bin/true", &original).unwrap();
        let sealed = seal(&original).unwrap();
        assert_eq!(sealed.sealing, Sealing::ReadOnlyMount);
        // Not through its descriptor, nor by the path a container would see as /proc/PID/exe.
        let e = write_fails_through(&sealed.path());
        assert_eq!(e.raw_os_error(), Some(nix::libc::EROFS), "{e}");
        // No mount is left at any path.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(".skiff-exe-"), "{mounts}");
        let status = std::process::Command::new(sealed.path()).status().unwrap();
        assert!(status.success());
        // The original file is untouched and still writable by its owner.
        assert!(
            std::fs::OpenOptions::new()
                .write(true)
                .open(&original)
                .is_ok()
        );
    }

    #[test]
    fn a_memfd_copy_is_sealed_against_writes() {
        use std::io::Write;
        let fd = sealed_memfd(Path::new("/bin/true")).unwrap();
        let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"#!/bin/sh"));
        let e = written.expect_err("a write to the sealed copy");
        assert_eq!(e.raw_os_error(), Some(nix::libc::EPERM), "{e}");
        let seals = fcntl(&fd, FcntlArg::F_GET_SEALS).unwrap();
        assert!(SealFlag::from_bits_truncate(seals).contains(SealFlag::F_SEAL_SEAL));
        let status = std::process::Command::new(&path).status().unwrap();
        assert!(status.success());
    }
}
