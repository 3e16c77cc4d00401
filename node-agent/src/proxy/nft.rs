//! Running `nft` and `ip` for the proxy: in the agent's own network namespace, or in a named one
//! ([`Host::in_netns`], for tests), and applying a [`Ruleset`] as one `nft -f -` transaction.
//!
//! Must not: be called from async code (each call forks and waits): callers use
//! `spawn_blocking`.

use std::io::Write as _;
use std::process::{Command, Stdio};

use super::ProxyError;
use super::render::{self, Present, Ruleset};
use super::snapshot::StaleFlow;

/// Where commands run.
#[derive(Debug, Clone, Default)]
pub struct Host {
    netns: Option<String>,
}

impl Host {
    /// The calling process's network namespace (the agent's).
    pub fn here() -> Self {
        Self::default()
    }

    /// Network namespace `name` of `/run/netns`, through `ip netns exec`.
    pub fn in_netns(name: &str) -> Self {
        Self {
            netns: Some(name.to_string()),
        }
    }

    /// Runs `program args`, `stdin` written to it; its stdout on success.
    pub fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, ProxyError> {
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        };
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let shown = format!("{program} {}", args.join(" "));
        let failed = |message: String| ProxyError::Command {
            command: shown.clone(),
            message,
        };
        let mut child = command.spawn().map_err(|e| {
            let hint = match program {
                "nft" => " (install nftables)",
                "ip" => " (install iproute2)",
                "conntrack" => " (install conntrack)",
                _ => "",
            };
            failed(format!("{e}{hint}"))
        })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .map_err(|e| failed(format!("writing its input: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| failed(e.to_string()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(failed(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    }

    /// What table `ip <table>` holds, or `None` if there is no such table.
    pub fn list(&self, table: &str) -> Result<Option<Present>, ProxyError> {
        let tables = self.run("nft", &["list", "tables", "ip"], None)?;
        if !tables
            .lines()
            .any(|l| l.trim() == format!("table ip {table}"))
        {
            return Ok(None);
        }
        let listing = self.run("nft", &["-t", "list", "table", "ip", table], None)?;
        Ok(Some(render::parse_present(&listing)))
    }

    /// Makes table `ip <table>` exactly `wanted`, in one transaction. Should the in-place
    /// update be refused (a base chain's hook changed, the table was edited by hand), the table
    /// is replaced whole, still in one transaction.
    pub fn apply(&self, table: &str, wanted: &Ruleset) -> Result<(), ProxyError> {
        let present = self.list(table)?.unwrap_or_default();
        let script = render::script(table, wanted, &present);
        match self.run("nft", &["-f", "-"], Some(&script)) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(%table, error = %e, "updating the proxy's table in place failed: replacing it");
                let whole = format!(
                    "add table ip {table}\ndelete table ip {table}\n{}",
                    render::script(table, wanted, &Present::default())
                );
                self.run("nft", &["-f", "-"], Some(&whole)).map(|_| ())
            }
        }
    }

    /// Deletes the conntrack entries of the UDP flows `flow` names (`conntrack -D`); failures are
    /// logged, as a missing `conntrack` (a flow then keeps its path until idle for 30 s).
    pub fn delete_udp_flow(&self, flow: &StaleFlow) {
        let port = flow.port.to_string();
        let service_ip = flow.service_ip.map(|ip| ip.to_string());
        let endpoint = flow.endpoint.map(|ip| ip.to_string());
        let mut args = vec!["-D", "-p", "udp"];
        if let Some(ip) = &service_ip {
            args.extend(["--orig-dst", ip.as_str()]);
        }
        args.extend(["--orig-port-dst", &port]);
        if let Some(ip) = &endpoint {
            args.extend(["--dst-nat", ip.as_str()]);
        }
        match self.run("conntrack", &args, None) {
            Ok(_) => tracing::debug!(?flow, "deleted stale UDP flows"),
            // Nothing matched: conntrack says so with exit code 1.
            Err(e) if e.to_string().contains("0 flow entries") => {}
            Err(e) => {
                tracing::warn!(?flow, error = %e, "deleting the UDP flows of a gone endpoint")
            }
        }
    }

    /// Deletes table `ip <table>`, if it exists.
    pub fn delete_table(&self, table: &str) -> Result<(), ProxyError> {
        if self.list(table)?.is_some() {
            self.run("nft", &["delete", "table", "ip", table], None)?;
        }
        Ok(())
    }
}
