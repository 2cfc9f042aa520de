//! The shim's ttrpc socket: where it is (containerd's `/run/containerd/s/<sha256>` scheme, one
//! per pod), made with containerd's modes by `start`, and handed to the serving process as an
//! inherited descriptor so that it listens before `start` answers containerd.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The environment variable that tells the serving process which descriptor is its listener.
pub const LISTEN_FD_ENV: &str = "SPORE_SHIM_LISTEN_FD";
/// The descriptor the listening socket has in the serving process.
pub const LISTEN_FD: RawFd = 3;
/// The mode containerd's own shims give the socket directory and the socket (`pkg/shim`).
const SOCKET_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("the shim socket address {0:?} is not a unix:// path")]
    NotUnix(String),
    #[error("creating the shim socket directory {dir}: {source}")]
    Dir { dir: PathBuf, source: io::Error },
    #[error("locking the shim socket directory {dir}: {source}")]
    Lock { dir: PathBuf, source: io::Error },
    #[error("listening on {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("setting the mode of {path}: {source}")]
    Mode { path: PathBuf, source: io::Error },
    #[error("removing the stale socket {path}: {source}")]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error("the listener handed over in {LISTEN_FD_ENV}={value:?} is not usable: {reason}")]
    Inherited { value: String, reason: String },
}

/// The address of the shim serving `grouping` (a pod's sandbox id, or a lone container's id) for
/// the containerd at `containerd_address` in `namespace`: containerd's own scheme.
pub fn address(containerd_address: &str, namespace: &str, grouping: &str) -> String {
    containerd_shim::socket_address(containerd_address, namespace, grouping)
}

/// The filesystem path of a `unix://` address.
pub fn path_of(address: &str) -> Result<&Path, SocketError> {
    address
        .strip_prefix("unix://")
        .map(Path::new)
        .ok_or_else(|| SocketError::NotUnix(address.to_string()))
}

/// What binding the shim's address found.
#[derive(Debug)]
pub enum Bound {
    /// A new listener: this `start` must spawn the serving process.
    New(UnixListener),
    /// A shim of the same pod already serves there.
    Serving,
}

