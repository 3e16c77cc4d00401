//! One pod's worker: a task that owns everything the agent knows of one pod and brings it to
//! what it should be, on its own, so that one pod's slow stop (its grace period), pull or start
//! never delays another's (kubelet's pod workers).
//!
//! The dispatcher ([`super::Manager`]) routes what it hears of the pod (the API's object, the
//! runtime's instances) to the worker as [`Msg`]s; the worker folds them into its [`PodEntry`] and
//! reconciles, and also wakes by itself when a back-off or a retry is due, and every
//! [`RESYNC`] to refresh what it mounted. It ends when the pod is torn down.
//!
//! Must not: touch another pod's state; hold anything across pods (those live in [`NodeContext`]).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use skiff_api::ResourceExt;
use skiff_api::client::Transport;
use skiff_api::v1::*;
use tokio::sync::mpsc;

use super::record::{self, Current, Due, Record, Records, Terminated};
use super::seams::{ContainerRuntime, PodApi};
use super::{LogIndex, restart, status};
use crate::containers::Instance;
use crate::images::Images;
use crate::network::PodNetwork;
use crate::node::NodeInfo;

/// How often a worker with nothing pending looks at its pod anyway (kubelet's sync frequency):
/// mounted ConfigMaps and Secrets are refreshed then.
pub const RESYNC: Duration = Duration::from_secs(30);
/// How soon a worker with something pending (a deletion, a container not running) looks again
/// when nothing says sooner.
pub(super) const PENDING_TICK: Duration = Duration::from_secs(1);

/// What every pod worker of a node shares: the API, the runtime, the network, images, events.
pub struct NodeContext {
    /// For volumes (ConfigMaps, Secrets, claims).
    pub transport: Transport,
    pub runtime: Arc<dyn ContainerRuntime>,
    /// Pod status, deletions, events.
    pub api: Arc<dyn PodApi>,
    pub network: PodNetwork,
    pub node: NodeInfo,
    pub data_dir: PathBuf,
    pub logs: LogIndex,
    /// The ConfigMaps and Secrets the pods use, watched one by one.
    pub sources: super::sources::Sources,
    /// The pods' `wasi:keyvalue` sockets.
    pub keyvalue: crate::keyvalue::Gateway,
    pub images: Images,
    /// Each OCI container's `pids.max`.
    pub pids_limit: i64,
    /// The linear-memory cap of a Wasm container with no memory limit.
    pub wasm_memory_limit: u64,
    /// Every Service and Endpoints: containers' service env vars.
    pub catalog: Arc<crate::catalog::Catalog>,
    /// The cluster domain and the node's resolver settings: pods' `/etc/resolv.conf` and
    /// `/etc/hosts` (the node's DNS server address is the network's, read at each start).
    pub dns: crate::dns::resolv_conf::NodeDns,
}

/// What the dispatcher tells a worker.
#[derive(Debug)]
pub enum Msg {
    /// The pod as the API has it now (from the list or the watch).
    Pod(Box<Pod>),
    /// The API no longer has the pod: tear it down.
    Gone,
    /// The runtime reports a change of one of the pod's instances.
    Instance(Box<Instance>),
    /// The runtime no longer has one of the pod's instances.
    Removed(Box<Instance>),
    /// After a relist: every instance the runtime had of this pod at `listed_at`. What the
    /// records say ran before then and is not among them has ended (a container started since
    /// cannot be in the list, and is not judged by it).
    Adopt {
        instances: Vec<Instance>,
        listed_at: SystemTime,
    },
}

/// What the agent knows of one pod.
pub struct PodEntry {
    /// Boxed: a Pod is over a kilobyte inline, and a node holds a worker per pod.
    pub pod: Box<Pod>,
    pub containers: Records,
    /// The status last written, to write only changes.
    pub reported: Option<PodStatus>,
    /// The pod object is gone from the API: tear everything down.
    pub gone: bool,
    /// A delete with grace 0 was sent for this terminating pod.
    pub deleting: bool,
    /// The last status write failed (an error, or conflicts twice): try again soon, not at the
    /// next resync.
    pub status_unwritten: bool,
}

