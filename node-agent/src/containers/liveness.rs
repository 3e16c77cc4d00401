//! Notices a shim's death the moment it happens: a pidfd of the shim process, polled by tokio
//! (readable once the process has exited). No polling interval, no pid-reuse race.
//!
//! Must not: decide what a death means (the caller does).

use std::os::fd::OwnedFd;

use rustix::process::{Pid, PidfdFlags, pidfd_open};
use tokio::io::unix::AsyncFd;

/// A process being watched.
pub struct Watched {
    fd: AsyncFd<OwnedFd>,
}

impl Watched {
    /// Watches `pid`; an error if it is already gone (or cannot be watched).
    pub fn new(pid: u32) -> std::io::Result<Self> {
        let pid = i32::try_from(pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| std::io::Error::other(format!("pid {pid}: not a process id")))?;
        let fd = pidfd_open(pid, PidfdFlags::NONBLOCK)?;
        // Deprecated for fds the AsyncFd does not own; this one owns its OwnedFd, which is
        // closed only when the AsyncFd (and so its registration) is dropped.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)?;
        Ok(Watched { fd })
    }

    /// Returns once the process has exited.
    pub async fn exited(&self) {
        // A pidfd polls readable exactly when its process has ended; an error means the same.
        let _ = self.fd.readable().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_exit_is_seen_at_once_and_a_live_process_is_not_mistaken() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let watched = Watched::new(child.id()).expect("pidfd");
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(100), watched.exited()).await;
        assert!(early.is_err(), "a live process reads as exited");
        child.kill().expect("kill");
        tokio::time::timeout(std::time::Duration::from_secs(5), watched.exited())
            .await
            .expect("the exit was not seen");
        let _ = child.wait();
    }
}
