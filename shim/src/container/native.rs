//! A native container: the pod's sandbox or a sidecar, run by runc exactly as containerd's runc
//! shim runs it. Its init process exists from Create (`runc create`), exec processes from their
//! Start (`runc exec --detach`); pause, resume and resource updates go to runc; a process with a
//! terminal gets one through a console socket.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::console::{Console, ConsoleSocket};
use super::execs::Execs;
use super::runc::Runc;
use super::{
    Container, ContainerKind, ExecRequest, Lifecycle, Phase, Process, ProcessInfo, ResourceUse,
    WindowSize,
};
use crate::error::ShimError;
use crate::host::stdio::{StdioPaths, StdioTarget, open_output};
use crate::signal::Signal;
use crate::wasm::exit::ExitStatus;

pub struct NativeContainer {
    id: String,
    bundle: PathBuf,
    runc: Arc<Runc>,
    init: Arc<RuncProcess>,
    execs: Execs<RuncProcess>,
}

impl NativeContainer {
    /// `runc create` of the container in `bundle`; its init's exit is watched from now on.
    pub async fn create(
        runc: Runc,
        bundle: &Path,
        stdio: StdioPaths,
        terminal: bool,
        mounted_rootfs: Option<PathBuf>,
    ) -> Result<Self, ShimError> {
        let runc = Arc::new(runc);
        let console = terminal.then(ConsoleSocket::new).transpose()?;
        let pid = runc
            .create(&stdio, console.as_ref().map(ConsoleSocket::path))
            .await?;
        let console = match console {
            Some(socket) => Some(connect_console(socket, &stdio).await?),
            None => None,
        };
        let init = Arc::new(RuncProcess(Arc::new(Inner {
            container_id: runc.id.clone(),
            exec: None,
            runc: runc.clone(),
            lifecycle: Lifecycle::default(),
            pid: AtomicI32::new(pid),
            stdio,
            terminal,
            console: Mutex::new(console),
            killing: tokio::sync::Mutex::new(()),
            mounted_rootfs: Mutex::new(mounted_rootfs),
        })));
        init.watch_exit(pid);
        Ok(NativeContainer {
            id: runc.id.clone(),
            bundle: bundle.to_path_buf(),
            runc,
            init,
            execs: Execs::default(),
        })
    }
}

async fn connect_console(socket: ConsoleSocket, stdio: &StdioPaths) -> Result<Console, ShimError> {
    let mut console = socket.receive().await?;
    let stdout = match &stdio.stdout {
        StdioTarget::Path(path) => Some(open_output("stdout", path).await?.file.into_std().await),
        StdioTarget::None => None,
    };
    console.connect(&stdio.stdin, stdout)?;
    Ok(console)
}

#[async_trait]
impl Container for NativeContainer {
    fn id(&self) -> &str {
        &self.id
    }

    fn bundle(&self) -> &Path {
        &self.bundle
    }

    fn kind(&self) -> ContainerKind {
        ContainerKind::Native
    }

    fn process(&self, exec_id: Option<&str>) -> Result<Arc<dyn Process>, ShimError> {
        match exec_id {
            None => Ok(self.init.clone()),
            Some(exec) => Ok(self.execs.get(&self.id, exec)?),
        }
    }

    async fn exec(&self, request: ExecRequest) -> Result<Arc<dyn Process>, ShimError> {
        let process = Arc::new(RuncProcess(Arc::new(Inner {
            container_id: self.id.clone(),
            exec: Some(Exec {
                id: request.exec_id.clone(),
                process: request.process,
            }),
            runc: self.runc.clone(),
            lifecycle: Lifecycle::default(),
            pid: AtomicI32::new(0),
            stdio: request.stdio,
            terminal: request.terminal,
            console: Mutex::new(None),
            killing: tokio::sync::Mutex::new(()),
            mounted_rootfs: Mutex::new(None),
        })));
        self.execs
            .add(&self.id, &request.exec_id, process.clone())?;
        Ok(process)
    }

    fn remove_exec(&self, exec_id: &str) -> Result<(), ShimError> {
        self.execs.remove(&self.id, exec_id).map(|_| ())
    }

