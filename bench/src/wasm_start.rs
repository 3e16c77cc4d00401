//! `bench/run wasm-start`: how fast Wasm pods start and how little they cost.
//!
//! (a) instantiate-to-`_start` latency on the node's engine with a cached module (pooling
//!     allocator, copy-on-write memory, `InstancePre`), in process;
//! (b) `skiff run --rm` of a hello guest end to end (API, scheduler, agent, Wasm shim, logs),
//!     side by side with `ctr run --rm` of a busybox echo under runc through a Debian containerd
//!     started for the run, and `wasmtime run` where installed;
//! (c) density: 1,000 idle Wasm pods on one node, PSS of the agent and the node's Wasm shim
//!     (every process the agent runs for Wasm pods) per pod.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use skiff_api::v1::{Container, ObjectMeta, Pod, PodSpec};
use skiff_tests::Cluster;
use skiff_tests::guests::guest;

use crate::stats::{fmt, pss_kib, row};

fn idle_pod(name: &str, image: &str) -> Pod {
    Pod {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            runtime_class_name: "wasm".into(),
            containers: vec![Container {
                name: "idle".into(),
                image: image.to_string(),
                command: vec!["probe".into()],
                args: vec!["sleep".into(), "0".into()],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn run() -> Result<(), String> {
    let probe = guest("probe");
    let image = format!("file:{}", probe.display());

    println!("## wasm-start\n");
    println!("| measure | n | p50 | p99 | min |\n| --- | ---: | ---: | ---: | ---: |");

    // (a) instantiate → _start, in process, cached module.
    let instantiate = row(
        "(a) instantiate + `_start` of a cached module",
        crate::instantiate::samples(&probe, 2000)?,
    );

    // (b) end to end.
    let mut cluster = Cluster::start();
    cluster.add_agent("bench-node");
    let run_once = |cluster: &Cluster| -> Result<Duration, String> {
        let t = Instant::now();
        let out = cluster.skiff(&["run", "--rm", &image, "--", "echo", "hi"]);
        let took = t.elapsed();
        if !out.status.success() || out.stdout != b"hi\n" {
            return Err(format!("skiff run failed: {}", skiff_tests::text(&out)));
        }
        Ok(took)
    };
    for _ in 0..3 {
        run_once(&cluster)?; // compile and cache the module, warm connections
    }
    let mut runs = Vec::new();
    for _ in 0..30 {
        runs.push(run_once(&cluster)?);
    }
    let skiff_run = row("(b) `skiff run --rm` hello, end to end", runs);

    let ctr = if skiff_tests::containerd::which("containerd").is_some()
        && skiff_tests::containerd::which("runc").is_some()
    {
        let containerd = skiff_tests::containerd::Containerd::start();
        let archive = containerd.dir().join("busybox.tar");
        skiff_tests::images::busybox_oci_archive(&archive)
            .map_err(|e| format!("building the busybox image: {e}"))?;
        containerd.import(&archive);
        let image = skiff_tests::images::BUSYBOX_IMAGE;
        let _ = containerd.time_ctr_run(image, 3); // warm
        Some(row(
            "(b) anchor: `ctr run --rm` busybox echo (runc, containerd)",
            containerd.time_ctr_run(image, 30),
        ))
    } else {
        println!("| (b) anchor: containerd/runc not installed (Debian: containerd runc) | | | | |");
        None
    };
    let wasmtime = wasmtime_run(&probe);

    // (c) density.
    let agent_pid = cluster.agent(0).pid().ok_or("agent not running")?;
    // The Wasm shim exits with its last task: before the pods, only the agent may be counted.
    let shim_pss = || {
        cluster
            .agent(0)
            .shim_pid("wasm")
            .map_or(Ok(0), |pid| pss_kib(pid as u32))
    };
    let before = pss_kib(agent_pid)? + shim_pss()?;
    let pods = 1000usize;
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let _guard = rt.enter();
    let api = cluster.api::<Pod>("default");
    rt.block_on(async {
        for i in 0..pods {
            api.create(idle_pod(&format!("idle-{i}"), &image))
                .await
                .map_err(|e| e.to_string())?;
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (items, _) = api
                .list(Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let running = items
                .iter()
                .filter(|p| p.status.as_ref().is_some_and(|s| s.phase == "Running"))
                .count();
            if running >= pods {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "only {running}/{pods} idle pods Running after 5 min"
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok::<(), String>(())
    })?;
    std::thread::sleep(Duration::from_secs(3)); // let the agent settle
    let agent_kib = pss_kib(agent_pid)?;
    let shim_kib = shim_pss()?;
    let after = agent_kib + shim_kib;
    let per_pod = after as f64 / pods as f64 / 1024.0;
    let marginal = after.saturating_sub(before) as f64 / pods as f64 / 1024.0;
    println!(
        "| (c) {pods} idle pods: PSS agent {:.1} MiB + Wasm shim {:.1} MiB = {:.1} MiB | | {per_pod:.3} MiB/pod | marginal {marginal:.3} MiB/pod | |",
        agent_kib as f64 / 1024.0,
        shim_kib as f64 / 1024.0,
        after as f64 / 1024.0,
    );
    cluster.kill_agent(0);
    drop(cluster);

    let mut summary = format!(
        "wasm-start: run p50 {} ({:.2}x the 25 ms goal",
        fmt(skiff_run),
        skiff_run.as_secs_f64() / 0.025
    );
    if let Some(ctr) = ctr {
        summary += &format!(
            ", {:.2}x ctr run (runc)",
            skiff_run.as_secs_f64() / ctr.as_secs_f64()
        );
    }
    if let Some(w) = wasmtime {
        summary += &format!(
            ", {:.2}x wasmtime run",
            skiff_run.as_secs_f64() / w.as_secs_f64()
        );
    }
    summary += &format!(
        "); instantiate p50 {} ({:.2}x the 50 µs goal); {per_pod:.3} MiB/pod ({:.2}x the 1 MiB goal)",
        fmt(instantiate),
        instantiate.as_secs_f64() / 50e-6,
        per_pod
    );
    println!("\n{summary}");
    Ok(())
}

/// `wasmtime run probe.wasm echo hi`, if a wasmtime CLI is installed.
fn wasmtime_run(probe: &Path) -> Option<Duration> {
    let ok = Command::new("wasmtime")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("| (b) anchor: `wasmtime run` — not installed here | | | | |");
        return None;
    }
    let mut samples = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let out = Command::new("wasmtime")
            .arg("run")
            .arg(probe)
            .args(["echo", "hi"])
            .output()
            .ok()?;
        samples.push(t.elapsed());
        if out.stdout != b"hi\n" {
            return None;
        }
    }
    Some(row("(b) anchor: `wasmtime run` echo", samples))
}
