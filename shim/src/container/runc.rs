//! The `runc` binary, driven for one native container (the pod's pause sandbox, a sidecar): its
//! own cgroup and namespaces from the spec, stdio on containerd's FIFOs or a terminal through a
//! console socket, and runc's own words in every error (from its JSON log).

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;
use runc::asynchronous::Io;
use runc::options::{CreateOpts, DeleteOpts, ExecOpts, GlobalOpts, KillOpts};

use crate::containerd::options::RuntimeOptions;
use crate::error::ShimError;
use crate::host::reaper::{Exits, ReapedSpawner};
use crate::host::stdio::{StdioPaths, StdioTarget};
use crate::signal::Signal;

#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    #[error("creating runc's root {path}: {source}")]
    Root {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuring runc: {0}")]
    Configure(String),
    /// runc failed; `message` is runc's own error from its log when it wrote one.
    #[error("runc {action} {id}: {message}")]
    Failed {
        action: &'static str,
        id: String,
        message: String,
    },
    #[error("runc wrote no pid to {0}")]
    NoPid(PathBuf),
    #[error("runc events {id}: unreadable stats")]
    Stats { id: String },
}

/// The stdio of a runc process: the FIFOs containerd made, handed to runc's child as its fds.
#[derive(Debug)]
pub struct FifoIo {
    stdin: Option<File>,
    stdout: Option<File>,
    stderr: Option<File>,
}

impl FifoIo {
    pub fn open(paths: &StdioPaths) -> Result<Self, ShimError> {
        let writer =
            |stream: &'static str, target: &StdioTarget| -> Result<Option<File>, ShimError> {
                match target {
                    StdioTarget::None => Ok(None),
                    // Read-write, as runc's shim opens them: never waits for, or breaks without, a reader.
                    StdioTarget::Path(path) => std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(path)
                        .map(Some)
                        .map_err(|source| ShimError::Stdio {
                            stream,
                            path: path.display().to_string(),
                            source,
                        }),
                }
            };
        let stdin = match &paths.stdin {
            StdioTarget::None => None,
            StdioTarget::Path(path) => Some(open_fifo_reader(path)?),
        };
        Ok(FifoIo {
            stdin,
            stdout: writer("stdout", &paths.stdout)?,
            stderr: writer("stderr", &paths.stderr)?,
        })
    }
}

/// Opens a FIFO for reading without waiting for a writer, then makes it blocking for the child.
fn open_fifo_reader(path: &Path) -> Result<File, ShimError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| ShimError::Stdio {
            stream: "stdin",
            path: path.display().to_string(),
            source,
        })?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: `fd` is a valid descriptor owned by `file`.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    Ok(file)
}

fn stdio_of(file: &Option<File>) -> std::io::Result<Stdio> {
    match file {
        Some(f) => Ok(Stdio::from(f.try_clone()?)),
        None => Ok(Stdio::null()),
    }
}

#[async_trait]
impl Io for FifoIo {
    async fn set(&self, cmd: &mut runc::Command) -> std::io::Result<()> {
        cmd.stdin(stdio_of(&self.stdin)?);
        cmd.stdout(stdio_of(&self.stdout)?);
        cmd.stderr(stdio_of(&self.stderr)?);
        Ok(())
    }

    async fn close_after_start(&self) {}
}

/// runc, configured for one container: its root, log file and cgroup driver.
pub struct Runc {
    pub id: String,
    bundle: PathBuf,
    runc: runc::Runc,
    binary: String,
    root: PathBuf,
    spawner: ReapedSpawner,
    exits: Exits,
}

impl Runc {
    pub fn new(
        id: &str,
        bundle: &Path,
        options: &RuntimeOptions,
        namespace: &str,
        exits: Exits,
    ) -> Result<Self, ShimError> {
        let root = options.runc_root(namespace);
        std::fs::create_dir_all(&root).map_err(|source| RuncError::Root {
            path: root.clone(),
            source,
        })?;
        let spawner = ReapedSpawner::new(exits.clone());
        let mut global = GlobalOpts::new()
            .command(options.runc_binary())
            .root(&root)
            .log(bundle.join("runc.log"))
            .log_json()
            .systemd_cgroup(options.systemd_cgroup);
        global.custom_spawner(Arc::new(spawner.clone()));
        let runc = global
            .build()
            .map_err(|e| RuncError::Configure(e.to_string()))?;
        Ok(Runc {
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            runc,
            binary: options.runc_binary(),
            root,
            spawner,
            exits,
        })
    }