/// Binds the shim's socket at `address`, creating its directory as containerd does. A socket
/// that answers belongs to the pod's running shim; one that does not is stale and replaced.
/// Binding is serialized across processes with a lock on the directory, so that two containers
/// of one pod starting at once get one shim.
pub fn bind(address: &str) -> Result<Bound, SocketError> {
    let path = path_of(address)?;
    let dir = path
        .parent()
        .ok_or_else(|| SocketError::NotUnix(address.to_string()))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(SOCKET_MODE)
        .create(dir)
        .map_err(|source| SocketError::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
    let _lock = DirLock::take(dir)?;
    let listener = match UnixListener::bind(path) {
        Ok(listener) => listener,
        Err(err) if err.kind() == io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Ok(Bound::Serving);
            }
            std::fs::remove_file(path).map_err(|source| SocketError::RemoveStale {
                path: path.to_path_buf(),
                source,
            })?;
            UnixListener::bind(path).map_err(|source| SocketError::Bind {
                path: path.to_path_buf(),
                source,
            })?
        }
        Err(source) => {
            return Err(SocketError::Bind {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(
        |source| SocketError::Mode {
            path: path.to_path_buf(),
            source,
        },
    )?;
    Ok(Bound::New(listener))
}

/// An exclusive `flock` on a directory, released on drop.
struct DirLock(OwnedFd);

impl DirLock {
    fn take(dir: &Path) -> Result<Self, SocketError> {
        let error = |source| SocketError::Lock {
            dir: dir.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(dir).map_err(error)?;
        // SAFETY: flock on a descriptor owned by `file`.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(error(io::Error::last_os_error()));
        }
        Ok(DirLock(file.into()))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // SAFETY: unlocking a descriptor this value owns.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// The listener `start` handed over, when the environment names one. Call once, before any
/// thread exists: it removes the variable, so that nothing the shim starts inherits it, and marks
/// the descriptor close-on-exec, so that runc's children do not hold the socket open.
pub fn take_inherited() -> Result<Option<UnixListener>, SocketError> {
    let Ok(value) = std::env::var(LISTEN_FD_ENV) else {
        return Ok(None);
    };
    // SAFETY: called from `main` before the async runtime or any other thread starts.
    unsafe { std::env::remove_var(LISTEN_FD_ENV) };
    let inherited = |reason: String| SocketError::Inherited {
        value: value.clone(),
        reason,
    };
    let fd: RawFd = value
        .trim()
        .parse()
        .map_err(|_| inherited("not a descriptor number".into()))?;
    // SAFETY: fstat into a zeroed stat buffer.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut stat) } != 0 {
        return Err(inherited(io::Error::last_os_error().to_string()));
    }
    if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(inherited("not a socket".into()));
    }
    // SAFETY: the descriptor is open, a socket, and from here on owned by the listener alone.
    let listener = unsafe { UnixListener::from_raw_fd(fd) };
    // SAFETY: setting FD_CLOEXEC on a descriptor the listener owns.
    unsafe { libc::fcntl(listener.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(Some(listener))
}

/// Makes `command` start with `listener` as its descriptor [`LISTEN_FD`] (named in its
/// environment) and `detach` run in the child before the exec (a process group or a session of
/// its own).
pub fn hand_over(
    command: &mut std::process::Command,
    listener: &UnixListener,
    detach: fn() -> libc::c_int,
) {
    use std::os::unix::process::CommandExt;
    command.env(LISTEN_FD_ENV, LISTEN_FD.to_string());
    let fd = listener.as_raw_fd();
    // SAFETY: only async-signal-safe calls (dup2, fcntl, and `detach`: setpgid or setsid) run
    // between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if fd == LISTEN_FD {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, LISTEN_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            if detach() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Binds `address` in the serving process itself (a shim started without `start`, e.g. by hand).
pub fn bind_for_serving(address: &str) -> Result<UnixListener, SocketError> {
    match bind(address)? {
        Bound::New(listener) => Ok(listener),
        Bound::Serving => Err(SocketError::Bind {
            path: path_of(address)?.to_path_buf(),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        }),
    }
}

/// Removes the socket file at `address`, if it is a socket.
pub fn remove(address: &str) {
    if let Ok(path) = path_of(address)
        && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
    {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_address_is_containerds_hash_under_run_containerd_s() {
        let address = address("/run/containerd/containerd.sock", "default", "123");
        assert_eq!(
            address,
            "unix:///run/containerd/s/0ddfbd72d02b3551e75f3a0ed90b9965b533401be618f43a568bc522764e0ad0"
        );
        assert_eq!(
            path_of(&address).expect("unix").parent(),
            Some(Path::new("/run/containerd/s"))
        );
        assert!(matches!(
            path_of("vsock://1:2"),
            Err(SocketError::NotUnix(_))
        ));
    }

    #[test]
    fn binding_creates_the_directory_with_containerds_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let address = format!("unix://{}/s/abc", dir.path().display());
        let Bound::New(_listener) = bind(&address).expect("binds") else {
            panic!("nothing served there yet");
        };
        let socket_dir = std::fs::metadata(dir.path().join("s")).expect("dir");
        assert_eq!(socket_dir.mode() & 0o777, 0o600);
        let socket = std::fs::metadata(dir.path().join("s/abc")).expect("socket");
        assert!(socket.file_type().is_socket());
        assert_eq!(socket.mode() & 0o777, 0o600);
    }

    #[test]
    fn a_listening_socket_is_the_pods_shim_and_a_dead_one_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let address = format!("unix://{}/s/pod", dir.path().display());
        let Bound::New(first) = bind(&address).expect("binds") else {
            panic!("first bind");
        };
        assert!(matches!(bind(&address).expect("second"), Bound::Serving));
        drop(first);
        // The file is left behind by a listener that is gone: a stale socket.
        assert!(matches!(bind(&address).expect("third"), Bound::New(_)));
    }
}
