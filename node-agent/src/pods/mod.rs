//! The pod sync loop: level-triggered reconciliation of the pods bound to this node.
//!
//! Inputs are a list + watch of the node's pods (field selector `spec.nodeName`), the runtime
//! host's instance events, and a 1 s tick for back-offs. Every input leads to `reconcile(pod)`,
//! which compares what should run with what runs and acts; nothing depends on having seen an
//! event, so a missed watch or an agent restart converges the same way. Instances are named
//! `<pod uid>/<container>/<attempt>` and the host's Start is idempotent on that id, so no
//! container is ever started twice.
//!
//! A pod without `runtimeClassName: wasm` is an OCI pod: its containers run in the runtime
//! host's Linux executor over the image's unpacked layers ([`oci`] builds their process), all in
//! one network namespace per pod with the pod's address ([`crate::network`]).
//!
//! Wasm containers: `command` (if given) is argv (argv[0] first), then `args`; without `command`
//! argv[0] is the container's name. `workingDir` is the guest's cwd. Sockets are granted only for
//! the container's declared `ports` (bind), plus outbound connections when the pod has the
//! annotation `skiff.dev/allow-outbound: "true"`; a pod granted any has a pod network of its own,
//! like an OCI pod's, where its guests' sockets live.

mod env;
mod lifecycle;
mod oci;
mod record;
pub(crate) mod restart;
mod status;
mod volumes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use skiff_api::ResourceExt;
use skiff_api::client::{Api, ListParams, Transport};
use skiff_api::v1::*;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::StreamExt;

use crate::host::{HostEvent, Instance, Runtime};
use crate::images::Images;
use crate::network::PodNetwork;
use crate::node::NodeInfo;
use record::{Current, Record, Terminated};

/// Each container's log file is rotated past this size.
const LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// How long a container waits before retrying a config (volume, env) error.
const CONFIG_RETRY: Duration = Duration::from_secs(2);
/// The annotation that grants a Wasm pod outbound connections.
pub const ALLOW_OUTBOUND: &str = "skiff.dev/allow-outbound";

/// Where each container's logs are, for `skiff logs`.
#[derive(Debug, Clone)]
pub struct LogState {
    pub dir: PathBuf,
    pub attempt: u32,
    pub running: bool,
}

/// Pod uid → container → its logs; shared with the tunnel.
#[derive(Clone, Default)]
pub struct LogIndex(Arc<Mutex<HashMap<String, HashMap<String, LogState>>>>);

impl LogIndex {
    pub fn get(&self, uid: &str, container: &str) -> Option<LogState> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(uid).and_then(|c| c.get(container)).cloned()
    }

    fn set(&self, uid: &str, containers: HashMap<String, LogState>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(uid.to_string(), containers);
    }

    fn remove(&self, uid: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(uid);
    }
}

/// The log file of one attempt of a container.
pub fn log_path(dir: &Path, attempt: u32) -> PathBuf {
    dir.join(format!("{attempt}.log"))
}

struct PodEntry {
    pod: Pod,
    containers: BTreeMap<String, Record>,
    /// The status last written, to write only changes.
    reported: Option<PodStatus>,
    /// The pod object is gone from the API: tear everything down.
    gone: bool,
    /// A delete with grace 0 was sent for this terminating pod.
    deleting: bool,
}

/// Runs the pods bound to this node.
pub struct Manager {
    transport: Transport,
    runtime: Runtime,
    /// Pod namespaces, addresses and the node bridge.
    network: PodNetwork,
    node: NodeInfo,
    data_dir: PathBuf,
    pods: HashMap<String, PodEntry>,
    logs: LogIndex,
    /// Registry images and their pull back-offs.
    images: Images,
    events: crate::events::Recorder,
    /// Each OCI container's `pids.max`.
    pids_limit: i64,
}

fn uid_of(pod: &Pod) -> String {
    pod.meta().uid.clone()
}

/// The runtime host's id of one attempt of a container.
pub fn instance_id(uid: &str, container: &str, attempt: u32) -> String {
    format!("{uid}/{container}/{attempt}")
}

