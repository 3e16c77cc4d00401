//! Wasm images from an OCI registry, end to end: a real `docker-registry` (Debian package), a real
//! server and agent. Wasm artifacts and ordinary OCI images with a `.wasm` entrypoint run; the
//! container's `imageID` is the manifest digest; a missing tag and an unreachable registry keep
//! the container waiting (`ErrImagePull`, then `ImagePullBackOff`) until the image can be pulled;
//! a second pod of an image does not pull it again. zstd-compressed layers pull and run, in Wasm
//! and OCI pods. `skiff push` writes the CNCF Wasm artifact layout and what it pushed runs; other
//! tools' artifact variants (the Bytecode Alliance component layer, `wasm-to-oci`'s) run too.

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
    assert_eq!(container(&p)["imageID"], pushed.digest.as_str(), "{p:#}");
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
    assert_eq!(container(&p)["imageID"], pushed.digest.as_str());
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
    assert_eq!(container(&p)["imageID"], pushed.digest.as_str());
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
    assert_eq!(container(&p)["imageID"], pushed.digest.as_str(), "{p:#}");
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
    assert_eq!(container(&p)["imageID"], wasm.digest.as_str(), "{p:#}");

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
    assert_eq!(container(&p)["imageID"], busybox.digest.as_str(), "{p:#}");
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

/// The push's `digest: sha256:...` line.
fn pushed_digest(out: &std::process::Output) -> String {
    stdout(out)
        .lines()
        .find_map(|l| l.strip_prefix("digest: "))
        .unwrap_or_else(|| panic!("no digest line: {}", text(out)))
        .to_string()
}

fn blob_json(registry: &Registry, digest: &str) -> Value {
    let path = registry.blob_file(digest);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{digest}: {e}"))
}