impl PodEntry {
    /// A pod new to this agent: its records start from what its status says ran, so that an
    /// agent restart adopts what runs rather than starting it again.
    pub fn new(pod: Pod) -> Self {
        let mut containers = Records::new();
        let status = pod.status.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        for c in spec.init_containers.iter().chain(&spec.containers) {
            let mut rec = Record::default();
            let mut statuses = status
                .init_container_statuses
                .iter()
                .chain(&status.container_statuses);
            if let Some(st) = statuses.find(|s| s.name == c.name) {
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
                        // Its probes' last word holds until they speak again.
                        rec.health = super::probes::Health::adopted(
                            record::instance_of(&st.container_id),
                            st.started.unwrap_or(false),
                            st.ready,
                        );
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
            containers.insert(c.name.clone(), Box::new(rec));
        }
        let reported = pod.status.clone();
        Self {
            pod: Box::new(pod),
            containers,
            reported,
            gone: false,
            deleting: false,
            status_unwritten: false,
        }
    }

    /// Folds in one message from the dispatcher.
    pub fn apply(&mut self, msg: Msg) {
        match msg {
            Msg::Pod(pod) => {
                self.pod = pod;
                self.gone = false;
            }
            Msg::Gone => self.gone = true,
            Msg::Instance(instance) => self.observe(&instance),
            Msg::Removed(instance) => {
                // Removed while the agent still counts on it: it has ended.
                if let Some(rec) = self.containers.get_mut(&instance.container)
                    && matches!(&rec.state, Current::Running { id, .. } if *id == instance.id)
                {
                    rec.state = lost(instance.started_at);
                }
            }
            Msg::Adopt {
                instances,
                listed_at,
            } => {
                for instance in &instances {
                    self.observe(instance);
                }
                let known: HashSet<&str> = instances.iter().map(|i| i.id.as_str()).collect();
                for rec in self.containers.values_mut() {
                    let started_at = match &rec.state {
                        Current::Unknown { started_at } => *started_at,
                        Current::Running { id, started_at }
                            if !known.contains(id.as_str()) && *started_at < listed_at =>
                        {
                            *started_at
                        }
                        _ => continue,
                    };
                    rec.state = lost(started_at);
                }
            }
        }
    }

    fn observe(&mut self, instance: &Instance) {
        if let Some(rec) = self.containers.get_mut(&instance.container) {
            rec.observe(instance);
        }
    }

    /// Whether the pod needs looking at soon without any event: it is being deleted, or a
    /// container has yet to start, is waiting or backing off. Running containers and those
    /// ended for good wait for events.
    fn pending(&self) -> bool {
        if self.gone || self.status_unwritten || self.pod.meta().deletion_timestamp.is_some() {
            return true;
        }
        // The policies reconcile uses: init containers restart on failure only.
        let policy = pod_policy(&self.pod);
        let spec = self.pod.spec.as_ref();
        let policy_of = |name: &str| {
            let init = spec.is_some_and(|s| s.init_containers.iter().any(|c| c.name == name));
            if init {
                status::init_policy(&policy)
            } else {
                policy.as_str()
            }
        };
        self.containers.iter().any(|(name, r)| match &r.state {
            Current::None | Current::Unknown { .. } | Current::Waiting { .. } => true,
            Current::Running { .. } => false,
            Current::Terminated(t) => restart::restarts(policy_of(name), t.exit_code),
        })
    }

    /// How long the worker may sleep at `now` before it must reconcile again.
    /// Whether some container of the pod has not started yet (its sync joins the pod's trace).
    pub fn starting(&self) -> bool {
        self.containers
            .values()
            .any(|r| matches!(r.state, Current::None))
    }

    pub fn sleep(&self, now: SystemTime) -> Duration {
        if !self.pending() {
            return RESYNC;
        }
        let due = self
            .containers
            .values()
            .filter_map(|r| r.wake_at())
            .map(|t| t.duration_since(now).unwrap_or_default())
            .min();
        due.map_or(PENDING_TICK, |d| d.min(PENDING_TICK))
    }
}

/// A container the runtime does not know any more: it ended, with no exit code.
pub fn lost(started_at: SystemTime) -> Current {
    Current::Terminated(Terminated {
        exit_code: 137,
        reason: "ContainerStatusUnknown".into(),
        message: "the container could not be located (its shim is gone)".into(),
        started_at,
        finished_at: SystemTime::now(),
        id: String::new(),
    })
}

/// `Always` unless the pod says otherwise.
pub fn pod_policy(pod: &Pod) -> String {
    match pod.spec.as_ref().map(|s| s.restart_policy.as_str()) {
        None | Some("") => "Always".into(),
        Some(p) => p.into(),
    }
}

/// One pod's worker.
pub struct PodWorker {
    pub(super) ctx: Arc<NodeContext>,
    pub(super) uid: String,
    pub(super) entry: PodEntry,
    /// Torn down: the worker ends.
    pub(super) removed: bool,
    /// When mounted ConfigMaps and Secrets were last refreshed.
    refreshed: Option<tokio::time::Instant>,
    /// The containers' probers, and the channel their results come on.
    pub(super) probers: super::probes::Probers,
}

/// What woke an idle worker.
enum Woke {
    Msg(Option<Msg>),
    Probe(super::probes::Report),
    Due,
}

impl PodWorker {
    pub fn new(ctx: Arc<NodeContext>, pod: Pod) -> Self {
        Self {
            ctx,
            uid: pod.meta().uid.clone(),
            entry: PodEntry::new(pod),
            removed: false,
            refreshed: None,
            probers: super::probes::Probers::default(),
        }
    }

