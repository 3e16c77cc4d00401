//! The pod worker against fakes of its seams ([`super::seams`]): what it starts, stops and
//! reports for restart policies, back-off, init containers, deletion and adoption. Real files
//! (a temp data dir, a `file:` module), no network, no API server, no shim.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use skiff_api::client::BearerAuth;
use skiff_api::v1::*;
use tonic::service::interceptor::InterceptedService;

use super::LogIndex;
use super::record::Current;
use super::seams::{ContainerRuntime, PodApi};
use super::sources::Sources;
use super::worker::{Msg, NodeContext, PodWorker};
use crate::containers::{ContainerSpec, Instance, StartFailure};
use crate::images::Images;
use crate::network::PodNetwork;
use crate::node::NodeInfo;

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Start(String),
    Kill(String, u32),
    Remove(String),
    Exec(String, String),
}

#[derive(Default)]
struct FakeRuntime {
    calls: Mutex<Vec<Call>>,
}

impl FakeRuntime {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn starts(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Start(id) => Some(id),
                _ => None,
            })
            .collect()
    }
}

/// An instance of `uid/container/attempt`, running or ended with `exit`.
fn instance(id: &str, exit: Option<i32>) -> Instance {
    let mut parts = id.split('/');
    let (uid, container, attempt) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().and_then(|a| a.parse().ok()).unwrap_or(0),
    );
    let now = SystemTime::now();
    Instance {
        id: id.to_string(),
        pod_uid: uid.to_string(),
        container: container.to_string(),
        attempt,
        running: exit.is_none(),
        exit_code: exit.unwrap_or(0),
        reason: match exit {
            None => String::new(),
            Some(0) => "Completed".into(),
            Some(_) => "Error".into(),
        },
        message: String::new(),
        started_at: now,
        finished_at: now,
        digest: "sha256:module".into(),
    }
}

#[async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn digest(&self, _module: &Path) -> Result<String, StartFailure> {
        Ok("sha256:module".into())
    }

    async fn start(&self, spec: ContainerSpec) -> Result<Instance, StartFailure> {
        let id = spec.labels.instance_id();
        self.calls.lock().unwrap().push(Call::Start(id.clone()));
        Ok(instance(&id, None))
    }

    async fn kill(&self, id: &str, grace_seconds: u32) -> Result<(), String> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Kill(id.to_string(), grace_seconds));
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), String> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Remove(id.to_string()));
        Ok(())
    }

    async fn exec(&self, id: &str, command: Vec<String>) -> Result<(i32, String), String> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::Exec(id.to_string(), command.join(" ")));
        Ok((1, "probed by the fake".into()))
    }
}

#[derive(Default)]
struct FakeApi {
    statuses: Mutex<Vec<PodStatus>>,
    /// How many of the next status writes fail (as an API server that is away would).
    failing_writes: std::sync::atomic::AtomicU32,
    events: Mutex<Vec<String>>,
    deleted: Mutex<Vec<String>>,
}

