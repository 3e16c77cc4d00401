//! The one shared wasmtime engine of a process, and its epoch ticker.
//!
//! Owns [`EngineOptions`], the engine configuration (async, epoch interruption, the pooling
//! allocator sized for `max_instances`, copy-on-write memory images, the component model's async
//! ABI for WASI 0.3), the two WASI linkers (core modules: preview 1; components: WASI 0.2 and 0.3
//! side by side, a component may import both) and the ticker thread that advances the epoch every
//! `epoch_tick` until the wasmtime engine is gone (the [`WasmEngine`] and every store made from
//! it). Must not: compile modules (`prepare`) or run guests (`instance`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::cache::ModuleCache;
use super::error::{WasmError, chain};
use super::netns::NetnsThreads;
use super::state::{ComponentState, ModuleState};

/// Sizing and behaviour of a [`WasmEngine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where compiled modules are cached (`<digest>-<engine hash>.cwasm`), created with mode 0700.
    pub cache_dir: PathBuf,
    /// Instance slots of the pooling allocator: concurrent instances (core modules or
    /// components), each with one linear memory and one async stack.
    pub max_instances: u32,
    /// Largest linear memory of any instance; a spec's `memory_limit` can only lower it.
    pub max_memory_bytes: u64,
    /// Virtual address space reserved per linear memory. 4 GiB (the default) lets cranelift
    /// drop bounds checks for 32-bit memories; 1100 slots then reserve ~4.4 TiB of the 128 TiB
    /// x86-64 user address space (reserved, not committed).
    pub memory_reservation: u64,
    /// Guard region after each linear memory.
    pub memory_guard_bytes: u64,
    /// Initialise linear memories from copy-on-write images of the module (mmap of the cached
    /// `.cwasm`), not by copying data segments.
    pub memory_init_cow: bool,
    /// Period of the epoch ticker: how often a running guest yields to others and how finely
    /// CPU limits are accounted.
    pub epoch_tick: Duration,
}

impl EngineOptions {
    /// Defaults for a node: 1100 slots, 1 GiB per instance, 10 ms ticks.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        EngineOptions {
            cache_dir: cache_dir.into(),
            max_instances: 1100,
            max_memory_bytes: 1 << 30,
            memory_reservation: 4 << 30,
            memory_guard_bytes: 32 << 20,
            memory_init_cow: true,
            epoch_tick: Duration::from_millis(10),
        }
    }
}

/// Core instances, tables per instance slot: a component made from a preview 1 module with the
/// adapter holds a handful of core instances (main module, adapter, shims) and several tables.
const CORE_INSTANCES_PER_SLOT: u32 = 8;
const TABLES_PER_SLOT: u32 = 4;
/// Per instance slot, reset in place rather than decommitted (see `config`).
const KEEP_RESIDENT_MEMORY: usize = 256 << 10;
const KEEP_RESIDENT_TABLE: usize = 16 << 10;
/// Slots whose pages go back to the kernel together, in one call each.
const DECOMMIT_BATCH: usize = 16;

/// The shared engine: cheap to clone, one per process.
#[derive(Clone)]
pub struct WasmEngine {
    pub(crate) inner: Arc<EngineInner>,
}

pub(crate) struct EngineInner {
    pub(crate) engine: wasmtime::Engine,
    pub(crate) options: EngineOptions,
    pub(crate) cache: ModuleCache,
    pub(crate) module_linker: wasmtime::Linker<ModuleState>,
    pub(crate) component_linker: wasmtime::component::Linker<ComponentState>,
    /// Threads inside the network namespaces of running instances.
    pub(crate) netns: NetnsThreads,
    /// Ticks while the wasmtime engine lives. Last, so dropped after every engine handle above.
    _ticker: EpochTicker,
}

impl WasmEngine {
    /// Builds the engine (reserving the pooling allocator's address space), opens the module
    /// cache and starts the epoch ticker.
    pub fn new(options: EngineOptions) -> Result<Self, WasmError> {
        let engine =
            wasmtime::Engine::new(&config(&options)).map_err(|e| WasmError::Engine(chain(&e)))?;
        let cache = ModuleCache::open(&options.cache_dir, &engine)?;

        let mut module_linker = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut module_linker, |s: &mut ModuleState| {
            &mut s.wasi
        })
        .map_err(|e| WasmError::Engine(chain(&e)))?;
        let mut component_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker)
            .map_err(|e| WasmError::Engine(chain(&e)))?;
        wasmtime_wasi::p3::add_to_linker(&mut component_linker)
            .map_err(|e| WasmError::Engine(chain(&e)))?;
        // wasi:http types and outgoing requests (functions, [`super::http`]).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut component_linker)
            .map_err(|e| WasmError::Engine(chain(&e)))?;
        wasmtime_wasi_http::p3::add_to_linker(&mut component_linker)
            .map_err(|e| WasmError::Engine(chain(&e)))?;
        // Name lookups with the spec's resolver settings, over wasmtime-wasi's.
        super::name_lookup::add_to_linker(&mut component_linker)
            .map_err(|e| WasmError::Engine(chain(&e)))?;
        // wasi:config, wasi:keyvalue, wasi:logging (`wit/`), for components their spec grants.
        super::host::add_to_linker(&mut component_linker)
            .map_err(|e| WasmError::Engine(chain(&e)))?;

        let ticker = EpochTicker::start(engine.weak(), options.epoch_tick)?;
        Ok(WasmEngine {
            inner: Arc::new(EngineInner {
                engine,
                options,
                cache,
                module_linker,
                component_linker,
                netns: NetnsThreads::default(),
                _ticker: ticker,
            }),
        })
    }

    pub fn options(&self) -> &EngineOptions {
        &self.inner.options
    }

    /// The wasmtime engine, for callers that time or inspect it.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.engine
    }

    /// Modules and components prepared (compiled or loaded) in this process.
    pub fn prepared_count(&self) -> usize {
        self.inner.cache.len()
    }
}

