//! One container served by this shim: its spec, stdio, rootfs and state, and what runs in it:
//! a Wasm guest in this process, or a native process tree through runc.

pub mod exec;
pub mod native;
pub mod wasm;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::error::ShimError;
use crate::exit::ExitStatus;
use crate::io::StdioPaths;
use crate::spec::ContainerSpec;
use crate::stats::Usage;
use exec::ExecProcess;
use native::NativeContainer;
use wasm::WasmGuest;

/// Where a container or process is in its life, as containerd's task states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Created,
    Running,
    Stopped(ExitStatus),
}

/// Signals whose default action does not end a process: a Kill with one of them leaves a Wasm
/// guest running, as it would a native process without a handler.
const IGNORED_BY_DEFAULT: [u32; 4] = [
    libc::SIGCHLD as u32,
    libc::SIGCONT as u32,
    libc::SIGURG as u32,
    libc::SIGWINCH as u32,
];

/// The least time between a container's start and its reported exit (see `Container::end`).
const START_TO_EXIT_MARGIN: std::time::Duration = std::time::Duration::from_millis(20);

/// What runs in a container.
pub enum Workload {
    Wasm(Arc<WasmGuest>),
    Native {
        runc: Arc<NativeContainer>,
        init_pid: i32,
    },
}

/// Called once when a container's (or exec process's) main process has ended.
pub type ExitHook = Arc<dyn Fn(&Container, Option<&str>, &ExitStatus) + Send + Sync>;

/// Phase plus a channel that wakes waiters when it becomes Stopped.
pub struct Lifecycle {
    phase: Mutex<Phase>,
    exit: watch::Sender<Option<ExitStatus>>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            phase: Mutex::new(Phase::Created),
            exit: watch::channel(None).0,
        }
    }
}

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        match self.phase.lock() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Created -> Running; an error names what it is instead.
    pub fn begin(&self, id: &str) -> Result<(), ShimError> {
        let mut phase = self
            .phase
            .lock()
            .map_err(|_| ShimError::Other(format!("{id}: state lock poisoned")))?;
        match &*phase {
            Phase::Created => {
                *phase = Phase::Running;
                Ok(())
            }
            Phase::Running => Err(ShimError::FailedPrecondition {
                id: id.to_string(),
                what: "already running".into(),
            }),
            Phase::Stopped(_) => Err(ShimError::FailedPrecondition {
                id: id.to_string(),
                what: "already stopped: create it again to run it again".into(),
            }),
        }
    }

    /// Records the end; returns false when it had already ended.
    pub fn finish(&self, status: ExitStatus) -> bool {
        let mut phase = match self.phase.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        if matches!(&*phase, Phase::Stopped(_)) {
            return false;
        }
        *phase = Phase::Stopped(status.clone());
        self.exit.send_replace(Some(status));
        true
    }

    pub async fn wait(&self) -> ExitStatus {
        let mut rx = self.exit.subscribe();
        loop {
            if let Some(status) = rx.borrow_and_update().clone() {
                return status;
            }
            if rx.changed().await.is_err() {
                return ExitStatus::new(255, Some("exit status lost".into()));
            }
        }
    }
}

/// What task Create knows about a container before its workload exists.
pub struct ContainerSetup {
    pub id: String,
    pub bundle: PathBuf,
    pub spec: ContainerSpec,
    pub stdio: StdioPaths,
    pub terminal: bool,
    /// Where the shim mounted the rootfs, to unmount at delete.
    pub mounted_rootfs: Option<PathBuf>,
    /// A Wasm command's stdio, opened at create.
    pub guest_stdio: Option<crate::io::GuestStdio>,
}

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub spec: ContainerSpec,
    pub stdio: StdioPaths,
    pub terminal: bool,
    /// Where the shim mounted the rootfs, to unmount at delete.
    mounted_rootfs: Option<PathBuf>,
    pub workload: Workload,
    pub lifecycle: Lifecycle,
    kill: watch::Sender<Option<u32>>,
    pub usage: Arc<Usage>,
    started_at: Mutex<Option<SystemTime>>,
    execs: Mutex<HashMap<String, Arc<ExecProcess>>>,
    on_exit: ExitHook,
    guest_stdio: Mutex<Option<crate::io::GuestStdio>>,
}

