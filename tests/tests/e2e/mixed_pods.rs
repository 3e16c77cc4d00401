//! A pod that mixes kinds (DESIGN §4): a Wasm server container and a Linux busybox container
//! share one network namespace (`localhost`, one IP) and one emptyDir, and the scheduler places
//! such a pod only on a node that runs both runtimes. A real registry, server and agent.

use std::time::Duration;

use skiff_tests::guests::{guest, socket_component};
use skiff_tests::registry::Registry;
use skiff_tests::{Cluster, stdout, text, wait_for};

#[test]
fn a_wasm_and_a_linux_container_share_localhost_and_an_empty_dir() {
    let registry = Registry::start();
    let busybox = registry.push_busybox();
    let mut c = Cluster::start();
    c.add_agent("node-1");
    let net = socket_component("net");
    let probe = guest("probe");

    // A Wasm pod whose `shell` container is a Linux one: a Wasm init container writes into the
    // shared emptyDir, the Wasm server answers on 8080, and the Linux container reads the file,
    // fetches from the server over localhost and writes back for the Wasm `reader`.
    let shell = "busybox cat /data/from-wasm; \
                 for i in $(busybox seq 1 80); do busybox nc 127.0.0.1 8080 </dev/null > /tmp/got && [ -s /tmp/got ] && break; busybox sleep 0.25; done; \
                 busybox cat /tmp/got; echo linux-wrote-this > /data/from-linux; busybox sleep 3600";
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: mixed\n  annotations:\n    skiff.dev/linux-containers: shell\nspec:\n  runtimeClassName: wasm\n  terminationGracePeriodSeconds: 1\n  volumes:\n  - name: data\n    emptyDir: {{}}\n  initContainers:\n  - name: seed\n    image: file:{probe}\n    command: [probe, write, /data/from-wasm, from-wasm]\n    volumeMounts:\n    - name: data\n      mountPath: /data\n  containers:\n  - name: server\n    image: file:{net}\n    command: [net, serve, \"8080\", from-wasm-server, \"100\"]\n    ports:\n    - containerPort: 8080\n  - name: reader\n    image: file:{probe}\n    command: [probe, watch, /data/from-linux, \"200\", \"0\"]\n    volumeMounts:\n    - name: data\n      mountPath: /data\n  - name: shell\n    image: {busybox}\n    command: [sh, -c, {shell:?}]\n    volumeMounts:\n    - name: data\n      mountPath: /data\n",
        probe = probe.display(),
        net = net.display(),
    ));
    let logs = |container: &str| {
        let out = c.skiff(&["logs", "mixed", "-c", container]);
        if out.status.success() {
            stdout(&out)
        } else {
            String::new()
        }
    };
    wait_for(
        "the Linux container to read the Wasm files and server",
        Duration::from_secs(90),
        || {
            let said = logs("shell");
            (said.contains("from-wasm\n") && said.contains("from-wasm-server")).then_some(())
        },
    );
    wait_for(
        "the Wasm reader to see the Linux container's file",
        Duration::from_secs(30),
        || logs("reader").contains("linux-wrote-this").then_some(()),
    );
    let p = c.get_json("pod", "mixed").expect("the pod");
    assert_eq!(p["status"]["phase"], "Running", "{p:#}");
    // One pod, one address: the Linux container's sandbox, which the Wasm containers joined.
    let ip = p["status"]["podIP"].as_str().unwrap_or_default();
    assert!(!ip.is_empty() && ip != "127.0.0.2", "{p:#}");

    // exec reaches the Linux container and is refused for a Wasm one, naming it.
    let out = c.skiff(&[
        "exec",
        "mixed",
        "-c",
        "shell",
        "--",
        "busybox",
        "cat",
        "/data/from-wasm",
    ]);
    assert_eq!(stdout(&out), "from-wasm\n", "{}", text(&out));
    let out = c.skiff(&["exec", "mixed", "-c", "server", "--", "sh"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("Wasm container"), "{}", text(&out));
}

#[test]
fn the_annotation_must_name_containers_of_the_pod() {
    let c = Cluster::start();
    let out = c.skiff_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\n  annotations:\n    skiff.dev/linux-containers: nope\n    skiff.dev/wasm-containers: main\nspec:\n  runtimeClassName: wasm\n  containers:\n  - name: main\n    image: file:/x.wasm\n",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("metadata.annotations[skiff.dev/linux-containers]")
            && said.contains("no container named \"nope\""),
        "{said}"
    );
    assert!(
        said.contains("metadata.annotations[skiff.dev/wasm-containers]"),
        "{said}"
    );
}
