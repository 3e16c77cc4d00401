//! Stats of Wasm tasks that share a shim: each task's figures are its own instance's, from
//! wasmtime's accounting (its linear memory, its memory limit, its guest's CPU time), not the
//! shared process's; `ctr task metrics` reads them as cgroup v2 metrics on any host.

use std::time::Duration;

use skiff_tests::containerd::Containerd;
use skiff_tests::images::wasm_entrypoint_archive;

use super::group::start_in_group;
use super::*;

const BUSY_IMAGE: &str = "skiff.test/busy:latest";

/// A WASI command that grows its memory by 512 pages (32 MiB), touches every page, then spins
/// without a host call.
const BUSY: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $at i32)
    (if (i32.lt_s (memory.grow (i32.const 512)) (i32.const 0))
      (then (call $exit (i32.const 12))))
    (block $touched
      (loop $touch
        (br_if $touched (i32.ge_u (local.get $at) (i32.const 0x2010000)))
        (i32.store (local.get $at) (i32.const 1))
        (local.set $at (i32.add (local.get $at) (i32.const 0x10000)))
        (br $touch)))
    (loop $spin (br $spin))))"#;

/// A figure of `ctr task metrics ID` (its NAME VALUE table).
fn figure(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| {
            let mut cols = l.split_whitespace();
            (cols.next()? == name).then(|| cols.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {name} in: {metrics}"))
}

struct Figures {
    memory: u64,
    limit: u64,
    cpu: Duration,
    pids: u64,
}

fn figures(c: &Containerd, id: &str) -> Figures {
    let m = c.ctr_ok(["task", "metrics", id]);
    Figures {
        memory: figure(&m, "memory.usage"),
        limit: figure(&m, "memory.usage_limit"),
        cpu: Duration::from_micros(figure(&m, "cpu.usage_usec")),
        pids: figure(&m, "pids.current"),
    }
}

#[test]
fn wasm_tasks_sharing_a_shim_each_report_their_own_figures() {
    let c = containerd();
    let busy = c.dir().join("busy.wasm");
    std::fs::write(&busy, wat::parse_str(BUSY).unwrap()).unwrap();
    let archive = c.dir().join("busy.tar");
    wasm_entrypoint_archive(&busy, &archive, BUSY_IMAGE).expect("busy image");
    c.import(&archive);

    let limit = (128u64 << 20).to_string();
    let options = ["--memory-limit", limit.as_str()];
    start_in_group(&c, "stats", &options, BUSY_IMAGE, "w-busy", &[]);
    start_in_group(
        &c,
        "stats",
        &[],
        PROBE_IMAGE,
        "w-idle",
        &["/probe.wasm", "sleep", "0"],
    );
    assert_eq!(c.shim_pids().len(), 1, "one shim for both");
    wait_for("the busy guest's memory", Duration::from_secs(5), || {
        (figures(&c, "w-busy").memory >= 513 << 16).then_some(())
    });
    let (busy0, idle0) = (figures(&c, "w-busy"), figures(&c, "w-idle"));
    std::thread::sleep(Duration::from_millis(1500));
    let (busy, idle) = (figures(&c, "w-busy"), figures(&c, "w-idle"));

    // Memory: the busy guest's 513 pages (and its tables), the idle one's few.
    assert!(
        busy.memory >= (513 << 16) && busy.memory < (40 << 20),
        "busy memory {}",
        busy.memory
    );
    assert!(idle.memory < 8 << 20, "idle memory {}", idle.memory);
    assert!(idle.memory > 0, "the idle guest has a memory too");
    assert_eq!((busy.limit, idle.limit), (128 << 20, 0));
    assert_eq!((busy.pids, idle.pids), (1, 1));
    // CPU: the spinning guest used a good share of a core meanwhile, the sleeping one next to
    // nothing (each is its own, though both run on the shim's threads).
    let busy_cpu = busy.cpu.saturating_sub(busy0.cpu);
    let idle_cpu = idle.cpu.saturating_sub(idle0.cpu);
    assert!(
        busy_cpu >= Duration::from_millis(300),
        "busy cpu {busy_cpu:?}"
    );
    assert!(
        idle_cpu < Duration::from_millis(20),
        "idle cpu {idle_cpu:?}"
    );
    assert!(
        idle.cpu < Duration::from_millis(50),
        "idle cpu {:?}",
        idle.cpu
    );

    for id in ["w-busy", "w-idle"] {
        kill_and_remove(&c, id);
    }
    assert_nothing_left(&c);
}
