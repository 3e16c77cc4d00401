//! Health probes (kubelet's prober): owns running each container's liveness, readiness and
//! startup probes and turning their results into messages for the pod's worker, whose state
//! decides what follows.
//!
//! - **Probers**: one task per container per probe kind ([`prober`]), started when the
//!   container is seen running and stopped when it stops, when it no longer needs that probe, or
//!   when the pod is torn down or terminating. A startup probe runs alone: liveness and readiness
//!   probers start only once it has passed (their initial delay still counts from the
//!   container's start). Every run is bounded by the probe's `timeoutSeconds`; each result goes
//!   to the worker as a [`Report`] on a channel of the worker's own.
//! - **Kinds**: `httpGet` ([`http`]: 200-399 passes, HTTPS unverified, kubelet's
//!   `User-Agent: kube-probe/...`), `tcpSocket` ([`tcp`]: a connection opens), `grpc` ([`grpc`]:
//!   grpc.health.v1 answers SERVING) — all aimed at the pod's address (`status.podIP`) unless the
//!   probe names a host — and `exec` ([`exec`]: a command run in a Linux container through its
//!   shim exits 0).
//! - **Verdicts** ([`health`], pure): readiness flips after its thresholds; a startup probe's
//!   first success marks the container started; failureThreshold consecutive liveness or
//!   startup failures fail the container, which the worker kills (the probe's
//!   `terminationGracePeriodSeconds`, else the pod's) and restarts per its restartPolicy, with
//!   kubelet's `Unhealthy` and `Killing` events. A container is ready when it runs, has started
//!   and its readiness probe passes (at once without one); the pod's `ContainersReady` and
//!   `Ready` conditions follow, and the endpoints controller moves the pod between `addresses`
//!   and `notReadyAddresses` by `Ready`.
//! - Kubernetes' defaults apply to unset fields ([`spec`]): initialDelaySeconds 0, periodSeconds
//!   10, timeoutSeconds 1, successThreshold 1, failureThreshold 3. The API stores probes as
//!   written (skiff has no defaulting step), so the agent fills them in.
//!
//! Wasm containers are probed over the pod's network like any other: a Wasm pod granted sockets
//! has a network namespace and an address of its own, where its guests listen on their declared
//! ports. They have no `exec` probes: a Wasm guest has no processes or shell to run a command
//! in, so validation refuses `exec` on a Wasm container (naming the field), and refuses network
//! probes of an all-Wasm pod on a port no container declares, which no guest could listen on.
//!
//! After an agent restart, an adopted container keeps the `started` and `ready` its status last
//! reported until its probes say otherwise, so Endpoints do not flap.
//!
//! `Unhealthy` events are written when a failure's message is new, then at most once a minute
//! while it goes on ([`health::UNHEALTHY_REPEAT`]): the API has no event aggregation.
//!
//! Must not: block or sit on the pod loop's critical path — probe I/O runs only in the probers'
//! tasks, never in the worker, and a hanging probe is cut off by its timeout.

pub(in crate::pods) mod exec;
mod grpc;
pub mod health;
pub(in crate::pods) mod http;
mod prober;
pub mod spec;
mod tcp;
mod worker;

use std::collections::HashMap;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

pub use health::Health;
pub use spec::Kind;

/// One run of one probe, as its prober tells the pod's worker.
#[derive(Debug, Clone)]
pub struct Report {
    pub container: String,
    /// The attempt probed (`<pod uid>/<container>/<attempt>`): a report about an attempt that is
    /// no longer current is dropped.
    pub instance: String,
    pub kind: Kind,
    /// `Err` carries the failure's message, as kubelet words it.
    pub result: Result<(), String>,
}

/// `host:port`, with an IPv6 host in brackets.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// An I/O error as Go words it in kubelet's messages (`connection refused`), without Rust's
/// `(os error 111)`.
pub fn io_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The probers of one container's current attempt.
struct Set {
    instance: String,
    tasks: Vec<(Kind, AbortHandle)>,
}

impl Set {
    fn stop(&mut self) {
        for (_, task) in self.tasks.drain(..) {
            task.abort();
        }
    }
}

/// A pod's probers and the channel their results come on (made with the first prober: a pod
/// without probes pays for no channel).
#[derive(Default)]
pub struct Probers {
    channel: Option<Box<Channel>>,
    sets: HashMap<String, Set>,
}

struct Channel {
    tx: mpsc::UnboundedSender<Report>,
    rx: mpsc::UnboundedReceiver<Report>,
}

impl Probers {
    /// The next result; never resolves while no prober ever ran.
    pub async fn recv(&mut self) -> Report {
        match self.channel.as_mut() {
            // The worker holds a sender: the channel never closes.
            Some(c) => match c.rx.recv().await {
                Some(report) => report,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// A result already waiting, if any.
    pub fn try_recv(&mut self) -> Option<Report> {
        self.channel.as_mut().and_then(|c| c.rx.try_recv().ok())
    }

    /// Where probers send their results.
    pub fn sender(&mut self) -> mpsc::UnboundedSender<Report> {
        let channel = self.channel.get_or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            Box::new(Channel { tx, rx })
        });
        channel.tx.clone()
    }

    /// The kinds probing `container` now.
    pub fn running(&self, container: &str) -> Vec<Kind> {
        self.sets
            .get(container)
            .map(|s| s.tasks.iter().map(|(k, _)| *k).collect())
            .unwrap_or_default()
    }

    /// Makes `wanted` the probes of `container`'s attempt `instance`: probers of another attempt
    /// or of a kind not wanted are stopped; `spawn` starts each missing one.
    pub fn keep(
        &mut self,
        container: &str,
        instance: &str,
        wanted: &[Kind],
        mut spawn: impl FnMut(Kind) -> AbortHandle,
    ) {
        let set = self
            .sets
            .entry(container.to_string())
            .or_insert_with(|| Set {
                instance: instance.to_string(),
                tasks: Vec::new(),
            });
        if set.instance != instance {
            set.stop();
            set.instance = instance.to_string();
        }
        set.tasks.retain(|(kind, task)| {
            let keep = wanted.contains(kind);
            if !keep {
                task.abort();
            }
            keep
        });
        for kind in wanted {
            if !set.tasks.iter().any(|(k, _)| k == kind) {
                set.tasks.push((*kind, spawn(*kind)));
            }
        }
    }

    /// Stops `container`'s probers.
    pub fn stop(&mut self, container: &str) {
        if let Some(mut set) = self.sets.remove(container) {
            set.stop();
        }
    }

    /// Stops every prober of the pod.
    pub fn stop_all(&mut self) {
        for (_, mut set) in self.sets.drain() {
            set.stop();
        }
    }
}

impl Drop for Probers {
    fn drop(&mut self) {
        self.stop_all();
    }
}
