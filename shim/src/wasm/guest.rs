//! A guest linked and ready to run: a command (component or preview1 module) runs to its end
//! on the shared engine; an HTTP component is served (`http/`). Its end is its own exit, a trap,
//! or the first signal of a Kill.

use std::sync::Arc;

use tokio::sync::watch;
use wasmtime::{Engine, InstancePre, Store};
use wasmtime_wasi::p2::bindings::CommandPre;

use crate::container::ContainerKind;
use crate::error::ShimError;
use crate::host::cputime::CpuAccounted;
use crate::host::stats::Usage;
use crate::host::stdio::{GuestStdio, StdioPaths};
use crate::signal::Signal;
use crate::spec::ContainerSpec;
use crate::wasm::compile::{self, Guest};
use crate::wasm::exit::ExitStatus;
use crate::wasm::limits::GuestLimits;
use crate::wasm::linker::{ComponentState, Linkers, ModuleState};
use crate::wasm::names::ContainerNames;

/// A guest linked and ready to instantiate.
enum Prepared {
    Command(CommandPre<ComponentState>),
    Preview1(InstancePre<ModuleState>),
    /// A `wasi:http/proxy` component, served by `crate::wasm::http`.
    Http(crate::wasm::http::HttpGuest),
}

pub struct WasmGuest {
    engine: Engine,
    prepared: Prepared,
    kind: ContainerKind,
    /// How the guest's name lookups resolve (its container's /etc/hosts and resolv.conf).
    names: Arc<ContainerNames>,
}

impl WasmGuest {
    /// Opens, compiles (without the cache), classifies and links the entrypoint of `spec`, for
    /// running a guest outside containerd (the `serve_component` example, tests).
    pub fn prepare(
        engine: &Engine,
        linkers: &Linkers,
        spec: &ContainerSpec,
    ) -> Result<Self, ShimError> {
        let file = crate::host::entrypoint::Entrypoint::open(spec)?;
        let name = file.shown_as().to_path_buf();
        let guest = compile::compile(engine, &name, &file.read_all()?)?;
        Self::link(engine, linkers, spec, guest, &name)
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
        let names = Arc::new(ContainerNames::for_container(spec));
        let kind = guest.kind();
        let missing = match &guest {
            Guest::Command(component) => {
                crate::wasm::hosted::missing_imports(engine, component, false)
            }
            Guest::HttpProxy(component) => {
                crate::wasm::hosted::missing_imports(engine, component, true)
            }
            Guest::Preview1(_) => Vec::new(),
        };
        let link_error = |e: wasmtime::Error| {
            ShimError::Wasm(compile::WasmError::Link {
                path: path.clone(),
                missing: missing.clone(),
                reason: format!("{e:#}"),
            })
        };
        let prepared = match guest {
            Guest::Command(component) => {
                let pre = linkers
                    .component()
                    .and_then(|linker| linker.instantiate_pre(&component))
                    .map_err(link_error)?;
                Prepared::Command(CommandPre::new(pre).map_err(link_error)?)
            }
            Guest::Preview1(module) => Prepared::Preview1(
                linkers
                    .module()
                    .and_then(|linker| linker.instantiate_pre(&module))
                    .map_err(link_error)?,
            ),
            Guest::HttpProxy(component) => {
                let config =
                    crate::wasm::http::HttpConfig::from_env(&spec.env).map_err(|source| {
                        ShimError::HttpConfig {
                            path: path.clone(),
                            source,
                        }
                    })?;
                let pre = linkers
                    .http()
                    .and_then(|linker| linker.instantiate_pre(&component))
                    .map_err(link_error)?;
                let pre =
                    wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre).map_err(link_error)?;
                Prepared::Http(crate::wasm::http::HttpGuest::new(
                    pre,
                    config,
                    names.clone(),
                ))
            }
        };
        Ok(WasmGuest {
            engine: engine.clone(),
            prepared,
            kind,
            names,
        })
    }

    pub fn kind(&self) -> ContainerKind {
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
        mut kill: watch::Receiver<Option<Signal>>,
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
                crate::host::stdio::write_line(&mut tail, message).await;
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
        let builder = match crate::wasm::wasi::builder(spec, opened) {
            Ok(builder) => builder,
            Err(e) => return ExitStatus::new(1, Some(e.to_string())),
        };
        let limits = GuestLimits::new(usage.memory.clone());
        let result = match &self.prepared {
            Prepared::Command(pre) => {
                let mut builder = builder;
                let state = ComponentState {
                    ctx: builder.build(),
                    table: crate::wasm::limits::handle_table(),
                    limits,
                    names: self.names.clone(),
                };
                let mut store = Store::new(&self.engine, state);
                store.limiter(|s| &mut s.limits);
                store.epoch_deadline_async_yield_and_update(1);
                run_command(pre, &mut store).await
            }
            Prepared::Preview1(pre) => {
                let mut builder = builder;
                let mut ctx = builder.build_p1();
                wasmtime_wasi::WasiView::ctx(&mut ctx)
                    .table
                    .set_max_capacity(crate::wasm::limits::MAX_GUEST_HANDLES);
                let state = ModuleState { ctx, limits };
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
async fn wait_for_signal(kill: &mut watch::Receiver<Option<Signal>>) -> Signal {
    loop {
        if let Some(signal) = *kill.borrow_and_update() {
            return signal;
        }
        if kill.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
