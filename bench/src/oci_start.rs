//! `bench/run oci-start`: how fast skiff's linux executor runs a container, against runc and
//! crun on the same bundle in the same run.
//!
//! One busybox bundle (Debian's static busybox, skiff's default spec: namespaces, cgroup,
//! capabilities, no_new_privs, seccomp, masked paths) running `/bin/true`; each sample is one
//! whole `RUNTIME run ID` (create + start + wait + delete, as a user's command). The runtimes
//! take turns sample by sample, so machine noise falls on all of them alike.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skiff_tests::bundles::Bundle;
use skiff_tests::skiff_bin;

use crate::stats::{fmt, row};

const RUNS: usize = 50;
const WARMUP: usize = 3;

struct Runtime {
    name: &'static str,
    program: std::path::PathBuf,
    /// Arguments before `run`.
    prefix: Vec<String>,
    samples: Vec<Duration>,
}

impl Runtime {
    fn run_once(&self, bundle: &Path, id: &str) -> Result<Duration, String> {
        let t = Instant::now();
        let status = Command::new(&self.program)
            .args(&self.prefix)
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .map_err(|e| format!("{}: {e}", self.name))?;
        let elapsed = t.elapsed();
        if !status.success() {
            return Err(format!("{} run failed: {status}", self.name));
        }
        Ok(elapsed)
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

pub fn run() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let bundle_dir = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle_dir).map_err(|e| e.to_string())?;
    Bundle::busybox(&bundle_dir, &["/bin/true"]);
    let state = |n: &str| dir.path().join(n).display().to_string();
    let mut runtimes = vec![Runtime {
        name: "skiff oci run",
        program: skiff_bin(),
        prefix: vec!["oci".into(), "--root".into(), state("skiff")],
        samples: Vec::new(),
    }];
    for name in ["runc", "crun"] {
        match which(name) {
            Some(program) => runtimes.push(Runtime {
                name,
                program,
                prefix: vec!["--root".into(), state(name)],
                samples: Vec::new(),
            }),
            None => println!("({name} is not installed: not measured)"),
        }
    }
    // crun refuses some hosts (cgroup v1 in hybrid mode, say): it is measured where it runs.
    runtimes.retain(|r| {
        if r.name != "crun" {
            return true;
        }
        let probe = Command::new(&r.program)
            .args(&r.prefix)
            .args(["run", "--bundle"])
            .arg(&bundle_dir)
            .arg("probe")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output();
        match probe {
            Ok(o) if o.status.success() => true,
            Ok(o) => {
                let why = String::from_utf8_lossy(&o.stderr);
                println!(
                    "(crun does not run on this host: {}; not measured)",
                    why.trim()
                );
                false
            }
            Err(e) => {
                println!("(crun: {e}; not measured)");
                false
            }
        }
    });
    if !runtimes.iter().any(|r| r.name == "runc") {
        return Err("runc is not installed (apt-get install runc): it is the anchor".into());
    }
    for i in 0..WARMUP + RUNS {
        for r in runtimes.iter_mut() {
            let d = r.run_once(&bundle_dir, &format!("bench-{i}"))?;
            if i >= WARMUP {
                r.samples.push(d);
            }
        }
    }
    println!(
        "`/bin/true` in a busybox bundle, create+start+wait+delete, {RUNS} runs each, interleaved"
    );
    println!();
    println!("| runtime | n | p50 | p99 | min |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let medians: Vec<(&str, Duration)> = runtimes
        .iter()
        .map(|r| (r.name, row(r.name, r.samples.clone())))
        .collect();
    let ours = medians[0].1;
    let runc = medians
        .iter()
        .find(|(n, _)| *n == "runc")
        .map(|(_, d)| *d)
        .unwrap_or(ours);
    let mut last = format!(
        "oci-start: p50 {} ({:.2}x runc {}",
        fmt(ours),
        ours.as_secs_f64() / runc.as_secs_f64(),
        fmt(runc)
    );
    if let Some((_, crun)) = medians.iter().find(|(n, _)| *n == "crun") {
        last.push_str(&format!(
            ", {:.2}x crun {}",
            ours.as_secs_f64() / crun.as_secs_f64(),
            fmt(*crun)
        ));
    }
    last.push(')');
    println!();
    println!("{last}");
    Ok(())
}
