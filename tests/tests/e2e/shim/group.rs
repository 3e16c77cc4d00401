//! A node group's shim (`io.containerd.skiff.v1.group`, as a skiff agent puts all the Wasm pods of
//! a node in one shim): one shim serves every task of the group, joins none of their cgroups,
//! keeps no bundle as its working directory, and outlives the Delete of any task but its last.

use skiff_tests::containerd::{Containerd, namespace_cgroups};
use skiff_tests::wait_for;

use super::*;

const GROUP: &str = "io.containerd.skiff.v1.group";

/// `ctr run -d [OPTIONS...] IMAGE ID ARGS...` in group `group`.
pub(super) fn start_in_group(
    c: &Containerd,
    group: &str,
    options: &[&str],
    image: &str,
    id: &str,
    args: &[&str],
) {
    let annotation = format!("{GROUP}={group}");
    let mut all = vec![
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--annotation",
        &annotation,
    ];
    all.extend_from_slice(options);
    all.extend([image, id]);
    all.extend_from_slice(args);
    c.ctr_ok(&all);
}

fn bundle(c: &Containerd, id: &str) -> std::path::PathBuf {
    c.state()
        .join("io.containerd.runtime.v2.task")
        .join(c.namespace())
        .join(id)
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
    })
}

#[test]
fn a_node_group_shim_serves_its_tasks_outside_their_cgroups_until_the_last_is_deleted() {
    let c = containerd();
    let ids = ["g-first", "g-second", "g-third"];
    for id in ids {
        start_in_group(
            &c,
            "node-wasm",
            &[],
            PROBE_IMAGE,
            id,
            &["/probe.wasm", "sleep", "0"],
        );
    }
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 1, "one shim for the group");
    let shim = shims[0];
    for id in ids {
        assert_eq!(task_status(&c, id).as_deref(), Some("RUNNING"));
        assert_eq!(task_pid(&c, id), shim, "{id} runs in the group's shim");
    }
    // `ctr run` gives every task a cgroupsPath: none is made, and no thread of the shim is in
    // one of the namespace's cgroups.
    assert!(
        namespace_cgroups(c.namespace()).is_empty(),
        "cgroups made for a group's tasks: {:?}",
        namespace_cgroups(c.namespace())
    );
    let inside: Vec<(String, String)> = memory_cgroup_of_threads(shim)
        .into_iter()
        .filter(|(_, cg)| cg.contains(&format!("/{}/", c.namespace())))
        .collect();
    assert!(
        inside.is_empty(),
        "shim threads in task cgroups: {inside:?}"
    );
    // Its working directory is not the first task's bundle.
    let cwd = std::fs::read_link(format!("/proc/{shim}/cwd")).unwrap();
    assert_eq!(cwd, std::path::Path::new("/"));

    // The first task goes (containerd sends Shutdown after each Delete): its bundle is removed,
    // the shim and the other tasks live on.
    kill_and_remove(&c, "g-first");
    assert!(!bundle(&c, "g-first").exists(), "the first bundle is left");
    assert!(alive(shim), "the shim exited with tasks left");
    assert_eq!(c.shim_pids(), [shim]);
    for id in ["g-second", "g-third"] {
        assert_eq!(task_status(&c, id).as_deref(), Some("RUNNING"), "{id}");
    }
    // A new task still joins the same shim.
    start_in_group(
        &c,
        "node-wasm",
        &[],
        PROBE_IMAGE,
        "g-fourth",
        &["/probe.wasm", "echo", "late"],
    );
    assert_eq!(c.shim_pids(), [shim]);
    wait_for("g-fourth to end", std::time::Duration::from_secs(5), || {
        (task_status(&c, "g-fourth").as_deref() == Some("STOPPED")).then_some(())
    });
    remove(&c, "g-fourth");
    kill_and_remove(&c, "g-second");
    assert!(alive(shim), "the shim exited with a task left");
    assert_eq!(task_status(&c, "g-third").as_deref(), Some("RUNNING"));
    // The last task gone, the shim exits.
    kill_and_remove(&c, "g-third");
    wait_for(
        "the group's shim to exit",
        std::time::Duration::from_secs(10),
        || (!alive(shim)).then_some(()),
    );
    assert_nothing_left(&c);
}
