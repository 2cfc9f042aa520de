//! The store data of one request's instance, and the linker HTTP guests link against.

use wasmtime::Engine;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use std::sync::Arc;

use crate::wasm::limits::GuestLimits;
use crate::wasm::name_lookup::{self, NameLookupView};
use crate::wasm::names::ContainerNames;

/// What one request's store holds: its WASI and WASI HTTP contexts, the resource table they
/// share, and the container's memory limit for this instance.
pub struct HttpState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: GuestLimits,
    pub(crate) names: Arc<ContainerNames>,
}

impl NameLookupView for HttpState {
    fn name_lookup(&mut self) -> (&Arc<ContainerNames>, &mut ResourceTable) {
        (&self.names, &mut self.table)
    }
}

impl WasiView for HttpState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: wasmtime_wasi_http::default_hooks(),
        }
    }
}

/// The linker for HTTP guests: all of WASI 0.2 (a `wstd` server also imports `wasi:cli`
/// interfaces) plus `wasi:http` (types and the outgoing handler).
pub fn linker(engine: &Engine) -> wasmtime::Result<Linker<HttpState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    name_lookup::add_to_linker(&mut linker)?;
    Ok(linker)
}
