//! The pod status the agent reports, computed from its container records (Kubernetes' phase
//! rules: Pending until the init containers succeeded and every container has started once,
//! Running while any runs or will restart, then Succeeded or Failed).

use skiff_api::v1::*;

use super::record::{Current, Record, Records, to_timestamp};
use super::restart;

/// How a container counts for the pod's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Waiting to start for the first time.
    NeverStarted,
    /// Running, or ended and about to restart.
    Active,
    /// Ended for good.
    Done { failed: bool },
}

/// The status of one container from its record, under `policy` (its restart policy).
fn container_status(
    container: &Container,
    rec: &Record,
    policy: &str,
    meta: &ObjectMeta,
) -> (ContainerStatus, Class) {
    let mut state = ContainerState::default();
    let mut last = rec.last.as_ref();
    let class = match &rec.state {
        Current::Running { started_at, .. } => {
            state.running = Some(ContainerStateRunning {
                started_at: Some(to_timestamp(*started_at)),
            });
            Class::Active
        }
        Current::Terminated(t) if restart::restarts(policy, t.exit_code) => {
            // As Kubernetes shows it: waiting to restart, the run that just ended as lastState.
            last = Some(t);
            let delay = rec
                .next_start
                .and_then(|n| n.duration_since(t.finished_at).ok())
                .unwrap_or_else(|| restart::backoff(rec.streak));
            state.waiting = Some(ContainerStateWaiting {
                reason: "CrashLoopBackOff".into(),
                message: format!(
                    "back-off {}s restarting failed container={} pod={}_{}({})",
                    delay.as_secs(),
                    container.name,
                    meta.name,
                    meta.namespace,
                    meta.uid
                ),
            });
            Class::Active
        }
        Current::Terminated(t) => {
            state.terminated = Some(t.into());
            Class::Done {
                failed: t.exit_code != 0,
            }
        }
        Current::Waiting {
            reason, message, ..
        } => {
            state.waiting = Some(ContainerStateWaiting {
                reason: reason.clone(),
                message: message.clone(),
            });
            if rec.attempt > 0 || rec.last.is_some() {
                Class::Active
            } else {
                Class::NeverStarted
            }
        }
        Current::None | Current::Unknown { .. } => {
            state.waiting = Some(ContainerStateWaiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
            });
            Class::NeverStarted
        }
    };
    let instance = match &rec.state {
        Current::Running { id, .. } => Some(id.as_str()),
        _ => None,
    };
    let (started, ready) = super::probes::health::readiness(container, instance, &rec.health);
    let id = match &rec.state {
        Current::Running { id, .. } => id.clone(),
        Current::Terminated(t) => t.id.clone(),
        _ => String::new(),
    };
    let status = ContainerStatus {
        name: container.name.clone(),
        state: Some(state),
        last_state: last.map(|t| ContainerState {
            terminated: Some(t.into()),
            ..Default::default()
        }),
        ready,
        restart_count: i32::try_from(rec.attempt).unwrap_or(i32::MAX),
        image: container.image.clone(),
        image_id: rec.image_id.clone(),
        container_id: if id.is_empty() {
            String::new()
        } else {
            super::record::container_id(&id)
        },
        started: Some(started),
    };
    (status, class)
}

/// The restart policy of init containers: they restart on failure unless the pod says Never.
pub fn init_policy(policy: &str) -> &'static str {
    if policy == "Never" {
        "Never"
    } else {
        "OnFailure"
    }
}

/// A pod's addresses: `status.podIP` (an OCI pod's own on the pod network; the node's for Wasm
/// pods, whose sockets bind there; empty while an OCI pod waits for its sandbox) and
/// `status.hostIP` (the node's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ips {
    pub pod: String,
    pub host: String,
}

