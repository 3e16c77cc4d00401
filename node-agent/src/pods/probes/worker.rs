//! What a pod's worker does with its probes: starts and stops the probers as its containers run
//! and stop, folds each result into the container's [`Health`](super::Health) (recording
//! kubelet's `Unhealthy` and `Killing` events), and kills the containers their liveness or
//! startup probe failed.
//!
//! Must not: run a probe (the probers' tasks do), or wait on anything but a kill.

use std::time::{Duration, SystemTime};

use skiff_api::v1::{Container, Pod};

use super::super::record::Current;
use super::super::worker::PodWorker;
use super::Report;
use super::prober::{self, Target};
use super::spec::{Kind, ProbeSpec};

/// The pod's grace period when neither the probe nor the pod gives one (Kubernetes' default).
const DEFAULT_GRACE_SECONDS: u32 = 30;

impl PodWorker {
    fn app_container(&self, name: &str) -> Option<&Container> {
        self.entry
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == name))
    }

    /// Folds in one prober's result. True when the pod must be reconciled (a container's
    /// readiness or start changed, or it is to be killed).
    pub(in crate::pods) fn probed(&mut self, report: Report) -> bool {
        let Some(container) = self.app_container(&report.container) else {
            return false;
        };
        let Some(probe) = report.kind.of(container) else {
            return false;
        };
        let (success_threshold, failure_threshold) = super::spec::thresholds(probe);
        let held = report.kind != Kind::Startup && container.startup_probe.is_some();
        let Some(rec) = self.entry.containers.get_mut(&report.container) else {
            return false;
        };
        match &rec.state {
            Current::Running { id, .. } if *id == report.instance => rec.health.track(id),
            // A result about an attempt that is no longer current.
            _ => return false,
        }
        // Liveness and readiness wait for the start (a result still in flight when the
        // startup probe's prober took over counts for nothing).
        if held && !rec.health.started {
            return false;
        }
        let verdict = rec.health.fold(
            report.kind,
            report.result.as_ref().map(|_| ()).map_err(String::as_str),
            success_threshold,
            failure_threshold,
            SystemTime::now(),
        );
        let name = report.container.as_str();
        if let Some(message) = verdict.unhealthy {
            self.ctx.api.event(
                &self.entry.pod,
                Some(name),
                true,
                "Unhealthy",
                format!("{} probe failed: {message}", report.kind.label()),
            );
        }
        if let Some(kind) = verdict.kill {
            self.ctx.api.event(
                &self.entry.pod,
                Some(name),
                false,
                "Killing",
                format!(
                    "Container {name} failed {} probe, will be restarted",
                    kind.lower()
                ),
            );
        }
        verdict.changed
    }

    /// Starts the probers each running container needs now and stops the others: a startup
    /// probe until it passes, then liveness and readiness; none for a container that does not
    /// run or is being killed.
    pub(in crate::pods) fn sync_probers(&mut self, pod: &Pod) {
        let Some(spec) = pod.spec.as_ref() else {
            return;
        };
        let mut pod_ip: Option<String> = None;
        for container in &spec.containers {
            let name = container.name.as_str();
            let Some(rec) = self.entry.containers.get_mut(name) else {
                continue;
            };
            let (id, started_at) = match &rec.state {
                Current::Running { id, started_at } => (id.clone(), *started_at),
                _ => {
                    self.probers.stop(name);
                    continue;
                }
            };
            rec.health.track(&id);
            let wanted: Vec<Kind> = if rec.health.failed.is_some() {
                Vec::new()
            } else if container.startup_probe.is_some() && !rec.health.started {
                vec![Kind::Startup]
            } else {
                [Kind::Liveness, Kind::Readiness]
                    .into_iter()
                    .filter(|k| k.of(container).is_some())
                    .collect()
            };
            if wanted.is_empty() {
                self.probers.stop(name);
                continue;
            }
            let missing = wanted
                .iter()
                .any(|k| !self.probers.running(name).contains(k));
            if missing && pod_ip.is_none() {
                pod_ip = Some(self.pod_ip(pod));
            }
            let ip = pod_ip.clone().unwrap_or_default();
            let results = if missing {
                Some(self.probers.sender())
            } else {
                None
            };
            let runtime = self.ctx.runtime.clone();
            let ran = SystemTime::now()
                .duration_since(started_at)
                .unwrap_or_default();
            self.probers.keep(name, &id, &wanted, |kind| {
                let spec = kind
                    .of(container)
                    .map(|p| ProbeSpec::resolve(p, container, &ip));
                let delay = spec
                    .as_ref()
                    .map_or(Duration::ZERO, |s| s.initial_delay.saturating_sub(ran));
                let target = spec.zip(results.clone()).map(|(spec, results)| Target {
                    container: name.to_string(),
                    instance: id.clone(),
                    kind,
                    spec,
                    runtime: runtime.clone(),
                    results,
                });
                let task = match target {
                    Some(target) => tokio::spawn(prober::run(target, delay)),
                    None => tokio::spawn(async {}),
                };
                task.abort_handle()
            });
        }
    }

    /// Kills each container that failed its liveness or startup probe, with the probe's grace
    /// period (else the pod's); it restarts per its restartPolicy once its end is seen.
    pub(in crate::pods) async fn kill_failed(&mut self) {
        let pod_grace = self
            .entry
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .and_then(|g| u32::try_from(g).ok());
        let mut kills = Vec::new();
        for (name, rec) in &mut self.entry.containers {
            let Some(kind) = rec.health.failed else {
                continue;
            };
            let Current::Running { id, .. } = &rec.state else {
                continue;
            };
            if rec.health.killed || rec.health.instance != *id {
                continue;
            }
            rec.health.killed = true;
            let probe_grace = self
                .entry
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.iter().find(|c| c.name == *name))
                .and_then(|c| kind.of(c))
                .and_then(|p| p.termination_grace_period_seconds)
                .and_then(|g| u32::try_from(g).ok());
            let grace = probe_grace.or(pod_grace).unwrap_or(DEFAULT_GRACE_SECONDS);
            kills.push((id.clone(), grace, name.clone()));
        }
        // All at once: one grace period, not one per container; each container's preStop
        // hook first, as kubelet runs it before a probe's kill too.
        let (ctx, pod) = (&self.ctx, &self.entry.pod);
        let pod_ip = self.pod_ip(pod);
        let pod_ip = &pod_ip;
        let stops = kills.into_iter().map(|(id, grace, name)| async move {
            tracing::info!(%id, grace, "killing a container that failed its probe");
            let spec = pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.iter().find(|c| c.name == name));
            crate::pods::lifecycle_hooks::stop(
                ctx.runtime.as_ref(),
                ctx.api.as_ref(),
                pod,
                spec,
                &id,
                pod_ip,
                grace,
            )
            .await;
        });
        futures::future::join_all(stops).await;
    }
}