impl FakeApi {
    fn last_status(&self) -> PodStatus {
        self.statuses
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

#[async_trait]
impl PodApi for FakeApi {
    async fn update_status(&self, pod: Pod) -> Result<Pod, tonic::Status> {
        use std::sync::atomic::Ordering;
        let failing = &self.failing_writes;
        if failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(tonic::Status::unavailable("the API server is away"));
        }
        self.statuses
            .lock()
            .unwrap()
            .push(pod.status.clone().unwrap_or_default());
        Ok(pod)
    }

    async fn get(&self, _namespace: &str, _name: &str) -> Result<Option<Pod>, tonic::Status> {
        Ok(None)
    }

    async fn finish_deletion(&self, namespace: &str, name: &str) -> Result<(), tonic::Status> {
        self.deleted
            .lock()
            .unwrap()
            .push(format!("{namespace}/{name}"));
        Ok(())
    }

    fn event(
        &self,
        _pod: &Pod,
        _container: Option<&str>,
        _warning: bool,
        reason: &str,
        message: String,
    ) {
        self.events
            .lock()
            .unwrap()
            .push(format!("{reason}: {message}"));
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    runtime: Arc<FakeRuntime>,
    api: Arc<FakeApi>,
    ctx: Arc<NodeContext>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let runtime = Arc::new(FakeRuntime::default());
    let api = Arc::new(FakeApi::default());
    // Nothing here talks to an API server: a channel that would connect on first use.
    let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
    let transport = InterceptedService::new(channel, BearerAuth::new("t").unwrap());
    let data_dir = dir.path().join("data");
    let ctx = NodeContext {
        sources: Sources::new(&transport),
        keyvalue: crate::keyvalue::Gateway::new(&data_dir, transport.clone(), "n1"),
        transport,
        runtime: runtime.clone(),
        api: api.clone(),
        network: PodNetwork::open(&data_dir, "n1", false).await.unwrap(),
        node: NodeInfo {
            name: "n1".into(),
            ip: "127.0.0.1".parse().unwrap(),
            labels: Default::default(),
            taints: Vec::new(),
            cpu_millis: 2000,
            memory_bytes: 1 << 30,
            max_pods: 110,
            kernel: String::new(),
            machine_id: String::new(),
            boot_id: String::new(),
            system_uuid: String::new(),
        },
        images: Images::new(&data_dir),
        data_dir,
        logs: LogIndex::default(),
        pids_limit: 4096,
        wasm_memory_limit: crate::DEFAULT_WASM_MEMORY_LIMIT,
        catalog: crate::catalog::Catalog::from_objects(Vec::new(), Vec::new()),
        dns: crate::dns::resolv_conf::NodeDns {
            domain: "cluster.local".into(),
            server: None,
            host: Default::default(),
        },
    };
    Fixture {
        dir,
        runtime,
        api,
        ctx: Arc::new(ctx),
    }
}

impl Fixture {
    fn container(&self, name: &str) -> Container {
        Container {
            name: name.into(),
            image: format!("file:{}", self.dir.path().join("m.wasm").display()),
            ..Default::default()
        }
    }

    fn pod(&self, policy: &str, init: &[&str], containers: &[&str]) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                namespace: "default".into(),
                uid: "u".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                runtime_class_name: "wasm".into(),
                restart_policy: policy.into(),
                init_containers: init.iter().map(|n| self.container(n)).collect(),
                containers: containers.iter().map(|n| self.container(n)).collect(),
                ..Default::default()
            }),
            status: None,
        }
    }
}

fn phase(status: &PodStatus) -> &str {
    &status.phase
}

