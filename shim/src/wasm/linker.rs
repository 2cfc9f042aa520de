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

/// The host functions guests link against, a linker made for each guest as it is linked and
/// dropped after: the guest's instance-pre keeps the host functions it imports, and the linker's
/// name tables (130 KiB for WASI and `wasi:http`) would otherwise stay in every idle pod's shim
/// for its life. Making one takes about 250 us (debug build), once per container create.
pub struct Linkers {
    engine: Engine,
}

impl Linkers {
    pub fn new(engine: &Engine) -> Self {
        Linkers {
            engine: engine.clone(),
        }
    }

    /// WASI 0.2 (and Spore's name lookups), for command components.
    pub fn component(&self) -> wasmtime::Result<ComponentLinker<ComponentState>> {
        let mut linker = ComponentLinker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        name_lookup::add_to_linker(&mut linker)?;
        Ok(linker)
    }

    /// WASI preview1, for core modules.
    pub fn module(&self) -> wasmtime::Result<ModuleLinker<ModuleState>> {
        let mut linker = ModuleLinker::new(&self.engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut ModuleState| &mut s.ctx)?;
        Ok(linker)
    }

    /// WASI 0.2 and `wasi:http`, for `wasi:http/proxy` components.
    pub fn http(&self) -> wasmtime::Result<ComponentLinker<crate::wasm::http::HttpState>> {
        crate::wasm::http::linker(&self.engine)
    }
}
