//! The container's stdio as containerd hands it over: FIFO paths (what `ctr` and CRI use), or
//! `file://` URIs, or nothing. The guest's output streams are wasmtime-wasi async streams on
//! top of them, so `ctr run` and `kubectl logs` show what the guest prints.

use std::path::{Path, PathBuf};

use std::os::unix::fs::OpenOptionsExt;

use tokio::io::AsyncWriteExt;
use wasmtime_wasi::cli::{AsyncStdinStream, AsyncStdoutStream};

use crate::error::ShimError;

/// How much a guest may write ahead of the reader before its write blocks.
const WRITE_BUDGET: usize = 64 * 1024;

/// Where one of the container's streams goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdioTarget {
    None,
    /// A FIFO or plain file path.
    Path(PathBuf),
}

impl StdioTarget {
    /// Parses what containerd puts in CreateTaskRequest's stdin/stdout/stderr.
    pub fn parse(stream: &'static str, value: &str) -> Result<Self, ShimError> {
        if value.is_empty() {
            return Ok(StdioTarget::None);
        }
        if let Some(path) = value.strip_prefix("file://") {
            return Ok(StdioTarget::Path(PathBuf::from(path)));
        }
        if value.contains("://") {
            return Err(ShimError::InvalidArgument(format!(
                "{stream} {value}: only FIFOs and file:// URIs are supported for Wasm containers"
            )));
        }
        Ok(StdioTarget::Path(PathBuf::from(value)))
    }
}

#[derive(Debug, Clone)]
pub struct StdioPaths {
    pub stdin: StdioTarget,
    pub stdout: StdioTarget,
    pub stderr: StdioTarget,
}

impl StdioPaths {
    pub fn parse(stdin: &str, stdout: &str, stderr: &str) -> Result<Self, ShimError> {
        Ok(StdioPaths {
            stdin: StdioTarget::parse("stdin", stdin)?,
            stdout: StdioTarget::parse("stdout", stdout)?,
            stderr: StdioTarget::parse("stderr", stderr)?,
        })
    }
}

/// The opened streams, ready to hand to a WASI context.
pub struct GuestStdio {
    pub stdin: Option<AsyncStdinStream>,
    pub stdout: Option<AsyncStdoutStream>,
    pub stderr: Option<AsyncStdoutStream>,
    /// The shim's own handle on stderr, held until the guest's end is written: reopening the
    /// FIFO later would wait for a reader that has already seen EOF and gone.
    pub stderr_tail: Option<tokio::fs::File>,
}

impl GuestStdio {
    pub async fn open(paths: &StdioPaths) -> Result<Self, ShimError> {
        let stdin = match &paths.stdin {
            StdioTarget::None => None,
            StdioTarget::Path(path) => Some(AsyncStdinStream::new(open_reader(path)?)),
        };
        let stdout = match &paths.stdout {
            StdioTarget::None => None,
            StdioTarget::Path(path) => Some(AsyncStdoutStream::new(
                WRITE_BUDGET,
                open_writer("stdout", path).await?,
            )),
        };
        let (stderr, stderr_tail) = match &paths.stderr {
            StdioTarget::None => (None, None),
            StdioTarget::Path(path) => {
                let file = open_writer("stderr", path).await?;
                let tail = file.try_clone().await.map_err(|source| ShimError::Stdio {
                    stream: "stderr",
                    path: path.display().to_string(),
                    source,
                })?;
                (Some(AsyncStdoutStream::new(WRITE_BUDGET, file)), Some(tail))
            }
        };
        Ok(GuestStdio {
            stdin,
            stdout,
            stderr,
            stderr_tail,
        })
    }
}

/// How long a container's end waits for containerd to take what is left in its output FIFOs.
pub const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits (at most `limit`) until containerd's reader has taken every byte written to the
/// container's output FIFOs, before the container's exit is reported. containerd's reader
/// opens its end in a goroutine, and task Delete cancels an open that has not returned: on a
/// loaded node the guest could print, exit and be deleted before that goroutine ran again, and
/// the output was dropped ("reading from a closed fifo" in containerd's log). An empty pipe
/// means the reader has the bytes.
pub async fn drained(paths: &StdioPaths, limit: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    for target in [&paths.stdout, &paths.stderr] {
        if let StdioTarget::Path(path) = target {
            wait_drained(path, deadline).await;
        }
    }
}