    async fn pause(&self) -> Result<(), ShimError> {
        self.init.0.lifecycle.pause(&self.id)?;
        if let Err(err) = self.runc.pause().await {
            let _ = self.init.0.lifecycle.resume(&self.id);
            return Err(err);
        }
        Ok(())
    }

    async fn resume(&self) -> Result<(), ShimError> {
        if self.init.phase() != Phase::Paused {
            return Err(ShimError::FailedPrecondition {
                id: self.id.clone(),
                what: "not paused".into(),
            });
        }
        self.runc.resume().await?;
        self.init.0.lifecycle.resume(&self.id)
    }

    async fn update(&self, resources: &oci_spec::runtime::LinuxResources) -> Result<(), ShimError> {
        self.runc.update(resources).await
    }

    async fn stats(&self) -> Result<ResourceUse, ShimError> {
        let (cpu_nanos, memory_bytes) = self.runc.usage().await?;
        Ok(ResourceUse {
            cpu_nanos,
            memory_bytes,
            memory_peak_bytes: memory_bytes,
            memory_limit: None,
        })
    }

    /// The container's processes; once they are gone (the container stopped, not yet deleted),
    /// its init's pid, so that a restarted containerd does not take the task for a leaked shim
    /// and lose its exit status (see the Wasm container's `pids`).
    async fn pids(&self) -> Result<Vec<u32>, ShimError> {
        let running = match self.runc.pids().await {
            Ok(pids) => pids.into_iter().map(|p| p as u32).collect(),
            Err(err) if matches!(self.init.phase(), Phase::Stopped(_)) => {
                tracing::debug!(%err, "runc ps of a stopped container");
                Vec::new()
            }
            Err(err) => return Err(err),
        };
        let init = self.init.info().pid;
        Ok(if running.is_empty() && init != 0 {
            vec![init]
        } else {
            running
        })
    }
}

/// The init process or an exec process of a native container.
pub struct RuncProcess(Arc<Inner>);

struct Exec {
    id: String,
    process: oci_spec::runtime::Process,
}

struct Inner {
    container_id: String,
    /// `None` for the init process.
    exec: Option<Exec>,
    runc: Arc<Runc>,
    lifecycle: Lifecycle,
    pid: AtomicI32,
    stdio: StdioPaths,
    terminal: bool,
    console: Mutex<Option<Console>>,
    /// The init's rootfs, when the shim mounted it.
    mounted_rootfs: Mutex<Option<PathBuf>>,
    /// Held while a Kill is being answered; the exit is recorded only after. containerd's
    /// CRI kills a sandbox and, on a second path, waits for its exit to delete it and close
    /// its connection to the shim: an exit reported before the Kill's answer let that close
    /// cut the answer off ("ttrpc: closed" at StopPodSandbox).
    killing: tokio::sync::Mutex<()>,
}

impl Inner {
    fn name(&self) -> String {
        match &self.exec {
            Some(exec) => format!("{} exec {}", self.container_id, exec.id),
            None => self.container_id.clone(),
        }
    }
}

impl RuncProcess {
    /// Records the process's end when the reaper sees `pid` exit.
    fn watch_exit(&self, pid: i32) {
        let inner = self.0.clone();
        tokio::spawn(async move {
            let code = inner.runc.wait_pid(pid).await;
            let output = inner
                .console
                .lock()
                .ok()
                .and_then(|c| c.as_ref().map(|c| c.waiter(&inner.stdio)));
            if let Some(output) = output {
                output.read().await;
            }
            let _kills_answered = inner.killing.lock().await;
            inner
                .lifecycle
                .finish(ExitStatus::new(code.clamp(0, 255) as u32, None));
        });
    }
}

#[async_trait]
impl Process for RuncProcess {
    fn info(&self) -> ProcessInfo {
        ProcessInfo {
            pid: self.0.pid.load(Ordering::Relaxed).max(0) as u32,
            stdio: self.0.stdio.clone(),
            terminal: self.0.terminal,
        }
    }

