//! What a pod's worker does to its pod: starting a container (image, volumes, env, limits → a
//! [`ContainerSpec`] the shims run), stopping a terminating pod, tearing down a deleted one, and
//! reporting status.

use std::time::SystemTime;

use skiff_api::ResourceExt;
use skiff_api::quantity::Quantity;
use skiff_api::v1::*;
use skiff_api::workload::WorkloadKind;

use super::record::{Current, Terminated};
use super::worker::PodWorker;
use super::{
    ALLOW_OUTBOUND, CONFIG_RETRY, LOG_MAX_BYTES, LogState, env, etc_files, host_interfaces,
    instance_id, log_path, oci, service_env, status, volumes,
};
use crate::containers::{
    self, ContainerSpec, Labels, LinuxProcess, ShimGroup, WasmProcess, Workload,
};
use crate::images;

/// A pod's volumes as [`volumes::prepare`] made them (or why it could not).
type Prepared = Result<std::collections::BTreeMap<String, volumes::VolumeDir>, String>;

/// A container's cpu and memory figures, as a container spec takes them.
struct Resources {
    memory_limit_bytes: Option<u64>,
    cpu_limit_millicores: Option<u32>,
    cpu_request_millicores: Option<u32>,
}

impl Resources {
    fn of(container: &Container) -> Self {
        let r = container.resources.as_ref();
        let quantity = |map: Option<&std::collections::BTreeMap<String, String>>, key: &str| {
            map.and_then(|m| m.get(key))
                .and_then(|q| Quantity::parse(q).ok())
        };
        let millis = |q: Option<Quantity>| q.and_then(|q| u32::try_from(q.millis()).ok());
        Resources {
            memory_limit_bytes: quantity(r.map(|r| &r.limits), "memory")
                .and_then(|q| u64::try_from(q.value()).ok()),
            cpu_limit_millicores: millis(quantity(r.map(|r| &r.limits), "cpu")),
            cpu_request_millicores: millis(quantity(r.map(|r| &r.requests), "cpu")),
        }
    }
}

/// Whether container `name` of `pod` runs in wasmtime rather than as a Linux container
/// (`runtimeClassName: wasm`, and the annotations naming the other kind: DESIGN §4).
fn is_wasm(pod: &Pod, name: &str) -> bool {
    skiff_api::workload::container_kind(pod, name) == WorkloadKind::Wasm
}

/// Whether any container of `pod` is a Linux container: the pod then has a sandbox (a network
/// namespace) that all its containers share, Wasm ones included.
fn has_linux_container(pod: &Pod) -> bool {
    skiff_api::workload::pod_kinds(pod).contains(&WorkloadKind::Linux)
}

/// Whether Wasm pod `pod` is granted any socket (a container port to bind, or outbound
/// connections): only such a pod needs a network of its own.
pub(super) fn wasm_grants_sockets(pod: &Pod) -> bool {
    let ports = pod.spec.as_ref().is_some_and(|s| {
        s.init_containers
            .iter()
            .chain(&s.containers)
            .any(|c| !c.ports.is_empty())
    });
    ports || allows_outbound(pod.meta())
}

/// How container `container` of a pod with `meta` is served if its component is a function: its
/// declared TCP ports and the pod's `skiff.dev/function-*` settings (any of them makes a function
/// required). The error names the annotation.
fn function_options(
    meta: &ObjectMeta,
    container: &Container,
) -> Result<skiff_runtime::wasm::HttpOptions, String> {
    let settings = skiff_api::functions::settings(Some(meta))
        .map_err(|(key, message)| format!("annotation {key}: {message}"))?;
    Ok(skiff_runtime::wasm::HttpOptions {
        ports: container
            .ports
            .iter()
            .filter(|p| p.protocol.is_empty() || p.protocol.eq_ignore_ascii_case("TCP"))
            .filter_map(|p| u16::try_from(p.container_port).ok())
            .collect(),
        timeout: settings.timeout,
        max_body_bytes: settings.max_body_bytes,
        concurrency: settings.concurrency,
        allowed_outbound_hosts: settings.allowed_outbound_hosts,
        required: settings.declared,
        ..skiff_runtime::wasm::HttpOptions::default()
    })
}

