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
use crate::host::stdio::{self, StdioPaths, StdioTarget};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("making the console socket: {0}")]
    Socket(std::io::Error),
    #[error("runc did not connect to the console socket: {0}")]
    Accept(std::io::Error),
    #[error("receiving the terminal from runc: {0}")]
    Receive(String),
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
        Ok(Console::new(File::from(master)))
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
    /// Becomes true once the copy of the terminal's output into the stdout FIFO has ended.
    copied: tokio::sync::watch::Receiver<bool>,
}

/// What a terminal process's exit waits for before it is reported: its output copied into the
/// stdout FIFO and taken from there by containerd's reader ([`stdio::drained`], as a Wasm
/// container's exit waits), at most [`stdio::DRAIN_LIMIT`]. containerd's clients close their
/// reader when they delete a process they saw exit (`cio` `Cancel`), and what they had not read
/// by then was lost (`ctr task exec -t ... tty` showed nothing, 1 run in 20 on a loaded node).
pub struct OutputRead {
    copied: tokio::sync::watch::Receiver<bool>,
    stdio: StdioPaths,
}

impl OutputRead {
    pub async fn read(mut self) {
        let taken = async {
            let _ = self.copied.wait_for(|done| *done).await;
            stdio::drained(&self.stdio, stdio::DRAIN_LIMIT).await;
        };
        let _ = tokio::time::timeout(stdio::DRAIN_LIMIT, taken).await;
    }
}

impl Console {
    fn new(master: File) -> Console {
        // Until `connect` starts a copy, there is no output to wait for.
        Console {
            master,
            copied: tokio::sync::watch::channel(true).1,
        }
    }

    /// What the process's exit waits for, the output going to `stdio`.
    pub fn waiter(&self, stdio: &StdioPaths) -> OutputRead {
        OutputRead {
            copied: self.copied.clone(),
            stdio: stdio.clone(),
        }
    }

    /// Starts copying between the terminal and the process's streams, on threads of their own
    /// (the copies block; they end with the terminal and with containerd's stdin): from the
    /// `stdin` FIFO, and into `stdout`, opened by the caller ([`stdio::open_output`], which
    /// waits for containerd's reader before the process's Start answers).
    pub fn connect(
        &mut self,
        stdin: &StdioTarget,
        stdout: Option<File>,
    ) -> Result<(), ConsoleError> {
        if let StdioTarget::Path(path) = stdin {
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
        if let Some(mut output) = stdout {
            let mut master = self.master.try_clone().map_err(ConsoleError::Socket)?;
            let (copied, copying) = tokio::sync::watch::channel(false);
            self.copied = copying;
            std::thread::spawn(move || {
                let _ = copy(&mut master, &mut output);
                copied.send_replace(true);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;
    use std::os::unix::fs::OpenOptionsExt;
    use std::time::Duration;

    /// A process that writes and exits before the stdout FIFO's reader has opened it (as `tty`
    /// under `ctr task exec -t` on a loaded node, whose reader opens on a goroutine): the stdout
    /// FIFO opens only once the reader is there, the exit waits until the output is read, and
    /// the reader, 300 ms late, gets all of it. (Opened read-write at once, and the exit
    /// reported at once, the output went into the pipe and away with it.)
    #[test]
    fn output_written_before_the_reader_opens_reaches_it() {
        let dir = tempfile::tempdir().expect("dir");
        let fifo = dir.path().join("stdout");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let mut console = Console::new(File::from(pty.master));
        let stdio = StdioPaths::parse("", &fifo.to_string_lossy(), "").expect("stdio");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let opening = {
            let fifo = fifo.clone();
            runtime.spawn(async move {
                let opened = stdio::open_output("stdout", &fifo).await?;
                Ok::<_, crate::error::ShimError>(opened.file.into_std().await)
            })
        };
        let mut slave = File::from(pty.slave);
        slave
            .write_all(b"/dev/pts/9\n")
            .expect("the process writes");
        drop(slave);
        std::thread::sleep(Duration::from_millis(300));
        assert!(!opening.is_finished(), "connected without a reader");
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .expect("the reader opens");
        let output = runtime
            .block_on(opening)
            .expect("joins")
            .expect("the stdout FIFO opens");
        console
            .connect(&StdioTarget::None, Some(output))
            .expect("connects");
        // The output waits in the FIFO, unread: the exit must wait for it.
        std::thread::sleep(Duration::from_millis(200));
        let early = runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(100), console.waiter(&stdio).read()).await
        });
        assert!(
            early.is_err(),
            "the output counted as read before anyone read it"
        );
        let mut seen = Vec::new();
        let mut buffer = [0u8; 64];
        let started = std::time::Instant::now();
        while !seen.ends_with(b"\n") && started.elapsed() < Duration::from_secs(5) {
            match reader.read(&mut buffer) {
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
                Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                Err(err) => panic!("read: {err}"),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(String::from_utf8_lossy(&seen).trim_end(), "/dev/pts/9");
        let read = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), console.waiter(&stdio).read()).await
        });
        assert!(read.is_ok(), "read, and still waited for");
    }
}
