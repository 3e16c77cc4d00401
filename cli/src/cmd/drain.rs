//! `skiff cordon NODE`, `skiff uncordon NODE` and `skiff drain NODE`, as kubectl's: cordon marks
//! the node unschedulable (`spec.unschedulable`); drain cordons it, then evicts every pod bound
//! to it through the `pods/eviction` subresource (which honours PodDisruptionBudgets), retrying
//! refused evictions every 5 s until `--timeout`, and waits for the pods to be gone.
//!
//! Which pods drain refuses without a flag, as kubectl: pods no controller owns (`--force`
//! deletes them anyway; nothing would recreate them), pods with emptyDir volumes
//! (`--delete-emptydir-data`: their data is lost). Mirror pods are skipped. skiff has no
//! DaemonSets, so `--ignore-daemonsets` is accepted and changes nothing.
//!
//! Must not: delete a pod directly unless `--disable-eviction` says so (an eviction is what keeps
//! the disruption budgets).

use std::time::{Duration, Instant};

use clap::Args;
use skiff_api::ResourceExt;
use skiff_api::client::{Api, ListParams, Transport};
use skiff_api::v1::{
    DeleteOptions, DeleteRequest, Eviction, Node, ObjectMeta, Pod,
    pod_eviction_api_client::PodEvictionApiClient,
};

use crate::duration::parse as parse_duration;
use crate::error::{CliError, Result};

/// How long a refused eviction waits before the next try (kubectl's).
const RETRY: Duration = Duration::from_secs(5);
/// Kubernetes' annotation of a static pod's mirror.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

#[derive(Args)]
pub struct CordonArgs {
    /// The node
    node: String,
}

#[derive(Args)]
pub struct DrainArgs {
    /// The node
    node: String,
    /// Also delete pods no controller owns (they are not recreated)
    #[arg(long)]
    force: bool,
    /// Also delete pods with emptyDir volumes (their data is lost)
    #[arg(long)]
    delete_emptydir_data: bool,
    /// Accepted for kubectl's sake: skiff has no DaemonSets
    #[arg(long)]
    ignore_daemonsets: bool,
    /// Seconds each pod gets to stop (default: the pod's own grace period)
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    grace_period: i32,
    /// Give up after this long (`30s`, `5m`); 0 waits for ever
    #[arg(long, default_value = "0s")]
    timeout: String,
    /// Only the pods matching this label selector
    #[arg(long, default_value = "")]
    pod_selector: String,
    /// Delete the pods instead of evicting them (skips PodDisruptionBudgets)
    #[arg(long)]
    disable_eviction: bool,
}

/// Sets `spec.unschedulable` of `node`; false if it already was so.
async fn set_unschedulable(transport: &Transport, node: &str, value: bool) -> Result<bool> {
    let api = Api::<Node>::new(transport.clone(), "");
    for _ in 0..5 {
        let mut n = api.get(node).await?;
        let spec = n.spec.get_or_insert_with(Default::default);
        if spec.unschedulable == value {
            return Ok(false);
        }
        spec.unschedulable = value;
        match api.update(n).await {
            Ok(_) => return Ok(true),
            // The agent's heartbeat wrote the node meanwhile: read it again.
            Err(s) if s.code() == tonic::Code::Aborted => continue,
            Err(s) => return Err(s.into()),
        }
    }
    Err(CliError::failed(format!(
        "error: node {node:?} kept changing under us; try again"
    )))
}

pub async fn cordon(transport: &Transport, args: CordonArgs) -> Result<()> {
    let changed = set_unschedulable(transport, &args.node, true).await?;
    let how = if changed {
        "cordoned"
    } else {
        "already cordoned"
    };
    println!("node/{} {how}", args.node);
    Ok(())
}

pub async fn uncordon(transport: &Transport, args: CordonArgs) -> Result<()> {
    let changed = set_unschedulable(transport, &args.node, false).await?;
    let how = if changed {
        "uncordoned"
    } else {
        "already uncordoned"
    };
    println!("node/{} {how}", args.node);
    Ok(())
}

/// Why drain leaves a pod alone or refuses it (kubectl's filters).
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Evict,
    /// Evicted, with a warning (`--force` on a pod no controller owns).
    EvictWithWarning,
    Skip,
    Refuse(&'static str),
}

/// kubectl's reasons, word for word.
const NO_CONTROLLER: &str =
    "cannot delete Pods that declare no controller (use --force to override)";
