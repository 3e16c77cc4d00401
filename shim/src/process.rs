//! One process of a task (its init, or an exec) as containerd sees it: status, pid, exit.
//!
//! Owns [`Process`]: the `created → running → stopped` status, the pid containerd is told, the
//! exit (code and time, set once) that `Wait` waits for, the stdio paths it was given, and the
//! stdin closer `CloseIO` fires. Its `gate` orders events: whoever starts the process holds it
//! until the Start event is queued, and the exit watcher takes it before queueing the Exit event,
//! so containerd always sees Create → Start → Exit → Delete. Must not: know how the process runs
//! (Wasm instance, container or exec: `wasm`, `linux`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use containerd_shim::api::Status;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use tokio::sync::watch;

use crate::Locked;
use crate::stdio::{Io, StdinCloser};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: u32,
    pub at: SystemTime,
}

impl Exit {
    pub fn now(code: u32) -> Self {
        Exit {
            code,
            at: SystemTime::now(),
        }
    }

    pub fn timestamp(&self) -> MessageField<Timestamp> {
        MessageField::some(timestamp(self.at))
    }
}

pub fn timestamp(at: SystemTime) -> Timestamp {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

pub struct Process {
    /// Empty for a task's init.
    pub exec_id: String,
    pub io: Io,
    pid: AtomicU32,
    /// `CREATED`, `RUNNING` or `STOPPED`.
    status: Mutex<Status>,
    exit: watch::Sender<Option<Exit>>,
    stdin: Mutex<Option<StdinCloser>>,
    /// Held from start until the Start event is queued; taken before the Exit event is.
    pub gate: tokio::sync::Mutex<()>,
}

impl Process {
    pub fn new(exec_id: &str, io: Io, pid: u32, stdin: Option<StdinCloser>) -> Self {
        Process {
            exec_id: exec_id.to_string(),
            io,
            pid: AtomicU32::new(pid),
            status: Mutex::new(Status::CREATED),
            exit: watch::channel(None).0,
            stdin: Mutex::new(stdin),
            gate: tokio::sync::Mutex::new(()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> Status {
        *self.status.locked()
    }

    pub fn is_created(&self) -> bool {
        self.status() == Status::CREATED
    }

    pub fn is_running(&self) -> bool {
        self.status() == Status::RUNNING
    }

    pub fn is_stopped(&self) -> bool {
        self.status() == Status::STOPPED
    }

    /// Marks the process started with `pid`, unless it already ended.
    pub fn set_running(&self, pid: u32) {
        let mut status = self.status.locked();
        if *status == Status::CREATED {
            self.pid.store(pid, Ordering::Relaxed);
            *status = Status::RUNNING;
        }
    }

    /// Records the exit; false if one was recorded already.
    pub fn set_exited(&self, exit: Exit) -> bool {
        let mut status = self.status.locked();
        if *status == Status::STOPPED {
            return false;
        }
        *status = Status::STOPPED;
        self.exit.send_replace(Some(exit));
        drop(status);
        self.close_stdin();
        true
    }

    pub fn exit(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    /// Waits until the process has exited.
    pub async fn wait(&self) -> Exit {
        let mut rx = self.exit.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(exit) => exit.unwrap_or_else(|| Exit::now(255)),
            // The sender lives as long as `self`.
            Err(_) => Exit::now(255),
        }
    }

    /// Ends the process's stdin (the guest or container reads EOF once what was written is
    /// read). Idempotent.
    pub fn close_stdin(&self) {
        if let Some(closer) = self.stdin.locked().take() {
            closer.close();
        }
    }
}
