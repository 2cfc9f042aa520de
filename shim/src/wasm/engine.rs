//! The one wasmtime `Engine` a shim process runs every Wasm container on, and the epoch ticker
//! that lets Kill interrupt guests that never call into the host.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the engine's epoch advances. A running guest yields to the shim's scheduler at
/// every tick, so Kill takes effect within about this long, even in an endless loop.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Builds an engine with Spore's settings: epoch interruption (guests run as tokio tasks that
/// yield at every tick, so one busy guest does not hold a thread), the component model.
pub fn new_engine() -> wasmtime::Result<Engine> {
    Engine::new(&base_config())
}

/// Set to `0`, `off` or `false` in the shim's environment to run the shared engine on
/// wasmtime's on-demand allocator instead of the pooling allocator.
pub const POOLING_ENV: &str = "SPORE_POOLING";

/// Component instances the shared engine's pool holds: the most a shim process runs at once,
/// across all the containers of its pod. An HTTP request holds one while it runs.
pub const POOL_INSTANCES: u32 = 1000;
/// Core instances and tables per component instance the pool makes room for: a Rust
/// `wasm32-wasip2` component instantiates 3 core modules (its code and wit-component's two
/// small shim modules) with 2 tables.
const CORE_PER_COMPONENT: u32 = 4;
/// Linear memories per component instance (a Rust component has 1).
const MEMORIES_PER_COMPONENT: u32 = 2;

fn base_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    config
}

/// The pooling allocator for the shared engine. Its slots are engine-wide, so they are not
/// sized from any one container's memory limit (one shim serves every container of a pod, and
/// the pool is made before the first container exists): each slot may hold wasmtime's default
/// maximum of a 4 GiB linear memory, and the container's limit is enforced per instance by its
/// `ResourceLimiter` (`crate::wasm::limits`), exactly as on the on-demand allocator. The pool only
/// reserves address space up front; memory is committed as guests touch it and returned to the
/// kernel when an instance ends. It is what makes a fresh instance per HTTP request cheap
/// (`docs/http.md` has the numbers).
fn pooling_config() -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * CORE_PER_COMPONENT)
        .total_memories(POOL_INSTANCES * MEMORIES_PER_COMPONENT)
        .total_tables(POOL_INSTANCES * CORE_PER_COMPONENT);
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

fn pooling_wanted() -> bool {
    !matches!(
        std::env::var(POOLING_ENV).as_deref().map(str::trim),
        Ok("0" | "off" | "false")
    )
}

/// The shared engine: pooled when wanted and possible (the pool's address-space reservation can
/// fail on hosts with a small virtual address space or a tight `ulimit -v`; the on-demand
/// allocator is then used, as `wasmtime serve` does).
fn new_shared_engine() -> wasmtime::Result<Engine> {
    if pooling_wanted() {
        match Engine::new(&pooling_config()) {
            Ok(engine) => return Ok(engine),
            Err(err) => tracing::warn!(
                err = %format!("{err:#}"),
                "the pooling allocator is not available; using the on-demand allocator"
            ),
        }
    }
    new_engine()
}

/// Why the process-wide engine could not be made. Cloneable: the first failure is kept and
/// returned to every later caller.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("creating the wasmtime engine: {0:#}")]
    Create(Arc<wasmtime::Error>),
    #[error("starting the epoch ticker thread: {0}")]
    EpochTicker(Arc<std::io::Error>),
}

/// The process-wide engine, created on first use together with its epoch ticker thread.
pub fn shared_engine() -> Result<&'static Engine, EngineError> {
    static ENGINE: OnceLock<Result<Engine, EngineError>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let engine = new_shared_engine().map_err(|e| EngineError::Create(Arc::new(e)))?;
            spawn_epoch_ticker(engine.clone())
                .map_err(|e| EngineError::EpochTicker(Arc::new(e)))?;
            Ok(engine)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Advances `engine`'s epoch every [`EPOCH_TICK`] for as long as the process lives.
pub fn spawn_epoch_ticker(engine: Engine) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("spore-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .map(|_| ())
}