    /// Reconciles on every message and whenever something is due, until the pod is torn down
    /// or the dispatcher goes away.
    pub async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Msg>) {
        loop {
            // Boxed: reconcile's state (a start's pull and bundle, a stop's grace period) is
            // large and only alive while it runs; an idle worker keeps just this loop's (a node
            // holds a thousand of them).
            let span = super::trace::sync_span(&self.entry.pod, self.entry.starting());
            Box::pin(tracing::Instrument::instrument(self.reconcile(), span)).await;
            if self.removed {
                return;
            }
            let due = tokio::time::Instant::now() + self.entry.sleep(SystemTime::now());
            // A probe result that changes nothing is folded in without a reconcile.
            loop {
                let woke = tokio::select! {
                    msg = inbox.recv() => Woke::Msg(msg),
                    report = self.probers.recv() => Woke::Probe(report),
                    () = tokio::time::sleep_until(due) => Woke::Due,
                };
                match woke {
                    Woke::Msg(Some(msg)) => self.fold(msg),
                    Woke::Msg(None) => return,
                    Woke::Probe(report) => {
                        if !self.probed(report) {
                            continue;
                        }
                    }
                    Woke::Due => {}
                }
                break;
            }
            // Whatever else arrived meanwhile is folded in before one reconcile.
            while let Ok(msg) = inbox.try_recv() {
                self.fold(msg);
            }
            while let Some(report) = self.probers.try_recv() {
                self.probed(report);
            }
        }
    }

    /// Folds a dispatcher message into the entry; a running container that the runtime reports
    /// ended out of memory gets its `OOMKilled` event (once: only the running → ended change).
    pub(super) fn fold(&mut self, msg: Msg) {
        if let Msg::Instance(instance) = &msg
            && !instance.running
            && instance.reason == "OOMKilled"
            && self.entry.containers.get(&instance.container).is_some_and(
                |r| matches!(&r.state, Current::Running { id, .. } if *id == instance.id),
            )
        {
            self.ctx.api.event(
                &self.entry.pod,
                Some(&instance.container),
                true,
                "OOMKilled",
                oom_message(&instance.container, instance.exit_code, &instance.message),
            );
        }
        self.entry.apply(msg);
    }

    /// Brings the pod to what it should be.
    pub(super) async fn reconcile(&mut self) {
        if self.entry.gone {
            self.probers.stop_all();
            self.teardown().await;
            return;
        }
        if self.entry.pod.meta().deletion_timestamp.is_some() {
            self.probers.stop_all();
            self.terminate().await;
            return;
        }
        let pod = self.entry.pod.clone();
        super::host_interfaces::keep_serving(&self.ctx, &pod);
        let policy = pod_policy(&pod);
        let now = SystemTime::now();
        let spec = pod.spec.clone().unwrap_or_default();
        // Init containers first, one at a time, each to success; then the app containers.
        let init_policy = status::init_policy(&policy);
        let mut initialized = true;
        for container in &spec.init_containers {
            let succeeded =
                self.entry.containers.get(&container.name).is_some_and(
                    |r| matches!(&r.state, Current::Terminated(t) if t.exit_code == 0),
                );
            if succeeded {
                continue;
            }
            self.ensure_started(&pod, container, init_policy, now).await;
            initialized = false;
            break;
        }
        if initialized {
            for container in &spec.containers {
                self.ensure_started(&pod, container, &policy, now).await;
            }
        }
        self.refresh_volumes(&pod).await;
        self.publish_logs();
        self.report_status().await;
        // After the status: a container failing its liveness probe is shown unready first.
        self.sync_probers(&pod);
        self.kill_failed().await;
    }