const LOCAL_STORAGE: &str =
    "cannot delete Pods with local storage (use --delete-emptydir-data to override)";

/// What drain does with `pod`.
pub fn verdict(pod: &Pod, force: bool, delete_emptydir_data: bool) -> Verdict {
    if pod.meta().annotations.contains_key(MIRROR_ANNOTATION) {
        return Verdict::Skip;
    }
    let finished = pod
        .status
        .as_ref()
        .is_some_and(|s| matches!(s.phase.as_str(), "Succeeded" | "Failed"));
    if finished {
        return Verdict::Evict;
    }
    let has_emptydir = pod
        .spec
        .iter()
        .flat_map(|s| &s.volumes)
        .any(|v| v.empty_dir.is_some());
    if has_emptydir && !delete_emptydir_data {
        return Verdict::Refuse(LOCAL_STORAGE);
    }
    let controlled = pod
        .meta()
        .owner_references
        .iter()
        .any(|o| o.controller == Some(true));
    match (controlled, force) {
        (true, _) => Verdict::Evict,
        (false, true) => Verdict::EvictWithWarning,
        (false, false) => Verdict::Refuse(NO_CONTROLLER),
    }
}

fn pending_nodes(node: &str) -> String {
    format!("There are pending nodes to be drained:\n {node}")
}

pub async fn drain(transport: &Transport, args: DrainArgs) -> Result<()> {
    let timeout = parse_duration(&args.timeout)
        .map_err(|e| CliError::usage(format!("error: --timeout: {e}")))?;
    let deadline = (!timeout.is_zero()).then(|| Instant::now() + timeout);
    let node = &args.node;
    let changed = set_unschedulable(transport, node, true).await?;
    println!(
        "node/{node} {}",
        if changed {
            "cordoned"
        } else {
            "already cordoned"
        }
    );

    let pods = Api::<Pod>::new(transport.clone(), "");
    let params = ListParams::default()
        .fields(&format!("spec.nodeName={node}"))
        .labels(&args.pod_selector);
    let (on_node, _) = pods.list(params).await?;
    let mut refused: Vec<(&str, Vec<String>)> = Vec::new();
    let mut warned = Vec::new();
    let mut chosen = Vec::new();
    for pod in &on_node {
        let who = format!("{}/{}", pod.namespace(), pod.name());
        match verdict(pod, args.force, args.delete_emptydir_data) {
            Verdict::Evict => chosen.push(pod),
            Verdict::EvictWithWarning => {
                warned.push(who);
                chosen.push(pod);
            }
            Verdict::Skip => {}
            Verdict::Refuse(reason) => match refused.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, pods)) => pods.push(who),
                None => refused.push((reason, vec![who])),
            },
        }
    }
    if !refused.is_empty() {
        let reasons: Vec<String> = refused
            .iter()
            .map(|(reason, pods)| format!("{reason}: {}", pods.join(", ")))
            .collect();
        return Err(CliError::failed(format!(
            "error: unable to drain node {node:?} due to error: {}, continuing command...\n{}\n{}",
            reasons.join(", "),
            pending_nodes(node),
            reasons.join("\n")
        )));
    }
    if !warned.is_empty() {
        eprintln!(
            "Warning: deleting Pods that declare no controller: {}",
            warned.join(", ")
        );
    }
    let grace = (args.grace_period >= 0).then_some(args.grace_period);
    let mut failures = Vec::new();
    for pod in &chosen {
        if let Err(e) = remove(transport, pod, grace, args.disable_eviction, deadline).await {
            failures.push(e);
        }
    }
    if failures.is_empty() {
        for pod in &chosen {
            if let Err(e) = wait_gone(transport, pod, deadline).await {
                failures.push(e);
            }
        }
    }
    if !failures.is_empty() {
        return Err(CliError::failed(format!(
            "error: unable to drain node {node:?} due to error: [{}], continuing command...\n{}\n{}",
            failures.join(", "),
            pending_nodes(node),
            failures.join("\n")
        )));
    }
    println!("node/{node} drained");
    Ok(())
}

fn pod_ref(pod: &Pod) -> String {
    format!("pods/{:?} -n {:?}", pod.name(), pod.namespace())
}

