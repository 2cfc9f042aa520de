//! The one wasmtime `Engine` a shim process runs every Wasm container on, and the epoch ticker
//! that lets Kill interrupt guests that never call into the host.

use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::{Config, Engine};

/// How often the engine's epoch advances. A running guest yields to the shim's scheduler at
/// every tick, so Kill takes effect within about this long, even in an endless loop.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Builds an engine with Spore's settings: epoch interruption (guests run as tokio tasks that
/// yield at every tick, so one busy guest does not hold a thread), the component model.
pub fn new_engine() -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    Engine::new(&config)
}

/// The process-wide engine, created on first use together with its epoch ticker thread.
pub fn shared_engine() -> Result<&'static Engine, String> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let engine =
                new_engine().map_err(|e| format!("creating the wasmtime engine: {e:#}"))?;
            spawn_epoch_ticker(engine.clone())
                .map_err(|e| format!("starting the epoch ticker thread: {e}"))?;
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