    /// Rewrites the pod's ConfigMap and Secret volumes every [`RESYNC`] once it runs, so that
    /// updated objects reach mounted files (each written atomically: a reader sees the old
    /// files or the new ones, never a mix). The objects come from the node's watches, so an
    /// unchanged one costs no request.
    async fn refresh_volumes(&mut self, pod: &Pod) {
        let started = self
            .entry
            .containers
            .values()
            .any(|r| !matches!(r.state, Current::None));
        let due = self
            .refreshed
            .is_none_or(|at| at.elapsed() >= RESYNC - Duration::from_secs(1));
        if !started || !due {
            return;
        }
        self.refreshed = Some(tokio::time::Instant::now());
        let sources = self.volume_sources();
        match super::volumes::refresh(&sources, &self.ctx.data_dir, pod).await {
            Ok(updated) if !updated.is_empty() => {
                tracing::info!(pod = %pod.name(), volumes = ?updated, "volume files updated");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(pod = %pod.name(), error = %e, "refreshing volumes"),
        }
    }

    /// Where this pod's volumes come from: the node's watches, kept for this pod.
    pub(super) fn volume_sources(&self) -> super::sources::PodSources<'_> {
        super::sources::PodSources {
            sources: &self.ctx.sources,
            transport: &self.ctx.transport,
            user: &self.uid,
        }
    }

    /// Starts `container` if it should run and does not: the first time, or again after it
    /// ended, per `policy` and its back-off.
    async fn ensure_started(
        &mut self,
        pod: &Pod,
        container: &Container,
        policy: &str,
        now: SystemTime,
    ) {
        let Some(rec) = self.entry.containers.get_mut(&container.name) else {
            return;
        };
        match rec.due(policy, now) {
            Due::No => return,
            Due::BackOff(_) => {
                self.ctx.api.event(
                    pod,
                    Some(&container.name),
                    true,
                    "BackOff",
                    backoff_message(pod, &container.name),
                );
                return;
            }
            Due::Start => {}
        }
        let attempt = rec.attempt;
        let before = rec.state.clone();
        let (state, digest) = self.start_container(pod, container, attempt).await;
        self.record_start(pod, &container.name, &before, &state);
        if let Current::Running { id, .. } = &state {
            // Its postStart hook before the next container starts; a failure kills it.
            let grace = pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .and_then(|g| u32::try_from(g).ok())
                .unwrap_or(30);
            super::lifecycle_hooks::post_start(
                self.ctx.runtime.as_ref(),
                self.ctx.api.as_ref(),
                pod,
                container,
                id,
                &self.pod_ip(pod),
                grace,
            )
            .await;
        }
        if let Some(rec) = self.entry.containers.get_mut(&container.name) {
            rec.state = state;
            if !digest.is_empty() {
                rec.image_id = digest;
            }
        }
    }

    /// The event for a start attempt: Started, Failed (start error), or the waiting reason the
    /// first time it appears.
    fn record_start(&self, pod: &Pod, container: &str, before: &Current, after: &Current) {
        let events = &self.ctx.api;
        match after {
            // Created and started in one step by the shim (Create, then Start): both said, as
            // kubelet says them.
            Current::Running { .. } => {
                events.event(
                    pod,
                    Some(container),
                    false,
                    "Created",
                    format!("Created container: {container}"),
                );
                events.event(
                    pod,
                    Some(container),
                    false,
                    "Started",
                    format!("Started container {container}"),
                );
            }
            Current::Terminated(t) if t.reason == "StartError" => events.event(
                pod,
                Some(container),
                true,
                "Failed",
                format!("Error: {}", t.message),
            ),
            // Ended before the start was even reported: it did start (and may have run out of
            // memory at once).
            Current::Terminated(t) => {
                for (reason, message) in [
                    ("Created", format!("Created container: {container}")),
                    ("Started", format!("Started container {container}")),
                ] {
                    events.event(pod, Some(container), false, reason, message);
                }
                if t.reason == "OOMKilled" {
                    let message = oom_message(container, t.exit_code, &t.message);
                    events.event(pod, Some(container), true, "OOMKilled", message);
                }
            }
            // A pull in progress (the image module says which): one Pulling event.
            Current::Waiting {
                reason, message, ..
            } if reason == "ContainerCreating"
                && !matches!(before, Current::Waiting { reason: r, .. } if r == reason) =>
            {
                events.event(pod, Some(container), false, "Pulling", message.clone())
            }
            Current::Waiting { reason, .. } if reason == "ContainerCreating" => {}
            Current::Waiting {
                reason, message, ..
            } => {
                let repeated = matches!(before, Current::Waiting { reason: r, message: m, .. } if r == reason && m == message);
                let pulling_seen = matches!(before, Current::Waiting { reason: r, .. } if r == "ContainerCreating");
                let image = pod
                    .spec
                    .iter()
                    .flat_map(|s| s.init_containers.iter().chain(&s.containers))
                    .find(|c| c.name == container)
                    .map(|c| c.image.clone())
                    .unwrap_or_default();
                if reason == "ErrImagePull" && !repeated && !pulling_seen {
                    // A pull that failed before it was seen in progress: it was still tried,
                    // and kubelet says `Pulling` before every try.
                    events.event(
                        pod,
                        Some(container),
                        false,
                        "Pulling",
                        format!("Pulling image {image:?}"),
                    );
                }
                if !repeated {
                    for (warning, reason, message) in failed_pull_events(&image, reason, message) {
                        events.event(pod, Some(container), warning, reason, message);
                    }
                }
            }
            _ => {}
        }
    }
}

