//! Compiled modules are cached in memory and on disk, and a new engine (a restarted host) loads
//! them from disk without compiling. Prints the times it measures.

use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use skiff_runtime::host::HostOptions;
use skiff_runtime::wasm::{EngineOptions, ModuleKind, Origin, WasmEngine};

use crate::common::{Host, probe, probe_component};

fn engine(cache: &std::path::Path) -> WasmEngine {
    WasmEngine::new(EngineOptions {
        max_instances: 8,
        ..EngineOptions::new(cache)
    })
    .unwrap()
}

#[tokio::test]
async fn modules_are_cached_on_disk_across_engines() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    for (module, kind) in [
        (probe(), ModuleKind::Module),
        (probe_component(), ModuleKind::Component),
    ] {
        let first = engine(&cache);
        let compiled = first.prepare(&module).await.unwrap();
        assert_eq!(compiled.origin, Origin::Compiled);
        assert_eq!(compiled.prepared.kind(), kind);
        let memory = first.prepare(&module).await.unwrap();
        assert_eq!(memory.origin, Origin::Memory);
        assert_eq!(memory.prepared.digest(), compiled.prepared.digest());

        // A new engine on the same directory: a restarted host.
        drop(first);
        let second = engine(&cache);
        let loaded = second.prepare(&module).await.unwrap();
        assert_eq!(loaded.origin, Origin::DiskCache);
        assert_eq!(loaded.prepared.digest(), compiled.prepared.digest());

        // It runs from the cache, and instantiation is timed from outside.
        let times = second.measure_start(&loaded.prepared, 20).await.unwrap();
        let mut sorted = times.clone();
        sorted.sort();
        eprintln!(
            "{kind:?} {}: compile {:?}, disk cache load {:?}, memory hit {:?}, instantiate median {:?} (min {:?}, max {:?})",
            module.display(),
            compiled.elapsed,
            loaded.elapsed,
            memory.elapsed,
            sorted[sorted.len() / 2],
            sorted[0],
            sorted[sorted.len() - 1],
        );
    }
    // Artifacts are named by digest and engine; the directory is private.
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let names: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names.iter().all(|n| n.ends_with(".cwasm") && n.len() > 64),
        "{names:?}"
    );
}

#[tokio::test]
async fn prepare_reports_the_origin_over_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let host = Host::start_with(|o: &mut HostOptions| o.cache_dir = cache.clone()).await;
    let first = host.client.prepare(&probe()).await.unwrap();
    assert_eq!(first.origin, Origin::Compiled);
    assert_eq!(first.kind, ModuleKind::Module);
    assert_eq!(
        host.client.prepare(&probe()).await.unwrap().origin,
        Origin::Memory
    );
    host.stop().await;

    let restarted = Host::start_with(|o: &mut HostOptions| o.cache_dir = cache.clone()).await;
    let began = Instant::now();
    let again = restarted.client.prepare(&probe()).await.unwrap();
    assert_eq!(again.origin, Origin::DiskCache);
    assert_eq!(again.digest, first.digest);
    eprintln!(
        "prepare over the socket: compiled {:?}, from disk {:?} ({:?} round trip)",
        first.elapsed,
        again.elapsed,
        began.elapsed()
    );

    // A corrupt artifact is recompiled, not trusted. (Replaced by rename, as files in use are
    // mapped: truncating one in place under a live engine is what the cache never does.)
    restarted.stop().await;
    let artifact = std::fs::read_dir(&cache)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not an artifact").unwrap();
    std::fs::rename(&junk, &artifact).unwrap();
    let third = Host::start_with(|o: &mut HostOptions| o.cache_dir = cache.clone()).await;
    assert_eq!(
        third.client.prepare(&probe()).await.unwrap().origin,
        Origin::Compiled
    );
    let info = third
        .run(&third.spec("after", &probe(), &["echo", "ok"]))
        .await;
    assert_eq!(info.exit.unwrap().code, 0);
}
