//! Pod network namespaces: one per pod with OCI containers, shared by all of them, so that the
//! containers of a pod reach each other on `localhost` (Kubernetes' pod sandbox).
//!
//! Made with iproute2 (`ip netns add skiff-<pod uid>`, a bind mount at `/run/netns/...` that
//! keeps the namespace alive with no process in it), loopback brought up, removed with the pod.
//! The namespace outlives the agent, so a restarted agent finds it in place.
//!
//! Must not: give the namespace any interface but loopback yet (pod IPs on a node bridge come
//! with the pod network).

use std::path::PathBuf;
use std::process::Command;

/// The namespace's name for pod `uid`.
fn name(uid: &str) -> String {
    format!("skiff-{uid}")
}

/// The namespace file of pod `uid`, made (with loopback up) if missing.
pub async fn ensure(uid: &str) -> Result<PathBuf, String> {
    let name = name(uid);
    let path = PathBuf::from("/run/netns").join(&name);
    if path.exists() {
        return Ok(path);
    }
    tokio::task::spawn_blocking(move || {
        ip(&["netns", "add", &name])?;
        if let Err(e) = ip(&["-n", &name, "link", "set", "lo", "up"]) {
            let _ = ip(&["netns", "delete", &name]);
            return Err(e);
        }
        Ok(path)
    })
    .await
    .map_err(|e| format!("pod network namespace: {e}"))?
}

/// Removes pod `uid`'s namespace, if any.
pub async fn remove(uid: &str) {
    let name = name(uid);
    if !PathBuf::from("/run/netns").join(&name).exists() {
        return;
    }
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = ip(&["netns", "delete", &name]) {
            tracing::warn!(netns = %name, error = %e, "removing a pod network namespace");
        }
    })
    .await;
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip {}: {e} (install iproute2)", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