impl Container {
    pub fn new(setup: ContainerSetup, workload: Workload, on_exit: ExitHook) -> Arc<Self> {
        let ContainerSetup {
            id,
            bundle,
            spec,
            stdio,
            terminal,
            mounted_rootfs,
            guest_stdio,
        } = setup;
        let container = Arc::new(Container {
            id,
            bundle,
            spec,
            stdio,
            terminal,
            mounted_rootfs,
            workload,
            lifecycle: Lifecycle::default(),
            kill: watch::channel(None).0,
            usage: Arc::new(Usage::default()),
            started_at: Mutex::new(None),
            execs: Mutex::new(HashMap::new()),
            on_exit,
            guest_stdio: Mutex::new(guest_stdio),
        });
        if let Workload::Native { runc, init_pid } = &container.workload {
            // runc's init exists from create on: watch it now, so a kill before start ends it.
            let (runc, pid, watched) = (runc.clone(), *init_pid, Arc::clone(&container));
            tokio::spawn(async move {
                let code = runc.wait_pid(pid).await;
                watched.end(ExitStatus::new(code as u32, None));
            });
        }
        container
    }

    pub fn is_wasm(&self) -> bool {
        matches!(self.workload, Workload::Wasm(_))
    }

    pub fn kind(&self) -> &'static str {
        match &self.workload {
            Workload::Wasm(guest) => guest.kind(),
            Workload::Native { .. } => "native container (runc)",
        }
    }

    /// The pid containerd sees: the init's for a native container, the shim's for a Wasm one.
    pub fn pid(&self) -> u32 {
        match &self.workload {
            Workload::Wasm(_) => std::process::id(),
            Workload::Native { init_pid, .. } => *init_pid as u32,
        }
    }

    pub fn phase(&self) -> Phase {
        self.lifecycle.phase()
    }

    fn end(&self, mut status: ExitStatus) {
        // containerd stamps a container's start when our Start answer reaches it; a guest that
        // ends within that round trip would otherwise exit "before" it started.
        if let Some(started) = self.started_at()
            && status.at < started + START_TO_EXIT_MARGIN
        {
            status.at = started + START_TO_EXIT_MARGIN;
        }
        if self.lifecycle.finish(status.clone()) {
            (self.on_exit)(self, None, &status);
        }
    }

    /// Starts the container's main process.
    fn started_at(&self) -> Option<SystemTime> {
        self.started_at.lock().ok().and_then(|t| *t)
    }

    pub async fn start(self: &Arc<Self>) -> Result<(), ShimError> {
        self.lifecycle.begin(&self.id)?;
        if let Ok(mut t) = self.started_at.lock() {
            *t = Some(SystemTime::now());
        }
        match &self.workload {
            Workload::Native { runc, .. } => runc.start().await,
            Workload::Wasm(guest) => {
                let (container, guest, kill) =
                    (Arc::clone(self), guest.clone(), self.kill.subscribe());
                let opened = self.guest_stdio.lock().ok().and_then(|mut s| s.take());
                tokio::spawn(async move {
                    let status = guest
                        .run(
                            &container.spec,
                            &container.stdio,
                            opened,
                            container.usage.clone(),
                            kill,
                        )
                        .await;
                    container.usage.memory_bytes.store(0, Ordering::Relaxed);
                    if let Some(message) = &status.message {
                        tracing::warn!(container = %container.id, code = status.code, "{message}");
                    }
                    container.end(status);
                });
                Ok(())
            }
        }
    }

    /// Sends `signal` to the main process (or, with `all`, every process of a native container).
    pub async fn kill(&self, signal: u32, all: bool) -> Result<(), ShimError> {
        let phase = self.phase();
        if let Phase::Stopped(_) = phase {
            return Err(ShimError::ProcessFinished(self.id.clone()));
        }
        match &self.workload {
            Workload::Native { runc, .. } => runc.kill(signal, all).await,
            Workload::Wasm(_) => {
                if signal == 0 || IGNORED_BY_DEFAULT.contains(&signal) {
                    return Ok(());
                }
                match phase {
                    Phase::Running => {
                        self.kill.send_replace(Some(signal));
                    }
                    _ => self.end(ExitStatus::killed(signal)),
                }
                Ok(())
            }
        }
    }

    pub async fn wait(&self) -> ExitStatus {
        self.lifecycle.wait().await
    }

    /// Adds an exec process (native containers only; Wasm guests have no processes to add).
    pub fn add_exec(&self, exec: ExecProcess) -> Result<(), ShimError> {
        if self.is_wasm() {
            return Err(ShimError::NotSupportedForWasm {
                id: self.id.clone(),
                what: "exec",
            });
        }
        let mut execs = self.lock_execs()?;
        if execs.contains_key(&exec.exec_id) {
            return Err(ShimError::AlreadyExists(format!(
                "{} exec {}",
                self.id, exec.exec_id
            )));
        }
        execs.insert(exec.exec_id.clone(), Arc::new(exec));
        Ok(())
    }

    pub fn exec(&self, exec_id: &str) -> Result<Arc<ExecProcess>, ShimError> {
        self.lock_execs()?
            .get(exec_id)
            .cloned()
            .ok_or_else(|| ShimError::NotFound(format!("{} exec {exec_id}", self.id)))
    }

    pub fn remove_exec(&self, exec_id: &str) -> Result<Arc<ExecProcess>, ShimError> {
        self.lock_execs()?
            .remove(exec_id)
            .ok_or_else(|| ShimError::NotFound(format!("{} exec {exec_id}", self.id)))
    }

    /// Starts exec process `exec_id` and watches it until it ends.
    pub async fn start_exec(self: &Arc<Self>, exec_id: &str) -> Result<u32, ShimError> {
        let Workload::Native { runc, .. } = &self.workload else {
            return Err(ShimError::NotSupportedForWasm {
                id: self.id.clone(),
                what: "exec",
            });
        };
        let exec = self.exec(exec_id)?;
        exec.lifecycle.begin(exec_id)?;
        let pid = match runc.exec(exec_id, &exec.process, &exec.stdio).await {
            Ok(pid) => pid,
            Err(err) => {
                exec.lifecycle
                    .finish(ExitStatus::new(255, Some(err.to_string())));
                return Err(err);
            }
        };
        exec.set_pid(pid);
        let (container, runc) = (Arc::clone(self), runc.clone());
        tokio::spawn(async move {
            let status = ExitStatus::new(runc.wait_pid(pid).await as u32, None);
            if exec.lifecycle.finish(status.clone()) {
                (container.on_exit)(&container, Some(&exec.exec_id), &status);
            }
        });
        Ok(pid as u32)
    }

    /// Releases what the container holds on the host: runc's state and the rootfs mount.
    pub async fn cleanup(&self) -> Result<(), ShimError> {
        if let Workload::Native { runc, .. } = &self.workload {
            runc.delete().await?;
        }
        if let Some(rootfs) = &self.mounted_rootfs {
            crate::rootfs::unmount(rootfs)?;
        }
        Ok(())
    }

    /// Unmounts the rootfs after a failed create (nothing else exists yet).
    pub fn unmount_rootfs(&self) {
        if let Some(rootfs) = &self.mounted_rootfs {
            let _ = crate::rootfs::unmount(rootfs);
        }
    }

    /// `(cpu ns, memory bytes)` in use now.
    pub async fn usage_now(&self) -> Result<(u64, u64), ShimError> {
        match &self.workload {
            Workload::Native { runc, .. } => runc.usage().await,
            Workload::Wasm(_) => Ok((
                self.usage.cpu_nanos.load(Ordering::Relaxed),
                self.usage.memory_bytes.load(Ordering::Relaxed),
            )),
        }
    }

    fn lock_execs(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, HashMap<String, Arc<ExecProcess>>>, ShimError> {
        self.execs
            .lock()
            .map_err(|_| ShimError::Other(format!("{}: exec table lock poisoned", self.id)))
    }
}
