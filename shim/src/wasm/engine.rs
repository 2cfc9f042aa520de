//! The one wasmtime `Engine` a shim process runs every Wasm container on, and the epoch ticker
//! that lets Kill interrupt guests that never call into the host.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

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
pub const POOL_INSTANCES: u32 = 256;
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
    // Spore hosts WASI 0.2 only (no `run_concurrent`, no streams of WASIp3). With concurrency
    // support on (wasmtime 48's default) every store sets up the component-model-async state,
    // every host call goes through its task bookkeeping, and every store's drop builds an
    // error (a captured backtrace when RUST_BACKTRACE is set): 3 to 8 % of an HTTP request's
    // CPU in `perf`, and why `wasmtime serve` 48 is slower than 36 (docs/benchmarks.md).
    config.concurrency_support(false);
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
fn pooling_config(reset: SlotReset) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        // A guest runs on an async fiber, one stack per store; a store is one HTTP request
        // (holding a component instance, so at most POOL_INSTANCES of them) or one command
        // container of the pod. wasmtime's default of 1,000 stacks kept 45 KiB of bookkeeping
        // in every shim.
        .total_stacks(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * CORE_PER_COMPONENT)
        .total_memories(POOL_INSTANCES * MEMORIES_PER_COMPONENT)
        .total_tables(POOL_INSTANCES * CORE_PER_COMPONENT);
    if reset == SlotReset::ResidentPages {
        pool.pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT);
    }
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// How a pool slot is given back when its instance ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotReset {
    /// The pages the instance touched (found with Linux's `PAGEMAP_SCAN` ioctl, 6.7 and later),
    /// up to [`MEMORY_KEEP_RESIDENT`], are set back to their initial contents and stay mapped;
    /// only what lies beyond is given back with `madvise`. The next request on the slot takes
    /// no page faults for them, and the shim no TLB shootdowns across its threads.
    ResidentPages,
    /// wasmtime's default: `madvise(MADV_DONTNEED)` over all of it.
    Madvise,
}

