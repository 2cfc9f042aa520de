//! Terminals of native processes (`kubectl exec -it` into a sidecar, a `tty: true` sidecar), as
//! containerd's runc shim does them: runc makes the pseudo-terminal and sends its master over a
//! console socket the shim listens on; the shim copies the stdin FIFO into the master and the
//! master's output into the stdout FIFO (a terminal merges stderr into it), and resizes the
//! terminal on ResizePty.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Becomes true once the terminal's output has all been read from the stdout FIFO by its
    /// reader (or nobody reads it, or 2 s passed): see [`OutputRead`].
    output_read: tokio::sync::watch::Receiver<bool>,
}

/// Waits until a process's terminal output has been read by the stdout FIFO's reader, at most
/// [`READER_WAIT`]. The process's exit is reported after this: containerd's clients close their
/// reader when they delete a process they saw exit (`cio` `Cancel`), and what they had not
/// read by then was lost (`ctr task exec -t ... tty` showed nothing, 1 run in 20 on a loaded
/// node). containerd's runc shim waits for its copy at Delete.
pub struct OutputRead(tokio::sync::watch::Receiver<bool>);

impl OutputRead {
    pub async fn read(mut self) {
        let _ = tokio::time::timeout(READER_WAIT, self.0.wait_for(|done| *done)).await;
    }
}

impl Console {
    fn new(master: File) -> Console {
        // Until `connect` starts a copy, there is no output to wait for.
        Console {
            master,
            output_read: tokio::sync::watch::channel(true).1,
        }
    }

    /// What the process's exit waits for.
    pub fn waiter(&self) -> OutputRead {
        OutputRead(self.output_read.clone())
    }

    /// Starts copying between the terminal and the process's FIFOs, on threads of their own
    /// (the copies block; they end with the terminal and with containerd's stdin).
    pub fn connect(&mut self, stdio: &StdioPaths) -> Result<(), ConsoleError> {
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
            // Before Start returns, as runc's shim does: see `open_once_read`.
            let (mut output, has_reader) =
                open_once_read(path, READER_WAIT).map_err(|source| ConsoleError::Stdio {
                    stream: "stdout",
                    path: path.clone(),
                    source,
                })?;
            let mut master = self.master.try_clone().map_err(ConsoleError::Socket)?;
            let (read, output_read) = tokio::sync::watch::channel(false);
            self.output_read = output_read;
            std::thread::spawn(move || {
                let _ = copy(&mut master, &mut output);
                if has_reader {
                    wait_until_read(&output, READER_WAIT);
                }
                read.send_replace(true);
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

/// How long the terminal's output waits for the stdout FIFO's reader before it is opened
/// without one (nobody reads it, as after `ctr run -d`).
const READER_WAIT: Duration = Duration::from_secs(2);

/// Opens the FIFO at `path` for writing once a reader has it open (or is opening it), polling
/// up to `wait`; after that, read-write, which never blocks and never fails for want of one.
///
/// Called before Start returns. containerd's clients open their end on a goroutine of its own
/// and cancel that open when the process is deleted before it completed (`cio` `Cancel`),
/// dropping the output. Opened read-write at once (as before), the shim never waited for that
/// reader: a fast process (`tty` under `ctr task exec -t`) could exit, be waited for and be
/// deleted before `ctr`'s open had completed, and `ctr` showed nothing (1 run in 30 under
/// load). Also, a FIFO's data lives only while a descriptor of it is open: output copied in
/// and closed before any reader opened it was lost. A writer opened while the reader is there
/// has its open completed before Start answers, and leaves its data to it. containerd's runc
/// shim blocks on the same open for as long as it takes.
/// Returns the file and whether a reader had it open.
fn open_once_read(path: &Path, wait: Duration) -> std::io::Result<(File, bool)> {
    if !std::fs::metadata(path)?.file_type().is_fifo() {
        return Ok((std::fs::OpenOptions::new().write(true).open(path)?, false));
    }
    let started = std::time::Instant::now();
    loop {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path);
        match opened {
            Ok(file) => {
                set_blocking(&file)?;
                return Ok((file, true));
            }
            Err(err) if err.raw_os_error() == Some(libc::ENXIO) && started.elapsed() < wait => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(err) if err.raw_os_error() == Some(libc::ENXIO) => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)?;
                return Ok((file, false));
            }
            Err(err) => return Err(err),
        }
    }
}

/// Waits until the pipe behind `output` holds no unread byte (`FIONREAD`), at most `wait`.
fn wait_until_read(output: &File, wait: Duration) {
    let started = std::time::Instant::now();
    while started.elapsed() < wait {
        let mut unread: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int to a valid pointer.
        let asked = unsafe { libc::ioctl(output.as_raw_fd(), libc::FIONREAD, &mut unread) };
        if asked < 0 || unread == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn set_blocking(file: &File) -> std::io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor `file` owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
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

    /// A process that writes and exits before the stdout FIFO's reader has opened it (as `tty`
    /// under `ctr task exec -t` on a loaded node, whose reader opens on a goroutine): connecting
    /// waits for the reader, and the reader, 300 ms late, gets all of it. (Opened read-write at
    /// once, the output went into the pipe and away with it when the copy closed.)
    #[test]
    fn output_written_before_the_reader_opens_reaches_it() {
        let dir = tempfile::tempdir().expect("dir");
        let fifo = dir.path().join("stdout");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let mut console = Console::new(File::from(pty.master));
        let stdio = StdioPaths::parse("", &fifo.to_string_lossy(), "").expect("stdio");
        let connecting = std::thread::spawn(move || console.connect(&stdio).map(|()| console));
        let mut slave = File::from(pty.slave);
        slave
            .write_all(b"/dev/pts/9\n")
            .expect("the process writes");
        drop(slave);
        std::thread::sleep(Duration::from_millis(300));
        assert!(!connecting.is_finished(), "connected without a reader");
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .expect("the reader opens");
        let console = connecting.join().expect("joins").expect("connects");
        // The output waits in the FIFO, unread: the exit must wait for it.
        std::thread::sleep(Duration::from_millis(200));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let early = runtime.block_on(async {
            tokio::time::timeout(Duration::from_millis(100), console.waiter().read()).await
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
            tokio::time::timeout(Duration::from_secs(1), console.waiter().read()).await
        });
        assert!(read.is_ok(), "read, and still waited for");
    }
}
