//! One container served by this shim: its spec, stdio, rootfs, state, and the guest that runs
//! in it.

pub mod wasm;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use tokio::sync::watch;

use crate::error::ShimError;
use crate::exit::ExitStatus;
use crate::io::StdioPaths;
use crate::spec::ContainerSpec;
use crate::stats::Usage;
use wasm::WasmGuest;

/// Where a container is in its life, as containerd's task states.
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

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub spec: ContainerSpec,
    pub stdio: StdioPaths,
    pub terminal: bool,
    /// Where the shim mounted the rootfs, to unmount at delete.
    mounted_rootfs: Option<PathBuf>,
    guest: Arc<WasmGuest>,
    phase: Mutex<Phase>,
    exit: watch::Sender<Option<ExitStatus>>,
    kill: watch::Sender<Option<u32>>,
    pub usage: Arc<Usage>,
    pub created_at: SystemTime,
}

impl Container {
    pub fn new(
        id: String,
        bundle: PathBuf,
        spec: ContainerSpec,
        stdio: StdioPaths,
        terminal: bool,
        mounted_rootfs: Option<PathBuf>,
        guest: WasmGuest,
    ) -> Self {
        Container {
            id,
            bundle,
            spec,
            stdio,
            terminal,
            mounted_rootfs,
            guest: Arc::new(guest),
            phase: Mutex::new(Phase::Created),
            exit: watch::channel(None).0,
            kill: watch::channel(None).0,
            usage: Arc::new(Usage::default()),
            created_at: SystemTime::now(),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
            .lock()
            .map(|p| p.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    fn set_phase(&self, phase: Phase) {
        match self.phase.lock() {
            Ok(mut p) => *p = phase,
            Err(poisoned) => *poisoned.into_inner() = phase,
        }
    }

    pub fn guest_kind(&self) -> &'static str {
        self.guest.kind()
    }

    /// Starts the guest. `on_exit` runs once it has ended, with its exit status.
    pub fn start<F>(self: &Arc<Self>, on_exit: F) -> Result<(), ShimError>
    where
        F: FnOnce(Arc<Container>, ExitStatus) + Send + 'static,
    {
        {
            let mut phase = self.phase.lock().map_err(|_| self.poisoned())?;
            match &*phase {
                Phase::Created => *phase = Phase::Running,
                Phase::Running => {
                    return Err(ShimError::FailedPrecondition {
                        id: self.id.clone(),
                        what: "already running".into(),
                    });
                }
                Phase::Stopped(_) => {
                    return Err(ShimError::FailedPrecondition {
                        id: self.id.clone(),
                        what: "already stopped: create it again to run it again".into(),
                    });
                }
            }
        }
        let container = Arc::clone(self);
        let kill = self.kill.subscribe();
        tokio::spawn(async move {
            let status = container
                .guest
                .run(
                    &container.spec,
                    &container.stdio,
                    container.usage.clone(),
                    kill,
                )
                .await;
            container.usage.memory_bytes.store(0, Ordering::Relaxed);
            if let Some(message) = &status.message {
                tracing::warn!(container = %container.id, code = status.code, "{message}");
            }
            container.finish(status.clone());
            on_exit(container, status);
        });
        Ok(())
    }

    fn finish(&self, status: ExitStatus) {
        self.set_phase(Phase::Stopped(status.clone()));
        self.exit.send_replace(Some(status));
    }

    /// Sends `signal`. A running guest ends with 128+signal (unless the signal is one a
    /// process ignores by default); a created one is marked stopped. Returns the exit status
    /// when a created container stopped without ever running.
    pub fn kill(&self, signal: u32) -> Result<Option<ExitStatus>, ShimError> {
        match self.phase() {
            Phase::Stopped(_) => Err(ShimError::ProcessFinished(self.id.clone())),
            _ if signal == 0 || IGNORED_BY_DEFAULT.contains(&signal) => Ok(None),
            Phase::Running => {
                self.kill.send_replace(Some(signal));
                Ok(None)
            }
            Phase::Created => {
                let status = ExitStatus::killed(signal);
                self.finish(status.clone());
                Ok(Some(status))
            }
        }
    }

    /// Waits until the container has stopped.
    pub async fn wait(&self) -> ExitStatus {
        let mut rx = self.exit.subscribe();
        loop {
            if let Some(status) = rx.borrow_and_update().clone() {
                return status;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as `self`; this cannot happen while we hold it.
                return ExitStatus::new(255, Some("exit status lost".into()));
            }
        }
    }

    /// Releases what the container holds on the host: the rootfs mount.
    pub fn cleanup(&self) -> Result<(), ShimError> {
        if let Some(rootfs) = &self.mounted_rootfs {
            crate::rootfs::unmount(rootfs)?;
        }
        Ok(())
    }

    fn poisoned(&self) -> ShimError {
        ShimError::Other(format!("container {}: state lock poisoned", self.id))
    }
}
