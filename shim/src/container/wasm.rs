//! A Wasm container: its guest compiled and linked at Create, run at Start as a tokio task on the
//! shared engine, ended by its own exit, a trap, a Kill, or (a bug) a panic in the shim's code
//! running it, which ends the container with [`PANIC_EXIT_CODE`] and a message instead of
//! leaving Wait hanging.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use tokio::sync::watch;
use tracing::Instrument;

use super::{
    Container, ContainerKind, ExecRequest, Lifecycle, Phase, Process, ProcessInfo, ResourceUse,
    WindowSize,
};
use crate::error::ShimError;
use crate::host::stats::Usage;
use crate::host::stdio::{GuestStdio, StdioPaths};
use crate::host::termination::TerminationLog;
use crate::signal::Signal;
use crate::spec::ContainerSpec;
use crate::wasm::exit::ExitStatus;
use crate::wasm::guest::WasmGuest;

/// Exit code of a container whose guest task panicked in the shim.
pub const PANIC_EXIT_CODE: u32 = 255;

/// The least time between a container's start and its reported exit: containerd stamps a
/// container's start when the Start answer reaches it, so a guest that ends within that round
/// trip would otherwise have exited "before" it started. 20 ms was not enough on a loaded
/// 2-core node (containerd's stamp came 21.7 ms after the shim's start); a heuristic still.
const START_TO_EXIT_MARGIN: std::time::Duration = std::time::Duration::from_millis(100);

/// What a Wasm container is made of, from the factory.
pub struct WasmParts {
    pub id: String,
    pub bundle: PathBuf,
    pub spec: ContainerSpec,
    pub stdio: StdioPaths,
    pub terminal: bool,
    pub guest: WasmGuest,
    /// A command's stdio, opened at Create as runc's shim opens it (an HTTP server opens its own
    /// writers at Start).
    pub opened: Option<GuestStdio>,
    /// The rootfs the shim mounted, unmounted when the container is deleted.
    pub mounted_rootfs: Option<PathBuf>,
}

pub struct WasmContainer {
    id: String,
    bundle: PathBuf,
    kind: ContainerKind,
    init: Arc<WasmProcess>,
}

impl WasmContainer {
    pub fn new(parts: WasmParts) -> Self {
        let kind = parts.guest.kind();
        let (id, bundle) = (parts.id.clone(), parts.bundle.clone());
        let termination = TerminationLog::of(&parts.spec);
        WasmContainer {
            id,
            bundle,
            kind,
            init: Arc::new(WasmProcess(Arc::new(Guest {
                lifecycle: Lifecycle::default(),
                kill: watch::channel(None).0,
                usage: Arc::new(Usage::new(parts.spec.memory_limit)),
                started_at: Mutex::new(None),
                opened: Mutex::new(parts.opened),
                guest: Arc::new(parts.guest),
                spec: parts.spec,
                stdio: parts.stdio,
                terminal: parts.terminal,
                id: parts.id,
                mounted_rootfs: Mutex::new(parts.mounted_rootfs),
                termination,
            }))),
        }
    }
}

fn unsupported(id: &str, what: &'static str) -> ShimError {
    ShimError::NotSupportedForWasm {
        id: id.to_string(),
        what,
    }
}

#[async_trait]
impl Container for WasmContainer {
    fn id(&self) -> &str {
        &self.id
    }

    fn bundle(&self) -> &Path {
        &self.bundle
    }

    fn kind(&self) -> ContainerKind {
        self.kind
    }

    fn process(&self, exec_id: Option<&str>) -> Result<Arc<dyn Process>, ShimError> {
        match exec_id {
            None => Ok(self.init.clone()),
            Some(exec) => Err(ShimError::NotFound(format!("{} exec {exec}", self.id))),
        }
    }

    async fn exec(&self, _request: ExecRequest) -> Result<Arc<dyn Process>, ShimError> {
        Err(unsupported(&self.id, "exec"))
    }

    fn remove_exec(&self, exec_id: &str) -> Result<(), ShimError> {
        Err(ShimError::NotFound(format!("{} exec {exec_id}", self.id)))
    }

    async fn pause(&self) -> Result<(), ShimError> {
        Err(unsupported(&self.id, "pause"))
    }

    async fn resume(&self) -> Result<(), ShimError> {
        Err(unsupported(&self.id, "resume"))
    }

    async fn update(&self, _: &oci_spec::runtime::LinuxResources) -> Result<(), ShimError> {
        Err(unsupported(&self.id, "update of resources"))
    }

    async fn stats(&self) -> Result<ResourceUse, ShimError> {
        Ok(self.init.0.usage.now())
    }

    /// The shim's pid until the container is deleted, whatever its phase: a restarted
    /// containerd takes a task with no pids for a leaked shim and deletes it, which would lose
    /// the exit of a guest that ended while containerd was down.
    async fn pids(&self) -> Result<Vec<u32>, ShimError> {
        Ok(vec![std::process::id()])
    }
}

/// The guest as the container's one process.
pub struct WasmProcess(Arc<Guest>);

