//! Restarting containerd (through the host's PID 1, since the installer runs in a container) and
//! waiting until its CRI service answers again with the expected runtimes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::cri_probe::{self, CriStatus, ProbeError};
use crate::host_namespaces::{HostNamespaceError, Namespaces};
use crate::socket_owner;

/// Splits a `--restart-command` the way a POSIX shell would (quotes allowed); `none` or an empty
/// string means "do not restart" (a platform that reloads containerd by itself).
pub fn parse_command(text: &str) -> Option<Vec<String>> {
    if text.trim() == "none" {
        return Some(Vec::new());
    }
    shlex::split(text)
}

/// How the installer restarts containerd after changing its config (`--containerd-restart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RestartStrategy {
    /// `systemctl restart <unit>` in the host's namespaces (through PID 1): nodes where systemd
    /// runs containerd.
    Systemd,
    /// SIGTERM to the process serving containerd's socket, then wait for whatever supervises it
    /// (an init other than systemd, a supervisor loop, k3s's agent) to start it again.
    Signal,
    /// Never restart: the platform reloads containerd itself, or an operator does.
    None,
}

/// What a restart does, resolved from the strategy and `--restart-command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restarter {
    /// `systemctl restart <unit>` in the namespaces of the host's PID 1 (the installer runs
    /// with `hostPID: true`).
    Systemd { unit: String },
    /// Run the user's `--restart-command` in the installer's container.
    Command(Vec<String>),
    /// Stop the process listening on one of these socket paths (as it bound them), found in
    /// `/proc` (the installer runs with `hostPID: true`, so that is the host's).
    Signal { sockets: Vec<PathBuf> },
    /// Restart nothing.
    Nothing,
}

impl Restarter {
    /// Whether [`Restarter::restart`] does anything.
    pub fn restarts(&self) -> bool {
        !matches!(self, Restarter::Nothing)
    }

    /// Restarts containerd (or does nothing); `stop_timeout` bounds how long a signalled
    /// containerd may take to exit before it is killed.
    pub async fn restart(&self, stop_timeout: Duration) -> Result<(), RestartError> {
        match self {
            Restarter::Systemd { unit } => {
                let host = Namespaces::of(Path::new("/proc"), 1)?;
                let args = ["restart".to_owned(), unit.clone()];
                let shown = format!("systemctl restart {unit} (in PID 1's namespaces)");
                run(host.command("systemctl", &args), shown).await
            }
            Restarter::Command(command) => run_command(command).await,
            Restarter::Signal { sockets } => {
                stop_socket_owner(Path::new("/proc"), sockets, stop_timeout).await
            }
            Restarter::Nothing => Ok(()),
        }
    }
}

