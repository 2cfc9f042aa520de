//! A native container: a container whose entrypoint is not Wasm (the pod's pause sandbox, a
//! sidecar), run as an ordinary Linux container by the `runc` binary with its own cgroup and
//! namespaces, its stdio on containerd's FIFOs, and exec for additional processes.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;
use runc::asynchronous::Io;
use runc::options::{CreateOpts, DeleteOpts, ExecOpts, GlobalOpts, KillOpts};

use crate::error::ShimError;
use crate::io::{StdioPaths, StdioTarget};
use crate::options::RuntimeOptions;
use crate::reaper::{Exits, ReapedSpawner};

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
pub struct NativeContainer {
    pub id: String,
    bundle: PathBuf,
    runc: runc::Runc,
    binary: String,
    root: PathBuf,
    spawner: ReapedSpawner,
    exits: Exits,
}

impl NativeContainer {
    pub fn new(
        id: &str,
        bundle: &Path,
        options: &RuntimeOptions,
        namespace: &str,
        exits: Exits,
    ) -> Result<Self, ShimError> {
        let root = options.runc_root(namespace);
        std::fs::create_dir_all(&root).map_err(|e| {
            ShimError::Other(format!("creating runc's root {}: {e}", root.display()))
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
            .map_err(|e| ShimError::Other(format!("configuring runc: {e}")))?;
        Ok(NativeContainer {
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
    fn runc_error(&self, what: &str, err: runc::error::Error) -> ShimError {
        let log = std::fs::read_to_string(self.bundle.join("runc.log")).unwrap_or_default();
        let last = log
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["level"] == "error")
            .and_then(|v| v["msg"].as_str().map(str::to_string));
        ShimError::Other(match last {
            Some(msg) => format!("runc {what} {}: {msg}", self.id),
            None => format!("runc {what} {}: {err}", self.id),
        })
    }

    /// `runc create`: the container's init process exists, stopped before the user's program.
    /// Returns its pid; its exit is awaited with [`Self::wait_init`].
    pub async fn create(&self, stdio: &StdioPaths) -> Result<i32, ShimError> {
        let io = Arc::new(FifoIo::open(stdio)?);
        let pid_file = self.bundle.join("init.pid");
        let opts = CreateOpts::new().io(io).pid_file(&pid_file);
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

    pub async fn kill(&self, signal: u32, all: bool) -> Result<(), ShimError> {
        let opts = KillOpts::new().all(all);
        self.runc
            .kill(&self.id, signal, Some(&opts))
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

    /// `runc exec --detach`: starts `process` (an OCI process, JSON) in the container.
    pub async fn exec(
        &self,
        exec_id: &str,
        process: &oci_spec::runtime::Process,
        stdio: &StdioPaths,
    ) -> Result<i32, ShimError> {
        let io = Arc::new(FifoIo::open(stdio)?);
        let pid_file = self.bundle.join(format!("exec-{exec_id}.pid"));
        let opts = ExecOpts::new().io(io).pid_file(&pid_file).detach(true);
        self.runc
            .exec(&self.id, process, Some(&opts))
            .await
            .map_err(|e| self.runc_error("exec", e))?;
        let pid = read_pid(&pid_file);
        let _ = std::fs::remove_file(&pid_file);
        pid
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
            .map_err(|e| ShimError::Other(format!("runc events {}: {e}", self.id)))?;
        if !status.success() {
            return Err(ShimError::Other(format!(
                "runc events {}: {}",
                self.id,
                stderr.trim()
            )));
        }
        parse_stats(&stdout)
            .ok_or_else(|| ShimError::Other(format!("runc events {}: unreadable stats", self.id)))
    }
}

fn read_pid(path: &Path) -> Result<i32, ShimError> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| ShimError::Other(format!("runc wrote no pid to {}", path.display())))
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
