//! Running iproute2's `ip` (the one tool every network change here goes through), so that each
//! change reads as the command an operator would type.
//!
//! Must not: be called from async code directly (each call forks and waits): callers run it in
//! `spawn_blocking`.

use std::process::Command;

use super::NetworkError;

/// Runs `ip ARGS`; its stdout on success.
pub fn ip(args: &[&str]) -> Result<String, NetworkError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| NetworkError::Command {
            command: format!("ip {}", args.join(" ")),
            message: format!("{e} (install iproute2)"),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetworkError::Command {
            command: format!("ip {}", args.join(" ")),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Does interface `name` exist in the agent's own network namespace? Read from
/// `/proc/self/net/dev`, which (unlike `/sys/class/net`) follows the namespace of the calling
/// thread, not that of whoever mounted sysfs: no process to run.
pub fn host_link_exists(name: &str) -> bool {
    std::fs::read_to_string("/proc/self/net/dev").is_ok_and(|dev| {
        dev.lines()
            .filter_map(|line| line.split_once(':'))
            .any(|(iface, _)| iface.trim() == name)
    })
}

/// Does interface `name` exist (in the namespace `netns`, or the agent's own)?
pub fn link_exists(netns: Option<&str>, name: &str) -> bool {
    let mut args = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["link", "show", "dev", name]);
    Command::new("ip")
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_own_links_are_read_from_proc() {
        assert!(host_link_exists("lo"));
        assert!(!host_link_exists("skv-no-such"));
        assert!(!host_link_exists(""));
    }
}