fn allows_outbound(meta: &ObjectMeta) -> bool {
    meta.annotations.get(ALLOW_OUTBOUND).map(String::as_str) == Some("true")
}

/// Whose an attempt is.
fn labels(meta: &ObjectMeta, container: &Container, attempt: u32, digest: &str) -> Labels {
    Labels {
        pod_uid: meta.uid.clone(),
        pod: format!("{}/{}", meta.namespace, meta.name),
        container: container.name.clone(),
        attempt,
        image_id: digest.to_string(),
    }
}

/// The shim a container of `pod` runs in: the node's Wasm shim for an all-Wasm pod, the pod's
/// own for a pod with a Linux container.
fn shim_group(pod: &Pod) -> ShimGroup {
    if has_linux_container(pod) {
        ShimGroup::Pod(pod.meta().uid.clone())
    } else {
        ShimGroup::NodeWasm
    }
}

fn start_error(message: String) -> Current {
    let now = SystemTime::now();
    Current::Terminated(Terminated {
        exit_code: 128,
        reason: "StartError".into(),
        message,
        started_at: now,
        finished_at: now,
        id: String::new(),
    })
}

fn waiting(reason: &str, message: String) -> Current {
    Current::Waiting {
        reason: reason.into(),
        message,
        retry_at: SystemTime::now() + CONFIG_RETRY,
    }
}

/// An image that cannot be used yet keeps the container waiting until `retry_at`; one that
/// never can (a missing `file:` module) fails the start.
fn image_failure(e: images::ImageError) -> Current {
    match e.retry_at {
        Some(retry_at) => Current::Waiting {
            reason: e.reason.into(),
            message: e.message,
            retry_at,
        },
        None => start_error(e.message),
    }
}

impl PodWorker {
    fn container_log_dir(&self, uid: &str, container: &str) -> std::path::PathBuf {
        self.ctx
            .data_dir
            .join("pods")
            .join(uid)
            .join("logs")
            .join(container)
    }

