//! `bench/run shim-start`: `ctr run --rm` of a Wasm hello through skiff's containerd shim against
//! a busybox echo through runc's shim, on one private containerd in the same run.
//!
//! Each sample is one whole `ctr run --rm` (shim start, create, start, output, exit, delete,
//! shim exit), as a user types it; the runtimes take turns sample by sample. A third row runs the
//! same busybox echo through skiff's shim (its linux executor), and the table ends with what an
//! idle task's shim process costs in memory (PSS) under each shim.

use std::time::Duration;

use skiff_tests::containerd::{Containerd, RUNC_RUNTIME};
use skiff_tests::images::{BUSYBOX_IMAGE, busybox_oci_archive, wasm_entrypoint_archive};
use skiff_tests::{guests, shim_dir};

use crate::stats::{fmt, pss_kib, row};

const SKIFF_RUNTIME: &str = "io.containerd.skiff.v1";
const PROBE_IMAGE: &str = "skiff.test/probe:latest";
const RUNS: usize = 60;
const WARMUP: usize = 3;

fn run_once(
    c: &Containerd,
    runtime: &str,
    image: &str,
    id: &str,
    args: &[&str],
) -> Result<Duration, String> {
    let mut all = vec!["run", "--rm", "--runtime", runtime, image, id];
    all.extend_from_slice(args);
    let t = std::time::Instant::now();
    let out = c.ctr(&all);
    let took = t.elapsed();
    if !out.status.success() || out.stdout != b"hi\n" {
        return Err(format!(
            "ctr {all:?}: {} stdout {:?} stderr {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(took)
}

/// PSS of the shim serving one idle task of `runtime`.
fn idle_shim_pss(c: &Containerd, runtime: &str, image: &str, args: &[&str]) -> Result<u64, String> {
    let before = c.shim_pids();
    let id = format!("idle-{}", runtime.replace('.', "-"));
    let mut all = vec!["run", "-d", "--runtime", runtime, image, &id];
    all.extend_from_slice(args);
    c.ctr_ok(&all);
    std::thread::sleep(Duration::from_millis(500));
    let shim = c
        .shim_pids()
        .into_iter()
        .find(|p| !before.contains(p))
        .ok_or("no new shim process")?;
    let pss = pss_kib(shim);
    let _ = c.ctr(["task", "kill", "--all", "--signal", "SIGKILL", &id]);
    std::thread::sleep(Duration::from_millis(300));
    let _ = c.ctr(["task", "delete", &id]);
    let _ = c.ctr(["container", "delete", &id]);
    pss
}

pub fn run() -> Result<(), String> {
    let dir = shim_dir();
    let c = Containerd::start_with_path(&[dir.as_path()]);
    let probe = guests::guest("probe");
    let archive = c.dir().join("probe.tar");
    wasm_entrypoint_archive(&probe, &archive, PROBE_IMAGE).map_err(|e| e.to_string())?;
    c.import(&archive);
    let archive = c.dir().join("busybox.tar");
    busybox_oci_archive(&archive).map_err(|e| e.to_string())?;
    c.import(&archive);

    let cases: [(&str, &str, &str, &[&str]); 3] = [
        (
            "skiff shim: Wasm hello (`/probe.wasm echo hi`)",
            SKIFF_RUNTIME,
            PROBE_IMAGE,
            &["/probe.wasm", "echo", "hi"],
        ),
        (
            "runc shim: busybox `/bin/echo hi` (anchor)",
            RUNC_RUNTIME,
            BUSYBOX_IMAGE,
            &["/bin/echo", "hi"],
        ),
        (
            "skiff shim: busybox `/bin/echo hi` (linux executor)",
            SKIFF_RUNTIME,
            BUSYBOX_IMAGE,
            &["/bin/echo", "hi"],
        ),
    ];
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    for i in 0..WARMUP + RUNS {
        for (k, (_, runtime, image, args)) in cases.iter().enumerate() {
            let d = run_once(&c, runtime, image, &format!("b{k}-{i}"), args)?;
            if i >= WARMUP {
                samples[k].push(d);
            }
        }
    }
    println!(
        "`ctr run --rm` on one containerd ({}), {RUNS} runs each, interleaved",
        skiff_tests::containerd::versions().trim()
    );
    println!();
    println!("| what | n | p50 | p99 | min |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let medians: Vec<Duration> = cases
        .iter()
        .zip(samples)
        .map(|((what, ..), s)| row(what, s))
        .collect();
    println!();
    let wasm_pss = idle_shim_pss(
        &c,
        SKIFF_RUNTIME,
        PROBE_IMAGE,
        &["/probe.wasm", "sleep", "0"],
    )?;
    let runc_pss = idle_shim_pss(
        &c,
        RUNC_RUNTIME,
        BUSYBOX_IMAGE,
        &["/bin/busybox", "sleep", "60"],
    )?;
    println!(
        "| idle task's shim process, PSS | skiff (Wasm guest in the shim) | runc shim (+ its container) |"
    );
    println!("| --- | ---: | ---: |");
    println!("| KiB | {wasm_pss} | {runc_pss} |");
    println!();
    println!(
        "shim-start: p50 {} ({:.2}x runc's {})",
        fmt(medians[0]),
        medians[0].as_secs_f64() / medians[1].as_secs_f64(),
        fmt(medians[1])
    );
    Ok(())
}