fn config(options: &EngineOptions) -> Config {
    let slots = options.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(CORE_INSTANCES_PER_SLOT))
        .total_memories(slots)
        .total_tables(slots.saturating_mul(TABLES_PER_SLOT))
        .total_stacks(slots)
        .max_memory_size(usize::try_from(options.max_memory_bytes).unwrap_or(usize::MAX))
        // A function makes and drops an instance per request. Resetting a slot with madvise
        // costs a TLB shootdown across the process's threads and the next user's page faults
        // (a third of a shim's CPU in `bench/run http`): the first bytes of a slot's memory
        // and tables are reset with memset instead and stay resident, and what lies beyond is
        // given back in batches. An idle slot keeps at most these bytes (wasmtime keeps up to
        // 100 unused warm slots).
        .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
        .table_keep_resident(KEEP_RESIDENT_TABLE)
        .decommit_batch_size(DECOMMIT_BATCH);

    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .wasm_component_model(true)
        // WASI 0.3: async lifts and lowers, streams, futures (`super::p3`).
        .wasm_component_model_async(true)
        .parallel_compilation(true)
        .memory_init_cow(options.memory_init_cow)
        .memory_reservation(options.memory_reservation)
        .memory_guard_size(options.memory_guard_bytes)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// A thread that increments the engine's epoch every tick, until the wasmtime engine is gone.
///
/// It holds only a weak reference: the engine lives as long as the [`WasmEngine`] and every
/// store, module and instance made from it. Stopping with the wrapper instead would leave a
/// store that outlives it (a task being torn down) spinning forever without deadlines. Dropped
/// (the last field of [`EngineInner`], so after the engine handles beside it), it wakes the
/// thread to look again: a process that is done with its engine is not kept a tick longer
/// with a thread of it (a shim leaves its cgroup cheaply only once single-threaded).
struct EpochTicker {
    /// Detached in use; tests watch it end.
    thread: std::thread::JoinHandle<()>,
}

impl EpochTicker {
    fn start(engine: wasmtime::EngineWeak, tick: Duration) -> Result<Self, WasmError> {
        let thread = std::thread::Builder::new()
            .name("skiff-epoch".into())
            .spawn(move || {
                let mut next = Instant::now() + tick;
                loop {
                    // Woken early (by `wake`, or spuriously): only the engine is checked.
                    std::thread::park_timeout(next.saturating_duration_since(Instant::now()));
                    let Some(engine) = engine.upgrade() else {
                        break;
                    };
                    if Instant::now() >= next {
                        engine.increment_epoch();
                        next = Instant::now() + tick;
                    }
                }
            })
            .map_err(|e| WasmError::Engine(format!("starting the epoch ticker: {e}")))?;
        Ok(EpochTicker { thread })
    }

    /// Makes the thread check now whether the engine is gone.
    fn wake(&self) {
        self.thread.thread().unpark();
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_sizing_fits_1100_instances() {
        let dir = tempfile::tempdir().unwrap();
        let options = EngineOptions::new(dir.path());
        assert_eq!(options.max_instances, 1100);
        let began = std::time::Instant::now();
        let engine = WasmEngine::new(options).unwrap();
        eprintln!("engine with 1100 slots ready in {:?}", began.elapsed());
        assert_eq!(engine.options().max_instances, 1100);
    }

    #[test]
    fn ticker_stops_when_the_engine_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let engine = small_engine(dir.path());
        let weak = engine.wasmtime().weak();
        // A store (as a task being torn down holds one) keeps the engine, and the ticks, alive.
        let store = wasmtime::Store::new(engine.wasmtime(), ());
        let ticker = EpochTicker::start(weak, Duration::from_millis(1)).unwrap();
        drop(engine);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!ticker.thread.is_finished());
        drop(store);
        wait_until_finished(&ticker);
    }

    #[test]
    fn a_woken_ticker_ends_at_once_when_the_engine_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let engine = small_engine(dir.path());
        // A tick far longer than the test: only the wake can end it in time.
        let ticker = EpochTicker::start(engine.wasmtime().weak(), Duration::from_secs(3600));
        let ticker = ticker.unwrap();
        ticker.wake();
        std::thread::sleep(Duration::from_millis(20));
        assert!(!ticker.thread.is_finished(), "ended with its engine alive");
        drop(engine);
        ticker.wake();
        wait_until_finished(&ticker);
    }

    /// An engine of two slots, its module cache in `cache`.
    fn small_engine(cache: &std::path::Path) -> WasmEngine {
        WasmEngine::new(EngineOptions {
            max_instances: 2,
            ..EngineOptions::new(cache)
        })
        .unwrap()
    }

    fn wait_until_finished(ticker: &EpochTicker) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ticker.thread.is_finished() {
            assert!(Instant::now() < deadline, "the ticker thread did not end");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
