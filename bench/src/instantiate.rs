//! In-process instantiation timing for `wasm-start` (a): the node's engine configuration
//! (pooling allocator, copy-on-write memory images, `InstancePre`) with a module already
//! compiled and cached, timed from an empty store to an instance whose `_start` is ready.

use std::path::Path;
use std::time::Duration;

use skiff_runtime::wasm::{EngineOptions, WasmEngine};

/// `n` instantiation times of `module` (after 200 untimed warm-up rounds).
pub fn samples(module: &Path, n: usize) -> Result<Vec<Duration>, String> {
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let cache = std::env::temp_dir().join(format!("skiff-bench-cache-{}", std::process::id()));
    let result = rt.block_on(async {
        let engine = WasmEngine::new(EngineOptions::new(&cache)).map_err(|e| e.to_string())?;
        let outcome = engine.prepare(module).await.map_err(|e| e.to_string())?;
        engine
            .measure_start(&outcome.prepared, 200)
            .await
            .map_err(|e| e.to_string())?;
        engine
            .measure_start(&outcome.prepared, n)
            .await
            .map_err(|e| e.to_string())
    });
    let _ = std::fs::remove_dir_all(&cache);
    result
}
