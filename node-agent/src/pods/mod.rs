//! The pod sync loop: level-triggered reconciliation of the pods bound to this node.
//!
//! Inputs are a list + watch of the node's pods (field selector `spec.nodeName`) and the runtime
//! host's instance events. The [`Manager`] only routes them: each pod has a [`worker`] of its own
//! (a task) that folds what it hears into its state and reconciles, comparing what should run
//! with what runs, so that one pod's stop (its grace period), pull or start never delays
//! another's. Nothing depends on having seen an event, so a missed watch or an agent restart
//! converges the same way. Instances are named `<pod uid>/<container>/<attempt>` and the host's
//! Start is idempotent on that id, so no container is ever started twice.
//!
//! Each container is a Wasm guest or a Linux container ([`skiff_api::workload`]: the pod's
//! `runtimeClassName`, and the annotation naming the other kind's containers). Linux containers
//! run over the image's unpacked layers ([`oci`] builds their process), all in one network namespace per pod with the pod's address
//! ([`crate::network`]); the Wasm containers of such a mixed pod join that namespace.
//!
//! Wasm containers: `command` (if given) is argv (argv[0] first), then `args`; without `command`
//! argv[0] is the container's name. `workingDir` is the guest's cwd. Sockets are granted only for
//! the container's declared `ports` (bind), plus outbound connections when the pod has the
//! annotation `skiff.dev/allow-outbound: "true"`; a pod granted any has a pod network of its own,
//! like an OCI pod's, where its guests' sockets live.

mod drain;
mod env;
mod etc_files;
mod host_interfaces;
mod lifecycle;
mod lifecycle_hooks;
mod oci;
mod probes;
mod pull_secrets;
mod record;
pub(crate) mod restart;
mod seams;
mod service_env;
mod sources;
mod status;
mod trace;
mod volumes;
mod worker;
#[cfg(test)]
mod worker_tests;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use skiff_api::ResourceExt;
use skiff_api::client::{Api, ListParams, Transport};
use skiff_api::v1::*;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use crate::containers::{Containers, Instance, RuntimeEvent};
use crate::images::Images;
use crate::network::PodNetwork;
use crate::node::NodeInfo;
use worker::{Msg, NodeContext, PodWorker};

/// Each container's log file is rotated past this size.
const LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// How long a container waits before retrying a config (volume, env) error.
const CONFIG_RETRY: Duration = Duration::from_secs(2);
/// Pods per page when the agent lists its pods (kubectl's and client-go's default chunk).
const LIST_PAGE: i32 = 500;
/// The annotation that grants a Wasm pod outbound connections.
pub const ALLOW_OUTBOUND: &str = "skiff.dev/allow-outbound";

/// Where each container's logs are, for `skiff logs`.
#[derive(Debug, Clone)]
pub struct LogState {
    pub dir: PathBuf,
    pub attempt: u32,
    pub running: bool,
}

/// Pod uid → container → its logs; written by the pod workers, read by the tunnel.
#[derive(Clone, Default)]
pub struct LogIndex(Arc<DashMap<String, HashMap<String, LogState>>>);

impl LogIndex {
    pub fn get(&self, uid: &str, container: &str) -> Option<LogState> {
        self.0.get(uid).and_then(|c| c.get(container).cloned())
    }

    fn set(&self, uid: &str, containers: HashMap<String, LogState>) {
        self.0.insert(uid.to_string(), containers);
    }

    fn remove(&self, uid: &str) {
        self.0.remove(uid);
    }
}

/// The log file of one attempt of a container.
pub fn log_path(dir: &Path, attempt: u32) -> PathBuf {
    dir.join(format!("{attempt}.log"))
}

/// A running worker, as the dispatcher knows it.
struct WorkerHandle {
    inbox: mpsc::UnboundedSender<Msg>,
    /// Tells this worker from a later one of the same pod (a worker removes only itself).
    id: u64,
}

/// Pod uid → its worker; a worker removes its own entry when it ends.
type Workers = Arc<DashMap<String, WorkerHandle>>;

/// Runs the pods bound to this node: follows the API and the runtime, and hands each pod's news
/// to that pod's worker.
pub struct Manager {
    ctx: Arc<NodeContext>,
    /// The shims, for the dispatcher's list and events (workers use `ctx.runtime`).
    host: Containers,
    workers: Workers,
    next_id: AtomicU64,
}

fn uid_of(pod: &Pod) -> String {
    pod.meta().uid.clone()
}

/// The pod loop's id of one attempt of a container (the shim's task id is derived from it:
/// [`crate::containers::instance::task_id`]).
pub fn instance_id(uid: &str, container: &str, attempt: u32) -> String {
    format!("{uid}/{container}/{attempt}")
}

/// The dispatcher gone (the agent stopping), its workers end: their inboxes close. They leave
/// their pods as they are (a stopping agent leaves its pods running, DESIGN §5); without this, a
/// worker would keep the map of inboxes, its own included, alive.
impl Drop for Manager {
    fn drop(&mut self) {
        self.workers.clear();
    }
}

impl Manager {
    pub fn new(
        transport: Transport,
        runtime: Containers,
        network: PodNetwork,
        options: &crate::AgentOptions,
        node: &NodeInfo,
        catalog: Arc<crate::catalog::Catalog>,
        dns: crate::dns::resolv_conf::NodeDns,
    ) -> Self {
        let sources = sources::Sources::new(&transport);
        let ctx = NodeContext {
            sources,
            keyvalue: crate::keyvalue::Gateway::new(
                &options.data_dir,
                transport.clone(),
                &node.name,
            ),
            api: Arc::new(seams::ApiServer::new(transport.clone(), &node.name)),
            transport,
            runtime: Arc::new(runtime.clone()),
            network,
            node: node.clone(),
            data_dir: options.data_dir.clone(),
            logs: LogIndex::default(),
            images: Images::new(&options.data_dir)
                .with_registry_config(options.registry_config.clone()),
            pids_limit: options.pod_pids_limit,
            wasm_memory_limit: options.wasm_default_memory_limit,
            catalog,
            dns,
        };
        Self {
            ctx: Arc::new(ctx),
            host: runtime,
            workers: Arc::default(),
            next_id: AtomicU64::new(0),
        }
    }

