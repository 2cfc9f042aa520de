//! A Wasm container: its guest compiled and pre-linked at create, run at start as a tokio task
//! on the shared engine, ended by its own exit, a trap, or a Kill.

use std::sync::Arc;

use tokio::sync::watch;
use wasmtime::component::{Linker as ComponentLinker, ResourceTable};
use wasmtime::{Engine, InstancePre, Linker as ModuleLinker, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::cputime::CpuAccounted;
use crate::error::ShimError;
use crate::exit::ExitStatus;
use crate::io::{GuestStdio, StdioPaths};
use crate::limits::GuestLimits;
use crate::spec::ContainerSpec;
use crate::stats::Usage;
use crate::wasm_kind::{self, Guest};

/// Store data of a component guest.
pub struct ComponentState {
    ctx: WasiCtx,
    table: ResourceTable,
    limits: GuestLimits,
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
    ctx: WasiP1Ctx,
    limits: GuestLimits,
}

/// The host functions guests link against, built once per engine.
pub struct Linkers {
    component: ComponentLinker<ComponentState>,
    module: ModuleLinker<ModuleState>,
    http: ComponentLinker<crate::http::HttpState>,
}

impl Linkers {
    pub fn new(engine: &Engine) -> wasmtime::Result<Self> {
        let mut component = ComponentLinker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component)?;
        let mut module = ModuleLinker::new(engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut module, |s: &mut ModuleState| &mut s.ctx)?;
        let http = crate::http::linker(engine)?;
        Ok(Linkers {
            component,
            module,
            http,
        })
    }
}

/// A guest linked and ready to instantiate.
enum Prepared {
    Command(CommandPre<ComponentState>),
    Preview1(InstancePre<ModuleState>),
    /// A `wasi:http/proxy` component, served by `crate::http`.
    Http(crate::http::HttpGuest),
}

pub struct WasmGuest {
    engine: Engine,
    prepared: Prepared,
    kind: &'static str,
}

impl WasmGuest {
    /// Loads, compiles, classifies and links the entrypoint of `spec`. Every reason a guest
    /// cannot run is found here, so that it fails task Create rather than Start.
    pub fn prepare(
        engine: &Engine,
        linkers: &Linkers,
        spec: &ContainerSpec,
    ) -> Result<Self, ShimError> {
        let host_path = spec
            .entrypoint_path()
            .ok_or(wasm_kind::WasmError::NoEntrypoint)?;
        let path =
            std::path::PathBuf::from(spec.args.first().map(String::as_str).unwrap_or_default());
        let guest = wasm_kind::load(engine, &host_path, &path)?;
        Self::link(engine, linkers, spec, guest, &path)
    }