fn timed_out(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// Evicts (or deletes) one pod, retrying refused evictions until the deadline.
async fn remove(
    transport: &Transport,
    pod: &Pod,
    grace: Option<i32>,
    delete: bool,
    deadline: Option<Instant>,
) -> std::result::Result<(), String> {
    let (namespace, name) = (pod.namespace().to_string(), pod.name().to_string());
    if delete {
        let api = Api::<Pod>::new(transport.clone(), &namespace);
        let request = DeleteRequest {
            name: name.clone(),
            grace_period_seconds: grace,
            ..Default::default()
        };
        return match api.delete_with(request).await {
            Ok(_) => {
                println!("pod/{name} deleted");
                Ok(())
            }
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(format!(
                "error when deleting {}: {}",
                pod_ref(pod),
                s.message()
            )),
        };
    }
    println!("evicting pod {namespace}/{name}");
    let eviction = Eviction {
        metadata: Some(ObjectMeta {
            name: name.clone(),
            namespace: namespace.clone(),
            ..Default::default()
        }),
        delete_options: Some(DeleteOptions {
            grace_period_seconds: grace,
            ..Default::default()
        }),
    };
    let mut client = PodEvictionApiClient::new(transport.clone());
    loop {
        match client.evict(eviction.clone()).await {
            Ok(_) => {
                println!("pod/{name} evicted");
                return Ok(());
            }
            Err(s) if s.code() == tonic::Code::NotFound => return Ok(()),
            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                if timed_out(deadline) {
                    return Err(format!(
                        "error when evicting {}: global timeout reached: {}",
                        pod_ref(pod),
                        s.message()
                    ));
                }
                eprintln!(
                    "error when evicting {} (will retry after 5s): {}",
                    pod_ref(pod),
                    s.message()
                );
                tokio::time::sleep(RETRY).await;
            }
            Err(s) => {
                return Err(format!(
                    "error when evicting {}: {}",
                    pod_ref(pod),
                    s.message()
                ));
            }
        }
    }
}

/// Waits until `pod` is gone (or replaced by another of the same name), as kubectl does.
async fn wait_gone(
    transport: &Transport,
    pod: &Pod,
    deadline: Option<Instant>,
) -> std::result::Result<(), String> {
    let api = Api::<Pod>::new(transport.clone(), pod.namespace());
    loop {
        match api.get_opt(pod.name()).await {
            Ok(None) => return Ok(()),
            Ok(Some(p)) if p.meta().uid != pod.meta().uid => return Ok(()),
            Ok(Some(_)) => {}
            Err(s) => {
                return Err(format!(
                    "error when waiting for {}: {}",
                    pod_ref(pod),
                    s.message()
                ));
            }
        }
        if timed_out(deadline) {
            return Err(format!(
                "error when waiting for {} to terminate: global timeout reached",
                pod_ref(pod)
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::Resource;
    use skiff_api::v1::{EmptyDirVolumeSource, OwnerReference, PodSpec, PodStatus, Volume};

    fn pod(owned: bool, emptydir: bool, phase: &str) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                owner_references: if owned {
                    vec![OwnerReference {
                        kind: "ReplicaSet".into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                } else {
                    vec![]
                },
                ..Default::default()
            }),
            spec: Some(PodSpec {
                volumes: if emptydir {
                    vec![Volume {
                        name: "scratch".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    }]
                } else {
                    vec![]
                },
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: phase.into(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn drain_filters_pods_as_kubectl() {
        assert_eq!(
            verdict(&pod(true, false, "Running"), false, false),
            Verdict::Evict
        );
        assert_eq!(
            verdict(&pod(false, false, "Running"), false, false),
            Verdict::Refuse(NO_CONTROLLER)
        );
        assert_eq!(
            verdict(&pod(false, false, "Running"), true, false),
            Verdict::EvictWithWarning
        );
        assert_eq!(
            verdict(&pod(true, true, "Running"), false, false),
            Verdict::Refuse(LOCAL_STORAGE)
        );
        assert_eq!(
            verdict(&pod(true, true, "Running"), false, true),
            Verdict::Evict
        );
        // Finished pods go whatever they are.
        assert_eq!(
            verdict(&pod(false, true, "Succeeded"), false, false),
            Verdict::Evict
        );
        let mut mirror = pod(false, false, "Running");
        mirror
            .metadata_mut()
            .annotations
            .insert(MIRROR_ANNOTATION.into(), "x".into());
        assert_eq!(verdict(&mirror, false, false), Verdict::Skip);
    }
}