fn waiting_reason(status: &PodStatus, i: usize) -> String {
    status.container_statuses[i]
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .map(|w| w.reason.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_crashed_container_backs_off_then_restarts_as_the_next_attempt() {
    let f = fixture().await;
    let mut w = PodWorker::new(f.ctx.clone(), f.pod("Always", &[], &["app"]));
    w.reconcile().await;
    assert_eq!(f.runtime.starts(), ["u/app/0"]);
    assert_eq!(phase(&f.api.last_status()), "Running");
    assert!(
        f.api
            .events()
            .contains(&"Started: Started container app".to_string())
    );

    w.entry
        .apply(Msg::Instance(Box::new(instance("u/app/0", Some(1)))));
    w.reconcile().await;
    // Not restarted yet: CrashLoopBackOff, announced once.
    assert_eq!(f.runtime.starts(), ["u/app/0"]);
    let status = f.api.last_status();
    assert_eq!(waiting_reason(&status, 0), "CrashLoopBackOff");
    assert_eq!(
        status.container_statuses[0]
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code),
        Some(1)
    );
    w.reconcile().await;
    let backoffs = f
        .api
        .events()
        .iter()
        .filter(|e| e.starts_with("BackOff: Back-off restarting failed container app in pod "))
        .count();
    assert_eq!(backoffs, 1);

    // The back-off is over.
    let rec = w.entry.containers.get_mut("app").unwrap();
    rec.next_start = Some(SystemTime::now() - Duration::from_secs(1));
    w.reconcile().await;
    assert_eq!(f.runtime.starts(), ["u/app/0", "u/app/1"]);
    assert_eq!(f.api.last_status().container_statuses[0].restart_count, 1);
}

#[tokio::test]
async fn a_status_write_that_fails_is_tried_again_within_a_second_not_at_the_resync() {
    let f = fixture().await;
    let mut w = PodWorker::new(f.ctx.clone(), f.pod("Never", &[], &["app"]));
    w.reconcile().await;
    w.entry
        .apply(Msg::Instance(Box::new(instance("u/app/0", Some(0)))));
    f.api
        .failing_writes
        .store(1, std::sync::atomic::Ordering::SeqCst);
    w.reconcile().await;
    assert_ne!(phase(&f.api.last_status()), "Succeeded", "the write failed");
    assert!(
        w.entry.sleep(std::time::SystemTime::now()) <= super::worker::PENDING_TICK,
        "a finished pod whose status is not written yet is still pending"
    );
    w.reconcile().await;
    assert_eq!(phase(&f.api.last_status()), "Succeeded");
    assert_eq!(
        w.entry.sleep(std::time::SystemTime::now()),
        super::worker::RESYNC
    );
}

#[tokio::test]
async fn never_and_on_failure_leave_a_finished_pod_finished() {
    let f = fixture().await;
    let mut w = PodWorker::new(f.ctx.clone(), f.pod("OnFailure", &[], &["app"]));
    w.reconcile().await;
    w.entry
        .apply(Msg::Instance(Box::new(instance("u/app/0", Some(0)))));
    w.reconcile().await;
    w.reconcile().await;
    assert_eq!(f.runtime.starts(), ["u/app/0"]);
    assert_eq!(phase(&f.api.last_status()), "Succeeded");

    let f = fixture().await;
    let mut w = PodWorker::new(f.ctx.clone(), f.pod("Never", &[], &["app"]));
    w.reconcile().await;
    w.entry
        .apply(Msg::Instance(Box::new(instance("u/app/0", Some(3)))));
    w.reconcile().await;
    assert_eq!(f.runtime.starts(), ["u/app/0"]);
    assert_eq!(phase(&f.api.last_status()), "Failed");
}

#[tokio::test]
async fn init_containers_run_one_at_a_time_before_the_app() {
    let f = fixture().await;
    let mut w = PodWorker::new(f.ctx.clone(), f.pod("Always", &["a", "b"], &["app"]));
    w.reconcile().await;
    assert_eq!(f.runtime.starts(), ["u/a/0"]);
    assert_eq!(phase(&f.api.last_status()), "Pending");
    w.entry
        .apply(Msg::Instance(Box::new(instance("u/a/0", Some(0)))));
    w.reconcile().await;
    assert_eq!(f.runtime.starts(), ["u/a/0", "u/b/0"]);
    w.entry
        .apply(Msg::Instance(Box::new(instance("u/b/0", Some(0)))));
    w.reconcile().await;
    assert_eq!(f.runtime.starts(), ["u/a/0", "u/b/0", "u/app/0"]);
    assert_eq!(phase(&f.api.last_status()), "Running");
}

#[tokio::test]
async fn a_deleted_pod_gets_its_grace_period_then_its_deletion_is_finished_and_torn_down() {
    let f = fixture().await;
    let mut w = PodWorker::new(f.ctx.clone(), f.pod("Always", &[], &["app"]));
    w.reconcile().await;
    let mut terminating = w.entry.pod.clone();
    if let Some(meta) = terminating.metadata.as_mut() {
        meta.deletion_timestamp = Some(skiff_api::Timestamp {
            seconds: 1,
            nanos: 0,
        });
        meta.deletion_grace_period_seconds = Some(7);
    }
    w.entry.apply(Msg::Pod(terminating));
    w.reconcile().await;
    assert_eq!(
        f.runtime.calls(),
        [
            Call::Start("u/app/0".into()),
            Call::Kill("u/app/0".into(), 7)
        ]
    );
    assert_eq!(*f.api.deleted.lock().unwrap(), ["default/p"]);
    assert!(!w.removed);

    w.entry.apply(Msg::Gone);
    w.reconcile().await;
    assert!(w.removed);
    assert!(f.runtime.calls().contains(&Call::Remove("u/app/0".into())));
    assert!(!f.ctx.data_dir.join("pods/u").exists());
}

#[tokio::test]
async fn a_restarted_agent_adopts_running_containers_and_starts_nothing_twice() {
    let f = fixture().await;
    let mut pod = f.pod("Always", &[], &["app"]);
    pod.status = Some(PodStatus {
        phase: "Running".into(),
        container_statuses: vec![ContainerStatus {
            name: "app".into(),
            restart_count: 3,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning { started_at: None }),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    });
    let mut w = PodWorker::new(f.ctx.clone(), pod);
    w.entry.apply(Msg::Adopt {
        instances: vec![instance("u/app/3", None)],
        listed_at: SystemTime::now(),
    });
    w.reconcile().await;
    assert!(f.runtime.starts().is_empty(), "{:?}", f.runtime.calls());
    assert!(matches!(
        &w.entry.containers["app"].state,
        Current::Running { id, .. } if id == "u/app/3"
    ));
}

/// A node holds a worker per pod, most of them idle: an idle worker's task must stay small
/// (its reconcile state is boxed and its pod is on the heap; it was 8.7 KB before).
#[tokio::test]
async fn an_idle_worker_is_small() {
    let f = fixture().await;
    let w = PodWorker::new(f.ctx.clone(), f.pod("Always", &[], &["app"]));
    let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = w.run(rx);
    let size = std::mem::size_of_val(&task);
    assert!(size < 2048, "an idle pod worker's task takes {size} bytes");
}

// Probes: the worker's state decides what each prober's result means.

use super::probes::{Kind, Report};
use skiff_api::IntOrString;

/// A TCP probe of `127.0.0.1:port` every second with `failure_threshold`.
fn tcp_probe(port: i32, failure_threshold: i32) -> Probe {
    Probe {
        tcp_socket: Some(TcpSocketAction {
            port: Some(IntOrString::int(port)),
            host: "127.0.0.1".into(),
        }),
        period_seconds: 1,
        failure_threshold,
        ..Default::default()
    }
}

fn report(instance: &str, kind: Kind, ok: bool) -> Report {
    Report {
        container: instance.split('/').nth(1).unwrap_or_default().into(),
        instance: instance.into(),
        kind,
        result: if ok {
            Ok(())
        } else {
            Err("dial tcp 127.0.0.1:1: connect: refused".into())
        },
    }
}

fn condition(status: &PodStatus, kind: &str) -> String {
    status
        .conditions
        .iter()
        .find(|c| c.r#type == kind)
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

impl Fixture {
    /// A pod of one container `app` whose probes `with` sets.
    fn probed_pod(&self, with: impl FnOnce(&mut Container)) -> Pod {
        let mut pod = self.pod("Always", &[], &["app"]);
        if let Some(spec) = pod.spec.as_mut() {
            with(&mut spec.containers[0]);
        }
        pod
    }
}

#[tokio::test]
async fn readiness_results_flip_the_container_and_the_pods_ready_condition() {
    let f = fixture().await;
    let pod = f.probed_pod(|c| c.readiness_probe = Some(tcp_probe(1, 2)));
    let mut w = PodWorker::new(f.ctx.clone(), pod);
    w.reconcile().await;
    let status = f.api.last_status();
    assert_eq!(phase(&status), "Running");
    assert!(
        !status.container_statuses[0].ready,
        "not ready before its probe passes"
    );
    assert_eq!(condition(&status, "Ready"), "False");
    assert_eq!(condition(&status, "ContainersReady"), "False");
    assert_eq!(w.probers.running("app"), [Kind::Readiness]);

    assert!(w.probed(report("u/app/0", Kind::Readiness, true)));
    w.reconcile().await;
    let status = f.api.last_status();
    assert!(status.container_statuses[0].ready);
    assert_eq!(condition(&status, "Ready"), "True");

    // failureThreshold 2: the first failure changes nothing, the second flips it back.
    assert!(!w.probed(report("u/app/0", Kind::Readiness, false)));
    assert!(w.probed(report("u/app/0", Kind::Readiness, false)));
    w.reconcile().await;
    let status = f.api.last_status();
    assert!(!status.container_statuses[0].ready);
    assert_eq!(condition(&status, "Ready"), "False");
    let unhealthy: Vec<String> = f
        .api
        .events()
        .into_iter()
        .filter(|e| e.starts_with("Unhealthy: "))
        .collect();
    // Said once: the same failure again is not repeated within a minute.
    assert_eq!(
        unhealthy,
        ["Unhealthy: Readiness probe failed: dial tcp 127.0.0.1:1: connect: refused"]
    );
    // Readiness never kills.
    assert!(
        !f.runtime
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Kill(..)))
    );
}

#[tokio::test]
async fn liveness_failures_kill_the_container_after_the_threshold_and_it_restarts() {
    let f = fixture().await;
    let mut pod = f.probed_pod(|c| {
        let mut probe = tcp_probe(1, 2);
        probe.termination_grace_period_seconds = Some(2);
        c.liveness_probe = Some(probe);
    });
    if let Some(spec) = pod.spec.as_mut() {
        spec.termination_grace_period_seconds = Some(9);
    }
    let mut w = PodWorker::new(f.ctx.clone(), pod);
    w.reconcile().await;
    assert_eq!(w.probers.running("app"), [Kind::Liveness]);
    assert!(
        f.api.last_status().container_statuses[0].ready,
        "no readiness probe: ready"
    );

    assert!(!w.probed(report("u/app/0", Kind::Liveness, false)));
    w.reconcile().await;
    assert!(
        !f.runtime
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Kill(..)))
    );
    assert!(w.probed(report("u/app/0", Kind::Liveness, false)));
    w.reconcile().await;
    // Killed with the probe's grace period, shown unready first, its probers stopped.
    assert!(f.runtime.calls().contains(&Call::Kill("u/app/0".into(), 2)));
    assert!(!f.api.last_status().container_statuses[0].ready);
    assert!(w.probers.running("app").is_empty());
    assert!(
        f.api
            .events()
            .contains(&"Killing: Container app failed liveness probe, will be restarted".into())
    );
    // Killed once, whatever else arrives about this attempt.
    assert!(!w.probed(report("u/app/0", Kind::Liveness, false)));
    w.reconcile().await;
    let kills = f
        .runtime
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Kill(..)))
        .count();
    assert_eq!(kills, 1);

    // It ends, and restarts per its policy (after its back-off) as the next attempt.
    w.entry
        .apply(Msg::Instance(Box::new(instance("u/app/0", Some(137)))));
    w.reconcile().await;
    let rec = w.entry.containers.get_mut("app").unwrap();
    rec.next_start = Some(SystemTime::now() - Duration::from_secs(1));
    w.reconcile().await;
    assert_eq!(f.runtime.starts(), ["u/app/0", "u/app/1"]);
    let status = f.api.last_status();
    assert_eq!(status.container_statuses[0].restart_count, 1);
    assert!(
        status.container_statuses[0].ready,
        "the new attempt starts afresh"
    );
    assert_eq!(w.probers.running("app"), [Kind::Liveness]);
    // A late result about the old attempt is dropped.
    assert!(!w.probed(report("u/app/0", Kind::Liveness, false)));
    assert!(!w.probed(report("u/app/1", Kind::Liveness, false)));
}