/// Builds the status of `pod` from its records. `previous` keeps conditions' transition times,
/// the scheduler's condition and the start time. Init containers run first, one at a time; until
/// all have succeeded the pod is Pending (Failed if one failed for good).
pub fn pod_status(
    pod: &Pod,
    records: &Records,
    previous: Option<&PodStatus>,
    ips: &Ips,
) -> PodStatus {
    let meta = pod.metadata.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.as_str();
    let empty = Record::default();
    let (mut init_pending, mut init_failed) = (false, false);
    let mut init_statuses = Vec::new();
    for container in &spec.init_containers {
        let rec = records.get(&container.name).map_or(&empty, |r| &**r);
        let (status, class) = container_status(container, rec, init_policy(policy), &meta);
        match class {
            Class::Done { failed: false } => {}
            Class::Done { failed: true } => init_failed = true,
            _ => init_pending = true,
        }
        init_statuses.push(status);
    }
    let initialized = !init_pending && !init_failed;
    let (mut never_started, mut active, mut failed) = (0, 0, 0);
    let mut statuses = Vec::new();
    for container in &spec.containers {
        let rec = records.get(&container.name).map_or(&empty, |r| &**r);
        let (mut status, class) = container_status(container, rec, policy, &meta);
        if !initialized && status.state.as_ref().is_some_and(|s| s.waiting.is_some()) {
            status.state = Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: "PodInitializing".into(),
                    message: String::new(),
                }),
                ..Default::default()
            });
        }
        match class {
            Class::NeverStarted => never_started += 1,
            Class::Active => active += 1,
            Class::Done { failed: true } => failed += 1,
            Class::Done { failed: false } => {}
        }
        statuses.push(status);
    }
    let phase = if init_failed {
        "Failed"
    } else if init_pending || never_started > 0 {
        "Pending"
    } else if active > 0 {
        "Running"
    } else if failed > 0 {
        "Failed"
    } else {
        "Succeeded"
    };
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s.ready);
    let unready: Vec<String> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.clone())
        .collect();
    let mut status = previous.cloned().unwrap_or_default();
    status.phase = phase.into();
    status.host_ip = ips.host.clone();
    status.pod_ip = ips.pod.clone();
    status.pod_ips = if ips.pod.is_empty() {
        Vec::new()
    } else {
        vec![PodIp {
            ip: ips.pod.clone(),
        }]
    };
    if status.start_time.is_none() {
        status.start_time = Some(skiff_api::time::now());
    }
    status.container_statuses = statuses;
    status.init_container_statuses = init_statuses;
    status.qos_class = qos_class(&spec);
    let bool_text = |b: bool| if b { "True" } else { "False" };
    let terminal = matches!(phase, "Succeeded" | "Failed");
    // As kubelet words it, for `describe`.
    let unready_message = if unready.is_empty() || terminal {
        String::new()
    } else {
        format!("containers with unready status: [{}]", unready.join(" "))
    };
    for (kind, value, reason) in [
        ("Initialized", initialized, "ContainersNotInitialized"),
        (
            "ContainersReady",
            all_ready,
            if terminal {
                "PodCompleted"
            } else {
                "ContainersNotReady"
            },
        ),
        (
            "Ready",
            all_ready,
            if terminal {
                "PodCompleted"
            } else {
                "ContainersNotReady"
            },
        ),
    ] {
        set_condition(
            &mut status.conditions,
            Condition {
                r#type: kind.into(),
                status: bool_text(value).into(),
                reason: if value { String::new() } else { reason.into() },
                message: if value || kind == "Initialized" {
                    String::new()
                } else {
                    unready_message.clone()
                },
                last_transition_time: Some(skiff_api::time::now()),
                ..Default::default()
            },
        );
    }
    status
}

/// Replaces the condition of the same type, keeping its transition time if its status holds.
fn set_condition(conditions: &mut Vec<Condition>, condition: Condition) {
    match conditions.iter_mut().find(|c| c.r#type == condition.r#type) {
        Some(existing) => {
            let transition = existing.last_transition_time;
            let keep = existing.status == condition.status;
            *existing = condition;
            if keep {
                existing.last_transition_time = transition;
            }
        }
        None => conditions.push(condition),
    }
}

/// Guaranteed, Burstable or BestEffort, by Kubernetes' rules (cpu and memory).
fn qos_class(spec: &PodSpec) -> String {
    let mut any = false;
    let mut guaranteed = true;
    for c in &spec.containers {
        let r = c.resources.clone().unwrap_or_default();
        for key in ["cpu", "memory"] {
            let limit = r.limits.get(key);
            let request = r.requests.get(key).or(limit);
            any |= limit.is_some() || request.is_some();
            guaranteed &= limit.is_some() && request == limit;
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::super::record::Terminated;
    use super::*;
    use std::time::SystemTime;

    fn epoch() -> SystemTime {
        SystemTime::UNIX_EPOCH
    }

    fn pod(policy: &str) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                namespace: "default".into(),
                uid: "u".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                restart_policy: policy.into(),
                containers: vec![Container {
                    name: "c".into(),
                    image: "file:x.wasm".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    fn ended(code: i32) -> Records {
        let rec = Record {
            state: Current::Terminated(Terminated {
                exit_code: code,
                reason: if code == 0 { "Completed" } else { "Error" }.into(),
                message: String::new(),
                started_at: epoch(),
                finished_at: epoch(),
                id: "u/c/0".into(),
            }),
            ..Default::default()
        };
        Records::from([("c".to_string(), Box::new(rec))])
    }

    fn ips() -> Ips {
        Ips {
            pod: "10.244.0.2".into(),
            host: "1.2.3.4".into(),
        }
    }

    #[test]
    fn phases_follow_policy() {
        let none = Records::new();
        assert_eq!(
            pod_status(&pod("Always"), &none, None, &ips()).phase,
            "Pending"
        );
        assert_eq!(
            pod_status(&pod("Never"), &ended(0), None, &ips()).phase,
            "Succeeded"
        );
        assert_eq!(
            pod_status(&pod("Never"), &ended(3), None, &ips()).phase,
            "Failed"
        );
        assert_eq!(
            pod_status(&pod("OnFailure"), &ended(0), None, &ips()).phase,
            "Succeeded"
        );
        let crashing = pod_status(&pod("Always"), &ended(1), None, &ips());
        assert_eq!(crashing.phase, "Running");
        assert_eq!(
            (crashing.pod_ip.as_str(), crashing.host_ip.as_str()),
            ("10.244.0.2", "1.2.3.4")
        );
        assert_eq!(crashing.pod_ips.len(), 1);
        let waiting = crashing.container_statuses[0]
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .map(|w| w.reason.clone());
        assert_eq!(waiting.as_deref(), Some("CrashLoopBackOff"));
        let failed = pod_status(&pod("Never"), &ended(3), None, &ips());
        let term = failed.container_statuses[0]
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| (t.exit_code, t.container_id.clone()));
        assert_eq!(term, Some((3, "skiff://u/c/0".to_string())));
    }
}
