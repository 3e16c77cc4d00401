//! One prober: the task that runs one probe of one attempt of a container every period, each
//! run bounded by the probe's timeout, and sends every result to the pod's worker. It ends when
//! the worker aborts it (the container stopped, or no longer needs this probe) or goes away.
//!
//! Must not: decide anything (thresholds and what follows are the worker's, in
//! [`super::health`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::super::seams::ContainerRuntime;
use super::spec::{Action, Kind, ProbeSpec};
use super::{Report, exec, grpc, http, tcp};

/// What a prober probes, and where its results go.
pub struct Target {
    pub container: String,
    pub instance: String,
    pub kind: Kind,
    pub spec: ProbeSpec,
    /// Runs `exec` probes.
    pub runtime: Arc<dyn ContainerRuntime>,
    pub results: mpsc::UnboundedSender<Report>,
}

/// Probes after `delay` (what is left of the initial delay), then every period.
pub async fn run(target: Target, delay: Duration) {
    tokio::time::sleep(delay).await;
    let mut ticks = tokio::time::interval(target.spec.period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let result = once(&target).await;
        let report = Report {
            container: target.container.clone(),
            instance: target.instance.clone(),
            kind: target.kind,
            result,
        };
        if target.results.send(report).is_err() {
            return;
        }
    }
}

/// One run of the probe, bounded by its timeout.
pub async fn once(target: &Target) -> Result<(), String> {
    let timeout = target.spec.timeout;
    let secs = timeout.as_secs();
    let run = async {
        match &target.spec.action {
            Action::Http {
                https,
                host,
                port,
                path,
                headers,
            } => {
                let get = http::Get {
                    https: *https,
                    host,
                    port: *port,
                    path,
                    headers,
                };
                get.check().await
            }
            Action::Tcp { host, port } => tcp::check(host, *port).await,
            Action::Grpc {
                host,
                port,
                service,
            } => grpc::check(host, *port, service, timeout).await,
            Action::Exec { command } => {
                exec::check(target.runtime.as_ref(), &target.instance, command).await
            }
            Action::Invalid(message) => Err(message.clone()),
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => result,
        Err(_) => Err(match &target.spec.action {
            Action::Http { .. } => format!("timeout: no answer within {secs}s"),
            Action::Tcp { host, port } => {
                format!("dial tcp {}: i/o timeout", super::authority(host, *port))
            }
            Action::Grpc { .. } => format!("timeout: health rpc did not complete within {secs}s"),
            Action::Exec { command } => format!("command {command:?} timed out"),
            Action::Invalid(message) => message.clone(),
        }),
    }
}
