//! `skiff run [--rm] [--runtime wasm|oci] [-e|--env K=V]... [-v HOST:GUEST[:ro]]...
//! [--dir HOST[::GUEST]]... IMAGE [-- ARGS...]`: a one-off pod, like `docker run`. It creates the
//! pod (restartPolicy Never), waits for it to be scheduled and started, streams its output
//! (stdout to stdout, stderr to stderr), and exits with the workload's exit code. `--rm` deletes
//! the pod afterwards (also on Ctrl-C or SIGTERM).
//!
//! wasmtime's habits work too: `--env K=V` (as `-e`), and `--dir HOST[::GUEST]` preopens the
//! host directory under GUEST, which defaults to HOST as written and need not be absolute in a
//! Wasm pod (`--dir .` lets the guest open relative paths in the current directory; `--dir
//! data::.` gives it `data` as its current directory). Both kinds of mount become hostPath
//! volumes of the pod, so the node must be this machine (as with `file:` images).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use clap::Args;
use skiff_api::client::{Api, ListParams, Transport};
use skiff_api::v1::*;
use tokio_stream::StreamExt;

use crate::error::{CliError, Result};

#[derive(Args)]
pub struct RunArgs {
    /// Delete the pod when it ends
    #[arg(long)]
    rm: bool,
    /// Keep stdin open (not supported by Wasm pods yet)
    #[arg(short = 'i', long)]
    interactive: bool,
    /// wasm or oci (default: wasm for file: images and .wasm/.wat files, else oci)
    #[arg(long, value_name = "RUNTIME")]
    runtime: Option<String>,
    /// Environment variable KEY=VALUE (or KEY, taken from this shell)
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Mount a host directory: HOSTDIR:GUESTDIR[:ro]
    #[arg(short = 'v', long = "volume", value_name = "HOST:GUEST")]
    volumes: Vec<String>,
    /// Preopen a host directory as wasmtime does: HOST[::GUEST], GUEST defaulting to HOST as
    /// written; in a Wasm pod GUEST may be relative (`.` included)
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// The pod's name (default: run-<random>)
    #[arg(long)]
    name: Option<String>,
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// The image: file:PATH (a .wasm module, component, or .wat) or an OCI reference
    image: String,
    /// Arguments for the workload (after `--`)
    #[arg(last = true)]
    args: Vec<String>,
}

fn usage(message: impl Into<String>) -> CliError {
    CliError::usage(format!("error: {}", message.into()))
}

/// Makes a `file:` image absolute, so that it means the same file on the node (this machine).
fn absolute_image(image: &str) -> Result<String> {
    let Some(path) = image.strip_prefix("file:") else {
        return Ok(image.to_string());
    };
    let path = Path::new(path);
    let absolute = std::env::current_dir()
        .map(|d| d.join(path))
        .map_err(|e| usage(format!("image {image}: {e}")))?;
    if !absolute.is_file() {
        return Err(usage(format!(
            "image {image}: {}: no such file",
            absolute.display()
        )));
    }
    Ok(format!("file:{}", absolute.display()))
}

/// A guest directory name for `--dir`: absolute, or relative (`.`, `data`), with no `..`, `.`
/// or empty component (the API and the executor apply the same rule).
fn check_guest_dir(guest: &str) -> std::result::Result<(), &'static str> {
    if guest == "/" || guest == "." {
        return Ok(());
    }
    let relative = guest.strip_prefix('/').unwrap_or(guest);
    if relative.is_empty() {
        return Err("is empty");
    }
    for part in relative.split('/') {
        match part {
            "" => return Err("has an empty component"),
            "." => return Err("has a '.' component"),
            ".." => return Err("must not contain '..'"),
            _ => {}
        }
    }
    Ok(())
}

fn default_runtime(image: &str) -> &'static str {
    if image.starts_with("file:") || image.ends_with(".wasm") || image.ends_with(".wat") {
        "wasm"
    } else {
        "oci"
    }
}