/// kubelet's `BackOff` message for a container waiting to be restarted: `Back-off restarting
/// failed container app in pod web_default(<uid>)`.
pub fn backoff_message(pod: &Pod, container: &str) -> String {
    format!(
        "Back-off restarting failed container {container} in pod {}_{}({})",
        pod.name(),
        pod.namespace(),
        pod.meta().uid
    )
}

/// The events of a container left waiting by its image, in kubelet's words: a failed pull is
/// `Failed: Failed to pull image "X": <why>` then `Failed: Error: ErrImagePull`; waiting for the
/// next try is `BackOff: Back-off pulling image "X"` (Normal, as kubelet) then
/// `Failed: Error: ImagePullBackOff`. Other reasons (`InvalidImageName`, `ErrImageNeverPull`)
/// are one `Failed: Error: <reason>: <why>`.
pub fn failed_pull_events(
    image: &str,
    reason: &str,
    message: &str,
) -> Vec<(bool, &'static str, String)> {
    match reason {
        "ErrImagePull" => vec![
            (
                true,
                "Failed",
                format!("Failed to pull image {image:?}: {message}"),
            ),
            (true, "Failed", "Error: ErrImagePull".to_string()),
        ],
        "ImagePullBackOff" => vec![
            (
                false,
                "BackOff",
                format!("Back-off pulling image {image:?}"),
            ),
            (true, "Failed", "Error: ImagePullBackOff".to_string()),
        ],
        _ => vec![(true, "Failed", format!("Error: {reason}: {message}"))],
    }
}

