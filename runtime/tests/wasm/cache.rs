//! Compiled modules are cached in memory and on disk, and a new engine (a restarted shim) loads
//! them from disk without compiling. Prints the times it measures.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use skiff_runtime::wasm::{EngineOptions, ModuleKind, Origin, WasmEngine};

use crate::common::{Executor, probe, probe_component};

fn engine(cache: &Path) -> WasmEngine {
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

        // A new engine on the same directory: a restarted process.
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
async fn a_restarted_engine_loads_from_disk_and_recompiles_a_corrupt_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let with_cache = |o: &mut EngineOptions| o.cache_dir = cache.clone();
    let first = Executor::with(with_cache);
    let compiled = first.engine.prepare(&probe()).await.unwrap();
    assert_eq!(compiled.origin, Origin::Compiled);
    assert_eq!(compiled.prepared.kind(), ModuleKind::Module);
    assert!(compiled.prepared.digest().starts_with("sha256:"));
    assert_eq!(
        first.engine.prepare(&probe()).await.unwrap().origin,
        Origin::Memory
    );
    drop(first);

    let restarted = Executor::with(with_cache);
    let again = restarted.engine.prepare(&probe()).await.unwrap();
    assert_eq!(again.origin, Origin::DiskCache);
    assert_eq!(again.prepared.digest(), compiled.prepared.digest());
    eprintln!(
        "prepare: compiled {:?}, from disk {:?}",
        compiled.elapsed, again.elapsed
    );
    drop(restarted);

    // A corrupt artifact is recompiled, not trusted. (Replaced by rename, as files in use are
    // mapped: truncating one in place under a live engine is what the cache never does.)
    let artifact = std::fs::read_dir(&cache)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not an artifact").unwrap();
    std::fs::rename(&junk, &artifact).unwrap();
    let third = Executor::with(with_cache);
    assert_eq!(
        third.engine.prepare(&probe()).await.unwrap().origin,
        Origin::Compiled
    );
    let exit = third
        .run(&third.spec("after", &probe(), &["echo", "ok"]))
        .await;
    assert_eq!(exit.code, 0, "{exit:?}");
    assert_eq!(third.output("after").0, "ok\n");
}
