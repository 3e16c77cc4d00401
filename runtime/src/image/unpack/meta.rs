//! An entry's metadata — mode (with setuid, setgid, sticky), owner, mtime, extended attributes —
//! read from its tar header and PAX records, and applied to what was written.
//!
//! Order matters and is fixed here: owner first (a `chown` clears setuid/setgid and file
//! capabilities), then mode, then extended attributes, then times (each of the others may touch
//! them). Extended attributes come from PAX `SCHILY.xattr.*` records: `user.*`, `security.*`
//! (file capabilities) and POSIX ACLs are applied; overlayfs's own (`trusted.overlay.*`,
//! `user.overlay.*`) are refused, since a layer could forge an opaque directory, a redirect or a
//! metacopy with them; any other is skipped. A filesystem without xattr support skips them.
//!
//! Must not: follow a symlink when applying anything.

use std::io::{self, Read};
use std::os::fd::BorrowedFd;

use rustix::fs::{AtFlags, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::error::Refusal;

const XATTR_RECORD: &str = "SCHILY.xattr.";

/// What an entry says about itself besides its path and contents.
#[derive(Debug, Clone)]
pub struct Meta {
    /// Permission bits with setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: Uid,
    pub gid: Gid,
    pub mtime: Timespec,
    /// `(name, value)`, already filtered.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    /// Reads the header and PAX records of `entry` (before its contents are read).
    pub fn read<R: Read>(
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<Result<Self, Refusal>, io::Error> {
        let header = entry.header();
        let mode = header.mode()? & 0o7777;
        let (uid, gid) = (header.uid()?, header.gid()?);
        let mut mtime = Timespec {
            tv_sec: i64::try_from(header.mtime()?).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        let mut xattrs = Vec::new();
        if let Some(records) = entry.pax_extensions()? {
            for record in records {
                let record = record?;
                let Ok(key) = record.key() else { continue };
                if key == "mtime" {
                    if let Some(t) = record.value().ok().and_then(parse_pax_time) {
                        mtime = t;
                    }
                } else if let Some(name) = key.strip_prefix(XATTR_RECORD) {
                    match xattr_policy(name) {
                        Ok(true) => xattrs.push((name.to_string(), record.value_bytes().to_vec())),
                        Ok(false) => {}
                        Err(refusal) => return Ok(Err(refusal)),
                    }
                }
            }
        }
        let (Some(uid), Some(gid)) = (id(uid), id(gid)) else {
            return Ok(Err(Refusal::OwnerId(uid.max(gid))));
        };
        Ok(Ok(Self {
            mode,
            uid: Uid::from_raw(uid),
            gid: Gid::from_raw(gid),
            mtime,
            xattrs,
        }))
    }

    fn times(&self) -> Timestamps {
        Timestamps {
            last_access: self.mtime,
            last_modification: self.mtime,
        }
    }

    /// Applies everything to an open file or directory.
    pub fn apply_fd(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        rustix::fs::fchown(fd, Some(self.uid), Some(self.gid))?;
        rustix::fs::fchmod(fd, Mode::from_raw_mode(self.mode))?;
        for (name, value) in &self.xattrs {
            match rustix::fs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty()) {
                Ok(()) | Err(Errno::OPNOTSUPP) => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("xattr {name}: {e}"))),
            }
        }
        rustix::fs::futimens(fd, &self.times())?;
        Ok(())
    }

    /// Applies owner and times to `name` in `dir` (a symlink or a whiteout), not following it.
    pub fn apply_nofollow(&self, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
        rustix::fs::chownat(
            dir,
            name,
            Some(self.uid),
            Some(self.gid),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        rustix::fs::utimensat(dir, name, &self.times(), AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }

    /// Applies owner, mode and times to the FIFO or device node `name` that the caller just
    /// made in `dir` (so it is not a symlink: the directory is the caller's alone).
    pub fn apply_node(&self, dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
        rustix::fs::chownat(
            dir,
            name,
            Some(self.uid),
            Some(self.gid),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        rustix::fs::chmodat(dir, name, Mode::from_raw_mode(self.mode), AtFlags::empty())?;
        rustix::fs::utimensat(dir, name, &self.times(), AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }
}

/// A uid or gid the kernel takes (`-1` means "unchanged" to `chown`).
fn id(raw: u64) -> Option<u32> {
    u32::try_from(raw).ok().filter(|id| *id != u32::MAX)
}

/// Whether an xattr from a layer is applied (`true`), skipped (`false`) or refused.
fn xattr_policy(name: &str) -> Result<bool, Refusal> {
    if name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.") {
        return Err(Refusal::OverlayXattr(name.to_string()));
    }
    Ok(name.starts_with("user.")
        || name.starts_with("security.")
        || name == "system.posix_acl_access"
        || name == "system.posix_acl_default")
}

/// A PAX time: `seconds[.fraction]`, possibly negative.
fn parse_pax_time(value: &str) -> Option<Timespec> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain("000000000".chars()).take(9).collect();
    let mut tv_nsec: i64 = digits.parse().ok()?;
    let mut tv_sec = tv_sec;
    if secs.starts_with('-') && tv_nsec > 0 {
        // -1.25 is 1.25 s before the epoch: -2 s + 0.75 s.
        tv_sec -= 1;
        tv_nsec = 1_000_000_000 - tv_nsec;
    }
    Some(Timespec { tv_sec, tv_nsec })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        let t = |s: &str| parse_pax_time(s).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(t("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(t("1.123456789123"), Some((1, 123_456_789)));
        assert_eq!(t("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(t("x"), None);
        assert_eq!(t("1.x"), None);
    }

    #[test]
    fn xattr_policies() {
        assert_eq!(xattr_policy("user.skiff"), Ok(true));
        assert_eq!(xattr_policy("security.capability"), Ok(true));
        assert_eq!(xattr_policy("system.posix_acl_access"), Ok(true));
        assert_eq!(xattr_policy("trusted.other"), Ok(false));
        assert!(xattr_policy("trusted.overlay.opaque").is_err());
        assert!(xattr_policy("trusted.overlay.redirect").is_err());
        assert!(xattr_policy("user.overlay.opaque").is_err());
    }

    #[test]
    fn ids() {
        assert_eq!(id(0), Some(0));
        assert_eq!(id(65534), Some(65534));
        assert_eq!(id(u64::from(u32::MAX)), None);
        assert_eq!(id(1 << 40), None);
    }
}
