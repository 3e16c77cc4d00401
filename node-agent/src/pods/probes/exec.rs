//! `exec` probes: a command run in the container (a Linux container, through its shim's exec as
//! `skiff exec` runs one) that exits 0 is success; otherwise its output is the failure's message,
//! as kubelet reports it. The prober's timeout drops the run, which kills the command.
//!
//! Wasm containers have no exec probes: a Wasm guest has no processes or shell to run a command
//! in, so validation refuses them (and the shim would refuse the exec).
//!
//! Must not: keep more output than the runtime's exec hands back
//! ([`super::super::seams::OUTPUT_LIMIT`]).

use super::super::seams::ContainerRuntime;

/// Runs `command` in running instance `instance`.
pub async fn check(
    runtime: &dyn ContainerRuntime,
    instance: &str,
    command: &[String],
) -> Result<(), String> {
    let (code, output) = runtime
        .exec(instance, command.to_vec())
        .await
        .map_err(|e| format!("exec {command:?}: {e}"))?;
    if code == 0 {
        return Ok(());
    }
    let output = output.trim_end();
    if output.is_empty() {
        Err(format!("command {command:?} exited with {code}"))
    } else {
        Err(output.to_string())
    }
}
