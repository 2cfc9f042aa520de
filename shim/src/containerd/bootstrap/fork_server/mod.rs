//! The fork server: one long-lived process per containerd (and per shim binary) from which
//! `start` has each pod's serving process forked instead of executing the binary again.
//!
//! Why: an executed shim relocates its binary's pointers (`.data.rel.ro`, the GOT) into private
//! pages: about 1.2 MiB that every serving process paid for itself. Forked from one process that
//! did it once, every serving process shares those pages with it and with each other, read-only
//! for good. The measurements are in `docs/benchmarks.md` ("Memory of idle pods").
//!
//! How:
//! - `start` connects to the server's socket (beside the pods' sockets, named from containerd's
//!   address and the binary's identity, so a replaced binary gets a server of its own) and sends
//!   a [`ForkRequest`](request::ForkRequest): the serving process's command line, environment,
//!   bundle, and its listener and stdout/stderr pipes as descriptors. The server forks; the
//!   child sets all that up as an exec would have ([`child`]) and serves. `start` reads the
//!   ready line from the pipe as before; a child that fails says so on stderr, and the server
//!   tells `start` how it exited.
//! - When there is no server, `start` binds its socket and spawns one (`<binary> fork-server`,
//!   a session of its own, `/` as its directory). It exits once it has had no child for a
//!   second ([`server::LINGER`]).
//! - When anything in that fails, `start` executes the binary as before; `SPORE_FORK_SERVER=0`
//!   in containerd's environment makes it always do so.
//! - The server is single-threaded and stays so: only then is `fork` without `exec` sound.
//!
//! What it costs: every serving process of a node shares one address-space layout for the
//! binary (as Android's zygote children do), instead of one per process; the heap, stacks and
//! mappings made after the fork are still laid out per process.

mod child;
pub mod request;
mod server;

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use containerd_shim::Flags;

use crate::containerd::socket::{self, Bound, SocketError};
use request::{ForkRequest, RequestError};

/// The action word containerd never sends: `<binary> -address A fork-server`.
pub const ACTION: &str = "fork-server";
/// Set to `0`, `off` or `false` in the shim's environment to execute every serving process.
pub const FORK_SERVER_ENV: &str = "SPORE_FORK_SERVER";
/// The fork server's name in `ps` (its `comm`).
const SERVER_NAME: &std::ffi::CStr = c"spore-forksrv";
/// Bytes of command line the server is started with beyond its own, so that a child can show
/// its serving command line in their place (`crate::host::process_title`).
const TITLE_ROOM: usize = 4096;
/// How long `start` waits for the server's answer to a request.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ForkServerError {
    #[error("finding the shim's own binary: {0}")]
    OwnBinary(std::io::Error),
    #[error("finding the bundle (the current directory): {0}")]
    Bundle(std::io::Error),
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("starting the fork server: {0}")]
    Spawn(std::io::Error),
    #[error("connecting to the fork server at {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("the fork server did not fork: {0}")]
    Refused(String),
    #[error("making the serving process's output pipes: {0}")]
    Pipe(nix::Error),
}

/// Set in the environment of a serving process that `start` executed because the fork server
/// could not fork it; the value is why. The process says so in its log: nothing else would show
/// it, but its memory (the binary's relocated pages are its own, about 1 MiB).
pub const FALLBACK_ENV: &str = "SPORE_FORK_FALLBACK";

/// Whether `start` should ask a fork server (the default) rather than execute the binary.
pub fn wanted() -> bool {
    !matches!(
        std::env::var(FORK_SERVER_ENV).as_deref().map(str::trim),
        Ok("0" | "off" | "false")
    )
}

/// The fork server's address for the containerd at `containerd_address` and this binary.
pub fn address(containerd_address: &str) -> Result<String, ForkServerError> {
    let exe = std::fs::metadata("/proc/self/exe").map_err(ForkServerError::OwnBinary)?;
    let identity = format!(
        "spore-fork-server:{}:{}:{}:{}.{}",
        exe.dev(),
        exe.ino(),
        exe.size(),
        exe.mtime(),
        exe.mtime_nsec()
    );
    Ok(socket::address(containerd_address, "", &identity))
}

