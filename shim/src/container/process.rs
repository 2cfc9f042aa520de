//! A process of a container as containerd's Task API sees it: the container's init process (an
//! empty exec id) or an exec process. A Wasm guest and a runc process are both a [`Process`];
//! [`Lifecycle`] is the state machine they share.

use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::ShimError;
use crate::host::stdio::StdioPaths;
use crate::signal::Signal;
use crate::wasm::exit::ExitStatus;

/// Where a process is in its life, as containerd's task states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Created,
    Running,
    Paused,
    Stopped(ExitStatus),
}

/// What `State` reports about a process besides its phase.
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    /// The pid containerd sees (the shim's own for a Wasm guest, which has no process).
    pub pid: u32,
    pub stdio: StdioPaths,
    pub terminal: bool,
}

/// A terminal's size, from ResizePty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    pub width: u16,
    pub height: u16,
}

impl WindowSize {
    /// The size of a ResizePty request (larger values than a terminal holds are capped).
    pub fn clamped(width: u32, height: u32) -> Self {
        let cap = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        WindowSize {
            width: cap(width),
            height: cap(height),
        }
    }
}

#[async_trait]
pub trait Process: Send + Sync {
    fn info(&self) -> ProcessInfo;
    fn phase(&self) -> Phase;
    /// Starts the process; returns the pid containerd sees.
    async fn start(&self) -> Result<u32, ShimError>;
    /// Sends `signal` (to every process of the container too, with `all`).
    async fn kill(&self, signal: Signal, all: bool) -> Result<(), ShimError>;
    /// Resolves once the process has ended.
    async fn wait(&self) -> ExitStatus;
    /// Releases what the process holds once it has ended (or ends one that never started);
    /// returns its exit status.
    async fn delete(&self) -> Result<ExitStatus, ShimError>;
    async fn resize_pty(&self, size: WindowSize) -> Result<(), ShimError>;
    /// containerd's client closed its stdin: the process sees the end of its input.
    async fn close_io(&self) -> Result<(), ShimError>;
}

/// A phase plus a channel that wakes waiters when it becomes Stopped.
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

    fn transition(
        &self,
        id: &str,
        change: impl FnOnce(&Phase) -> Result<Phase, &'static str>,
    ) -> Result<(), ShimError> {
        let mut phase = match self.phase.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        let next = change(&phase).map_err(|what| ShimError::FailedPrecondition {
            id: id.to_string(),
            what: what.to_string(),
        })?;
        *phase = next;
        Ok(())
    }

    /// Created -> Running; an error names what it is instead.
    pub fn begin(&self, id: &str) -> Result<(), ShimError> {
        self.transition(id, |phase| match phase {
            Phase::Created => Ok(Phase::Running),
            Phase::Running | Phase::Paused => Err("already running"),
            Phase::Stopped(_) => Err("already stopped: create it again to run it again"),
        })
    }

    /// Running -> Paused.
    pub fn pause(&self, id: &str) -> Result<(), ShimError> {
        self.transition(id, |phase| match phase {
            Phase::Running => Ok(Phase::Paused),
            Phase::Paused => Err("already paused"),
            Phase::Created => Err("not started"),
            Phase::Stopped(_) => Err("already stopped"),
        })
    }

    /// Paused -> Running.
    pub fn resume(&self, id: &str) -> Result<(), ShimError> {
        self.transition(id, |phase| match phase {
            Phase::Paused => Ok(Phase::Running),
            _ => Err("not paused"),
        })
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

    /// The exit status once stopped.
    pub fn stopped(&self) -> Option<ExitStatus> {
        match self.phase() {
            Phase::Stopped(status) => Some(status),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_process_goes_created_running_stopped_and_wakes_waiters() {
        let life = std::sync::Arc::new(Lifecycle::default());
        assert_eq!(life.phase(), Phase::Created);
        let waiter = {
            let life = life.clone();
            tokio::spawn(async move { life.wait().await })
        };
        life.begin("c").expect("starts");
        assert!(life.begin("c").is_err(), "cannot start twice");
        assert!(life.finish(ExitStatus::new(3, None)));
        assert!(!life.finish(ExitStatus::new(4, None)), "the first end wins");
        assert_eq!(waiter.await.expect("joins").code, 3);
        assert_eq!(life.stopped().map(|s| s.code), Some(3));
        let err = life.begin("c").expect_err("stopped");
        assert!(err.to_string().contains("already stopped"), "{err}");
    }

    #[test]
    fn only_a_running_process_pauses_and_only_a_paused_one_resumes() {
        let life = Lifecycle::default();
        assert!(life.pause("c").is_err());
        life.begin("c").expect("starts");
        life.pause("c").expect("pauses");
        assert_eq!(life.phase(), Phase::Paused);
        assert!(life.pause("c").is_err());
        life.resume("c").expect("resumes");
        assert!(life.resume("c").is_err());
        assert_eq!(life.phase(), Phase::Running);
    }
}