    /// The log index the tunnel serves from.
    pub fn logs(&self) -> LogIndex {
        self.ctx.logs.clone()
    }

    /// Runs forever: list, adopt, follow; relist on any break.
    pub async fn run(self) {
        loop {
            if let Err(e) = self.sync().await {
                tracing::warn!(error = %e, "pod sync: relisting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    async fn sync(&self) -> Result<(), tonic::Status> {
        let api: Api<Pod> = Api::new(self.ctx.transport.clone(), "");
        let params = ListParams::default().fields(&format!("spec.nodeName={}", self.ctx.node.name));
        let mut host_events = self.host.subscribe();
        // Paged: a node with many pods never meets the message size limit.
        let (pods, meta) = api.list_paged(params.clone(), LIST_PAGE).await?;
        let listed_at = std::time::SystemTime::now();
        let instances =
            self.host.list().await.map_err(|e| {
                tonic::Status::unavailable(format!("listing the shims' tasks: {e}"))
            })?;
        self.adopt(pods, instances, listed_at).await;
        let mut watch = api.watch(params, &meta.resource_version).await?;
        loop {
            tokio::select! {
                event = watch.next() => match event {
                    Some(Ok(event)) => {
                        if event.kind == "DELETED" {
                            self.send(&uid_of(&event.object), Msg::Gone);
                        } else {
                            self.pod(event.object);
                        }
                    }
                    Some(Err(status)) => return Err(status),
                    None => return Ok(()),
                },
                event = host_events.recv() => match event {
                    Ok(RuntimeEvent::Changed(instance)) => {
                        let uid = instance.pod_uid.clone();
                        self.send(&uid, Msg::Instance(Box::new(instance)));
                    }
                    Ok(RuntimeEvent::Removed(instance)) => {
                        let uid = instance.pod_uid.clone();
                        self.send(&uid, Msg::Removed(Box::new(instance)));
                    }
                    // Events were missed: relist everything.
                    Ok(RuntimeEvent::Relist) | Err(RecvError::Lagged(_)) => return Ok(()),
                    Err(RecvError::Closed) => return Ok(()),
                },
            }
        }
    }

    /// Merges a fresh list of pods and instances into what the workers know: pods the API no
    /// longer has are torn down; instances of unknown pods are removed; containers the status
    /// says ran but the host does not know end as `ContainerStatusUnknown`.
    async fn adopt(
        &self,
        pods: Vec<Pod>,
        instances: Vec<Instance>,
        listed_at: std::time::SystemTime,
    ) {
        let listed: HashSet<String> = pods.iter().map(uid_of).collect();
        for pod in pods {
            self.pod(pod);
        }
        let mut by_pod: HashMap<String, Vec<Instance>> = HashMap::new();
        for instance in instances {
            by_pod
                .entry(instance.pod_uid.clone())
                .or_default()
                .push(instance);
        }
        let known: Vec<String> = self.workers.iter().map(|w| w.key().clone()).collect();
        for uid in &known {
            if !listed.contains(uid) {
                self.send(uid, Msg::Gone);
            }
            self.send(
                uid,
                Msg::Adopt {
                    instances: by_pod.remove(uid).unwrap_or_default(),
                    listed_at,
                },
            );
        }
        // What is left belongs to pods no worker knows: deleted while the agent was down.
        for (uid, instances) in by_pod {
            let ctx = self.ctx.clone();
            tokio::spawn(async move {
                for instance in instances {
                    tracing::info!(id = %instance.id, "removing the instance of a pod that is gone");
                    let _ = ctx.runtime.remove(&instance.id).await;
                }
                ctx.network.detach(&uid).await;
                volumes::remove_pod_dir(&ctx.data_dir, &uid);
            });
        }
        // Addresses of pods deleted while the agent was down are free again; running pods keep
        // theirs.
        let live: HashSet<String> = self.workers.iter().map(|w| w.key().clone()).collect();
        self.ctx.network.retain(live).await;
    }

    /// A pod from the list or the watch: to its worker, started if it has none.
    fn pod(&self, pod: Pod) {
        let uid = uid_of(&pod);
        let Err(mpsc::error::SendError(Msg::Pod(pod))) =
            self.try_send(&uid, Msg::Pod(Box::new(pod)))
        else {
            return;
        };
        tracing::debug!(pod = %pod.name(), "new pod: starting its worker");
        let (inbox, rx) = mpsc::unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.workers.insert(uid.clone(), WorkerHandle { inbox, id });
        let worker = PodWorker::new(self.ctx.clone(), *pod);
        let workers = self.workers.clone();
        tokio::spawn(async move {
            worker.run(rx).await;
            workers.remove_if(&uid, |_, w| w.id == id);
        });
    }

    /// Sends `msg` to the pod's worker; a pod with no worker is of no concern.
    fn send(&self, uid: &str, msg: Msg) {
        let _ = self.try_send(uid, msg);
    }

    fn try_send(&self, uid: &str, msg: Msg) -> Result<(), mpsc::error::SendError<Msg>> {
        match self.workers.get(uid) {
            Some(worker) => worker.inbox.send(msg),
            None => Err(mpsc::error::SendError(msg)),
        }
    }
}
