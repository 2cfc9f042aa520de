//! The host functions guests link against, built once per engine: WASI 0.2 for components,
//! WASI preview1 for core modules, WASI 0.2 plus `wasi:http` for HTTP components; and the store
//! data each kind of guest runs with.

use wasmtime::component::{Linker as ComponentLinker, ResourceTable};
use wasmtime::{Engine, Linker as ModuleLinker};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use std::sync::Arc;

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

/// The host functions guests link against, built once per engine.
pub struct Linkers {
    pub component: ComponentLinker<ComponentState>,
    pub module: ModuleLinker<ModuleState>,
    pub http: ComponentLinker<crate::wasm::http::HttpState>,
}

impl Linkers {
    pub fn new(engine: &Engine) -> wasmtime::Result<Self> {
        let mut component = ComponentLinker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component)?;
        name_lookup::add_to_linker(&mut component)?;
        let mut module = ModuleLinker::new(engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut module, |s: &mut ModuleState| &mut s.ctx)?;
        let http = crate::wasm::http::linker(engine)?;
        Ok(Linkers {
            component,
            module,
            http,
        })
    }
}