#[tokio::test]
async fn a_startup_probe_holds_liveness_and_readiness_until_it_passes() {
    let f = fixture().await;
    let pod = f.probed_pod(|c| {
        c.startup_probe = Some(tcp_probe(1, 30));
        c.liveness_probe = Some(tcp_probe(1, 1));
        c.readiness_probe = Some(tcp_probe(1, 1));
    });
    let mut w = PodWorker::new(f.ctx.clone(), pod);
    w.reconcile().await;
    assert_eq!(w.probers.running("app"), [Kind::Startup]);
    let status = &f.api.last_status().container_statuses[0];
    assert_eq!((status.started, status.ready), (Some(false), false));

    // A liveness failure (failureThreshold 1) before the start counts for nothing.
    assert!(!w.probed(report("u/app/0", Kind::Liveness, false)));
    assert!(!w.probed(report("u/app/0", Kind::Startup, false)));
    w.reconcile().await;
    assert!(
        !f.runtime
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Kill(..)))
    );

    assert!(w.probed(report("u/app/0", Kind::Startup, true)));
    w.reconcile().await;
    let mut running = w.probers.running("app");
    running.sort_by_key(|k| k.label());
    assert_eq!(running, [Kind::Liveness, Kind::Readiness]);
    let status = &f.api.last_status().container_statuses[0];
    assert_eq!((status.started, status.ready), (Some(true), false));
    assert!(w.probed(report("u/app/0", Kind::Readiness, true)));
    w.reconcile().await;
    assert!(f.api.last_status().container_statuses[0].ready);
    // Now liveness counts.
    assert!(w.probed(report("u/app/0", Kind::Liveness, false)));
    w.reconcile().await;
    assert!(
        f.runtime
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Kill(..)))
    );
}

