//! The agent's pod loop reconciles each pod on its own: one pod's long stop never delays the
//! start of another (kubelet's pod workers). A real registry, busybox image, server and agent.

use std::time::{Duration, Instant};

use skiff_tests::guests::guest;
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, text, wait_for};

fn phase(c: &Cluster, name: &str) -> String {
    c.get_json("pod", name)
        .and_then(|p| p["status"]["phase"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn a_pod_in_its_grace_period_delays_no_other_pod() {
    let registry = Registry::start();
    let image = registry.push_busybox();
    let mut c = Cluster::start();
    c.add_agent("node-1");

    // PID 1 of a pid namespace ignores SIGTERM unless it handles it, as many images' do: the
    // pod takes its whole 30 s grace period to stop.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: stubborn\nspec:\n  terminationGracePeriodSeconds: 30\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, \"trap '' TERM; while true; do sleep 1; done\"]\n"
    ));
    wait_for("stubborn to run", Duration::from_secs(90), || {
        (phase(&c, "stubborn") == "Running").then_some(())
    });

    let out = c.skiff(&["delete", "pod", "stubborn"]);
    assert!(out.status.success(), "{}", text(&out));
    let deleted = Instant::now();
    let probe = format!("file:{}", guest("probe").display());
    let mut manifests = String::new();
    for i in 0..20 {
        manifests.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: w{i}\nspec:\n  runtimeClassName: wasm\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {probe}\n    command: [probe]\n    args: [tick, \"1000\", \"0\"]\n"
        ));
    }
    c.apply(&manifests);
    wait_for("20 pods to run", Duration::from_secs(25), || {
        (0..20)
            .all(|i| phase(&c, &format!("w{i}")) == "Running")
            .then_some(())
    });
    let all_running = deleted.elapsed();
    // Still stopping: the grace period has not run out.
    let stubborn = c.get_json("pod", "stubborn");
    assert!(
        stubborn.is_some(),
        "the stubborn pod is already gone after {all_running:?}: it did not get its grace period"
    );
    assert!(
        all_running < Duration::from_secs(20),
        "20 pods took {all_running:?} to run beside a stopping pod\n{}",
        c.agent(0).log()
    );
    // And it does end, after its grace period.
    wait_for("stubborn to be gone", Duration::from_secs(60), || {
        c.get_json("pod", "stubborn").is_none().then_some(())
    });
    let stopped = deleted.elapsed();
    assert!(
        stopped >= Duration::from_secs(29),
        "killed after {stopped:?}, before its grace period"
    );
}