/// SIGTERM to every process listening on `sockets`, then waits until each has exited (SIGKILL
/// after `stop_timeout`). Nobody listening is not an error: the supervisor may be starting it.
async fn stop_socket_owner(
    proc: &Path,
    sockets: &[PathBuf],
    stop_timeout: Duration,
) -> Result<(), RestartError> {
    let owners = socket_owner::find(proc, sockets)?;
    if owners.is_empty() {
        tracing::warn!(
            sockets = ?sockets,
            "no process listens on containerd's socket; waiting for its supervisor to start it"
        );
        return Ok(());
    }
    for pid in owners {
        tracing::info!(
            pid,
            "stopping containerd (SIGTERM); its supervisor restarts it"
        );
        signal(pid, libc::SIGTERM)?;
        let deadline = tokio::time::Instant::now() + stop_timeout;
        while alive(proc, pid) {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(pid, timeout = ?stop_timeout, "containerd did not stop; SIGKILL");
                signal(pid, libc::SIGKILL)?;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

fn signal(pid: u32, signal: libc::c_int) -> Result<(), RestartError> {
    let target = libc::pid_t::try_from(pid).map_err(|_| RestartError::Signal {
        pid,
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: kill(2) takes no pointers; `target` is a process found serving containerd's socket.
    if unsafe { libc::kill(target, signal) } == 0 {
        return Ok(());
    }
    let source = std::io::Error::last_os_error();
    if source.raw_os_error() == Some(libc::ESRCH) {
        return Ok(()); // already gone
    }
    Err(RestartError::Signal { pid, source })
}

/// Whether `pid` still runs (a zombie waiting for its supervisor's wait() has stopped).
fn alive(proc: &Path, pid: u32) -> bool {
    std::fs::read_to_string(proc.join(pid.to_string()).join("status"))
        .map(|status| {
            !status
                .lines()
                .any(|line| line.starts_with("State:") && line.contains('Z'))
        })
        .unwrap_or(false)
}

#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("entering the host's namespaces: {0}")]
    HostNamespaces(#[from] HostNamespaceError),
    #[error("finding the process serving containerd's socket: {0}")]
    FindOwner(#[from] socket_owner::SocketOwnerError),
    #[error("could not signal containerd (pid {pid}): {source}")]
    Signal { pid: u32, source: std::io::Error },
    #[error("could not start `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("containerd did not come back within {timeout:?}: {last}")]
    NotBack { timeout: Duration, last: String },
}

/// Runs the restart command (nothing when it is empty).
pub async fn run_command(command: &[String]) -> Result<(), RestartError> {
    let Some((program, args)) = command.split_first() else {
        return Ok(());
    };
    let mut child = Command::new(program);
    child.args(args);
    run(child, command.join(" ")).await
}

async fn run(mut command: Command, shown: String) -> Result<(), RestartError> {
    tracing::info!(command = %shown, "restarting containerd");
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| RestartError::Spawn {
            command: shown.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(RestartError::Failed {
            command: shown,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// What containerd must show before the wait is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Answering, with the named runtime loaded.
    RuntimeLoaded(&'static str),
    /// Answering, without the named runtime.
    RuntimeGone(&'static str),
    /// Answering at all.
    Answering,
}

impl Expect {
    fn holds(self, status: &CriStatus) -> bool {
        match self {
            Expect::RuntimeLoaded(name) => status.has_runtime(name),
            Expect::RuntimeGone(name) => !status.has_runtime(name),
            Expect::Answering => true,
        }
    }
}

/// Polls CRI `Status` on `socket` until `expect` holds or `timeout` passes.
pub async fn wait_for(
    socket: &Path,
    expect: Expect,
    timeout: Duration,
) -> Result<CriStatus, RestartError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let per_call = Duration::from_secs(5).min(timeout);
    loop {
        let last = match cri_probe::status(socket, per_call).await {
            Ok(status) if expect.holds(&status) => return Ok(status),
            Ok(status) => format!(
                "CRI answers but {expect:?} does not hold (handlers {:?})",
                status.handlers
            ),
            Err(err) => describe(&err),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(RestartError::NotBack { timeout, last });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn describe(err: &ProbeError) -> String {
    match err {
        ProbeError::Connect { socket, .. } => {
            format!("{} does not accept connections", socket.display())
        }
        other => other.to_string(),
    }
}

/// containerd's socket as seen from this container.
pub fn socket_in_container(host: &crate::host::HostRoot, host_socket: &Path) -> PathBuf {
    host.path(host_socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_a_shell() {
        assert_eq!(
            parse_command("sh -c 'kill $(cat /run/x.pid)'"),
            Some(vec![
                "sh".into(),
                "-c".into(),
                "kill $(cat /run/x.pid)".into()
            ])
        );
        assert_eq!(parse_command("none"), Some(vec![]));
        assert_eq!(parse_command("echo 'unbalanced"), None);
    }

    #[tokio::test]
    async fn a_failing_command_reports_its_stderr() {
        let cmd: Vec<String> = ["sh", "-c", "echo nope >&2; exit 3"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let err = run_command(&cmd).await.expect_err("fails");
        assert!(err.to_string().contains("nope"), "{err}");
        run_command(&[]).await.expect("empty command does nothing");
        let err = run_command(&["/nonexistent/restart".to_owned()])
            .await
            .expect_err("spawn");
        assert!(matches!(err, RestartError::Spawn { .. }));
    }

    #[tokio::test]
    async fn waiting_on_a_dead_socket_times_out_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = wait_for(
            &dir.path().join("c.sock"),
            Expect::Answering,
            Duration::from_millis(600),
        )
        .await
        .expect_err("timeout");
        assert!(
            err.to_string().contains("does not accept connections"),
            "{err}"
        );
    }
}