/// Builds the pod from the flags; every error names the flag.
fn build_pod(args: &RunArgs) -> Result<Pod> {
    let runtime = args
        .runtime
        .clone()
        .unwrap_or_else(|| default_runtime(&args.image).to_string());
    if !matches!(runtime.as_str(), "wasm" | "oci") {
        return Err(usage(format!(
            "--runtime {runtime:?}: expected wasm or oci"
        )));
    }
    if args.interactive {
        return Err(usage("-i: stdin is not supported for pods yet"));
    }
    let image = absolute_image(&args.image)?;
    let name = args.name.clone().unwrap_or_else(|| {
        let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..5].to_string();
        format!("run-{suffix}")
    });
    let mut env = Vec::new();
    for e in &args.env {
        let (k, v) = match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e.clone(), std::env::var(e).unwrap_or_default()),
        };
        if !skiff_api::validation::names::is_env_name(&k) {
            return Err(usage(format!(
                "-e {e:?}: {k:?} is not a valid variable name"
            )));
        }
        env.push(EnvVar {
            name: k,
            value: v,
            value_from: None,
        });
    }
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut mount = |host: &Path, guest: &str, read_only: bool| {
        let volume = format!("vol{}", volumes.len());
        volumes.push(Volume {
            name: volume.clone(),
            host_path: Some(HostPathVolumeSource {
                path: host.display().to_string(),
                r#type: "Directory".into(),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: volume,
            mount_path: guest.to_string(),
            read_only,
            ..Default::default()
        });
    };
    for d in &args.dirs {
        let (host, guest) = d.split_once("::").unwrap_or((d.as_str(), d.as_str()));
        let host_dir = std::env::current_dir()
            .map(|cwd| cwd.join(host))
            .map_err(|e| usage(format!("--dir {d:?}: {e}")))?;
        if host.is_empty() || !host_dir.is_dir() {
            return Err(usage(format!(
                "--dir {d:?}: {} is not a directory",
                host_dir.display()
            )));
        }
        if let Err(why) = check_guest_dir(guest) {
            return Err(usage(format!("--dir {d:?}: GUEST {guest:?} {why}")));
        }
        if runtime != "wasm" && !guest.starts_with('/') {
            return Err(usage(format!(
                "--dir {d:?}: a relative GUEST is a Wasm preopen name; an OCI container needs an absolute path"
            )));
        }
        mount(&host_dir, guest, false);
    }
    for v in &args.volumes {
        let parts: Vec<&str> = v.split(':').collect();
        let (host, guest, read_only) = match parts.as_slice() {
            [h, g] => (*h, *g, false),
            [h, g, "ro"] => (*h, *g, true),
            [h, g, "rw"] => (*h, *g, false),
            _ => return Err(usage(format!("-v {v:?}: expected HOSTDIR:GUESTDIR[:ro]"))),
        };
        let host = std::env::current_dir()
            .map(|d| d.join(host))
            .map_err(|e| usage(format!("-v {v:?}: {e}")))?;
        if !host.is_dir() {
            return Err(usage(format!(
                "-v {v:?}: {} is not a directory",
                host.display()
            )));
        }
        if !guest.starts_with('/') {
            return Err(usage(format!("-v {v:?}: GUESTDIR must be absolute")));
        }
        mount(&host, guest, read_only);
    }
    // argv[0] is the module's file name, as `wasmtime run` does.
    let argv0 = image
        .rsplit('/')
        .next()
        .unwrap_or(&image)
        .trim_start_matches("file:")
        .to_string();
    Ok(Pod {
        metadata: Some(ObjectMeta {
            name: name.clone(),
            namespace: super::namespace(&args.namespace),
            labels: BTreeMap::from([("skiff.dev/run".to_string(), name.clone())]),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: name.clone(),
                image: image.clone(),
                command: if runtime == "wasm" {
                    vec![argv0]
                } else {
                    Vec::new()
                },
                args: args.args.clone(),
                env,
                volume_mounts: mounts,
                ..Default::default()
            }],
            restart_policy: "Never".into(),
            runtime_class_name: if runtime == "wasm" {
                "wasm".into()
            } else {
                String::new()
            },
            volumes,
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        status: None,
    })
}

/// What the pod's status says about the run.
enum Progress {
    Waiting,
    /// The container started (or already ended): its output can be read.
    Started,
    /// It will never start: the reason.
    Stuck(String),
}

fn progress(pod: &Pod) -> Progress {
    let Some(status) = &pod.status else {
        return Progress::Waiting;
    };
    if let Some(c) = status
        .conditions
        .iter()
        .find(|c| c.r#type == "PodScheduled" && c.status == "False")
    {
        return Progress::Stuck(format!("pod cannot be scheduled: {}", c.message));
    }
    if matches!(status.phase.as_str(), "Running" | "Succeeded" | "Failed") {
        return Progress::Started;
    }
    for cs in &status.container_statuses {
        let Some(state) = &cs.state else { continue };
        if state.running.is_some() || state.terminated.is_some() {
            return Progress::Started;
        }
        if let Some(w) = &state.waiting
            && matches!(
                w.reason.as_str(),
                "ErrImagePull" | "ImagePullBackOff" | "CreateContainerConfigError"
            )
        {
            return Progress::Stuck(format!("{}: {}", w.reason, w.message));
        }
    }
    Progress::Waiting
}

/// The message of a container whose image is being pulled (`Pulling image "..."`: how far).
fn pulling(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    status.container_statuses.iter().find_map(|cs| {
        let w = cs.state.as_ref()?.waiting.as_ref()?;
        (w.reason == "ContainerCreating" && w.message.starts_with("Pulling image"))
            .then(|| w.message.clone())
    })
}

fn exit_status(pod: &Pod) -> Option<(i32, String, String)> {
    let status = pod.status.as_ref()?;
    if !matches!(status.phase.as_str(), "Succeeded" | "Failed") {
        return None;
    }
    let t = status
        .container_statuses
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()?;
    Some((t.exit_code, t.reason.clone(), t.message.clone()))
}

/// Watches the pod until `done` says so; returns the pod as last seen.
async fn wait_for(api: &Api<Pod>, name: &str, mut done: impl FnMut(&Pod) -> bool) -> Result<Pod> {
    let params = ListParams::default().fields(&format!("metadata.name={name}"));
    let (pods, meta) = api.list(params.clone()).await?;
    if let Some(pod) = pods.into_iter().next()
        && done(&pod)
    {
        return Ok(pod);
    }
    let mut events = api.watch(params, &meta.resource_version).await?;
    while let Some(event) = events.next().await {
        let event = event?;
        if event.kind == "DELETED" {
            return Err(CliError::failed(format!("error: pod {name} was deleted")));
        }
        if done(&event.object) {
            return Ok(event.object);
        }
    }
    Err(CliError::failed(format!(
        "error: lost the watch on pod {name}"
    )))
}

pub async fn run(transport: &Transport, args: RunArgs) -> Result<()> {
    let pod = build_pod(&args)?;
    let namespace = super::namespace(&args.namespace);
    let api: Api<Pod> = Api::new(transport.clone(), &namespace);
    let created = api.create(pod).await?;
    let name = created.metadata.clone().unwrap_or_default().name;
    let outcome = tokio::select! {
        r = follow(transport, &api, &name) => r,
        _ = super::server::shutdown_signal() => Err(CliError { code: 130, message: String::new() }),
    };
    if args.rm {
        let request = DeleteRequest {
            name: name.clone(),
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        match api.delete_with(request).await {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => eprintln!("warning: deleting pod {name}: {}", s.message()),
        }
    }
    match outcome {
        Ok(0) => Ok(()),
        Ok(code) => Err(CliError {
            code,
            message: String::new(),
        }),
        Err(e) => Err(e),
    }
}

/// Waits for the start, streams the output, and returns the exit code.
async fn follow(transport: &Transport, api: &Api<Pod>, name: &str) -> Result<i32> {
    let mut stuck = None;
    let mut shown = String::new();
    wait_for(api, name, |pod| match progress(pod) {
        Progress::Waiting => {
            // The image's pull, as docker run shows it: on stderr, once per change.
            if let Some(pulling) = pulling(pod)
                && pulling != shown
            {
                eprintln!("{pulling}");
                shown = pulling;
            }
            false
        }
        Progress::Started => true,
        Progress::Stuck(reason) => {
            stuck = Some(reason);
            true
        }
    })
    .await?;
    if let Some(reason) = stuck {
        return Err(CliError::failed(format!("error: {reason}")));
    }
    let request = PodLogRequest {
        namespace: api.namespace().to_string(),
        name: name.to_string(),
        follow: true,
        ..Default::default()
    };
    super::logs::stream(transport, request, |chunk| {
        if chunk.stream == "stderr" {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&chunk.data);
        } else {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&chunk.data);
            let _ = out.flush();
        }
    })
    .await?;
    let pod = wait_for(api, name, |pod| exit_status(pod).is_some()).await?;
    let Some((code, reason, message)) = exit_status(&pod) else {
        return Err(CliError::failed(
            "error: the pod ended without an exit code",
        ));
    };
    if reason == "StartError" {
        return Err(CliError::failed(format!(
            "error: the container could not start: {message}"
        )));
    }
    if reason == "OOMKilled" {
        eprintln!("skiff run: the workload was OOMKilled (memory limit reached)");
    }
    Ok(code)
}