/// The `OOMKilled` event's message: the container, its exit code and the runtime's words
/// (kubelet records OOMKilled only as the container's terminated reason; skiff also tells it
/// as a Warning event so that `describe` shows it with the others).
pub fn oom_message(container: &str, exit_code: i32, said: &str) -> String {
    let mut message = format!("Container {container} was OOMKilled (exit code {exit_code})");
    if !said.is_empty() {
        message.push_str(": ");
        message.push_str(said);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_offs_and_failed_pulls_are_said_in_kubelets_words() {
        assert_eq!(
            backoff_message(&pod(None), "app"),
            "Back-off restarting failed container app in pod p_default(u)"
        );
        let said = |reason| -> Vec<String> {
            failed_pull_events("reg/app:1", reason, "manifest unknown")
                .into_iter()
                .map(|(warning, reason, message)| {
                    let kind = if warning { "Warning" } else { "Normal" };
                    format!("{kind} {reason}: {message}")
                })
                .collect()
        };
        assert_eq!(
            said("ErrImagePull"),
            [
                "Warning Failed: Failed to pull image \"reg/app:1\": manifest unknown",
                "Warning Failed: Error: ErrImagePull",
            ]
        );
        assert_eq!(
            said("ImagePullBackOff"),
            [
                "Normal BackOff: Back-off pulling image \"reg/app:1\"",
                "Warning Failed: Error: ImagePullBackOff",
            ]
        );
        assert_eq!(
            said("InvalidImageName"),
            ["Warning Failed: Error: InvalidImageName: manifest unknown"]
        );
    }

    fn pod(status: Option<PodStatus>) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                namespace: "default".into(),
                uid: "u".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                init_containers: vec![Container {
                    name: "init".into(),
                    ..Default::default()
                }],
                containers: vec![Container {
                    name: "app".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status,
        }
    }

    fn instance(container: &str, attempt: u32, running: bool) -> Instance {
        Instance {
            id: format!("u/{container}/{attempt}"),
            pod_uid: "u".into(),
            container: container.into(),
            attempt,
            running,
            exit_code: 0,
            reason: if running { "" } else { "Completed" }.into(),
            message: String::new(),
            started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(10),
            finished_at: SystemTime::UNIX_EPOCH + Duration::from_secs(20),
            digest: "sha256:d".into(),
        }
    }

    fn running_status() -> PodStatus {
        let started = Some(record::to_timestamp(
            SystemTime::UNIX_EPOCH + Duration::from_secs(10),
        ));
        PodStatus {
            init_container_statuses: vec![ContainerStatus {
                name: "init".into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 0,
                        reason: "Completed".into(),
                        container_id: "skiff://u/init/0".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            container_statuses: vec![ContainerStatus {
                name: "app".into(),
                restart_count: 2,
                state: Some(ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: started,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_restarted_agent_adopts_what_still_runs() {
        let mut entry = PodEntry::new(pod(Some(running_status())));
        assert!(matches!(
            entry.containers["app"].state,
            Current::Unknown { .. }
        ));
        assert_eq!(entry.containers["app"].attempt, 2);
        entry.apply(Msg::Adopt {
            instances: vec![instance("init", 0, false), instance("app", 2, true)],
            listed_at: SystemTime::now(),
        });
        let app = &entry.containers["app"];
        assert!(matches!(&app.state, Current::Running { id, .. } if id == "u/app/2"));
        assert_eq!(app.attempt, 2, "adopted, not restarted");
        assert!(matches!(
            &entry.containers["init"].state,
            Current::Terminated(t) if t.exit_code == 0
        ));
        // Nothing pending: the worker sleeps until the next resync.
        assert_eq!(entry.sleep(SystemTime::now()), RESYNC);
    }

    #[test]
    fn what_the_runtime_lost_ends_as_status_unknown() {
        let mut entry = PodEntry::new(pod(Some(running_status())));
        // The runtime restarted: it has nothing of this pod.
        entry.apply(Msg::Adopt {
            instances: Vec::new(),
            listed_at: SystemTime::now(),
        });
        let app = &entry.containers["app"];
        assert!(matches!(
            &app.state,
            Current::Terminated(t) if t.reason == "ContainerStatusUnknown" && t.exit_code == 137
        ));
        // It restarts (policy Always) after its back-off: the worker wakes for it.
        assert!(entry.sleep(SystemTime::now()) <= PENDING_TICK);
    }

    #[test]
    fn a_container_started_after_the_relist_is_not_judged_by_it() {
        let mut entry = PodEntry::new(pod(None));
        let listed_at = SystemTime::now();
        let mut started = instance("app", 0, true);
        started.started_at = listed_at + Duration::from_millis(5);
        entry.apply(Msg::Instance(Box::new(started)));
        entry.apply(Msg::Adopt {
            instances: Vec::new(),
            listed_at,
        });
        assert!(matches!(
            &entry.containers["app"].state,
            Current::Running { id, .. } if id == "u/app/0"
        ));
    }

    #[test]
    fn only_the_current_instance_being_removed_counts_as_an_end() {
        let mut entry = PodEntry::new(pod(None));
        entry.apply(Msg::Instance(Box::new(instance("app", 1, true))));
        // The attempt before last is freed: not an end of the current one.
        entry.apply(Msg::Removed(Box::new(instance("app", 0, false))));
        assert!(entry.containers["app"].is_running());
        entry.apply(Msg::Removed(Box::new(instance("app", 1, true))));
        assert!(matches!(
            &entry.containers["app"].state,
            Current::Terminated(t) if t.reason == "ContainerStatusUnknown"
        ));
    }

    #[test]
    fn an_update_after_gone_revives_the_entry() {
        let mut entry = PodEntry::new(pod(None));
        entry.apply(Msg::Gone);
        assert!(entry.gone);
        assert_eq!(entry.sleep(SystemTime::now()), PENDING_TICK);
        entry.apply(Msg::Pod(Box::new(pod(None))));
        assert!(!entry.gone);
    }

    #[test]
    fn a_waiting_container_wakes_the_worker_at_its_retry() {
        let mut entry = PodEntry::new(pod(None));
        let now = SystemTime::now();
        for rec in entry.containers.values_mut() {
            rec.state = Current::Waiting {
                reason: "CreateContainerConfigError".into(),
                message: String::new(),
                retry_at: now + Duration::from_millis(300),
            };
        }
        let sleep = entry.sleep(now);
        assert!(sleep <= Duration::from_millis(300), "{sleep:?}");
    }
}
