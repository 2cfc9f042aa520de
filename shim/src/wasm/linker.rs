//! The host functions guests link against, built once per engine: WASI 0.2 for components,
//! WASI preview1 for core modules, WASI 0.2 plus `wasi:http` for HTTP components; and the store
//! data each kind of guest runs with.

use wasmtime::component::{Linker as ComponentLinker, ResourceTable};
use wasmtime::{Engine, Linker as ModuleLinker};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use std::sync::{Arc, OnceLock};

use crate::wasm::limits::GuestLimits;
use crate::wasm::name_lookup::{self, NameLookupView};
use crate::wasm::names::ContainerNames;

/// Store data of a component guest.
pub struct ComponentState {
    pub(crate) ctx: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: GuestLimits,
    pub(crate) names: Arc<ContainerNames>,
}

impl NameLookupView for ComponentState {
    fn name_lookup(&mut self) -> (&Arc<ContainerNames>, &mut ResourceTable) {
        (&self.names, &mut self.table)
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// Store data of a preview1 module guest.
pub struct ModuleState {
    pub(crate) ctx: WasiP1Ctx,
    pub(crate) limits: GuestLimits,
}

/// The host functions guests link against, each set built on first use (once per engine): a
/// shim serving one HTTP container never builds the command and preview1 linkers, which an
/// idle pod would otherwise hold (about 120 KiB of its heap).
pub struct Linkers {
    engine: Engine,
    component: OnceLock<ComponentLinker<ComponentState>>,
    module: OnceLock<ModuleLinker<ModuleState>>,
    http: OnceLock<ComponentLinker<crate::wasm::http::HttpState>>,
}

impl Linkers {
    pub fn new(engine: &Engine) -> Self {
        Linkers {
            engine: engine.clone(),
            component: OnceLock::new(),
            module: OnceLock::new(),
            http: OnceLock::new(),
        }
    }

    /// WASI 0.2 (and Spore's name lookups), for command components.
    pub fn component(&self) -> wasmtime::Result<&ComponentLinker<ComponentState>> {
        built_once(&self.component, || {
            let mut linker = ComponentLinker::new(&self.engine);
            wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
            name_lookup::add_to_linker(&mut linker)?;
            Ok(linker)
        })
    }

    /// WASI preview1, for core modules.
    pub fn module(&self) -> wasmtime::Result<&ModuleLinker<ModuleState>> {
        built_once(&self.module, || {
            let mut linker = ModuleLinker::new(&self.engine);
            wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut ModuleState| &mut s.ctx)?;
            Ok(linker)
        })
    }

    /// WASI 0.2 and `wasi:http`, for `wasi:http/proxy` components.
    pub fn http(&self) -> wasmtime::Result<&ComponentLinker<crate::wasm::http::HttpState>> {
        built_once(&self.http, || crate::wasm::http::linker(&self.engine))
    }
}

/// The value in `cell`, built by `build` if it is not there yet (two threads asking at once may
/// both build; one result is kept).
fn built_once<T>(
    cell: &OnceLock<T>,
    build: impl FnOnce() -> wasmtime::Result<T>,
) -> wasmtime::Result<&T> {
    if let Some(value) = cell.get() {
        return Ok(value);
    }
    let value = build()?;
    Ok(cell.get_or_init(|| value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_linker_is_built_when_first_asked_for() {
        let engine = crate::wasm::engine::new_engine().expect("engine");
        let linkers = Linkers::new(&engine);
        assert!(linkers.component.get().is_none());
        assert!(linkers.module.get().is_none());
        assert!(linkers.http.get().is_none());
        let http = linkers.http().expect("http linker") as *const _;
        assert!(linkers.component.get().is_none());
        assert!(linkers.module.get().is_none());
        assert_eq!(linkers.http().expect("http linker") as *const _, http);
        linkers.component().expect("component linker");
        linkers.module().expect("module linker");
        assert!(linkers.component.get().is_some() && linkers.module.get().is_some());
    }
}