    fn phase(&self) -> Phase {
        self.0.lifecycle.phase()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(process = %self.0.name()))]
    async fn start(&self) -> Result<u32, ShimError> {
        let inner = &self.0;
        inner.lifecycle.begin(&inner.name())?;
        let Some(exec) = &inner.exec else {
            inner.runc.start().await.inspect_err(|err| {
                inner
                    .lifecycle
                    .finish(ExitStatus::new(255, Some(err.to_string())));
            })?;
            return Ok(self.info().pid);
        };
        let console = inner.terminal.then(ConsoleSocket::new).transpose()?;
        let started = inner
            .runc
            .exec(
                &exec.id,
                &exec.process,
                &inner.stdio,
                console.as_ref().map(ConsoleSocket::path),
            )
            .await;
        let pid = match started {
            Ok(pid) => pid,
            Err(err) => {
                inner
                    .lifecycle
                    .finish(ExitStatus::new(255, Some(err.to_string())));
                return Err(err);
            }
        };
        inner.pid.store(pid, Ordering::Relaxed);
        // The exit is watched once the terminal is connected (the reaper keeps an exit that
        // comes first), so that it is reported after the terminal's output was read.
        let connected = match console {
            Some(socket) => connect_console(socket, &inner.stdio).await.map(|console| {
                if let Ok(mut slot) = inner.console.lock() {
                    *slot = Some(console);
                }
            }),
            None => Ok(()),
        };
        self.watch_exit(pid);
        connected?;
        Ok(pid as u32)
    }

    async fn kill(&self, signal: Signal, all: bool) -> Result<(), ShimError> {
        let inner = &self.0;
        let _answering = inner.killing.lock().await;
        if let Phase::Stopped(_) = self.phase() {
            return Err(ShimError::ProcessFinished(inner.name()));
        }
        if inner.exec.is_none() {
            inner.runc.kill(signal, all).await?;
            crate::faults::kill_answer().await;
            return Ok(());
        }
        let pid = inner.pid.load(Ordering::Relaxed);
        if pid <= 0 {
            return Err(ShimError::FailedPrecondition {
                id: inner.name(),
                what: "not started".into(),
            });
        }
        // SAFETY: kill(2) on a pid this shim started and still waits for (so not reused).
        if unsafe { libc::kill(pid, signal.number() as libc::c_int) } != 0 {
            return Err(ShimError::Signal {
                process: inner.name(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    async fn wait(&self) -> ExitStatus {
        self.0.lifecycle.wait().await
    }

    async fn delete(&self) -> Result<ExitStatus, ShimError> {
        let inner = &self.0;
        let status = match self.phase() {
            Phase::Running | Phase::Paused => {
                return Err(ShimError::FailedPrecondition {
                    id: inner.name(),
                    what: "cannot delete a running process; kill it first".into(),
                });
            }
            Phase::Stopped(status) => Some(status),
            Phase::Created => None,
        };
        if inner.exec.is_some() {
            return Ok(status.unwrap_or_else(|| ExitStatus::new(0, None)));
        }
        // `runc delete --force` also kills an init that never started.
        inner.runc.delete().await?;
        let status = match status {
            Some(status) => status,
            None => self.wait().await,
        };
        if let Ok(mut console) = inner.console.lock() {
            console.take();
        }
        let mounted = inner.mounted_rootfs.lock().ok().and_then(|mut m| m.take());
        if let Some(rootfs) = mounted {
            crate::host::rootfs::unmount(&rootfs)?;
        }
        Ok(status)
    }

    async fn resize_pty(&self, size: WindowSize) -> Result<(), ShimError> {
        let console = self
            .0
            .console
            .lock()
            .map_err(|_| ShimError::Poisoned("console"))?;
        match console.as_ref() {
            Some(console) => Ok(console.resize(size)?),
            None => Err(ShimError::FailedPrecondition {
                id: self.0.name(),
                what: "it has no terminal".into(),
            }),
        }
    }

    async fn close_io(&self) -> Result<(), ShimError> {
        // The process sees the end of its input through the stdin FIFO (or, with a terminal,
        // the copy into it ends) once containerd closes its writing end.
        Ok(())
    }
}
