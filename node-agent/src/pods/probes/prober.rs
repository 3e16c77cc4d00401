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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containers::{ContainerSpec, Instance, StartFailure};
    use async_trait::async_trait;

    /// A runtime whose exec never ends.
    struct Hanging;

    #[async_trait]
    impl ContainerRuntime for Hanging {
        async fn digest(&self, _: &std::path::Path) -> Result<String, StartFailure> {
            Err(StartFailure {
                message: "unused".into(),
                retry: false,
            })
        }
        async fn start(&self, _: ContainerSpec) -> Result<Instance, StartFailure> {
            Err(StartFailure {
                message: "unused".into(),
                retry: false,
            })
        }
        async fn kill(&self, _: &str, _: u32) -> Result<(), String> {
            Ok(())
        }
        async fn remove(&self, _: &str) -> Result<(), String> {
            Ok(())
        }
        async fn exec(&self, _: &str, _: Vec<String>) -> Result<(i32, String), String> {
            std::future::pending().await
        }
    }

    fn target(action: Action, results: mpsc::UnboundedSender<Report>) -> Target {
        Target {
            container: "c".into(),
            instance: "u/c/0".into(),
            kind: Kind::Liveness,
            spec: ProbeSpec {
                action,
                initial_delay: Duration::ZERO,
                period: Duration::from_millis(200),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
                grace_seconds: None,
            },
            runtime: Arc::new(Hanging),
            results,
        }
    }

    #[tokio::test]
    async fn a_hanging_probe_is_cut_off_by_its_timeout() {
        // Accepts, then never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, _rx) = mpsc::unbounded_channel();
        let http = target(
            Action::Http {
                https: false,
                host: "127.0.0.1".into(),
                port,
                path: "/".into(),
                headers: Vec::new(),
            },
            tx.clone(),
        );
        let started = tokio::time::Instant::now();
        assert_eq!(
            once(&http).await,
            Err("timeout: no answer within 1s".to_string())
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        let exec = target(
            Action::Exec {
                command: vec!["sleep".into(), "1000".into()],
            },
            tx,
        );
        assert_eq!(
            once(&exec).await,
            Err("command [\"sleep\", \"1000\"] timed out".to_string())
        );
        drop(listener);
    }

    #[tokio::test]
    async fn a_prober_reports_every_period_and_ends_with_its_worker() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let probe = target(
            Action::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
            tx,
        );
        let task = tokio::spawn(run(probe, Duration::ZERO));
        for _ in 0..2 {
            let report = rx.recv().await.unwrap();
            assert_eq!(
                (report.instance.as_str(), report.kind, report.result),
                ("u/c/0", Kind::Liveness, Ok(()))
            );
        }
        // The worker went away: the prober ends by itself.
        drop(rx);
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("the prober ends")
            .unwrap();
        drop(listener);
    }
}