/// A serving process the fork server made for `start`.
pub struct Forked {
    /// The connection on which the server says how the process exited, should it fail.
    answers: BufReader<UnixStream>,
}

impl Forked {
    /// How the process exited, as the server says (waits up to [`ANSWER_LIMIT`]).
    pub fn exit_status(mut self) -> Option<String> {
        let mut line = String::new();
        self.answers.read_line(&mut line).ok()?;
        line.trim().strip_prefix("exited ").map(str::to_owned)
    }
}

/// Has the fork server fork the serving process `args` (program first) with `env`, in the
/// current directory, listening on `listener`, its stdout and stderr on the given pipes.
pub fn fork_serving(
    flags: &Flags,
    args: Vec<String>,
    env: Vec<(String, String)>,
    listener: &UnixListener,
    stdout: &OwnedFd,
    stderr: &OwnedFd,
) -> Result<Forked, ForkServerError> {
    if crate::faults::fork_refused() {
        return Err(ForkServerError::Refused(
            "fault injected by SPORE_FAULT=fork-refused".into(),
        ));
    }
    let address = address(&flags.address)?;
    let path = socket::path_of(&address)?;
    let stream = match UnixStream::connect(path) {
        Ok(stream) => stream,
        Err(_) => {
            start_server(flags, &address)?;
            UnixStream::connect(path).map_err(|source| ForkServerError::Connect {
                path: path.display().to_string(),
                source,
            })?
        }
    };
    let cwd = std::env::current_dir().map_err(ForkServerError::Bundle)?;
    let request = ForkRequest {
        args,
        env,
        cwd: cwd.to_string_lossy().into_owned(),
    };
    request.send(
        &stream,
        [listener.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()],
    )?;
    let _ = stream.set_read_timeout(Some(ANSWER_LIMIT));
    let mut answers = BufReader::new(stream);
    let mut line = String::new();
    answers
        .read_line(&mut line)
        .map_err(|e| ForkServerError::Refused(e.to_string()))?;
    match line.trim().strip_prefix("forked ").map(str::parse::<i32>) {
        Some(Ok(_pid)) => Ok(Forked { answers }),
        _ => Err(ForkServerError::Refused(if line.trim().is_empty() {
            "it closed the connection".into()
        } else {
            line.trim().to_owned()
        })),
    }
}

/// Binds the server's socket and spawns the server with it; another `start` may have done so
/// a moment before, which is as good.
fn start_server(flags: &Flags, address: &str) -> Result<(), ForkServerError> {
    let Bound::New(listener) = socket::bind(address)? else {
        return Ok(());
    };
    let binary = std::env::current_exe().map_err(ForkServerError::OwnBinary)?;
    let mut command = Command::new(binary);
    command
        .args(["-namespace", &flags.namespace, "-address", &flags.address])
        .arg(ACTION)
        // Room for a child's command line where it must be written over the server's own.
        .arg(" ".repeat(TITLE_ROOM))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Neither containerd's signals to `start` nor the end of its session reach it.
    socket::hand_over(&mut command, &listener, || {
        // SAFETY: setsid of the child itself, async-signal-safe.
        unsafe { libc::setsid() }
    });
    command.spawn().map_err(ForkServerError::Spawn).map(drop)
}

/// `<binary> -address A fork-server`: serves until idle. Runs single-threaded to the end.
pub fn run(flags: &Flags) -> ExitCode {
    crate::host::process_title::set_name(SERVER_NAME);
    let listener = match socket::take_inherited() {
        Ok(Some(listener)) => listener,
        Ok(None) | Err(_) => return ExitCode::FAILURE,
    };
    let Ok(address) = address(&flags.address) else {
        return ExitCode::FAILURE;
    };
    let Ok(path) = socket::path_of(&address) else {
        return ExitCode::FAILURE;
    };
    server::serve(listener, Path::new(path));
    ExitCode::SUCCESS
}
