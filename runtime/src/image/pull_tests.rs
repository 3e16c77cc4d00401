//! The store against a real registry (Debian's `docker-registry`, through `skiff_tests::registry`):
//! pulls, the cache and the policies, every failure a user can meet, and timings.

use std::sync::Mutex;
use std::time::Instant;

use serde_json::json;
use skiff_tests::images::sha256_digest;
use skiff_tests::registry::{Compress, Registry};

use super::*;

fn module(size: usize) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    // Only the header is Wasm: the store checks no more.
    m.resize(size.max(8), 0);
    m
}

fn write_module(dir: &Path, bytes: &[u8]) -> PathBuf {
    let p = dir.join("m.wasm");
    std::fs::write(&p, bytes).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_verifies_and_caches_a_wasm_artifact() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let bytes = module(4096);
    let pushed = registry.push_wasm_artifact("app", "v1", &write_module(dir.path(), &bytes));
    let root = dir.path().join("store");
    let store = ImageStore::new(&root).unwrap();

    let reports = Mutex::new(Vec::new());
    let record = |p: &Progress| reports.lock().unwrap().push(p.clone());
    let pulled = store
        .pull(&pushed.reference, PullPolicy::IfNotPresent, &record)
        .await
        .unwrap();
    assert!(pulled.downloaded);
    assert_eq!(pulled.digest, pushed.digest);
    assert_eq!(pulled.reference, pushed.reference);
    assert_eq!(pulled.record.kind, "wasm-artifact");
    assert_eq!(
        pulled.record.config_media_type,
        kind::MEDIA_TYPE_WASM_CONFIG
    );
    assert_eq!(pulled.record.module_digest, sha256_digest(&bytes));
    assert_eq!(std::fs::read(&pulled.module_path).unwrap(), bytes);
    assert!(pulled.module_path.starts_with(root.join("blobs/sha256")));
    let reports = reports.into_inner().unwrap();
    assert_eq!(reports.first().map(|p| p.done), Some(0));
    assert_eq!(
        reports.last().map(|p| (p.done, p.total)),
        Some((4096, 4096))
    );
    assert!(reports.iter().all(|p| p.what == "module" && p.count == 1));

    let manifests = || registry.requests("GET", "/v2/app/manifests/");
    let blobs = || registry.requests("GET", "/v2/app/blobs/");
    assert_eq!((manifests(), blobs()), (1, 1));

    // IfNotPresent and Never: the store's copy, no request.
    for policy in [PullPolicy::IfNotPresent, PullPolicy::Never] {
        let again = store
            .pull(&pushed.reference, policy, &|_| {})
            .await
            .unwrap();
        assert!(!again.downloaded);
        assert_eq!(again.module_path, pulled.module_path);
    }
    assert_eq!((manifests(), blobs()), (1, 1));
    // Always: the tag is resolved again, nothing is downloaded.
    let again = store
        .pull(&pushed.reference, PullPolicy::Always, &|_| {})
        .await
        .unwrap();
    assert!(!again.downloaded);
    assert_eq!((manifests(), blobs()), (2, 1));
    // A digest reference never re-resolves, whatever the policy.
    let by_digest = registry.reference(&format!("app@{}", pushed.digest));
    let again = store
        .pull(&by_digest, PullPolicy::Always, &|_| {})
        .await
        .unwrap();
    assert_eq!(again.digest, pushed.digest);
    assert_eq!((manifests(), blobs()), (2, 1));

    // A new tag for new bytes: Always finds it; the old tag still names the old image.
    let newer = module(5000);
    let pushed2 = registry.push_wasm_artifact("app", "v1", &write_module(dir.path(), &newer));
    let latest = store
        .pull(&pushed.reference, PullPolicy::Always, &|_| {})
        .await
        .unwrap();
    assert!(latest.downloaded);
    assert_eq!(latest.digest, pushed2.digest);
    assert_eq!(std::fs::read(&latest.module_path).unwrap(), newer);

    // The store survives a restart of its process.
    drop(store);
    let store = ImageStore::new(&root).unwrap();
    let again = store
        .pull(&pushed.reference, PullPolicy::Never, &|_| {})
        .await
        .unwrap();
    assert_eq!(again.digest, pushed2.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_images_and_image_indexes() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let bytes = module(1000);
    let image = registry.push_image(
        "img",
        "v1",
        &[
            vec![("app/", vec![]), ("app/main.wasm", b"\0asm old".to_vec())],
            vec![("app/main.wasm", bytes.clone())],
        ],
        &["/app/main.wasm"],
    );
    let store = ImageStore::new(dir.path().join("store")).unwrap();
    let pulled = store
        .pull(&image.reference, PullPolicy::IfNotPresent, &|_| {})
        .await
        .unwrap();
    assert_eq!(pulled.record.kind, "oci-image");
    assert_eq!(pulled.record.entrypoint, ["/app/main.wasm"]);
    assert_eq!(pulled.digest, image.digest);
    assert_eq!(std::fs::read(&pulled.module_path).unwrap(), bytes);
    // Nothing but the manifest, the config and the module is kept.
    let kept = std::fs::read_dir(dir.path().join("store/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(kept, 3);
    assert_eq!(
        std::fs::read_dir(dir.path().join("store/tmp"))
            .unwrap()
            .count(),
        0
    );

    // An index with a Wasm entry and a linux/s390x one: the Wasm entry.
    let artifact = registry.push_wasm_artifact("img", "wasm", &write_module(dir.path(), &bytes));
    let manifest_size = |digest: &str| std::fs::metadata(registry.blob_file(digest)).unwrap().len();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image.digest,
             "size": manifest_size(&image.digest), "platform": {"os": "linux", "architecture": "s390x"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": artifact.digest,
             "size": manifest_size(&artifact.digest), "platform": {"os": "wasip1", "architecture": "wasm"}},
        ],
    });
    let index = serde_json::to_vec(&index).unwrap();
    let index_digest = registry.push_manifest(
        "img",
        "multi",
        "application/vnd.oci.image.index.v1+json",
        &index,
    );
    let pulled = store
        .pull(
            &registry.reference("img:multi"),
            PullPolicy::Always,
            &|_| {},
        )
        .await
        .unwrap();
    assert_eq!(pulled.digest, index_digest);
    assert_eq!(pulled.record.manifest_digest, artifact.digest);
    assert_eq!(pulled.record.kind, "wasm-artifact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_say_what_is_wrong() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let bytes = module(3000);
    let pushed = registry.push_wasm_artifact("probe", "v1", &write_module(dir.path(), &bytes));
    let root = dir.path().join("store");
    let store = ImageStore::new(&root).unwrap();
    let pull = |r: String| {
        let store = &store;
        async move {
            store
                .pull(&r, PullPolicy::IfNotPresent, &|_| {})
                .await
                .unwrap_err()
        }
    };
    let host = registry.host();

    let e = pull(registry.reference("probe:nope")).await;
    assert_eq!(
        e.to_string(),
        format!("{host}/probe:nope: manifest unknown (the tag does not exist)")
    );
    assert!(matches!(e, PullError::NotFound { .. }) && !e.retryable());

    // distribution 2.8 says MANIFEST_UNKNOWN for a missing repository too (newer registries say
    // NAME_UNKNOWN, which the unit tests cover).
    let e = pull(registry.reference("nothing:v1")).await;
    assert!(matches!(e, PullError::NotFound { .. }), "{e}");
    assert!(
        e.to_string().starts_with(&format!("{host}/nothing:v1: ")),
        "{e}"
    );

    let shell = registry.push_image(
        "shell",
        "v1",
        &[vec![("bin/sh", b"#!".to_vec())]],
        &["/bin/sh"],
    );
    let e = pull(shell.reference.clone()).await;
    assert!(matches!(e, PullError::NotWasm { .. }), "{e}");
    assert!(
        e.to_string().contains("\"/bin/sh\" is not a .wasm file"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("application/vnd.oci.image.layer.v1.tar+gzip"),
        "{e}"
    );

    let missing = registry.push_image("gone", "v1", &[vec![("other", vec![1])]], &["/app.wasm"]);
    let e = pull(missing.reference.clone()).await;
    assert!(
        e.to_string()
            .contains("entrypoint /app.wasm is not a file in its layers"),
        "{e}"
    );

    // A registry that serves other bytes than the digest says: refused, nothing kept.
    let layer = sha256_digest(&bytes);
    let mut corrupt = bytes.clone();
    corrupt[100] ^= 0xff;
    std::fs::write(registry.blob_file(&layer), &corrupt).unwrap();
    let e = pull(pushed.reference.clone()).await;
    assert!(matches!(e, PullError::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&layer), "{e}");
    assert!(!e.retryable());
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    assert!(!root.join("blobs/sha256").join(&layer[7..]).exists());
    assert!(
        !root
            .join("refs")
            .join(&host)
            .join("probe/_tags/v1")
            .exists()
    );
}

/// zstd layers (two frames each) pull and unpack, through both readers of layers: a container
/// image's layers are unpacked into snapshots, an OCI image's `.wasm` entrypoint is found in them.
/// (Pull once refused every zstd layer that unpack could read: two tables of media types.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_layers_pull_and_unpack() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::new(dir.path().join("store")).unwrap();
    let snapshots = Arc::new(unpack::Snapshots::new(dir.path().join("snapshots")).unwrap());
    let bytes = module(2000);
    let layers = [
        vec![
            ("etc/", vec![]),
            ("etc/motd", b"lower\n".to_vec()),
            ("app/", vec![]),
            ("app/main.wasm", b"\0asm old".to_vec()),
        ],
        vec![("app/main.wasm", bytes.clone())],
    ];
    let pushed = registry.push_image_as("zimg", "v1", &layers, &["/app/main.wasm"], Compress::Zstd);

    let started = Instant::now();
    let container = store
        .pull_container(
            &pushed.reference,
            PullPolicy::IfNotPresent,
            &snapshots,
            &|_| {},
        )
        .await
        .unwrap();
    eprintln!(
        "zstd container image: pulled and unpacked in {:?}",
        started.elapsed()
    );
    assert_eq!(container.digest, pushed.digest);
    assert_eq!(container.process.entrypoint, ["/app/main.wasm"]);
    assert_eq!(container.layers.len(), 2);
    assert_eq!(
        std::fs::read(container.layers[0].join("etc/motd")).unwrap(),
        b"lower\n"
    );
    assert_eq!(
        std::fs::read(container.layers[1].join("app/main.wasm")).unwrap(),
        bytes
    );
    assert_eq!(registry.requests("GET", "/v2/zimg/blobs/"), 3);

    // The same image as a Wasm image: the module comes out of the top zstd layer.
    let pulled = store
        .pull(&pushed.reference, PullPolicy::IfNotPresent, &|_| {})
        .await
        .unwrap();
    assert_eq!(pulled.record.kind, "oci-image");
    assert_eq!(
        pulled.record.layer_media_types,
        [Compress::Zstd.media_type(), Compress::Zstd.media_type()]
    );
    assert_eq!(std::fs::read(&pulled.module_path).unwrap(), bytes);
}

/// Timings of a larger pull (printed), and progress at most a few times a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_pulls_report_progress() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let size = 32 << 20;
    let started = Instant::now();
    let pushed = registry.push_wasm_artifact("big", "v1", &write_module(dir.path(), &module(size)));
    let push = started.elapsed();
    let store = ImageStore::new(dir.path().join("store")).unwrap();
    let reports = Mutex::new(Vec::new());
    let record = |p: &Progress| reports.lock().unwrap().push((Instant::now(), p.done));
    let started = Instant::now();
    let pulled = store
        .pull(&pushed.reference, PullPolicy::IfNotPresent, &record)
        .await
        .unwrap();
    let pull = started.elapsed();
    let started = Instant::now();
    store
        .pull(&pushed.reference, PullPolicy::IfNotPresent, &|_| {})
        .await
        .unwrap();
    let cached = started.elapsed();
    eprintln!("32 MiB artifact: push {push:?}, pull {pull:?}, cached {cached:?}");
    assert_eq!(pulled.record.module_size, size as u64);
    let reports = reports.into_inner().unwrap();
    assert_eq!(reports.last().map(|r| r.1), Some(size as u64));
    assert!(reports.windows(2).all(|w| w[0].1 <= w[1].1));
    // At most one report per interval, besides the first and the last.
    let secs = pull.as_secs_f64();
    let allowed = 2 + (secs / PROGRESS_INTERVAL.as_secs_f64()).ceil() as usize;
    assert!(
        reports.len() <= allowed,
        "{} reports in {secs}s",
        reports.len()
    );
}