struct Guest {
    id: String,
    spec: ContainerSpec,
    stdio: StdioPaths,
    terminal: bool,
    guest: Arc<WasmGuest>,
    lifecycle: Lifecycle,
    kill: watch::Sender<Option<Signal>>,
    usage: Arc<Usage>,
    started_at: Mutex<Option<SystemTime>>,
    opened: Mutex<Option<GuestStdio>>,
    mounted_rootfs: Mutex<Option<PathBuf>>,
    /// The kubelet's termination message file, when the container has one.
    termination: Option<TerminationLog>,
}

impl Guest {
    fn end(&self, mut status: ExitStatus) {
        let started = self.started_at.lock().ok().and_then(|t| *t);
        if let Some(started) = started
            && status.at < started + START_TO_EXIT_MARGIN
        {
            status.at = started + START_TO_EXIT_MARGIN;
        }
        if let Some(message) = &status.message {
            tracing::warn!(container = %self.id, code = status.code, "{message}");
        }
        if let (Some(log), Some(message)) = (&self.termination, status.termination_message()) {
            log.write(message);
        }
        self.lifecycle.finish(status);
    }

    fn unmount_rootfs(&self) -> Result<(), ShimError> {
        let mounted = self.mounted_rootfs.lock().ok().and_then(|mut m| m.take());
        match mounted {
            Some(rootfs) => crate::host::rootfs::unmount(&rootfs),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Process for WasmProcess {
    fn info(&self) -> ProcessInfo {
        ProcessInfo {
            pid: std::process::id(),
            stdio: self.0.stdio.clone(),
            terminal: self.0.terminal,
        }
    }

    fn phase(&self) -> Phase {
        self.0.lifecycle.phase()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(container = %self.0.id))]
    async fn start(&self) -> Result<u32, ShimError> {
        self.0.lifecycle.begin(&self.0.id)?;
        if let Ok(mut at) = self.0.started_at.lock() {
            *at = Some(SystemTime::now());
        }
        let guest = self.0.clone();
        let opened = guest.opened.lock().ok().and_then(|mut s| s.take());
        // The shim's own handle on stderr, for a message should the guest's task die.
        let mut stderr = match opened.as_ref().and_then(|o| o.stderr_tail.as_ref()) {
            Some(tail) => tail.try_clone().await.ok(),
            None => None,
        };
        // The guest's whole life, from start to its exit status, in one span.
        let life = tracing::debug_span!("guest", container = %self.0.id);
        let supervisor = async move {
            let running = {
                let guest = guest.clone();
                let run = async move {
                    crate::faults::guest_task(&guest.spec.env);
                    let kill = guest.kill.subscribe();
                    guest
                        .guest
                        .run(&guest.spec, &guest.stdio, opened, guest.usage.clone(), kill)
                        .await
                };
                tokio::spawn(run.in_current_span())
            };
            let status = match running.await {
                Ok(status) => status,
                Err(err) => {
                    let message = format!(
                        "spore: the shim failed while running this container (a bug in Spore): {}",
                        panic_text(err)
                    );
                    if let Some(stderr) = stderr.as_mut() {
                        crate::host::stdio::write_line(stderr, &message).await;
                    }
                    ExitStatus::new(PANIC_EXIT_CODE, Some(message))
                }
            };
            drop(stderr);
            crate::host::stdio::drained(&guest.stdio, crate::host::stdio::DRAIN_LIMIT).await;
            tracing::debug!(code = status.code, "the guest ended");
            guest.end(status);
        };
        tokio::spawn(supervisor.instrument(life));
        Ok(std::process::id())
    }

    async fn kill(&self, signal: Signal, _all: bool) -> Result<(), ShimError> {
        match self.phase() {
            Phase::Stopped(_) => Err(ShimError::ProcessFinished(self.0.id.clone())),
            _ if signal.leaves_running() => Ok(()),
            Phase::Running | Phase::Paused => {
                self.0.kill.send_replace(Some(signal));
                Ok(())
            }
            Phase::Created => {
                self.0.end(ExitStatus::killed(signal));
                Ok(())
            }
        }
    }

    async fn wait(&self) -> ExitStatus {
        self.0.lifecycle.wait().await
    }

    async fn delete(&self) -> Result<ExitStatus, ShimError> {
        let status = match self.phase() {
            Phase::Running | Phase::Paused => {
                return Err(ShimError::FailedPrecondition {
                    id: self.0.id.clone(),
                    what: "cannot delete a running container; kill it first".into(),
                });
            }
            Phase::Stopped(status) => status,
            Phase::Created => {
                self.0.end(ExitStatus::killed(Signal::KILL));
                self.wait().await
            }
        };
        self.0.unmount_rootfs()?;
        Ok(status)
    }

    async fn resize_pty(&self, _size: WindowSize) -> Result<(), ShimError> {
        Err(unsupported(&self.0.id, "resizing a pty"))
    }

    async fn close_io(&self) -> Result<(), ShimError> {
        // The guest sees the end of its input through the stdin FIFO once containerd closes
        // its writing end.
        Ok(())
    }
}

fn panic_text(err: tokio::task::JoinError) -> String {
    if !err.is_panic() {
        return format!("its task was cancelled ({err})");
    }
    let payload = err.into_panic();
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    format!("panic: {text}")
}
