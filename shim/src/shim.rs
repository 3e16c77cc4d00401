//! The shim's lifecycle hooks for the `containerd-shim` crate, and what they share with
//! [`crate::actions`]: grouping (which shim serves a container) and cleanup (what `shim delete`
//! removes).
//!
//! Grouping: containers whose spec carries `io.kubernetes.cri.sandbox-id` (CRI pods) or
//! [`GROUP`] share one shim, as runc's shim does for pods; others get one each. A [`GROUP`] shim
//! serves many pods (a skiff node's Wasm pods): it never joins a task's cgroup
//! ([`in_node_group`]), so that no pod's cgroup is charged with its neighbours'. `delete` runs in the bundle after containerd lost the shim (SIGKILL, OOM): it kills and
//! removes what the task left (a Linux container's processes and cgroup, a Wasm task's cgroup)
//! and unmounts the rootfs. Must not: serve requests outside the task service.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::api::DeleteResponse;
use containerd_shim::asynchronous::util::write_str_to_file;
use containerd_shim::asynchronous::{ExitSignal, Shim, spawn};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, Error, Flags, StartOpts};
use oci_spec::runtime::Spec;
use skiff_runtime::bundle::{CRI_SANDBOX_ID, GROUP};

use crate::events::Events;
use crate::service::Service;

/// Spec annotations that put containers in one shim, first match wins.
pub const GROUP_ANNOTATIONS: &[&str] = &[CRI_SANDBOX_ID, GROUP];

pub struct SkiffShim {
    exit: Arc<ExitSignal>,
    id: String,
    namespace: String,
}

/// The spec's annotation `key`, if set.
pub fn annotation<'a>(spec: &'a Spec, key: &str) -> Option<&'a str> {
    spec.annotations().as_ref()?.get(key).map(String::as_str)
}

/// The group a bundle's container belongs to: an annotation's value, else its own id.
pub fn grouping(spec: Option<&Spec>, id: &str) -> String {
    spec.and_then(|s| GROUP_ANNOTATIONS.iter().find_map(|k| annotation(s, k)))
        .filter(|v| !v.is_empty())
        .unwrap_or(id)
        .to_string()
}

/// Whether the spec puts its task in a shim shared by many pods ([`GROUP`]): such a shim never
/// joins a task's cgroup, and its Wasm tasks are held to their limits by wasmtime alone.
pub fn in_node_group(spec: &Spec) -> bool {
    annotation(spec, GROUP).is_some_and(|v| !v.is_empty())
}

#[async_trait]
impl Shim for SkiffShim {
    type T = Service;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        SkiffShim {
            exit: Arc::new(ExitSignal::default()),
            id: args.id.clone(),
            namespace: args.namespace.clone(),
        }
    }

    /// The framework's `start`, for callers that go through `containerd_shim` alone: `main`
    /// answers `start` itself ([`crate::actions::start`], without a second exec).
    async fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        let spec = Spec::load("config.json").ok();
        let group = grouping(spec.as_ref(), &opts.id);
        let address = spawn(opts, &group, Vec::new()).await?;
        write_str_to_file("address", &address).await?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        let bundle = std::env::current_dir().map_err(|e| Error::Other(e.to_string()))?;
        Ok(crate::actions::delete_response(&bundle, &self.id))
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
        let _ = tokio::task::spawn_blocking(crate::cgroup::settle).await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        // Only the serving shim: the `start` and `delete` actions are short-lived.
        crate::reaper::spawn();
        Service::new(
            Events::new(publisher, &self.namespace),
            self.exit.clone(),
            None,
        )
    }
}

/// What `shim delete` does in `bundle` for container `id`.
pub fn cleanup(bundle: &Path, id: &str) {
    // A shim that left the task's cgroup at Delete removes it itself. Without that mark the shim
    // exits in it (the task was its last) or was killed, and it may still be exiting (a member
    // of the cgroup for a moment; even its socket may still accept): wait for it to go.
    let shim_gone = !bundle.join(crate::cgroup::LEAVING_MARKER).exists();
    crate::linux::cleanup(bundle, id);
    // A Wasm task ran in the shim itself: once that shim is gone its cgroup is empty. containerd
    // also runs `shim delete` after every normal Delete, while a group's shim may still live in
    // the cgroup: so it is only removed, never signalled.
    if let Ok(spec) = Spec::load(bundle.join("config.json"))
        && let Some(path) = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone())
        && let Ok(cg) = skiff_runtime::linux::cgroups::Cgroup::new(&path.display().to_string())
    {
        crate::cgroup::remove_dirs(&cg, shim_gone);
    }
    crate::rootfs::unmount(bundle);
    remove_dead_socket(bundle);
}

/// Removes the socket named in the bundle's `address` file if no shim listens on it any more (a
/// SIGKILLed shim cannot remove its own; a live group shim still answers and keeps it).
fn remove_dead_socket(bundle: &Path) {
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let path = address.trim().trim_start_matches("unix://");
    if path.is_empty() || !Path::new(path).exists() {
        return;
    }
    if let Err(e) = std::os::unix::net::UnixStream::connect(path)
        && e.kind() == std::io::ErrorKind::ConnectionRefused
        && let Err(e) = std::fs::remove_file(path)
    {
        log::warn!("removing the dead shim's socket {path}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_of_a_pod_share_a_shim() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "annotations": {"io.kubernetes.cri.sandbox-id": "pod-1"},
        }))
        .unwrap();
        assert_eq!(grouping(Some(&spec), "c1"), "pod-1");
        assert_eq!(grouping(None, "c1"), "c1");
        assert!(!in_node_group(&spec));
        let node: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "annotations": {GROUP: "wasm"},
        }))
        .unwrap();
        assert_eq!(grouping(Some(&node), "c1"), "wasm");
        assert!(in_node_group(&node));
    }
}
