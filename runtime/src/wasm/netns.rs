//! Guests' sockets in a network namespace of the caller's choosing (a pod's).
//!
//! Linux makes a socket in the network namespace of the *thread* that creates it, and a guest's
//! sockets are created by the host functions its task calls. So an instance whose spec names a
//! namespace runs its entry point on a thread that has entered that namespace: one thread per
//! namespace, with a current-thread tokio runtime, shared by every instance given the same
//! namespace (a pod's containers reach each other on its `localhost`). The thread ends when
//! the last instance using it has ended. Threads the runtime starts for blocking work (name
//! lookups) are started from it and so inherit its namespace.
//!
//! Owns [`NetnsThreads`]. Must not: make or delete namespaces (the caller's network code does),
//! or run anything but instances' tasks on these threads.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use nix::sched::CloneFlags;
use tokio::sync::oneshot;

use super::error::WasmError;

/// A namespace's identity: its nsfs inode (paths can be reused for other namespaces).
type Key = (u64, u64);

/// The namespace threads of one engine.
#[derive(Default)]
pub(crate) struct NetnsThreads {
    threads: Mutex<HashMap<Key, Weak<NetnsThread>>>,
}

/// A thread inside one network namespace; it stops when the last handle is dropped.
pub(crate) struct NetnsThread {
    runtime: tokio::runtime::Handle,
    /// Dropping it ends the thread's runtime.
    _stop: oneshot::Sender<()>,
}

impl NetnsThread {
    /// The runtime to spawn the instance's task on.
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }
}

impl NetnsThreads {
    /// The thread for the namespace at `path` (a file such as `/run/netns/NAME` or
    /// `/proc/PID/ns/net`), started if none runs yet. Blocking: opens the file and may start a
    /// thread, so call it from a blocking context.
    pub(crate) fn enter(&self, path: &Path) -> Result<Arc<NetnsThread>, WasmError> {
        let bad = |message: String| {
            WasmError::InvalidSpec(format!("network namespace {}: {message}", path.display()))
        };
        let file = File::open(path).map_err(|e| bad(e.to_string()))?;
        let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
        let key = (meta.dev(), meta.ino());
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(thread) = threads.get(&key).and_then(Weak::upgrade) {
            return Ok(thread);
        }
        threads.retain(|_, t| t.strong_count() > 0);
        let thread = Arc::new(start(file, path.to_path_buf()).map_err(bad)?);
        threads.insert(key, Arc::downgrade(&thread));
        Ok(thread)
    }
}

/// Starts a thread that enters the namespace of `file`, then serves a current-thread runtime
/// until its stop sender is dropped.
fn start(file: File, path: PathBuf) -> Result<NetnsThread, String> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let name = format!("netns-{}", path.file_name().unwrap_or_default().display());
    std::thread::Builder::new()
        .name(name.chars().take(15).collect())
        .spawn(move || {
            let entered = nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
                .map_err(|e| match e {
                    nix::errno::Errno::EINVAL => "not a network namespace".to_string(),
                    e => format!("entering it: {e}"),
                })
                .and_then(|()| {
                    drop(file);
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("its runtime: {e}"))
                });
            let runtime = match entered {
                Ok(runtime) => runtime,
                Err(message) => {
                    let _ = ready_tx.send(Err(message));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(runtime.handle().clone()));
            let _ = runtime.block_on(stop_rx);
            // Tasks are gone by now; a name lookup still blocking must not hold the thread.
            runtime.shutdown_background();
        })
        .map_err(|e| format!("starting its thread: {e}"))?;
    let runtime = ready_rx
        .recv()
        .map_err(|_| "its thread ended while starting".to_string())??;
    Ok(NetnsThread {
        runtime,
        _stop: stop_tx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_no_namespace_is_refused_by_name() {
        let threads = NetnsThreads::default();
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let err = threads.enter(file.path()).err().expect("refused");
        let text = err.to_string();
        assert!(text.contains(&file.path().display().to_string()), "{text}");
        let missing = threads.enter(Path::new("/nonexistent/netns")).err();
        assert!(
            missing
                .expect("refused")
                .to_string()
                .contains("/nonexistent/netns")
        );
    }

    #[test]
    fn one_thread_per_namespace_until_the_last_handle_goes() {
        // The process's own namespace stands in for a pod's: entering it changes nothing.
        let threads = NetnsThreads::default();
        let a = threads
            .enter(Path::new("/proc/self/ns/net"))
            .expect("enter");
        let b = threads
            .enter(Path::new("/proc/thread-self/ns/net"))
            .expect("enter");
        assert!(Arc::ptr_eq(&a, &b), "the same namespace shares one thread");
        let (tx, rx) = std::sync::mpsc::channel();
        a.runtime().spawn(async move {
            let _ = tx.send(std::thread::current().name().map(str::to_string));
        });
        let name = rx.recv().expect("the thread runs tasks");
        assert_eq!(name.as_deref(), Some("netns-net"));
        drop((a, b));
        let c = threads
            .enter(Path::new("/proc/self/ns/net"))
            .expect("enter again");
        assert_eq!(
            Arc::strong_count(&c),
            1,
            "a new thread after the last handle went"
        );
    }
}