#[tokio::test]
async fn a_failing_startup_probe_kills_like_liveness() {
    let f = fixture().await;
    let pod = f.probed_pod(|c| c.startup_probe = Some(tcp_probe(1, 2)));
    let mut w = PodWorker::new(f.ctx.clone(), pod);
    w.reconcile().await;
    assert!(!w.probed(report("u/app/0", Kind::Startup, false)));
    assert!(w.probed(report("u/app/0", Kind::Startup, false)));
    w.reconcile().await;
    // The pod's default grace period: 30 s.
    assert!(
        f.runtime
            .calls()
            .contains(&Call::Kill("u/app/0".into(), 30))
    );
    assert!(
        f.api
            .events()
            .contains(&"Killing: Container app failed startup probe, will be restarted".into())
    );
}

/// The whole path: a running worker's prober connects to a real listener and its results,
/// sent as messages, make the container ready; a teardown stops the probers.
#[tokio::test]
async fn a_running_worker_hears_its_probers() {
    let f = fixture().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = i32::from(listener.local_addr().unwrap().port());
    let pod = f.probed_pod(|c| c.readiness_probe = Some(tcp_probe(port, 3)));
    let w = PodWorker::new(f.ctx.clone(), pod);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = tokio::spawn(w.run(rx));
    let ready = |f: &Fixture| {
        f.api
            .last_status()
            .container_statuses
            .first()
            .is_some_and(|s| s.ready)
    };
    for _ in 0..50 {
        if ready(&f) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready(&f), "{:?}", f.api.last_status());
    tx.send(Msg::Gone).unwrap();
    tokio::time::timeout(Duration::from_secs(5), worker)
        .await
        .expect("the worker ends on teardown")
        .unwrap();
    drop(listener);
}

