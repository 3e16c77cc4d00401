//! The pod workers' two seams, as narrow traits: the container runtime they start and stop
//! containers with, and the API they report to. The agent plugs in the real ones (the shims,
//! through [`crate::containers`], and the API server); the pod loop's unit tests plug in fakes. End-to-end tests always run
//! the real ones.
//!
//! Must not: grow methods the workers do not call (the dispatcher's list and watch stay on the
//! concrete runtime).

use std::path::Path;

use async_trait::async_trait;
use skiff_api::ResourceExt;
use skiff_api::client::{Api, Transport};
use skiff_api::v1::{DeleteRequest, Pod};

use crate::containers::{ContainerSpec, Containers, Instance, StartFailure};

/// Starts and stops containers. Every start is idempotent on the instance id.
#[async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// The digest (`sha256:...`) of a Wasm module file.
    async fn digest(&self, module: &Path) -> Result<String, StartFailure>;
    async fn start(&self, spec: ContainerSpec) -> Result<Instance, StartFailure>;
    /// Stops an instance: SIGTERM, SIGKILL after `grace_seconds` (a Wasm guest ends at once).
    async fn kill(&self, id: &str, grace_seconds: u32) -> Result<(), String>;
    /// Forgets an instance (killing it if it runs). An unknown id is fine.
    async fn remove(&self, id: &str) -> Result<(), String>;
    /// Runs `command` in running Linux container `id` (an `exec` probe): its exit code and its
    /// output (stdout and stderr, the first [`OUTPUT_LIMIT`] bytes). Dropping the future kills
    /// the command.
    async fn exec(&self, id: &str, command: Vec<String>) -> Result<(i32, String), String>;
}

/// The output an `exec` probe keeps (kubelet keeps 10 KiB).
pub const OUTPUT_LIMIT: usize = 10 * 1024;

#[async_trait]
impl ContainerRuntime for Containers {
    async fn digest(&self, module: &Path) -> Result<String, StartFailure> {
        Containers::digest(self, module).await
    }

    async fn start(&self, spec: ContainerSpec) -> Result<Instance, StartFailure> {
        Containers::start(self, spec).await
    }

    async fn kill(&self, id: &str, grace_seconds: u32) -> Result<(), String> {
        Containers::kill(self, id, grace_seconds).await
    }

    async fn remove(&self, id: &str) -> Result<(), String> {
        Containers::remove(self, id).await
    }

    async fn exec(&self, id: &str, command: Vec<String>) -> Result<(i32, String), String> {
        use crate::containers::exec::ExecOutput;
        // No stdin: the sender only has to outlive the command.
        let (_stdin, input) = tokio::sync::mpsc::channel(1);
        let mut output = Containers::exec(self, id, command, false, input).await?;
        let mut kept = Vec::new();
        while let Some(out) = output.recv().await {
            match out {
                ExecOutput::Stdout(bytes) | ExecOutput::Stderr(bytes) => {
                    let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                    kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
                ExecOutput::Exit(code) => {
                    return Ok((code, String::from_utf8_lossy(&kept).into_owned()));
                }
            }
        }
        Err("the command's output ended without an exit code".into())
    }
}

/// What the workers write to the API: pod status, the end of a deletion, events.
#[async_trait]
pub trait PodApi: Send + Sync {
    async fn update_status(&self, pod: Pod) -> Result<Pod, tonic::Status>;
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<Pod>, tonic::Status>;
    /// Deletes a pod whose containers have stopped (grace period 0).
    async fn finish_deletion(&self, namespace: &str, name: &str) -> Result<(), tonic::Status>;
    /// Records an event about the pod (and container); never blocks, never fails the caller.
    fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        message: String,
    );
}

/// The API server.
pub struct ApiServer {
    transport: Transport,
    events: crate::events::Recorder,
}

impl ApiServer {
    pub fn new(transport: Transport, node: &str) -> Self {
        Self {
            events: crate::events::Recorder::new(transport.clone(), node),
            transport,
        }
    }
}

#[async_trait]
impl PodApi for ApiServer {
    async fn update_status(&self, pod: Pod) -> Result<Pod, tonic::Status> {
        let api: Api<Pod> = Api::new(self.transport.clone(), pod.namespace());
        api.update_status(pod).await
    }

    async fn get(&self, namespace: &str, name: &str) -> Result<Option<Pod>, tonic::Status> {
        let api: Api<Pod> = Api::new(self.transport.clone(), namespace);
        api.get_opt(name).await
    }

    async fn finish_deletion(&self, namespace: &str, name: &str) -> Result<(), tonic::Status> {
        let api: Api<Pod> = Api::new(self.transport.clone(), namespace);
        let request = DeleteRequest {
            name: name.to_string(),
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        api.delete_with(request).await.map(|_| ())
    }

    fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        message: String,
    ) {
        self.events.pod(pod, container, warning, reason, message);
    }
}