    /// What runc said about its last failure, from its JSON log.
    fn runc_error(&self, action: &'static str, err: runc::error::Error) -> ShimError {
        let log = std::fs::read_to_string(self.bundle.join("runc.log")).unwrap_or_default();
        let last = log
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["level"] == "error")
            .and_then(|v| v["msg"].as_str().map(str::to_string));
        RuncError::Failed {
            action,
            id: self.id.clone(),
            message: last.unwrap_or_else(|| err.to_string()),
        }
        .into()
    }

    /// `runc create`: the container's init process exists, stopped before the user's program.
    /// Returns its pid; its exit is awaited with [`Self::wait_pid`]. With a `console_socket`,
    /// runc sends the terminal's master there instead of using the FIFOs.
    pub async fn create(
        &self,
        stdio: &StdioPaths,
        console_socket: Option<&Path>,
    ) -> Result<i32, ShimError> {
        let pid_file = self.bundle.join("init.pid");
        let mut opts = CreateOpts::new().pid_file(&pid_file);
        opts = match console_socket {
            Some(socket) => opts.console_socket(socket),
            None => opts.io(Arc::new(FifoIo::open(stdio)?)),
        };
        self.runc
            .create(&self.id, &self.bundle, Some(&opts))
            .await
            .map_err(|e| self.runc_error("create", e))?;
        read_pid(&pid_file)
    }

    pub async fn start(&self) -> Result<(), ShimError> {
        self.runc
            .start(&self.id)
            .await
            .map(|_| ())
            .map_err(|e| self.runc_error("start", e))
    }

    /// The exit code of a process of this container (init or exec).
    pub async fn wait_pid(&self, pid: i32) -> i32 {
        self.exits.wait_for(pid).await.unwrap_or(255)
    }

    pub async fn kill(&self, signal: Signal, all: bool) -> Result<(), ShimError> {
        let opts = KillOpts::new().all(all);
        self.runc
            .kill(&self.id, signal.number(), Some(&opts))
            .await
            .map_err(|e| self.runc_error("kill", e))
    }

    pub async fn delete(&self) -> Result<(), ShimError> {
        let opts = DeleteOpts::new().force(true);
        self.runc
            .delete(&self.id, Some(&opts))
            .await
            .map_err(|e| self.runc_error("delete", e))
    }

    pub async fn pids(&self) -> Result<Vec<usize>, ShimError> {
        self.runc
            .ps(&self.id)
            .await
            .map_err(|e| self.runc_error("ps", e))
    }

    /// `runc exec --detach`: starts `process` (an OCI process, JSON) in the container, on the
    /// FIFOs or, with a `console_socket`, on a terminal whose master runc sends there.
    pub async fn exec(
        &self,
        exec_id: &str,
        process: &oci_spec::runtime::Process,
        stdio: &StdioPaths,
        console_socket: Option<&Path>,
    ) -> Result<i32, ShimError> {
        let pid_file = self.bundle.join(format!("exec-{exec_id}.pid"));
        let mut opts = ExecOpts::new().pid_file(&pid_file).detach(true);
        opts = match console_socket {
            Some(socket) => opts.console_socket(socket),
            None => opts.io(Arc::new(FifoIo::open(stdio)?)),
        };
        self.runc
            .exec(&self.id, process, Some(&opts))
            .await
            .map_err(|e| self.runc_error("exec", e))?;
        let pid = read_pid(&pid_file);
        let _ = std::fs::remove_file(&pid_file);
        pid
    }

    pub async fn pause(&self) -> Result<(), ShimError> {
        self.runc
            .pause(&self.id)
            .await
            .map_err(|e| self.runc_error("pause", e))
    }

    pub async fn resume(&self) -> Result<(), ShimError> {
        self.runc
            .resume(&self.id)
            .await
            .map_err(|e| self.runc_error("resume", e))
    }

    /// `runc update --resources`: new CPU and memory limits for the container's cgroup.
    pub async fn update(
        &self,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<(), ShimError> {
        self.runc
            .update(&self.id, resources)
            .await
            .map_err(|e| self.runc_error("update", e))
    }

    /// CPU (ns) and memory (bytes) of the container's cgroup, from `runc events --stats`.
    pub async fn usage(&self) -> Result<(u64, u64), ShimError> {
        let mut cmd = runc::Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .args(["events", "--stats", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let (status, _, stdout, stderr) = runc::asynchronous::Spawner::execute(&self.spawner, cmd)
            .await
            .map_err(|e| RuncError::Failed {
                action: "events",
                id: self.id.clone(),
                message: e.to_string(),
            })?;
        if !status.success() {
            return Err(RuncError::Failed {
                action: "events",
                id: self.id.clone(),
                message: stderr.trim().to_string(),
            }
            .into());
        }
        parse_stats(&stdout).ok_or_else(|| {
            RuncError::Stats {
                id: self.id.clone(),
            }
            .into()
        })
    }
}

fn read_pid(path: &Path) -> Result<i32, ShimError> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| RuncError::NoPid(path.to_path_buf()).into())
}

/// `(cpu ns, memory bytes)` from runc's stats event JSON.
pub fn parse_stats(json: &str) -> Option<(u64, u64)> {
    let event: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    let data = &event["data"];
    let cpu = data["cpu"]["usage"]["total"].as_u64().unwrap_or(0);
    let memory = data["memory"]["usage"]["usage"].as_u64().unwrap_or(0);
    Some((cpu, memory))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_come_from_runcs_event() {
        let json = r#"{"type":"stats","id":"c1","data":{"cpu":{"usage":{"total":1234,"kernel":1,"user":2}},"memory":{"usage":{"limit":9,"usage":4096,"max":5000,"failcnt":0}}}}"#;
        assert_eq!(parse_stats(json), Some((1234, 4096)));
        assert_eq!(parse_stats("not json"), None);
    }
}