/// An agent restart does not flap Endpoints: an adopted container keeps the readiness its status
/// last reported until its probes say otherwise.
#[tokio::test]
async fn an_adopted_container_keeps_its_reported_readiness() {
    let f = fixture().await;
    let mut pod = f.probed_pod(|c| c.readiness_probe = Some(tcp_probe(1, 1)));
    pod.status = Some(PodStatus {
        phase: "Running".into(),
        container_statuses: vec![ContainerStatus {
            name: "app".into(),
            restart_count: 3,
            ready: true,
            started: Some(true),
            container_id: "skiff://u/app/3".into(),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning { started_at: None }),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    });
    let mut w = PodWorker::new(f.ctx.clone(), pod);
    w.entry.apply(Msg::Adopt {
        instances: vec![instance("u/app/3", None)],
        listed_at: SystemTime::now(),
    });
    w.reconcile().await;
    assert!(f.runtime.starts().is_empty());
    let status = f.api.last_status();
    assert!(status.container_statuses[0].ready, "{status:?}");
    assert_eq!(condition(&status, "Ready"), "True");
    assert_eq!(w.probers.running("app"), [Kind::Readiness]);
    // Its probe fails: now it is unready.
    assert!(w.probed(report("u/app/3", Kind::Readiness, false)));
    w.reconcile().await;
    assert!(!f.api.last_status().container_statuses[0].ready);
}

#[tokio::test]
async fn a_container_killed_out_of_memory_is_told_once() {
    let f = fixture().await;
    let mut w = PodWorker::new(f.ctx.clone(), f.pod("Never", &[], &["app"]));
    w.reconcile().await;
    let events = f.api.events();
    let created = events
        .iter()
        .position(|e| e == "Created: Created container: app");
    let started = events
        .iter()
        .position(|e| e == "Started: Started container app");
    assert!(
        created.is_some() && created < started,
        "Created before Started: {events:?}"
    );

    let mut oom = instance("u/app/0", Some(137));
    oom.reason = "OOMKilled".into();
    oom.message = "the memory limit was reached".into();
    w.fold(Msg::Instance(Box::new(oom.clone())));
    // The same end reported again (a relist) is not a new event.
    w.fold(Msg::Instance(Box::new(oom)));
    w.reconcile().await;
    let ooms: Vec<String> = f
        .api
        .events()
        .into_iter()
        .filter(|e| e.starts_with("OOMKilled: "))
        .collect();
    assert_eq!(
        ooms,
        ["OOMKilled: Container app was OOMKilled (exit code 137): the memory limit was reached"]
    );
}