impl Manager {
    pub fn new(
        transport: Transport,
        runtime: Runtime,
        network: PodNetwork,
        options: &crate::AgentOptions,
        node: &NodeInfo,
    ) -> Self {
        Self {
            events: crate::events::Recorder::new(transport.clone(), &node.name),
            transport,
            runtime,
            network,
            node: node.clone(),
            data_dir: options.data_dir.clone(),
            pods: HashMap::new(),
            logs: LogIndex::default(),
            images: Images::new(&options.data_dir),
            pids_limit: options.pod_pids_limit,
        }
    }

    /// The log index the tunnel serves from.
    pub fn logs(&self) -> LogIndex {
        self.logs.clone()
    }

    /// Runs forever: list, adopt, reconcile, follow; relist on any break.
    pub async fn run(mut self) {
        loop {
            if let Err(e) = self.sync().await {
                tracing::warn!(error = %e, "pod sync: relisting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    async fn sync(&mut self) -> Result<(), tonic::Status> {
        let api: Api<Pod> = Api::new(self.transport.clone(), "");
        let params = ListParams::default().fields(&format!("spec.nodeName={}", self.node.name));
        let mut host_events = self.runtime.subscribe();
        let (pods, meta) = api.list(params.clone()).await?;
        let instances = self.runtime.list().await?;
        self.adopt(pods, instances).await;
        let uids: Vec<String> = self.pods.keys().cloned().collect();
        for uid in uids {
            self.reconcile(&uid).await;
        }
        let mut watch = api.watch(params, &meta.resource_version).await?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                event = watch.next() => match event {
                    Some(Ok(event)) => {
                        let uid = uid_of(&event.object);
                        if event.kind == "DELETED" {
                            if let Some(entry) = self.pods.get_mut(&uid) {
                                entry.gone = true;
                            }
                        } else {
                            self.observe_pod(event.object);
                        }
                        self.reconcile(&uid).await;
                    }
                    Some(Err(status)) => return Err(status),
                    None => return Ok(()),
                },
                event = host_events.recv() => match event {
                    Ok(HostEvent::Changed(instance)) => {
                        let uid = instance.pod_uid.clone();
                        self.observe_instance(&instance);
                        self.reconcile(&uid).await;
                    }
                    Ok(HostEvent::Removed(instance)) => {
                        // Removed while the agent still counts on it: it has ended.
                        let uid = instance.pod_uid.clone();
                        if let Some(rec) = self
                            .pods
                            .get_mut(&uid)
                            .and_then(|e| e.containers.get_mut(&instance.container))
                            && matches!(&rec.state, Current::Running { id, .. } if *id == instance.id)
                        {
                            rec.state = lost(instance.started_at);
                            self.reconcile(&uid).await;
                        }
                    }
                    // The host restarted or we fell behind: relist everything.
                    Ok(HostEvent::Reconnected) | Err(RecvError::Lagged(_)) => return Ok(()),
                    Err(RecvError::Closed) => return Ok(()),
                },
                _ = tick.tick() => {
                    // Time only matters to pods with something pending (back-off, retries,
                    // deletion); running pods are driven by events.
                    let uids: Vec<String> = self
                        .pods
                        .iter()
                        .filter(|(_, e)| {
                            e.gone
                                || e.pod.meta().deletion_timestamp.is_some()
                                || !e.containers.values().all(Record::is_running)
                        })
                        .map(|(uid, _)| uid.clone())
                        .collect();
                    for uid in uids {
                        self.reconcile(&uid).await;
                    }
                }
            }
        }
    }

    /// Merges a fresh list of pods and instances into what the agent knows: pods the API no
    /// longer has are torn down; instances of unknown pods are removed; containers the status
    /// says ran but the host does not know end as `ContainerStatusUnknown`.
    async fn adopt(&mut self, pods: Vec<Pod>, instances: Vec<Instance>) {
        let listed: HashSet<String> = pods.iter().map(uid_of).collect();
        for pod in pods {
            self.observe_pod(pod);
        }
        for entry in self.pods.values_mut() {
            if !listed.contains(&uid_of(&entry.pod)) {
                entry.gone = true;
            }
        }
        for instance in &instances {
            if self.pods.contains_key(&instance.pod_uid) {
                self.observe_instance(instance);
            } else {
                tracing::info!(id = %instance.id, "removing the instance of a pod that is gone");
                let _ = self.runtime.remove(&instance.id).await;
                self.network.detach(&instance.pod_uid).await;
                volumes::remove_pod_dir(&self.data_dir, &instance.pod_uid);
            }
        }
        // Addresses of pods deleted while the agent was down are free again; running pods keep
        // theirs.
        self.network
            .retain(self.pods.keys().cloned().collect())
            .await;
        // What the host no longer has (it restarted, or the agent did) has ended.
        let known: HashSet<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        for entry in self.pods.values_mut() {
            for rec in entry.containers.values_mut() {
                let started_at = match &rec.state {
                    Current::Unknown { started_at } => *started_at,
                    Current::Running { id, started_at } if !known.contains(id.as_str()) => {
                        *started_at
                    }
                    _ => continue,
                };
                rec.state = lost(started_at);
            }
        }
    }

    /// A pod from the list or the watch.
    fn observe_pod(&mut self, pod: Pod) {
        let uid = uid_of(&pod);
        if let Some(entry) = self.pods.get_mut(&uid) {
            entry.pod = pod;
            entry.gone = false;
            return;
        }
        // New to this agent: start from what its status says ran (an agent restart).
        let mut containers = BTreeMap::new();
        let status = pod.status.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        for c in spec.init_containers.iter().chain(&spec.containers) {
            let mut rec = Record::default();
            let statuses = status
                .init_container_statuses
                .iter()
                .chain(&status.container_statuses);
            if let Some(st) = statuses.clone().find(|s| s.name == c.name) {
                rec.attempt = u32::try_from(st.restart_count).unwrap_or(0);
                rec.image_id = st.image_id.clone();
                rec.last = st
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(Terminated::from);
                if let Some(state) = &st.state {
                    if let Some(t) = &state.terminated {
                        rec.state = Current::Terminated(t.into());
                    } else if let Some(r) = &state.running {
                        rec.state = Current::Unknown {
                            started_at: record::to_time(r.started_at.as_ref()),
                        };
                    } else if state
                        .waiting
                        .as_ref()
                        .is_some_and(|w| w.reason == "CrashLoopBackOff")
                        && let Some(crashed) = rec.last.take()
                    {
                        // In back-off: lastState is the current attempt's end.
                        rec.state = Current::Terminated(crashed);
                    }
                }
            }
            containers.insert(c.name.clone(), rec);
        }
        let reported = pod.status.clone();
        self.pods.insert(
            uid,
            PodEntry {
                pod,
                containers,
                reported,
                gone: false,
                deleting: false,
            },
        );
    }

    fn observe_instance(&mut self, instance: &Instance) {
        let Some(entry) = self.pods.get_mut(&instance.pod_uid) else {
            return;
        };
        if let Some(rec) = entry.containers.get_mut(&instance.container) {
            rec.observe(instance);
        }
    }

    /// Brings one pod to what it should be.
    async fn reconcile(&mut self, uid: &str) {
        let Some(entry) = self.pods.get(uid) else {
            return;
        };
        if entry.gone {
            self.teardown(uid).await;
            return;
        }
        if entry.pod.meta().deletion_timestamp.is_some() {
            self.terminate(uid).await;
            return;
        }
        let pod = entry.pod.clone();
        let policy = pod_policy(&pod);
        let now = SystemTime::now();
        let spec = pod.spec.clone().unwrap_or_default();
        // Init containers first, one at a time, each to success; then the app containers.
        let init_policy = status::init_policy(&policy);
        let mut initialized = true;
        for container in &spec.init_containers {
            let succeeded = self
                .pods
                .get(uid)
                .and_then(|e| e.containers.get(&container.name))
                .is_some_and(|r| matches!(&r.state, Current::Terminated(t) if t.exit_code == 0));
            if succeeded {
                continue;
            }
            self.ensure_started(uid, &pod, container, init_policy, now)
                .await;
            initialized = false;
            break;
        }
        if initialized {
            for container in &spec.containers {
                self.ensure_started(uid, &pod, container, &policy, now)
                    .await;
            }
        }
        self.publish_logs(uid);
        self.report_status(uid).await;
    }
}

impl Manager {
    /// Starts `container` if it should run and does not: the first time, or again after it
    /// ended, per `policy` and its back-off.
    async fn ensure_started(
        &mut self,
        uid: &str,
        pod: &Pod,
        container: &Container,
        policy: &str,
        now: SystemTime,
    ) {
        let Some(rec) = self
            .pods
            .get_mut(uid)
            .and_then(|e| e.containers.get_mut(&container.name))
        else {
            return;
        };
        match &rec.state {
            Current::Running { .. } | Current::Unknown { .. } => return,
            Current::Waiting { retry_at, .. } if *retry_at > now => return,
            Current::Terminated(t) => {
                if !restart::restarts(policy, t.exit_code) {
                    return;
                }
                let next = match rec.next_start {
                    Some(next) => next,
                    None => {
                        let ran = t
                            .finished_at
                            .duration_since(t.started_at)
                            .unwrap_or_default();
                        if ran >= restart::BACKOFF_RESET {
                            rec.streak = 0;
                        }
                        let delay = restart::backoff(rec.streak);
                        let next = t.finished_at + delay;
                        rec.next_start = Some(next);
                        if next > now {
                            self.events.pod(
                                pod,
                                Some(&container.name),
                                true,
                                "BackOff",
                                format!(
                                    "Back-off {}s restarting failed container {}",
                                    delay.as_secs(),
                                    container.name
                                ),
                            );
                        }
                        next
                    }
                };
                if next > now {
                    return;
                }
                let ended = t.clone();
                rec.streak += 1;
                rec.next_start = None;
                rec.last = Some(ended);
                rec.attempt += 1;
                rec.state = Current::None;
            }
            Current::None | Current::Waiting { .. } => {}
        }
        let attempt = rec.attempt;
        let before = rec.state.clone();
        let (state, digest) = self.start_container(pod, container, attempt).await;
        self.record_start(pod, &container.name, &before, &state);
        if let Some(rec) = self
            .pods
            .get_mut(uid)
            .and_then(|e| e.containers.get_mut(&container.name))
        {
            rec.state = state;
            if !digest.is_empty() {
                rec.image_id = digest;
            }
        }
    }

