//! Wasm images from an OCI registry, end to end: a real `docker-registry` (Debian package), a real
//! server and agent. Wasm artifacts and ordinary OCI images with a `.wasm` entrypoint run; the
//! container's `imageID` is the manifest digest; a missing tag and an unreachable registry keep
//! the container waiting (`ErrImagePull`, then `ImagePullBackOff`) until the image can be pulled;
//! a second pod of an image does not pull it again. zstd-compressed layers pull and run, in Wasm
//! and OCI pods.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use skiff_tests::guests::guest;
use skiff_tests::images::busybox_rootfs;
use skiff_tests::registry::{Compress, Registry};
use skiff_tests::{Cluster, stdout, text, wait_for};

fn cluster() -> Cluster {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    c
}

/// A Wasm pod running `probe ARGS...` from `image`, never restarted.
fn pod_yaml(name: &str, image: &str, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: main\n    image: {image}\n    command: [probe]\n    args: [{}]\n",
        args.join(", ")
    )
}

fn pod_json(c: &Cluster, name: &str) -> Option<Value> {
    c.get_json("pod", name)
}

fn container(p: &Value) -> &Value {
    &p["status"]["containerStatuses"][0]
}

fn wait_pod(c: &Cluster, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    wait_for(
        &format!("pod {name}: {what}"),
        Duration::from_secs(60),
        || pod_json(c, name).filter(|p| f(p)),
    )
}

fn succeeded(c: &Cluster, name: &str) -> Value {
    let p = wait_pod(c, name, "Succeeded", |p| {
        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    });
    assert_eq!(
        p["status"]["phase"],
        "Succeeded",
        "{p:#}\nagent log:\n{}",
        c.agent(0).log()
    );
    p
}

fn logs(c: &Cluster, name: &str) -> String {
    let out = c.skiff(&["logs", name]);
    assert!(out.status.success(), "{}", text(&out));
    stdout(&out)
}