async fn wait_drained(path: &Path, deadline: tokio::time::Instant) {
    let is_fifo = std::fs::metadata(path)
        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()));
    if !is_fifo {
        return;
    }
    // Read-write, so the open never waits and the pipe (and its count) stays while we look.
    let Ok(pipe) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    else {
        return;
    };
    loop {
        let mut unread: libc::c_int = 0;
        // SAFETY: FIONREAD stores the number of unread bytes of the pipe into `unread`.
        let asked = unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&pipe),
                libc::FIONREAD,
                &mut unread,
            )
        };
        if asked != 0 || unread == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(path = %path.display(), unread, "containerd did not read the container's last output in time");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// How long the shim waits for containerd to open the reading end of an output FIFO.
const READER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens a FIFO or file for writing.
///
/// A FIFO is opened twice. First write-only, which waits until containerd's reader has it open:
/// a pipe whose last descriptor closes while no reader holds it drops what is in it, so a guest
/// that prints and exits before containerd opened its end would lose its output. Then
/// read-write, the descriptor that is kept, as containerd's runc shim does: a reader that goes
/// away (`ctr run -d` exits) does not turn the guest's next write into a broken pipe.
pub async fn open_writer(stream: &'static str, path: &Path) -> Result<tokio::fs::File, ShimError> {
    open_output(stream, path).await.map(|opened| opened.file)
}

/// A stream opened by [`open_output`], and whether it is a FIFO (else a regular file).
pub struct OpenedOutput {
    pub file: tokio::fs::File,
    pub is_fifo: bool,
}

/// [`open_writer`], saying whether `path` turned out to be a FIFO.
pub async fn open_output(stream: &'static str, path: &Path) -> Result<OpenedOutput, ShimError> {
    let error = |source| ShimError::Stdio {
        stream,
        path: path.display().to_string(),
        source,
    };
    let is_fifo = tokio::fs::metadata(path)
        .await
        .map(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()))
        .map_err(error)?;
    let reader_present = if is_fifo {
        Some(wait_for_reader(path).await)
    } else {
        None
    };
    let file = tokio::fs::OpenOptions::new()
        .read(is_fifo)
        .write(true)
        .append(true)
        .create(false)
        .open(path)
        .await
        .map_err(error)?;
    drop(reader_present);
    Ok(OpenedOutput { file, is_fifo })
}

/// Waits (cancellably) until a reader has the FIFO at `path` open: a non-blocking write-only
/// open fails with ENXIO until then. Gives up after [`READER_WAIT`]; the descriptor is kept by
/// the caller until its own is open.
async fn wait_for_reader(path: &Path) -> Option<std::fs::File> {
    let deadline = tokio::time::Instant::now() + READER_WAIT;
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(file) => return Some(file),
            Err(err) if err.raw_os_error() == Some(libc::ENXIO) => {
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!(path = %path.display(), "no reader opened the output FIFO in time");
                    return None;
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            Err(_) => return None,
        }
    }
}

fn open_reader(
    path: &Path,
) -> Result<impl tokio::io::AsyncRead + Send + Sync + Unpin + 'static, ShimError> {
    tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(path)
        .map_err(|source| ShimError::Stdio {
            stream: "stdin",
            path: path.display().to_string(),
            source,
        })
}

/// Writes one line to the container's stderr through the shim's own handle: how a trap's
/// message reaches `ctr` and the container log after the guest is gone.
pub async fn write_line(tail: &mut tokio::fs::File, line: &str) {
    let written = async {
        tail.write_all(format!("{line}\n").as_bytes()).await?;
        tail.flush().await
    };
    if let Err(err) = written.await {
        tracing::warn!(%err, "cannot write the exit message to stderr");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_containerd_stdio_forms() {
        assert_eq!(
            StdioTarget::parse("stdout", "").expect("empty"),
            StdioTarget::None
        );
        assert_eq!(
            StdioTarget::parse("stdout", "/run/fifo/1-stdout").expect("fifo"),
            StdioTarget::Path("/run/fifo/1-stdout".into())
        );
        assert_eq!(
            StdioTarget::parse("stdout", "file:///var/log/c.log").expect("file"),
            StdioTarget::Path("/var/log/c.log".into())
        );
        let err = StdioTarget::parse("stdout", "binary:///usr/bin/logger").expect_err("binary");
        assert!(
            err.to_string().contains("only FIFOs and file:// URIs"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn guest_output_reaches_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        std::fs::write(&out, "").expect("create");
        let paths = StdioPaths::parse("", &format!("file://{}", out.display()), "").expect("parse");
        let opened = GuestStdio::open(&paths).await.expect("open");
        assert!(opened.stdout.is_some() && opened.stderr.is_none() && opened.stdin.is_none());
        let mut writer = open_writer("stdout", &out).await.expect("open");
        write_line(&mut writer, "hello").await;
        assert_eq!(std::fs::read_to_string(&out).expect("read"), "hello\n");
    }
}