    /// The event for a start attempt: Started, Failed (start error), or the waiting reason the
    /// first time it appears.
    fn record_start(&self, pod: &Pod, container: &str, before: &Current, after: &Current) {
        match after {
            Current::Running { .. } => self.events.pod(
                pod,
                Some(container),
                false,
                "Started",
                format!("Started container {container}"),
            ),
            Current::Terminated(t) if t.reason == "StartError" => self.events.pod(
                pod,
                Some(container),
                true,
                "Failed",
                format!("Error: {}", t.message),
            ),
            // A pull in progress (the image module says which): one Pulling event.
            Current::Waiting {
                reason, message, ..
            } if reason == "ContainerCreating"
                && !matches!(before, Current::Waiting { reason: r, .. } if r == reason) =>
            {
                self.events
                    .pod(pod, Some(container), false, "Pulling", message.clone())
            }
            Current::Waiting { reason, .. } if reason == "ContainerCreating" => {}
            Current::Waiting {
                reason, message, ..
            } => {
                let repeated = matches!(before, Current::Waiting { reason: r, message: m, .. } if r == reason && m == message);
                if !repeated {
                    self.events.pod(
                        pod,
                        Some(container),
                        true,
                        "Failed",
                        format!("Error: {reason}: {message}"),
                    );
                }
            }
            _ => {}
        }
    }
}

/// A container the runtime host does not know any more: it ended, with no exit code.
fn lost(started_at: SystemTime) -> Current {
    Current::Terminated(Terminated {
        exit_code: 137,
        reason: "ContainerStatusUnknown".into(),
        message: "the container could not be located (the runtime host restarted)".into(),
        started_at,
        finished_at: SystemTime::now(),
        id: String::new(),
    })
}

/// `Always` unless the pod says otherwise.
fn pod_policy(pod: &Pod) -> String {
    match pod.spec.as_ref().map(|s| s.restart_policy.as_str()) {
        None | Some("") => "Always".into(),
        Some(p) => p.into(),
    }
}