    /// Links a compiled guest (named `path` in errors) against Spore's host for a container of
    /// `spec`.
    pub fn link(
        engine: &Engine,
        linkers: &Linkers,
        spec: &ContainerSpec,
        guest: Guest,
        path: &std::path::Path,
    ) -> Result<Self, ShimError> {
        let path = path.to_path_buf();
        let kind = guest.kind();
        let link_error = |e: wasmtime::Error| {
            ShimError::Wasm(wasm_kind::WasmError::Invalid {
                path: path.clone(),
                what: "guest for Spore's host",
                reason: format!("it cannot be linked: {e:#}"),
            })
        };
        let prepared = match guest {
            Guest::Command(component) => {
                let pre = linkers
                    .component
                    .instantiate_pre(&component)
                    .map_err(link_error)?;
                Prepared::Command(CommandPre::new(pre).map_err(link_error)?)
            }
            Guest::Preview1(module) => Prepared::Preview1(
                linkers
                    .module
                    .instantiate_pre(&module)
                    .map_err(link_error)?,
            ),
            Guest::HttpProxy(component) => {
                let config = crate::http::HttpConfig::from_env(&spec.env)
                    .map_err(|e| ShimError::InvalidArgument(format!("{}: {e}", path.display())))?;
                let pre = linkers
                    .http
                    .instantiate_pre(&component)
                    .map_err(link_error)?;
                let pre =
                    wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre).map_err(link_error)?;
                Prepared::Http(crate::http::HttpGuest::new(pre, config))
            }
        };
        Ok(WasmGuest {
            engine: engine.clone(),
            prepared,
            kind,
        })
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Whether the guest is an HTTP server (which opens the container's output itself).
    pub fn is_http(&self) -> bool {
        matches!(self.prepared, Prepared::Http(_))
    }

    /// Runs the guest to its end: its exit, a trap, or the first signal sent on `kill`. A trap's
    /// message is written to the container's stderr.
    /// `opened` is the container's stdio when task Create opened it already (as runc's shim
    /// does, so containerd's readers never wait on a FIFO without a writer).
    pub async fn run(
        &self,
        spec: &ContainerSpec,
        stdio: &StdioPaths,
        opened: Option<GuestStdio>,
        usage: Arc<Usage>,
        mut kill: watch::Receiver<Option<u32>>,
    ) -> ExitStatus {
        if let Prepared::Http(http) = &self.prepared {
            // A server handles Kill itself: SIGTERM drains in-flight requests first.
            return http.serve(spec, stdio, usage, kill).await;
        }
        let guest = async {
            let opened = match opened {
                Some(opened) => Ok(opened),
                None => GuestStdio::open(stdio).await,
            };
            let mut opened = match opened {
                Ok(opened) => opened,
                Err(e) => return ExitStatus::new(1, Some(e.to_string())),
            };
            let tail = opened.stderr_tail.take();
            let status = self.run_guest(spec, opened, usage.clone()).await;
            if let (Some(message), Some(mut tail)) = (&status.message, tail) {
                crate::io::write_line(&mut tail, message).await;
            }
            status
        };
        tokio::select! {
            status = CpuAccounted::new(guest, usage.clone()) => status,
            signal = wait_for_signal(&mut kill) => ExitStatus::killed(signal),
        }
    }

    async fn run_guest(
        &self,
        spec: &ContainerSpec,
        opened: GuestStdio,
        usage: Arc<Usage>,
    ) -> ExitStatus {
        let builder = match crate::wasi::builder(spec, opened) {
            Ok(builder) => builder,
            Err(e) => return ExitStatus::new(1, Some(e.to_string())),
        };
        let limits = GuestLimits::new(spec.memory_limit, usage);
        let result = match &self.prepared {
            Prepared::Command(pre) => {
                let mut builder = builder;
                let state = ComponentState {
                    ctx: builder.build(),
                    table: ResourceTable::new(),
                    limits,
                };
                let mut store = Store::new(&self.engine, state);
                store.limiter(|s| &mut s.limits);
                store.epoch_deadline_async_yield_and_update(1);
                run_command(pre, &mut store).await
            }
            Prepared::Preview1(pre) => {
                let mut builder = builder;
                let state = ModuleState {
                    ctx: builder.build_p1(),
                    limits,
                };
                let mut store = Store::new(&self.engine, state);
                store.limiter(|s| &mut s.limits);
                store.epoch_deadline_async_yield_and_update(1);
                run_preview1(pre, &mut store).await
            }
            Prepared::Http(_) => Err(wasmtime::format_err!(
                "a wasi:http/proxy component is served, not run as a command"
            )),
        };
        ExitStatus::from_guest(result)
    }
}

async fn run_command(
    pre: &CommandPre<ComponentState>,
    store: &mut Store<ComponentState>,
) -> wasmtime::Result<bool> {
    let command = pre.instantiate_async(&mut *store).await?;
    let outcome = command.wasi_cli_run().call_run(&mut *store).await?;
    Ok(outcome.is_ok())
}

async fn run_preview1(
    pre: &InstancePre<ModuleState>,
    store: &mut Store<ModuleState>,
) -> wasmtime::Result<bool> {
    let instance = pre.instantiate_async(&mut *store).await?;
    let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
    start.call_async(&mut *store, ()).await?;
    Ok(true)
}

/// Resolves with the first signal sent; never resolves if the sender goes away without one.
async fn wait_for_signal(kill: &mut watch::Receiver<Option<u32>>) -> u32 {
    loop {
        if let Some(signal) = *kill.borrow_and_update() {
            return signal;
        }
        if kill.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