/// `skiff push` writes the CNCF layout (checked in the registry's own storage), and what it
/// pushed runs: a component with `skiff run`, a core module as a pod pinned by the printed
/// digest. Bad input exits 2 naming the file or the reference, and pushes nothing.
#[test]
fn skiff_push_then_run_from_the_loopback_registry() {
    let registry = Registry::start();
    let c = cluster();
    let component = skiff_tests::guests::component("probe");
    let module = guest("probe");

    let reference = registry.reference("probe-component:v1");
    let out = c.skiff(&["push", &component.display().to_string(), &reference]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).starts_with(&format!("{reference}: pushed ")),
        "{}",
        text(&out)
    );
    let digest = pushed_digest(&out);
    let manifest = blob_json(&registry, &digest);
    assert_eq!(
        manifest["config"]["mediaType"], "application/vnd.wasm.config.v0+json",
        "{manifest:#}"
    );
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{manifest:#}");
    assert_eq!(layers[0]["mediaType"], "application/wasm");
    let bytes = std::fs::read(&component).unwrap();
    assert_eq!(layers[0]["size"], json!(bytes.len()));
    let layer_digest = layers[0]["digest"].as_str().unwrap().to_string();
    assert_eq!(layer_digest, skiff_tests::images::sha256_digest(&bytes));
    let config = blob_json(&registry, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(config["architecture"], "wasm", "{config:#}");
    assert_eq!(config["os"], "wasip2", "{config:#}");
    assert_eq!(config["layerDigests"], json!([layer_digest]), "{config:#}");
    let exports = config["component"]["exports"].to_string();
    assert!(exports.contains("wasi:cli/run@0.2"), "{config:#}");
    let imports = config["component"]["imports"].to_string();
    assert!(imports.contains("wasi:cli/environment@0.2"), "{config:#}");

    let out = c.skiff(&[
        "run",
        "--rm",
        "--runtime",
        "wasm",
        &reference,
        "--",
        "echo",
        "pushed",
        "by skiff",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "pushed by skiff\n");

    // A second push of the same module does not send its layer again (only the new config:
    // `created` differs); a core module is wasip1.
    let layer_uploads = || {
        let hex = layer_digest.trim_start_matches("sha256:");
        registry
            .log()
            .lines()
            .filter(|l| l.contains("\"PUT /v2/probe-component/blobs/uploads/"))
            .filter(|l| l.contains(&format!("digest=sha256%3A{hex}")))
            .count()
    };
    assert_eq!(layer_uploads(), 1, "{}", registry.log());
    let out = c.skiff(&[
        "push",
        &component.display().to_string(),
        &registry.reference("probe-component:v2"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(layer_uploads(), 1, "{}", registry.log());
    let out = c.skiff(&[
        "push",
        &module.display().to_string(),
        &registry.reference("probe-module:v1"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let digest = pushed_digest(&out);
    let manifest = blob_json(&registry, &digest);
    let config = blob_json(&registry, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(config["os"], "wasip1", "{config:#}");
    assert!(config.get("component").is_none(), "{config:#}");
    let pinned = registry.reference(&format!("probe-module@{digest}"));
    c.apply(&pod_yaml("pinned", &pinned, &["echo", "a pushed module"]));
    let p = succeeded(&c, "pinned");
    assert_eq!(logs(&c, "pinned"), "a pushed module\n");
    assert_eq!(container(&p)["imageID"], digest.as_str(), "{p:#}");

    // Bad input: exit 2, naming the file or the reference.
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.wasm");
    std::fs::write(&notes, "not wasm").unwrap();
    for (file, reference, needle) in [
        (
            notes.display().to_string(),
            registry.reference("bad:v1"),
            format!("{}: not a Wasm module or component", notes.display()),
        ),
        (
            dir.path().join("missing.wasm").display().to_string(),
            registry.reference("bad:v1"),
            "missing.wasm: No such file".to_string(),
        ),
        (
            module.display().to_string(),
            "Not A Reference!".to_string(),
            "Not A Reference!: invalid image reference".to_string(),
        ),
        (
            module.display().to_string(),
            registry.reference(&format!("bad@{digest}")),
            "not a digest".to_string(),
        ),
    ] {
        let out = c.skiff(&["push", &file, &reference]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            skiff_tests::stderr(&out).contains(&needle),
            "{needle}: {}",
            text(&out)
        );
    }
    assert_eq!(
        registry.requests("POST", "/v2/bad/"),
        0,
        "{}",
        registry.log()
    );
    // A registry that is down: exit 1, naming the registry.
    let mut down = Registry::start();
    let reference = down.reference("probe:v1");
    down.stop();
    let out = c.skiff(&["push", &module.display().to_string(), &reference]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        skiff_tests::stderr(&out).contains(&format!("registry {} unreachable", down.host())),
        "{}",
        text(&out)
    );
}

/// Artifacts as other tools push them run too: `wkg`'s (the CNCF layout, as above), earlier
/// `wkg`/warg and runwasi's (the Bytecode Alliance component layer type, with a Wasm config or
/// an ordinary image config), and `wasm-to-oci`'s (its own config and layer types).
#[test]
fn other_tools_artifacts_run() {
    let registry = Registry::start();
    let c = cluster();
    let component = std::fs::read(skiff_tests::guests::component("probe")).unwrap();
    let wasm_config = serde_json::to_vec(&json!({"architecture": "wasm", "os": "wasip2"})).unwrap();
    let image_config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["probe.wasm"]},
        "rootfs": {"type": "layers", "diff_ids": []},
    }))
    .unwrap();
    for (name, config_type, config, layer_type) in [
        (
            "wkg-old",
            "application/vnd.wasm.config.v0+json",
            &wasm_config,
            "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
        ),
        (
            "runwasi",
            "application/vnd.oci.image.config.v1+json",
            &image_config,
            "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
        ),
        (
            "wasm-to-oci",
            "application/vnd.wasm.config.v1+json",
            &wasm_config,
            "application/vnd.wasm.content.layer.v1+wasm",
        ),
    ] {
        let layer = registry.push_blob(name, &component);
        let config_digest = registry.push_blob(name, config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": config_type, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": layer_type, "digest": layer, "size": component.len()}],
        }))
        .unwrap();
        registry.push_manifest(
            name,
            "v1",
            "application/vnd.oci.image.manifest.v1+json",
            &manifest,
        );
        c.apply(&pod_yaml(
            name,
            &registry.reference(&format!("{name}:v1")),
            &["echo", name],
        ));
    }
    for name in ["wkg-old", "runwasi", "wasm-to-oci"] {
        succeeded(&c, name);
        assert_eq!(logs(&c, name), format!("{name}\n"));
    }
}