/// Linear memory per slot reset in place rather than given back (only pages the instance
/// touched are kept, so an idle slot holds what its last request dirtied, at most this).
/// `hello-http` dirties about 120 KiB per request; `docs/http.md` has the measurements.
const MEMORY_KEEP_RESIDENT: usize = 2 << 20;
/// The same for each table.
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

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
        // Without PAGEMAP_SCAN (kernels before 6.7) keeping pages would mean a memset of all
        // of them per request: the pool then resets with madvise, as wasmtime does by default.
        match Engine::new(&pooling_config(SlotReset::ResidentPages)) {
            Ok(engine) => return Ok(engine),
            Err(err) => tracing::info!(
                err = %format!("{err:#}"),
                "pool slots are reset with madvise (no PAGEMAP_SCAN)"
            ),
        }
        match Engine::new(&pooling_config(SlotReset::Madvise)) {
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

/// Guests' stores alive now ([`Ticking`]): the epoch advances only while there is one, so the
/// shim of an idle pod wakes no thread 100 times a second (1,000 idle pods' tickers took most of
/// a core of this 2-core machine).
static LIVE_STORES: AtomicUsize = AtomicUsize::new(0);
/// The ticker threads, woken when the first store appears.
static TICKERS: Mutex<Vec<std::thread::Thread>> = Mutex::new(Vec::new());
/// The longest a parked ticker sleeps before it looks again (a store made while its ticker was
/// starting gets its ticks at most this late).
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Held by every guest's store: while any exists, the epoch ticks.
#[derive(Debug)]
pub struct Ticking(());

impl Ticking {
    pub fn new() -> Ticking {
        if LIVE_STORES.fetch_add(1, Ordering::SeqCst) == 0
            && let Ok(tickers) = TICKERS.lock()
        {
            tickers.iter().for_each(std::thread::Thread::unpark);
        }
        Ticking(())
    }
}

impl Default for Ticking {
    fn default() -> Self {
        Ticking::new()
    }
}

impl Drop for Ticking {
    fn drop(&mut self) {
        LIVE_STORES.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Advances `engine`'s epoch every [`EPOCH_TICK`] while a guest's store exists, for as long as
/// the process lives.
pub fn spawn_epoch_ticker(engine: Engine) -> std::io::Result<()> {
    spawn_ticker(move || engine.increment_epoch())
}

/// Calls `tick` every [`EPOCH_TICK`] while a [`Ticking`] exists; parked otherwise.
fn spawn_ticker(tick: impl Fn() + Send + 'static) -> std::io::Result<()> {
    let thread = std::thread::Builder::new()
        .name("spore-epoch".into())
        .spawn(move || {
            loop {
                if LIVE_STORES.load(Ordering::SeqCst) == 0 {
                    std::thread::park_timeout(IDLE_CHECK);
                    continue;
                }
                std::thread::sleep(EPOCH_TICK);
                tick();
            }
        })?;
    if let Ok(mut tickers) = TICKERS.lock() {
        tickers.push(thread.thread().clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Instance, Module, Store};

    /// Reads what a fresh instance must see (0 at 0, the data segment's 42 at 16, 0 on the
    /// second page), then dirties all three.
    const DIRTYING_MODULE: &str = r#"
        (module
          (memory 2)
          (data (i32.const 16) "\2a")
          (func (export "run") (result i32)
            (i32.add
              (i32.add (i32.load (i32.const 0)) (i32.load8_u (i32.const 16)))
              (i32.load (i32.const 65544)))
            (i32.store (i32.const 0) (i32.const 0x5ec2e7))
            (i32.store8 (i32.const 16) (i32.const 7))
            (i32.store (i32.const 65544) (i32.const 0x5ec2e7))))
    "#;

    fn engines() -> Vec<(SlotReset, Engine)> {
        [SlotReset::ResidentPages, SlotReset::Madvise]
            .into_iter()
            .filter_map(|reset| Some((reset, Engine::new(&pooling_config(reset)).ok()?)))
            .collect()
    }

    #[test]
    fn a_reused_pool_slot_shows_no_trace_of_its_last_instance() {
        let engines = engines();
        assert!(!engines.is_empty(), "no pooling engine could be made");
        for (reset, engine) in engines {
            let wasm = wat::parse_str(DIRTYING_MODULE).expect("valid wat");
            let module = Module::new(&engine, wasm).expect("compiles");
            for round in 0..50 {
                let mut store = Store::new(&engine, ());
                store.set_epoch_deadline(u64::MAX / 2);
                let instance = Instance::new(&mut store, &module, &[]).expect("instantiates");
                let run = instance
                    .get_typed_func::<(), i32>(&mut store, "run")
                    .expect("exported");
                assert_eq!(
                    run.call(&mut store, ()).expect("runs"),
                    42,
                    "{reset:?}, instance {round}"
                );
            }
        }
    }

    #[test]
    fn kernels_with_pagemap_scan_reset_only_resident_pages() {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut numbers = release
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u32>().ok());
        let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
        let resident = Engine::new(&pooling_config(SlotReset::ResidentPages));
        if version >= (6, 7) {
            assert!(resident.is_ok(), "kernel {release}: {:?}", resident.err());
        }
    }

    #[test]
    fn the_epoch_ticks_only_while_a_guest_store_exists() {
        use std::sync::atomic::AtomicU64;
        static TICKS: AtomicU64 = AtomicU64::new(0);
        spawn_ticker(|| {
            TICKS.fetch_add(1, Ordering::SeqCst);
        })
        .expect("ticker");
        let ticks = || TICKS.load(Ordering::SeqCst);
        let settle = EPOCH_TICK * 3;
        std::thread::sleep(settle);
        let idle = ticks();
        std::thread::sleep(EPOCH_TICK * 10);
        assert_eq!(ticks(), idle, "no store: no tick");
        let store = Ticking::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while ticks() < idle + 5 && std::time::Instant::now() < deadline {
            std::thread::sleep(EPOCH_TICK);
        }
        assert!(
            ticks() >= idle + 5,
            "a store: the epoch ticks ({})",
            ticks()
        );
        drop(store);
        std::thread::sleep(settle);
        let after = ticks();
        std::thread::sleep(EPOCH_TICK * 10);
        assert_eq!(ticks(), after, "the last store gone: the ticks stop");
    }
}
