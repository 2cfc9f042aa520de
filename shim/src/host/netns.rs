//! The shim process in its pod's network namespace. Wasm containers run inside the shim, so every
//! socket a guest opens must be made in the namespace the OCI spec gives the pod:
//! - a namespace path (what CRI gives every pod): the shim joins it;
//! - a network namespace without a path (a plain `ctr run`): the shim makes a new, empty one
//!   with loopback up, as runc would for a container;
//! - no network namespace at all: the host's network, as the spec asks.
//!
//! The namespace is per thread and threads made later inherit it, so [`enter_for_bundle`] runs
//! before any thread exists. The host's namespace stays open: `runc` must run there, or it takes
//! the pod's namespace for the host's and refuses the pod's `net.*` sysctls.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::spec::{ContainerSpec, NetworkNamespace};

static HOST_NETNS: OnceLock<OwnedFd> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("opening the shim's own network namespace: {0}")]
    OwnNamespace(std::io::Error),
    #[error("opening the pod's network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("joining the pod's network namespace {path}: {source}")]
    Join { path: PathBuf, source: nix::Error },
    #[error("making a new network namespace: {0}")]
    Unshare(nix::Error),
    #[error("bringing up the loopback interface of the new network namespace: {0}")]
    Loopback(std::io::Error),
}

/// The host network namespace's descriptor, once the shim has left it.
pub fn host_netns_fd() -> Option<RawFd> {
    HOST_NETNS.get().map(AsRawFd::as_raw_fd)
}

/// Enters the network namespace the spec in `<bundle>/config.json` asks for. A bundle without a
/// readable spec leaves the shim where it is (its Create will fail with the spec's error).
pub fn enter_for_bundle(bundle: &Path) -> Result<(), NetnsError> {
    let Ok(spec) = ContainerSpec::load(bundle) else {
        return Ok(());
    };
    match &spec.network {
        NetworkNamespace::Host => Ok(()),
        NetworkNamespace::Path(path) => {
            let netns = std::fs::File::open(path).map_err(|source| NetnsError::Open {
                path: path.clone(),
                source,
            })?;
            keep_host_namespace()?;
            nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|source| {
                NetnsError::Join {
                    path: path.clone(),
                    source,
                }
            })
        }
        NetworkNamespace::New => {
            keep_host_namespace()?;
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(NetnsError::Unshare)?;
            loopback_up().map_err(NetnsError::Loopback)
        }
    }
}

fn keep_host_namespace() -> Result<(), NetnsError> {
    let host = std::fs::File::open("/proc/self/ns/net").map_err(NetnsError::OwnNamespace)?;
    let _ = HOST_NETNS.set(host.into());
    Ok(())
}

/// Sets `IFF_UP` on `lo` in the current network namespace.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a plain datagram socket, closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The request constants are c_ulong while musl's ioctl takes a c_int: `as libc::Ioctl`
    // builds on both C libraries (the node-installer image's shim is a musl build).
    // SAFETY: `ifreq` is plain data; the name is NUL-terminated within its buffer; the ioctls
    // read and write only that struct.
    let result = unsafe {
        let mut request: libc::ifreq = std::mem::zeroed();
        for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(fd, libc::SIOCGIFFLAGS as libc::Ioctl, &mut request) < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS as libc::Ioctl, &request) < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    };
    // SAFETY: closing the socket made above.
    unsafe { libc::close(fd) };
    result
}