/// Waits until the pod's container waits with `ErrImagePull` or `ImagePullBackOff`; returns
/// the message.
fn pull_failure(c: &Cluster, name: &str) -> String {
    let p = wait_pod(c, name, "ErrImagePull or ImagePullBackOff", |p| {
        matches!(
            container(p)["state"]["waiting"]["reason"].as_str(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
    });
    assert_eq!(p["status"]["phase"], "Pending", "{p:#}");
    container(&p)["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn wasm_artifact_from_a_registry_runs_once_pulled() {
    let registry = Registry::start();
    let started = Instant::now();
    let pushed = registry.push_wasm_artifact("probe", "v1", &guest("probe"));
    eprintln!("push: {:?}", started.elapsed());
    let c = cluster();

    let started = Instant::now();
    c.apply(&pod_yaml(
        "first",
        &pushed.reference,
        &["echo", "from", "a registry"],
    ));
    let p = succeeded(&c, "first");
    eprintln!("apply → Succeeded (with the pull): {:?}", started.elapsed());
    assert_eq!(logs(&c, "first"), "from a registry\n");
    assert_eq!(container(&p)["imageId"], pushed.digest.as_str(), "{p:#}");
    assert_eq!(container(&p)["image"], pushed.reference.as_str());
    let manifests = registry.requests("GET", "/v2/probe/manifests/");
    let blobs = registry.requests("GET", "/v2/probe/blobs/");
    assert_eq!(manifests, 1, "{}", registry.log());
    assert_eq!(blobs, 1, "one layer, the module: {}", registry.log());

    // A second pod of the same image (tag v1: IfNotPresent) runs from the node's store.
    let started = Instant::now();
    c.apply(&pod_yaml("second", &pushed.reference, &["echo", "again"]));
    let p = succeeded(&c, "second");
    eprintln!("apply → Succeeded (cached): {:?}", started.elapsed());
    assert_eq!(logs(&c, "second"), "again\n");
    assert_eq!(container(&p)["imageId"], pushed.digest.as_str());
    assert_eq!(registry.requests("GET", "/v2/probe/manifests/"), manifests);
    assert_eq!(registry.requests("GET", "/v2/probe/blobs/"), blobs);
    let tag = c
        .agent(0)
        .data_dir
        .join("images/refs")
        .join(registry.host())
        .join("probe/_tags/v1");
    assert_eq!(
        std::fs::read_to_string(&tag).unwrap().trim(),
        pushed.digest,
        "{}",
        tag.display()
    );

    // `skiff run` with a registry image.
    let out = c.skiff(&[
        "run",
        "--rm",
        "--runtime",
        "wasm",
        &pushed.reference,
        "--",
        "echo",
        "hi",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "hi\n");

    // A digest reference names the same image.
    let by_digest = registry.reference(&format!("probe@{}", pushed.digest));
    c.apply(&pod_yaml("by-digest", &by_digest, &["echo", "pinned"]));
    let p = succeeded(&c, "by-digest");
    assert_eq!(logs(&c, "by-digest"), "pinned\n");
    assert_eq!(container(&p)["imageId"], pushed.digest.as_str());
}

#[test]
fn oci_image_with_a_wasm_entrypoint_runs() {
    let registry = Registry::start();
    let module = std::fs::read(guest("probe")).unwrap();
    // The lower layer's /probe.wasm is not Wasm: the upper layer's wins. Other files are
    // never unpacked.
    let pushed = registry.push_image(
        "probe-image",
        "v1",
        &[
            vec![
                ("etc/", Vec::new()),
                ("etc/motd", b"hello".to_vec()),
                ("probe.wasm", b"not this one".to_vec()),
            ],
            vec![("probe.wasm", module)],
        ],
        &["/probe.wasm"],
    );
    let c = cluster();
    c.apply(&pod_yaml(
        "image",
        &pushed.reference,
        &["echo", "from an image"],
    ));
    let p = succeeded(&c, "image");
    assert_eq!(logs(&c, "image"), "from an image\n");
    assert_eq!(container(&p)["imageId"], pushed.digest.as_str(), "{p:#}");
    // Only the upper layer was needed (and the config).
    assert_eq!(
        registry.requests("GET", "/v2/probe-image/blobs/"),
        2,
        "{}",
        registry.log()
    );

    // An ordinary image whose entrypoint is not Wasm waits, naming what it found.
    let not_wasm = registry.push_image(
        "shell",
        "v1",
        &[vec![("bin/", Vec::new()), ("bin/sh", b"#!".to_vec())]],
        &["/bin/sh"],
    );
    c.apply(&pod_yaml("shell", &not_wasm.reference, &["echo"]));
    let message = pull_failure(&c, "shell");
    assert!(
        message.contains("not a Wasm image")
            && message.contains("\"/bin/sh\" is not a .wasm file")
            && message.contains("application/vnd.oci.image.layer.v1.tar+gzip"),
        "{message}"
    );
}

/// Images whose layers are zstd tars (each two zstd frames) pull and run: a Wasm pod from an
/// image whose entrypoint is a `.wasm` file, and an OCI pod from a busybox image.
#[test]
fn zstd_layered_images_run() {
    let registry = Registry::start();
    let module = std::fs::read(guest("probe")).unwrap();
    let wasm = registry.push_image_as(
        "probe-zstd",
        "v1",
        &[
            vec![("etc/", Vec::new()), ("etc/motd", b"lower".to_vec())],
            vec![("probe.wasm", module)],
        ],
        &["/probe.wasm"],
        Compress::Zstd,
    );
    let busybox = registry.push_layer_tars_as(
        "busybox-zstd",
        "v1",
        &[busybox_rootfs().expect("busybox rootfs")],
        json!({ "Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/" }),
        Compress::Zstd,
    );
    let c = cluster();

    let started = Instant::now();
    c.apply(&pod_yaml("wasm", &wasm.reference, &["echo", "from zstd"]));
    let p = succeeded(&c, "wasm");
    eprintln!(
        "Wasm pod, zstd image: apply → Succeeded {:?}",
        started.elapsed()
    );
    assert_eq!(logs(&c, "wasm"), "from zstd\n");
    assert_eq!(container(&p)["imageId"], wasm.digest.as_str(), "{p:#}");

    let started = Instant::now();
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: oci\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: main\n    image: {}\n    command: [/bin/sh, -c, \"echo from zstd busybox; busybox ls /bin\"]\n",
        busybox.reference
    ));
    let p = succeeded(&c, "oci");
    eprintln!(
        "OCI pod, zstd image: apply → Succeeded {:?}",
        started.elapsed()
    );
    assert_eq!(
        logs(&c, "oci"),
        "from zstd busybox\nbusybox\necho\nsh\ntrue\n"
    );
    assert_eq!(container(&p)["imageId"], busybox.digest.as_str(), "{p:#}");
}

#[test]
fn missing_tags_and_unreachable_registries_wait_then_recover() {
    let mut registry = Registry::start();
    let module = guest("probe");
    registry.push_wasm_artifact("probe", "v1", &module);
    let c = cluster();

    // A tag that does not exist: waiting, the message names the tag.
    let missing = registry.reference("probe:nope");
    c.apply(&pod_yaml("missing", &missing, &["echo", "late"]));
    let message = pull_failure(&c, "missing");
    assert!(
        message.contains(&format!(
            "{missing}: manifest unknown (the tag does not exist)"
        )),
        "{message}"
    );
    // Kubernetes' sequence: ErrImagePull, then ImagePullBackOff until the next try.
    let p = wait_pod(&c, "missing", "ImagePullBackOff", |p| {
        container(p)["state"]["waiting"]["reason"] == "ImagePullBackOff"
    });
    let message = container(&p)["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(
        message.starts_with(&format!("Back-off pulling image {missing:?}")),
        "{message}"
    );

    // The registry goes away: a new pod waits, the message says it is unreachable.
    registry.stop();
    let reference = registry.reference("probe:v1");
    c.apply(&pod_yaml("down", &reference, &["echo", "back"]));
    let message = pull_failure(&c, "down");
    assert!(
        message.contains(&format!(
            "{reference}: registry {} unreachable",
            registry.host()
        )),
        "{message}"
    );

    // It comes back, and the tag is pushed: both pods run after their back-off (10 s).
    registry.restart();
    registry.push_wasm_artifact("probe", "nope", &module);
    let started = Instant::now();
    for name in ["missing", "down"] {
        succeeded(&c, name);
    }
    eprintln!("recovered after {:?}", started.elapsed());
    assert_eq!(logs(&c, "missing"), "late\n");
    assert_eq!(logs(&c, "down"), "back\n");
}