    /// The container's log directory, created if missing.
    fn make_log_dir(&self, uid: &str, container: &str) -> Result<std::path::PathBuf, String> {
        let dir = self.container_log_dir(uid, container);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// The container's volume mounts and resolved environment (a config error names its cause).
    /// `pod_ip`: the pod's address (`status.podIP`).
    async fn mounts_and_env(
        &self,
        pod: &Pod,
        container: &Container,
        pod_ip: &str,
        prepared: Prepared,
    ) -> Result<(Vec<volumes::Mount>, Vec<(String, String)>), String> {
        let mounts = prepared.and_then(|v| volumes::mounts(container, &v))?;
        let ips = status::Ips {
            pod: pod_ip.to_string(),
            host: self.ctx.node.ip.to_string(),
        };
        let services = service_env::for_pod(&self.ctx.catalog, pod).await?;
        let env = env::resolve(&self.ctx.sources, pod, container, &ips, services).await?;
        Ok((mounts, env))
    }

    /// The pod's volumes, made beside its sandbox by the callers: they need nothing of each
    /// other (the pod's address reaches only the environment, resolved after both), the attach
    /// runs on a thread of its own, and a projected ServiceAccount token is an API round trip.
    async fn prepare_volumes(&self, pod: &Pod) -> Prepared {
        volumes::prepare(&self.volume_sources(), &self.ctx.data_dir, pod).await
    }

    /// The address reported as the pod's (`status.podIP`): the pod's own once it has one
    /// (empty while its sandbox is not made yet), else the node's (Wasm pods granted no socket,
    /// nodes without a pod network, a sandbox made before the node had its podCIDR).
    pub(super) fn pod_ip(&self, pod: &Pod) -> String {
        let uid = &pod.meta().uid;
        if !self.has_pod_network(pod) {
            return self.ctx.node.ip.to_string();
        }
        match self.ctx.network.address_of(uid) {
            Some(ip) => ip.to_string(),
            None if crate::network::netns::path(uid).exists() => self.ctx.node.ip.to_string(),
            None => String::new(),
        }
    }

    /// Whether `pod` lives in a network namespace of its own: pods with a Linux container
    /// always (their Wasm containers join it); all-Wasm pods when they are granted sockets and the node can give them an address (a Wasm pod needs no
    /// root, and a namespace without an address would only cut it off).
    ///
    /// Decided once per pod: a pod whose namespace exists keeps it, and a Wasm pod that already
    /// ran without one (started by an agent without pod networks for Wasm, or before the node
    /// had its podCIDR) keeps the node's, so a restart never moves a pod to another address.
    fn has_pod_network(&self, pod: &Pod) -> bool {
        let uid = &pod.meta().uid;
        if crate::network::netns::path(uid).exists() {
            return true;
        }
        if has_linux_container(pod) {
            return true;
        }
        let ran = self.entry.containers.values().any(|r| match &r.state {
            Current::Running { .. } | Current::Unknown { .. } => true,
            // A start that failed before any instance existed has no id: nothing ran.
            Current::Terminated(t) => !t.id.is_empty(),
            Current::None | Current::Waiting { .. } => r.last.is_some(),
        });
        !ran && wasm_grants_sockets(pod) && self.ctx.network.has_addresses()
    }

    /// Starts `attempt` of `container`; returns its new state and the image (or module) digest.
    pub(super) async fn start_container(
        &self,
        pod: &Pod,
        container: &Container,
        attempt: u32,
    ) -> (Current, String) {
        if !is_wasm(pod, &container.name) {
            return self.start_oci(pod, container, attempt).await;
        }
        let steps = std::time::Instant::now();
        let meta = pod.meta();
        let pull_key = format!("{}/{}", meta.uid, container.name);
        let policy = &container.image_pull_policy;
        let keyring = self.pull_keyring(pod, container).await;
        let image = match self
            .ctx
            .images
            .resolve(&pull_key, &container.image, policy, &keyring)
            .await
        {
            Ok(image) => self.pulled(pod, container, image),
            Err(e) => return (image_failure(e), String::new()),
        };
        let module = image.module;
        // A pulled image's ID is its manifest digest; a file's is its module digest.
        let digest = match self.ctx.runtime.digest(&module).await {
            Ok(digest) => image.image_id.unwrap_or(digest),
            Err(f) if f.retry => {
                return (waiting("CreateContainerError", f.message), String::new());
            }
            Err(f) => return (start_error(f.message), String::new()),
        };
        let image_done = steps.elapsed();
        // A networked pod's sandbox, as for OCI pods: its address is in the environment.
        let networked = self.has_pod_network(pod);
        let attach = async {
            let attached = if networked {
                self.ctx.network.attach(&meta.uid).await.map(Some)
            } else {
                Ok(None)
            };
            (attached, steps.elapsed())
        };
        let volumes = async { (self.prepare_volumes(pod).await, steps.elapsed()) };
        let ((attached, network_done), (prepared, volumes_done)) = tokio::join!(attach, volumes);
        let sandbox_done = steps.elapsed();
        let attached = match attached {
            Ok(a) => a,
            Err(e) => return (waiting("CreateContainerError", e.to_string()), digest),
        };
        let pod_ip = attached
            .as_ref()
            .and_then(|a| a.ip)
            .map_or_else(|| self.ctx.node.ip.to_string(), |ip| ip.to_string());
        let (mounts, env) = match self.mounts_and_env(pod, container, &pod_ip, prepared).await {
            Ok(v) => v,
            Err(message) => return (waiting("CreateContainerConfigError", message), digest),
        };
        let host = match host_interfaces::grants(&self.ctx, pod).await {
            Ok(host) => host,
            Err(message) => return (waiting("CreateContainerConfigError", message), digest),
        };
        let http = match function_options(meta, container) {
            Ok(http) => http,
            Err(message) => return (waiting("CreateContainerConfigError", message), digest),
        };
        let resources = Resources::of(container);
        let (argv0, mut args) = match container.command.split_first() {
            Some((first, rest)) => (first.clone(), rest.to_vec()),
            None => (container.name.clone(), Vec::new()),
        };
        args.extend(container.args.iter().cloned());
        let log_dir = match self.make_log_dir(&meta.uid, &container.name) {
            Ok(dir) => dir,
            Err(message) => return (waiting("CreateContainerError", message), digest),
        };
        let spec = ContainerSpec {
            labels: labels(meta, container, attempt, &digest),
            group: shim_group(pod),
            workload: Workload::Wasm(WasmProcess {
                module,
                argv0,
                args,
                bind_ports: container
                    .ports
                    .iter()
                    .filter_map(|p| u16::try_from(p.container_port).ok())
                    .collect(),
                outbound: allows_outbound(meta),
                // Its name lookups ask what the pod's OCI containers would.
                resolv_conf: attached.as_ref().map(|_| self.resolv_conf(pod)),
                host,
                http,
            }),
            env,
            cwd: container.working_dir.clone(),
            mounts,
            memory_limit_bytes: resources
                .memory_limit_bytes
                .or(Some(self.ctx.wasm_memory_limit)),
            cpu_limit_millicores: resources.cpu_limit_millicores,
            netns: attached.map(|a| a.netns),
            log_path: log_path(&log_dir, attempt),
            log_max_bytes: LOG_MAX_BYTES,
        };
        let config_done = steps.elapsed();
        let started = self.ctx.runtime.start(spec).await;
        tracing::debug!(
            pod = %meta.name,
            container = %container.name,
            image = ?image_done,
            sandbox_and_volumes = ?(sandbox_done - image_done),
            network = ?(network_done - image_done),
            volumes = ?(volumes_done - image_done),
            config = ?(config_done - sandbox_done),
            runtime = ?(steps.elapsed() - config_done),
            "container start steps"
        );
        self.started(meta, container, attempt, &log_dir, started, digest)
            .await
    }

    /// The node's DNS settings, with its DNS server as it is now.
    fn node_dns(&self) -> crate::dns::resolv_conf::NodeDns {
        crate::dns::resolv_conf::NodeDns {
            server: crate::dns::node_server(&self.ctx.network),
            ..self.ctx.dns.clone()
        }
    }

    /// The text of `pod`'s `/etc/resolv.conf`.
    fn resolv_conf(&self, pod: &Pod) -> String {
        let spec = pod.spec.clone().unwrap_or_default();
        crate::dns::resolv_conf::for_pod(&self.node_dns(), &pod.meta().namespace, &spec).render()
    }

    /// The state after a start request, freeing the attempt before last.
    async fn started(
        &self,
        meta: &ObjectMeta,
        container: &Container,
        attempt: u32,
        log_dir: &std::path::Path,
        started: Result<containers::Instance, containers::StartFailure>,
        digest: String,
    ) -> (Current, String) {
        match started {
            Ok(instance) => {
                // Free the attempt before last, and its logs; the previous one stays for
                // `--previous`.
                if attempt >= 2 {
                    let old = instance_id(&meta.uid, &container.name, attempt - 2);
                    let _ = self.ctx.runtime.remove(&old).await;
                    let old_log = log_path(log_dir, attempt - 2);
                    let _ = std::fs::remove_file(&old_log);
                    let _ = std::fs::remove_file(format!("{}.1", old_log.display()));
                }
                let state = if instance.running {
                    Current::Running {
                        id: instance.id,
                        started_at: instance.started_at,
                    }
                } else {
                    Current::Terminated(Terminated {
                        exit_code: instance.exit_code,
                        reason: instance.reason,
                        message: instance.message,
                        started_at: instance.started_at,
                        finished_at: instance.finished_at,
                        id: instance.id,
                    })
                };
                tracing::debug!(pod = %meta.name, container = %container.name, attempt, "started");
                (state, digest)
            }
            Err(f) if f.retry => (waiting("CreateContainerError", f.message), digest),
            Err(f) => (start_error(host_interfaces::explain(f.message)), digest),
        }
    }

    /// Reports a resolved image as kubelet does: a `Pulled` event (downloaded, or already
    /// present); `file:` images have none.
    fn pulled(
        &self,
        pod: &Pod,
        container: &Container,
        image: images::Resolved,
    ) -> images::Resolved {
        if let Some(summary) = &image.pulled {
            self.ctx
                .api
                .event(pod, Some(&container.name), false, "Pulled", summary.clone());
        }
        image
    }

    /// The pod's image pull credentials (none for a `file:` image); Secrets that cannot be used
    /// are said in warning events.
    async fn pull_keyring(
        &self,
        pod: &Pod,
        container: &Container,
    ) -> skiff_runtime::image::Keyring {
        if container.image.starts_with("file:") {
            return skiff_runtime::image::Keyring::default();
        }
        let (keyring, problems) = super::pull_secrets::keyring(&self.ctx, pod).await;
        for message in problems {
            self.ctx.api.event(
                pod,
                Some(&container.name),
                true,
                "FailedToRetrieveImagePullSecret",
                message,
            );
        }
        keyring
    }

    /// Starts `attempt` of an OCI container: image layers, the pod's network namespace,
    /// volumes as bind mounts, limits, the image's process as the pod spec amends it.
    async fn start_oci(&self, pod: &Pod, container: &Container, attempt: u32) -> (Current, String) {
        let meta = pod.meta();
        let pull_key = format!("{}/{}", meta.uid, container.name);
        let keyring = self.pull_keyring(pod, container).await;
        let image = match self
            .ctx
            .images
            .resolve_container(
                &pull_key,
                &container.image,
                &container.image_pull_policy,
                &keyring,
            )
            .await
        {
            Ok(image) => self.pulled(pod, container, image),
            Err(e) => return (image_failure(e), String::new()),
        };
        let digest = image.image_id.clone().unwrap_or_default();
        let Some(rootfs) = image.container else {
            return (start_error("the image has no layers".into()), digest);
        };
        // The pod's sandbox: its address is in the containers' environment.
        let (attached, prepared) = tokio::join!(
            self.ctx.network.attach(&meta.uid),
            self.prepare_volumes(pod)
        );
        let attached = match attached {
            Ok(a) => a,
            Err(e) => return (waiting("CreateContainerError", e.to_string()), digest),
        };
        let pod_ip = attached
            .ip
            .map_or_else(|| self.ctx.node.ip.to_string(), |ip| ip.to_string());
        let (mut mounts, env) = match self.mounts_and_env(pod, container, &pod_ip, prepared).await {
            Ok(v) => v,
            Err(message) => return (waiting("CreateContainerConfigError", message), digest),
        };
        let pod_dir = self.ctx.data_dir.join("pods").join(&meta.uid);
        let ip = attached.ip.map(std::net::IpAddr::V4);
        match etc_files::mounts(&pod_dir, pod, container, &self.node_dns(), ip) {
            Ok(files) => mounts.extend(files),
            Err(message) => return (waiting("CreateContainerError", message), digest),
        }
        let process = match oci::process(pod, container, &rootfs.process, &rootfs.layers, env) {
            Ok(p) => p,
            Err(message) => return (waiting("CreateContainerConfigError", message), digest),
        };
        let netns = attached.netns;
        let resources = Resources::of(container);
        let log_dir = match self.make_log_dir(&meta.uid, &container.name) {
            Ok(dir) => dir,
            Err(message) => return (waiting("CreateContainerError", message), digest),
        };
        let id = instance_id(&meta.uid, &container.name, attempt);
        let labels = labels(meta, container, attempt, &digest);
        let scratch = containers::bundle::scratch_dir(
            &self.ctx.data_dir,
            &meta.uid,
            &containers::instance::task_id(&labels),
        );
        tracing::debug!(%id, "starting a Linux container");
        let spec = ContainerSpec {
            labels,
            group: shim_group(pod),
            workload: Workload::Linux(LinuxProcess {
                layers: rootfs.layers.clone(),
                scratch,
                args: process.args,
                uid: process.uid,
                gid: process.gid,
                additional_gids: process.additional_gids,
                hostname: etc_files::hostname(pod),
                cpu_request_millicores: resources.cpu_request_millicores,
                pids_limit: Some(self.ctx.pids_limit),
                readonly_rootfs: process.readonly_rootfs,
                capabilities: process.capabilities,
            }),
            env: process
                .env
                .iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv.clone(), String::new()),
                })
                .collect(),
            cwd: process.cwd,
            mounts,
            memory_limit_bytes: resources.memory_limit_bytes,
            cpu_limit_millicores: resources.cpu_limit_millicores,
            netns: Some(netns),
            log_path: log_path(&log_dir, attempt),
            log_max_bytes: LOG_MAX_BYTES,
        };
        let started = self.ctx.runtime.start(spec).await;
        self.started(meta, container, attempt, &log_dir, started, digest)
            .await
    }

    /// A pod with a deletionTimestamp: stop its containers, then finish the deletion.
    pub(super) async fn terminate(&mut self) {
        let entry = &self.entry;
        let running: Vec<String> = entry
            .containers
            .values()
            .filter_map(|r| match &r.state {
                Current::Running { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect();
        // The deletion's own grace period (`delete --grace-period`) wins over the spec's.
        let grace = entry
            .pod
            .meta()
            .deletion_grace_period_seconds
            .or(entry
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds))
            .and_then(|g| u32::try_from(g).ok())
            .unwrap_or(30);
        // Out of every Service's endpoints on every node first: no new connection reaches a
        // container that is shutting down. The wait counts against the grace period.
        let mut grace = grace;
        if !running.is_empty() {
            let started = std::time::Instant::now();
            let limit = std::time::Duration::from_secs(grace.into());
            if super::drain::drain(&self.ctx.catalog, &entry.pod, limit).await {
                let waited = u32::try_from(started.elapsed().as_secs()).unwrap_or(u32::MAX);
                grace = grace.saturating_sub(waited);
            }
        }
        let pod_ip = self.pod_ip(&entry.pod);
        let mut stops = Vec::with_capacity(running.len());
        for id in running {
            let container = id.split('/').nth(1).unwrap_or_default().to_string();
            self.ctx.api.event(
                &entry.pod,
                Some(&container),
                false,
                "Killing",
                format!("Stopping container {container}"),
            );
            let (ctx, pod, pod_ip) = (&self.ctx, &entry.pod, &pod_ip);
            stops.push(async move {
                // Its preStop hook first, within the grace period.
                let spec = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.containers.iter().find(|c| c.name == container));
                super::lifecycle_hooks::stop(
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
        }
        // All at once: a pod's stop takes one grace period, not one per container.
        futures::future::join_all(stops).await;
        let entry = &mut self.entry;
        if entry.deleting {
            return;
        }
        entry.deleting = true;
        let meta = entry.pod.meta().clone();
        match self
            .ctx
            .api
            .finish_deletion(&meta.namespace, &meta.name)
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => entry.gone = true,
            Err(s) => {
                entry.deleting = false;
                tracing::warn!(pod = %meta.name, error = %s, "finishing deletion");
            }
        }
    }

    /// The pod is gone from the API: remove its instances and its directory. The worker ends.
    pub(super) async fn teardown(&mut self) {
        let uid = self.uid.clone();
        for (name, rec) in &self.entry.containers {
            for attempt in rec.attempt.saturating_sub(2)..=rec.attempt {
                let id = instance_id(&uid, name, attempt);
                if let Err(e) = self.ctx.runtime.remove(&id).await {
                    tracing::warn!(%id, error = %e, "removing instance");
                }
            }
        }
        self.ctx.logs.remove(&uid);
        self.ctx.sources.release(&uid);
        self.ctx.keyvalue.release(&uid);
        self.ctx.network.detach(&uid).await;
        volumes::remove_pod_dir(&self.ctx.data_dir, &uid);
        self.removed = true;
        tracing::info!(pod = %self.entry.pod.name(), "pod removed");
    }

    pub(super) fn publish_logs(&self) {
        let containers = self
            .entry
            .containers
            .iter()
            .map(|(name, rec)| {
                (
                    name.clone(),
                    LogState {
                        dir: self.container_log_dir(&self.uid, name),
                        attempt: rec.attempt,
                        running: rec.is_running(),
                    },
                )
            })
            .collect();
        self.ctx.logs.set(&self.uid, containers);
    }

    /// Writes the pod's status if it changed; on a conflict, re-reads the pod and tries again.
    pub(super) async fn report_status(&mut self) {
        let ips = status::Ips {
            host: self.ctx.node.ip.to_string(),
            pod: self.pod_ip(&self.entry.pod),
        };
        let uid = self.uid.clone();
        let entry = &mut self.entry;
        let computed = status::pod_status(
            &entry.pod,
            &entry.containers,
            entry.pod.status.as_ref(),
            &ips,
        );
        if entry.reported.as_ref() == Some(&computed) {
            return;
        }
        let api = self.ctx.api.clone();
        // Until a write lands, the worker counts as pending and comes back within a second.
        entry.status_unwritten = true;
        for _ in 0..2 {
            let mut pod = (*entry.pod).clone();
            pod.status = Some(status::pod_status(
                &entry.pod,
                &entry.containers,
                entry.pod.status.as_ref(),
                &ips,
            ));
            match api.update_status(pod).await {
                Ok(updated) => {
                    crate::prometheus::status_written(
                        &updated,
                        entry.reported.as_ref().map(|s| s.phase.as_str()),
                        updated.status.as_ref().map_or("", |s| s.phase.as_str()),
                    );
                    entry.reported = updated.status.clone();
                    *entry.pod = updated;
                    entry.status_unwritten = false;
                    return;
                }
                Err(s) if s.code() == tonic::Code::Aborted => {
                    match api.get(entry.pod.namespace(), entry.pod.name()).await {
                        Ok(Some(fresh)) if fresh.meta().uid == uid => *entry.pod = fresh,
                        Ok(_) => {
                            entry.gone = true;
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "re-reading pod");
                            return;
                        }
                    }
                }
                Err(s) if s.code() == tonic::Code::NotFound => {
                    entry.gone = true;
                    return;
                }
                Err(s) => {
                    tracing::warn!(pod = %entry.pod.name(), error = %s, "writing status");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm_pod(init: Vec<Container>, containers: Vec<Container>) -> Pod {
        Pod {
            metadata: Some(ObjectMeta {
                name: "p".into(),
                uid: "u".into(),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                runtime_class_name: "wasm".into(),
                init_containers: init,
                containers,
                ..Default::default()
            }),
            status: None,
        }
    }

    fn container(port: Option<i32>) -> Container {
        Container {
            name: "c".into(),
            ports: port
                .map(|p| ContainerPort {
                    container_port: p,
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_wasm_pod_needs_a_network_when_any_container_binds_or_it_may_connect_out() {
        assert!(!wasm_grants_sockets(&wasm_pod(
            vec![],
            vec![container(None)]
        )));
        assert!(wasm_grants_sockets(&wasm_pod(
            vec![],
            vec![container(Some(80))]
        )));
        // An init container's port counts: its sockets live where its siblings' will.
        assert!(wasm_grants_sockets(&wasm_pod(
            vec![container(Some(80))],
            vec![container(None)]
        )));
        let mut outbound = wasm_pod(vec![], vec![container(None)]);
        if let Some(meta) = outbound.metadata.as_mut() {
            meta.annotations
                .insert(ALLOW_OUTBOUND.to_string(), "true".to_string());
        }
        assert!(wasm_grants_sockets(&outbound));
    }
}
