//! The agent runs every container through `containerd-shim-skiff-v1` (DESIGN §5): the node's
//! Wasm pods share one shim, each OCI pod has its own, and a shim's crash touches no pod outside
//! it. A real registry, busybox image, server, agent and shims.

use std::time::{Duration, Instant};

use skiff_tests::guests::guest;
use skiff_tests::images::busybox_oci_archive;
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, wait_for};

fn pod(c: &Cluster, name: &str) -> serde_json::Value {
    c.get_json("pod", name).unwrap_or_default()
}

fn running(p: &serde_json::Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
}

#[test]
fn a_crash_of_the_wasm_shim_restarts_only_its_pods_at_once() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("busybox.tar");
    busybox_oci_archive(&archive).expect("busybox image");
    let image = registry.push_layout(&archive, "busybox", "v1").reference;
    let mut c = Cluster::start();
    c.add_agent("node-1");
    let probe = guest("probe");
    let mut manifests = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: oci\nspec:\n  containers:\n  - name: main\n    image: {image}\n    command: [sh, -c, \"while true; do sleep 1; done\"]\n"
    );
    for i in 0..3 {
        manifests.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: wasm-{i}\nspec:\n  runtimeClassName: wasm\n  containers:\n  - name: main\n    image: file:{}\n    args: [tick, \"1000\", \"0\"]\n",
            probe.display()
        ));
    }
    c.apply(&manifests);
    let names = ["oci", "wasm-0", "wasm-1", "wasm-2"];
    wait_for("every pod to run", Duration::from_secs(90), || {
        names.iter().all(|n| running(&pod(&c, n))).then_some(())
    });
    let oci_before = pod(&c, "oci")["status"]["containerStatuses"][0].clone();
    let oci_uid = pod(&c, "oci")["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let oci_shim = c.agent(0).shim_pid(&format!("pod-{oci_uid}"));
    assert!(oci_shim.is_some(), "the OCI pod has no shim of its own");

    let killed = c.kill_shim(0, "wasm");
    let at = Instant::now();
    let restarted = |p: &serde_json::Value| {
        running(p) && p["status"]["containerStatuses"][0]["restartCount"] == 1
    };
    wait_for(
        "the Wasm pods to run again, restarted once",
        Duration::from_secs(20),
        || {
            names[1..]
                .iter()
                .all(|n| restarted(&pod(&c, n)))
                .then_some(())
        },
    );
    let back_in = at.elapsed();
    assert!(
        back_in < Duration::from_secs(2),
        "the Wasm pods took {back_in:?} to run again"
    );
    for n in &names[1..] {
        let p = pod(&c, n);
        let last = &p["status"]["containerStatuses"][0]["lastState"]["terminated"];
        assert_eq!(last["reason"], "ShimCrashed", "{p:#}");
        assert!(
            last["message"]
                .as_str()
                .is_some_and(|m| m.contains(&killed.to_string())),
            "{p:#}"
        );
    }
    // A new Wasm shim serves them; the OCI pod's shim and container never noticed.
    let new_shim = c.agent(0).shim_pid("wasm").expect("a new Wasm shim");
    assert_ne!(new_shim, killed);
    assert_eq!(c.agent(0).shim_pid(&format!("pod-{oci_uid}")), oci_shim);
    let oci_after = pod(&c, "oci")["status"]["containerStatuses"][0].clone();
    assert_eq!(
        oci_after["restartCount"].as_u64().unwrap_or(0),
        0,
        "{oci_after:#}"
    );
    assert_eq!(oci_after["containerId"], oci_before["containerId"]);
    assert!(oci_after["state"]["running"].is_object(), "{oci_after:#}");
    assert_eq!(
        oci_after["state"]["running"]["startedAt"],
        oci_before["state"]["running"]["startedAt"]
    );
}
