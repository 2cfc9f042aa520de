//! Terminals of native processes (`kubectl exec -it` into a sidecar, a `tty: true` sidecar), as
//! containerd's runc shim does them: runc makes the pseudo-terminal and sends its master over a
//! console socket the shim listens on; the shim copies the stdin FIFO into the master and the
//! master's output into the stdout FIFO (a terminal merges stderr into it), and resizes the
//! terminal on ResizePty.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use crate::container::WindowSize;
use crate::host::stdio::{StdioPaths, StdioTarget};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("making the console socket: {0}")]
    Socket(std::io::Error),
    #[error("runc did not connect to the console socket: {0}")]
    Accept(std::io::Error),
    #[error("receiving the terminal from runc: {0}")]
    Receive(String),
    #[error("opening {stream} ({path}) for the terminal: {source}")]
    Stdio {
        stream: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("resizing the terminal: {0}")]
    Resize(std::io::Error),
}

/// A socket runc sends a terminal's master to (`runc create/exec --console-socket`).
pub struct ConsoleSocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> Result<Self, ConsoleError> {
        let dir = tempfile::Builder::new()
            .prefix("spore-console-")
            .tempdir()
            .map_err(ConsoleError::Socket)?;
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).map_err(ConsoleError::Socket)?;
        Ok(ConsoleSocket {
            _dir: dir,
            path,
            listener,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The master runc sent (call once runc's create or exec has returned: the message is
    /// waiting in the socket by then).
    pub async fn receive(self) -> Result<Console, ConsoleError> {
        let (stream, _) = self.listener.accept().await.map_err(ConsoleError::Accept)?;
        let stream = stream.into_std().map_err(ConsoleError::Accept)?;
        stream
            .set_nonblocking(false)
            .map_err(ConsoleError::Accept)?;
        let master = tokio::task::spawn_blocking(move || receive_fd(&stream))
            .await
            .map_err(|e| ConsoleError::Receive(e.to_string()))??;
        Ok(Console {
            master: File::from(master),
        })
    }
}

fn receive_fd(stream: &std::os::unix::net::UnixStream) -> Result<OwnedFd, ConsoleError> {
    // runc sends the terminal's name along with its master.
    let mut name = [0u8; 4096];
    let (_, fds) = crate::host::fd_passing::receive(stream.as_raw_fd(), &mut name)
        .map_err(|e| ConsoleError::Receive(e.to_string()))?;
    fds.into_iter()
        .next()
        .ok_or_else(|| ConsoleError::Receive("runc sent no descriptor".into()))
}

/// A terminal's master, with its copies running.
pub struct Console {
    master: File,
}

impl Console {
    /// Starts copying between the terminal and the process's FIFOs, on threads of their own
    /// (the copies block; they end with the terminal and with containerd's stdin).
    pub fn connect(&self, stdio: &StdioPaths) -> Result<(), ConsoleError> {
        if let StdioTarget::Path(path) = &stdio.stdin {
            let mut master = self.master.try_clone().map_err(ConsoleError::Socket)?;
            let path = path.clone();
            // Opened on the copying thread: opening a FIFO for reading waits for its writer.
            std::thread::spawn(move || match std::fs::File::open(&path) {
                Ok(mut input) => {
                    let _ = copy(&mut input, &mut master);
                }
                Err(err) => {
                    tracing::warn!(path = %path.display(), %err, "cannot open the terminal's stdin")
                }
            });
        }
        if let StdioTarget::Path(path) = &stdio.stdout {
            // Read-write, as runc's shim opens it: never waits for, or breaks without, a reader.
            let mut output = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|source| ConsoleError::Stdio {
                    stream: "stdout",
                    path: path.clone(),
                    source,
                })?;
            let mut master = self.master.try_clone().map_err(ConsoleError::Socket)?;
            std::thread::spawn(move || {
                let _ = copy(&mut master, &mut output);
            });
        }
        Ok(())
    }

    pub fn resize(&self, size: WindowSize) -> Result<(), ConsoleError> {
        let winsize = libc::winsize {
            ws_row: size.height,
            ws_col: size.width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
        if unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &winsize) } < 0 {
            return Err(ConsoleError::Resize(std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// Copies until the end of input or an error (EIO from a master whose process is gone).
fn copy(from: &mut impl Read, to: &mut impl Write) -> std::io::Result<()> {
    let mut buffer = [0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        to.write_all(&buffer[..n])?;
    }
}
