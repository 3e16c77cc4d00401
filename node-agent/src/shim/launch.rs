//! Running `containerd-shim-skiff-v1` as containerd does: the `start` action (which forks the
//! long-lived shim, or finds the group's running one, and prints its ttrpc address) and the
//! `delete` action (cleanup after a shim that died).
//!
//! ```text
//! containerd-shim-skiff-v1 -namespace NS -address ADDR -publish-binary BIN -id ID start
//!   cwd: the bundle; env: TTRPC_ADDRESS=<events endpoint>, SKIFF_SHIM_CACHE_DIR=<cache>;
//!   stdin: containerd's runc Options (only `shim_cgroup`), or nothing
//! containerd-shim-skiff-v1 -namespace NS -address ADDR -publish-binary BIN -id ID -bundle B delete
//! ```
//!
//! The shim's socket is `/run/containerd/s/<sha256(ADDR/NS/GROUP)>`: the agent's own `ADDR`
//! (a path in its data dir) and namespace keep it apart from a real containerd's shims and from
//! another agent's on the same host. Must not: keep state (that is [`super::records`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::shim::oci::Options;
use tokio::io::AsyncWriteExt;

use super::error::ShimError;
use super::task::ExitStatus;

/// How the agent runs the shim binary.
#[derive(Debug, Clone)]
pub struct Launcher {
    pub binary: PathBuf,
    pub namespace: String,
    /// `-address`: names the agent to its shims (nothing listens on it).
    pub address: PathBuf,
    /// `TTRPC_ADDRESS`: the events endpoint.
    pub ttrpc_address: PathBuf,
    /// `SKIFF_SHIM_CACHE_DIR`: where shims cache compiled modules.
    pub cache_dir: PathBuf,
    /// A cgroup (relative to the hierarchy roots) the shim process is put in, as containerd's
    /// `shim_cgroup` option does.
    pub shim_cgroup: Option<String>,
    /// How long an action may take.
    pub timeout: Duration,
}

impl Launcher {
    /// Runs the shim's `action` (`start` or `delete`) for task `id` of `group` in `bundle`,
    /// `input` on its stdin: its stdout and stderr, once it has exited successfully in time.
    async fn run(
        &self,
        action: &'static str,
        group: &str,
        id: &str,
        bundle: &Path,
        input: Option<Vec<u8>>,
    ) -> Result<(Vec<u8>, String), ShimError> {
        let mut cmd = tokio::process::Command::new(&self.binary);
        cmd.arg("-namespace")
            .arg(&self.namespace)
            .arg("-address")
            .arg(&self.address)
            .arg("-publish-binary")
            .arg(std::env::current_exe().unwrap_or_else(|_| PathBuf::from("skiff")))
            .arg("-id")
            .arg(id);
        if action == "delete" {
            cmd.arg("-bundle").arg(bundle);
        }
        cmd.arg(action)
            .current_dir(bundle)
            .env("TTRPC_ADDRESS", &self.ttrpc_address)
            .env("SKIFF_SHIM_CACHE_DIR", &self.cache_dir);
        // The shim exports its spans where the agent does.
        if let Some(endpoint) = skiff_telemetry::exporting_to() {
            cmd.env(skiff_telemetry::ENDPOINT_ENV, endpoint);
        }
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let spawn_error = |source| ShimError::Spawn {
            binary: self.binary.clone(),
            group: group.to_string(),
            source,
        };
        let mut child = cmd.spawn().map_err(spawn_error)?;
        if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(&bytes).await.map_err(spawn_error)?;
            // Dropped: the shim reads its stdin to the end.
        }
        let out = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| ShimError::Timeout {
                op: if action == "start" {
                    "shim start"
                } else {
                    "shim delete"
                },
                id: id.to_string(),
                group: group.to_string(),
                after: self.timeout,
            })?
            .map_err(spawn_error)?;
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if !out.status.success() {
            return Err(ShimError::Action {
                action,
                group: group.to_string(),
                status: out.status.to_string(),
                stderr,
            });
        }
        Ok((out.stdout, stderr))
    }

    /// `shim start` for task `id` of `group` in `bundle`: the address of the shim that serves
    /// the group (forked now, or already running).
    pub async fn start(&self, group: &str, id: &str, bundle: &Path) -> Result<String, ShimError> {
        let options = self.options_bytes(group)?;
        let (stdout, stderr) = self.run("start", group, id, bundle, options).await?;
        let address = String::from_utf8_lossy(&stdout).trim().to_string();
        if !address.starts_with("unix://") {
            return Err(ShimError::Action {
                action: "start",
                group: group.to_string(),
                status: format!("printed {address:?}, not a unix:// address"),
                stderr,
            });
        }
        Ok(address)
    }

    /// `shim delete` for task `id` in `bundle`, after its shim died: kills and removes what the
    /// task left (a Linux container's processes, its cgroup, the rootfs mount, a dead socket).
    pub async fn delete(
        &self,
        group: &str,
        id: &str,
        bundle: &Path,
    ) -> Result<ExitStatus, ShimError> {
        let (stdout, _) = self.run("delete", group, id, bundle, None).await?;
        let response = containerd_shim::protos::api::DeleteResponse::parse_from_bytes(&stdout)
            .map_err(|e| ShimError::Decode {
                what: format!("shim delete of {id}"),
                reason: e.to_string(),
            })?;
        Ok(ExitStatus::from_proto(
            response.exit_status,
            &response.exited_at,
        ))
    }

    /// containerd's runc `Options` on the shim's stdin, when there is a cgroup to ask for.
    fn options_bytes(&self, group: &str) -> Result<Option<Vec<u8>>, ShimError> {
        let Some(cgroup) = &self.shim_cgroup else {
            return Ok(None);
        };
        let encode = |e: containerd_shim::protos::protobuf::Error| ShimError::Decode {
            what: format!("shim options for {group}"),
            reason: e.to_string(),
        };
        let options = Options {
            shim_cgroup: cgroup.clone(),
            ..Default::default()
        };
        let any = Any {
            type_url: "containerd.runc.v1.Options".to_string(),
            value: options.write_to_bytes().map_err(encode)?,
            ..Default::default()
        };
        any.write_to_bytes().map(Some).map_err(encode)
    }
}
