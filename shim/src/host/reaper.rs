//! Child exits. The shim is a subreaper (container processes that runc forks become its
//! children when runc exits); [`reap_children`] reaps every child on SIGCHLD and publishes each
//! exit on the `containerd-shim` crate's monitor. [`Exits`] turns that stream into one future
//! per pid, buffering exits that arrive before anyone asks (a process that dies before its pid is
//! known). [`ReapedSpawner`] runs `runc` commands through it, because a plain `wait` would race
//! the reaper's `waitpid(-1)`.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use containerd_shim::monitor::{
    ExitEvent, Subject, Topic, monitor_notify_by_pid, monitor_subscribe,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

/// Exits nobody asked for are forgotten after this long (orphans reparented to the shim).
const UNCLAIMED_EXIT_TTL: Duration = Duration::from_secs(120);

/// Makes orphaned descendants (container processes whose runc parent exited) children of the
/// shim, so that their exits reach it.
pub fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Starts the task that reaps children on SIGCHLD and publishes their exits (128 + the signal
/// for a child killed by one). SIGTERM, SIGINT and SIGPIPE are caught too: they must not end
/// the shim (containerd stops a shim through Shutdown).
pub fn reap_children() {
    let (Ok(mut child), Ok(mut term), Ok(mut int), Ok(mut pipe)) = (
        signal(SignalKind::child()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::pipe()),
    ) else {
        tracing::error!("cannot install the shim's signal handlers");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = child.recv() => reap().await,
                _ = term.recv() => tracing::debug!("SIGTERM ignored"),
                _ = int.recv() => tracing::debug!("SIGINT ignored"),
                _ = pipe.recv() => {}
            }
        }
    });
}

async fn reap() {
    loop {
        match waitpid(nix::unistd::Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                let _ = monitor_notify_by_pid(pid.as_raw(), code).await;
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                let _ = monitor_notify_by_pid(pid.as_raw(), 128 + sig as i32).await;
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[derive(Default)]
struct Table {
    waiting: HashMap<i32, oneshot::Sender<i32>>,
    unclaimed: HashMap<i32, (i32, Instant)>,
}

#[derive(Debug, thiserror::Error)]
#[error("subscribing to child exits: {0}")]
pub struct ReaperError(String);

/// Exit codes by pid, fed by the shim crate's reaper.
#[derive(Clone, Default)]
pub struct Exits {
    table: Arc<Mutex<Table>>,
}

impl Exits {
    /// Subscribes to the shim crate's monitor and dispatches exits until the process ends.
    pub async fn start() -> Result<Self, ReaperError> {
        let exits = Exits::default();
        let mut subscription = monitor_subscribe(Topic::Pid)
            .await
            .map_err(|e| ReaperError(e.to_string()))?;
        let dispatcher = exits.clone();
        tokio::spawn(async move {
            while let Some(ExitEvent { subject, exit_code }) = subscription.rx.recv().await {
                if let Subject::Pid(pid) = subject {
                    dispatcher.exited(pid, exit_code);
                }
            }
        });
        Ok(exits)
    }

    /// Records that `pid` exited with `code` (128+signal for a signal).
    pub fn exited(&self, pid: i32, code: i32) {
        let Ok(mut table) = self.table.lock() else {
            return;
        };
        if let Some(tx) = table.waiting.remove(&pid) {
            let _ = tx.send(code);
        } else {
            let now = Instant::now();
            table
                .unclaimed
                .retain(|_, (_, at)| now.duration_since(*at) < UNCLAIMED_EXIT_TTL);
            table.unclaimed.insert(pid, (code, now));
        }
    }

    /// A future for the exit code of `pid`, resolved at once if it already exited.
    pub fn wait_for(&self, pid: i32) -> oneshot::Receiver<i32> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut table) = self.table.lock() {
            match table.unclaimed.remove(&pid) {
                Some((code, _)) => {
                    let _ = tx.send(code);
                }
                None => {
                    table.waiting.insert(pid, tx);
                }
            }
        }
        rx
    }
}

/// Runs `runc` commands and collects their exit through [`Exits`].
#[derive(Clone)]
pub struct ReapedSpawner {
    exits: Exits,
}

impl std::fmt::Debug for ReapedSpawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReapedSpawner")
    }
}

impl ReapedSpawner {
    pub fn new(exits: Exits) -> Self {
        ReapedSpawner { exits }
    }
}

fn read_all(pipe: Option<impl std::io::Read + Send + 'static>) -> tokio::task::JoinHandle<String> {
    tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

#[async_trait]
impl runc::asynchronous::Spawner for ReapedSpawner {
    async fn execute(&self, cmd: runc::Command) -> runc::Result<(ExitStatus, u32, String, String)> {
        // Spawned through std, not tokio: tokio would try to reap the child itself.
        let mut cmd = cmd.into_std();
        if let Some(host_netns) = crate::host::netns::host_netns_fd() {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setns(2), which is async-signal-safe, runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setns(host_netns, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(runc::error::Error::ProcessSpawnFailed)?;
        let pid = child.id();
        let exit = self.exits.wait_for(pid as i32);
        let stdout = read_all(child.stdout.take());
        let stderr = read_all(child.stderr.take());
        let code = exit.await.unwrap_or(255);
        let stdout = stdout.await.unwrap_or_default();
        let stderr = stderr.await.unwrap_or_default();
        Ok((
            ExitStatus::from_raw((code & 0xff) << 8),
            pid,
            stdout,
            stderr,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_exit_before_the_question_is_kept() {
        let exits = Exits::default();
        exits.exited(42, 3);
        assert_eq!(exits.wait_for(42).await.expect("code"), 3);
    }

    #[tokio::test]
    async fn an_exit_after_the_question_resolves_it() {
        let exits = Exits::default();
        let rx = exits.wait_for(7);
        exits.exited(7, 137);
        assert_eq!(rx.await.expect("code"), 137);
    }
}
