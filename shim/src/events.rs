//! Task events to containerd (`/tasks/create`, `/start`, `/exit`, `/delete`, `/oom`, exec
//! events), queued in order on the framework's publisher (one queue, delivered in order while
//! containerd answers). A failed delivery is retried a few times, then dropped, and a retried
//! event can overtake later ones: across a containerd restart, containerd learns a task's state
//! from State/Wait when it reconnects, not from events.
//!
//! Must not: block a request on delivery (publishing only queues).

use std::sync::Arc;

use containerd_shim::Context;
use containerd_shim::event::Event;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskStart,
};
use containerd_shim::protos::protobuf::{MessageField, MessageFull};
use containerd_shim::publisher::RemotePublisher;

use crate::process::Exit;
use crate::stdio::Io;

/// Builds the protobuf descriptors of the task events (their file and its imports), which
/// publishing needs for each event's type URL: built lazily, the first event would pay for
/// them, most of a millisecond on the request that sends it.
pub fn prepare_descriptors() {
    let _ = TaskCreate::descriptor();
}

#[derive(Clone)]
pub struct Events {
    publisher: Arc<RemotePublisher>,
    namespace: String,
}

impl Events {
    pub fn new(publisher: RemotePublisher, namespace: &str) -> Self {
        Events {
            publisher: Arc::new(publisher),
            namespace: namespace.to_string(),
        }
    }

    async fn send<E: Event + 'static>(&self, event: E) {
        let topic = event.topic();
        if let Err(e) = self
            .publisher
            .publish(Context::default(), &topic, &self.namespace, Box::new(event))
            .await
        {
            log::warn!("publishing {topic}: {e}");
        }
    }

    pub async fn created(&self, id: &str, bundle: &str, io: &Io, pid: u32) {
        self.send(TaskCreate {
            container_id: id.to_string(),
            bundle: bundle.to_string(),
            io: MessageField::some(TaskIO {
                stdin: io.stdin.clone(),
                stdout: io.stdout.clone(),
                stderr: io.stderr.clone(),
                terminal: io.terminal,
                ..Default::default()
            }),
            pid,
            ..Default::default()
        })
        .await
    }

    pub async fn started(&self, id: &str, pid: u32) {
        self.send(TaskStart {
            container_id: id.to_string(),
            pid,
            ..Default::default()
        })
        .await
    }

    /// `exec_id` is the exec's id, or the container's own for its init (as containerd expects).
    pub async fn exited(&self, id: &str, exec_id: &str, pid: u32, exit: Exit) {
        self.send(TaskExit {
            container_id: id.to_string(),
            id: exec_id.to_string(),
            pid,
            exit_status: exit.code,
            exited_at: exit.timestamp(),
            ..Default::default()
        })
        .await
    }

    pub async fn deleted(&self, id: &str, pid: u32, exit: Exit) {
        self.send(TaskDelete {
            container_id: id.to_string(),
            id: id.to_string(),
            pid,
            exit_status: exit.code,
            exited_at: exit.timestamp(),
            ..Default::default()
        })
        .await
    }

    pub async fn oom(&self, id: &str) {
        self.send(TaskOOM {
            container_id: id.to_string(),
            ..Default::default()
        })
        .await
    }

    pub async fn exec_added(&self, id: &str, exec_id: &str) {
        self.send(TaskExecAdded {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        })
        .await
    }

    pub async fn exec_started(&self, id: &str, exec_id: &str, pid: u32) {
        self.send(TaskExecStarted {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            pid,
            ..Default::default()
        })
        .await
    }
}
