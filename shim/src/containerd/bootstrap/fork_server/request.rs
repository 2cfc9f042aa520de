//! What `start` sends the fork server for one serving process, and how: one message on a unix
//! stream socket carrying the process's command line, environment and working directory (the
//! bundle) as JSON behind a length, and three descriptors with it (the pod's listener, and the
//! write ends of the pipes `start` reads the ready line and any failure from).

use std::io::{IoSlice, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

/// Descriptors a request carries, in this order.
pub const REQUEST_FDS: usize = 3;
/// The most a request's JSON may hold (containerd's environment is a few KiB).
const MAX_REQUEST: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ForkRequest {
    /// The serving process's command line, program first, as `start` would exec it.
    pub args: Vec<String>,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
    /// Its working directory: the bundle of the container `start` was run for.
    pub cwd: String,
}

/// The descriptors of a request, received.
#[derive(Debug)]
pub struct RequestFds {
    pub listener: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("encoding the request: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("sending the request: {0}")]
    Send(nix::Error),
    #[error("receiving a request: {0}")]
    Receive(std::io::Error),
    #[error("a request came without its {REQUEST_FDS} descriptors")]
    NoFds,
    #[error("a request of {0} bytes is larger than a request can be")]
    TooLarge(usize),
}

impl ForkRequest {
    /// Sends the request and `fds` (listener, stdout, stderr) on `stream`.
    pub fn send(&self, stream: &UnixStream, fds: [RawFd; REQUEST_FDS]) -> Result<(), RequestError> {
        let json = serde_json::to_vec(self)?;
        if json.len() > MAX_REQUEST {
            return Err(RequestError::TooLarge(json.len()));
        }
        let length = (json.len() as u32).to_le_bytes();
        let rights = [ControlMessage::ScmRights(&fds)];
        // The descriptors go with the first bytes; the rest follows on the stream.
        let iov = [IoSlice::new(&length)];
        sendmsg::<()>(stream.as_raw_fd(), &iov, &rights, MsgFlags::empty(), None)
            .map_err(RequestError::Send)?;
        let mut rest = json.as_slice();
        while !rest.is_empty() {
            let iov = [IoSlice::new(rest)];
            let sent = sendmsg::<()>(stream.as_raw_fd(), &iov, &[], MsgFlags::empty(), None)
                .map_err(RequestError::Send)?;
            rest = &rest[sent..];
        }
        Ok(())
    }

    /// Receives one request from `stream` (blocking).
    pub fn receive(stream: &mut UnixStream) -> Result<(ForkRequest, RequestFds), RequestError> {
        let mut length = [0u8; 4];
        let (received, fds) = crate::host::fd_passing::receive(stream.as_raw_fd(), &mut length)
            .map_err(RequestError::Receive)?;
        if received < length.len() {
            stream
                .read_exact(&mut length[received..])
                .map_err(RequestError::Receive)?;
        }
        let size = u32::from_le_bytes(length) as usize;
        if size > MAX_REQUEST {
            return Err(RequestError::TooLarge(size));
        }
        let mut json = vec![0u8; size];
        stream
            .read_exact(&mut json)
            .map_err(RequestError::Receive)?;
        let request: ForkRequest = serde_json::from_slice(&json)
            .map_err(|e| RequestError::Receive(std::io::Error::other(e)))?;
        let mut fds = fds.into_iter();
        match (fds.next(), fds.next(), fds.next()) {
            (Some(listener), Some(stdout), Some(stderr)) => Ok((
                request,
                RequestFds {
                    listener,
                    stdout,
                    stderr,
                },
            )),
            _ => Err(RequestError::NoFds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_request_and_its_descriptors_arrive_whole() {
        let (client, mut server) = UnixStream::pair().expect("pair");
        let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
        let request = ForkRequest {
            args: vec!["/bin/shim".into(), "-socket".into(), "unix:///x".into()],
            env: (0..300)
                .map(|i| (format!("VAR_{i}"), "x".repeat(100)))
                .collect(),
            cwd: "/run/bundle".into(),
        };
        let fd = write_end.as_raw_fd();
        request.send(&client, [fd, fd, fd]).expect("sent");
        let (received, fds) = ForkRequest::receive(&mut server).expect("received");
        assert_eq!(received, request);
        // The received descriptor is the pipe's write end: what is written arrives.
        let mut stdout = std::fs::File::from(fds.stdout);
        stdout.write_all(b"ready\n").expect("write");
        drop((stdout, fds.listener, fds.stderr, write_end));
        let mut said = String::new();
        std::fs::File::from(read_end)
            .read_to_string(&mut said)
            .expect("read");
        assert_eq!(said, "ready\n");
    }

    #[test]
    fn a_request_without_descriptors_is_refused() {
        let (mut client, mut server) = UnixStream::pair().expect("pair");
        let json = br#"{"args":[],"env":[],"cwd":"/"}"#;
        client
            .write_all(&(json.len() as u32).to_le_bytes())
            .expect("write");
        client.write_all(json).expect("write");
        assert!(matches!(
            ForkRequest::receive(&mut server),
            Err(RequestError::NoFds)
        ));
    }
}
