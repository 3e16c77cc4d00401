//! Taking a node down on purpose: `skiff up`'s exit ([`tear_down`]: every container and shim,
//! the pod network, the proxy's rules, the agent's tmpfs) and `skiff agent --reset` ([`reset`]:
//! the same from the data dir alone, with no cluster to talk to, then the node's state files).
//!
//! A lone `skiff agent` that is killed or stopped does none of this: its pods keep running and
//! a restarted agent adopts them (DESIGN §5).
//!
//! Must not: touch what another agent of the same host made (everything is found through this
//! agent's data dir), or delete user data: persistentVolumeClaim data and the image store stay.

use std::path::{Path, PathBuf};

use crate::containers::Containers;
use crate::network::PodNetwork;
use crate::{AgentError, AgentOptions, proxy};

/// Ends every container and shim, and removes the pod network and the proxy's rules.
pub async fn tear_down(runtime: &Containers, network: &PodNetwork, data_dir: &Path) {
    runtime.shutdown_all().await;
    // The proxy's first: its service route is on the node bridge, which goes next.
    if let Err(e) = proxy::remove(data_dir).await {
        tracing::warn!(error = %e, "removing the node proxy's rules");
    }
    network.remove_all().await;
}

/// What [`reset`] removed and kept, for the command to print.
#[derive(Debug, Default)]
pub struct ResetReport {
    pub removed: Vec<PathBuf>,
    pub kept: Vec<PathBuf>,
}

/// The node's state under the data dir, removed by a reset: pods' volumes and logs, the shims'
/// records, pod addresses, Wasm roots, the tmpfs mount point, the proxy's and bridge's records.
const STATE: &[&str] = &[
    "pods",
    "shims",
    "ipam",
    "roots",
    "run",
    "proxy",
    crate::network::BRIDGE_FILE,
];
/// Kept by a reset: the users' claim data and the image store (a cache worth keeping).
const KEPT: &[&str] = &["volumes", "images", "snapshots"];

/// `skiff agent --reset`: stops whatever the agent of `options.data_dir` left running, takes its
/// network down and removes its state. Needs no API server.
pub async fn reset(options: &AgentOptions) -> Result<ResetReport, AgentError> {
    let data_dir = &options.data_dir;
    if !data_dir.is_dir() {
        return Ok(ResetReport::default());
    }
    let runtime = Containers::open(options).await?;
    let name = options.name.clone().unwrap_or_default();
    let network = PodNetwork::open(data_dir, &name, crate::node::runs_containers())
        .await
        .map_err(|e| AgentError::Network(e.to_string()))?;
    // Adopt what the agent left running (every recorded shim and its tasks), to end it.
    if let Err(e) = runtime.list().await {
        tracing::warn!(error = %e, "listing the containers left running");
    }
    tear_down(&runtime, &network, data_dir).await;
    drop(runtime);
    let mut report = ResetReport::default();
    for entry in STATE {
        let path = data_dir.join(entry);
        let removed = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(_) => continue,
        };
        removed.map_err(|source| AgentError::Io {
            path: path.clone(),
            source,
        })?;
        report.removed.push(path);
    }
    report.kept = KEPT
        .iter()
        .map(|k| data_dir.join(k))
        .filter(|p| p.exists())
        .collect();
    Ok(report)
}
