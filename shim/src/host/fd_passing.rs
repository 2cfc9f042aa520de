//! Descriptors received over a unix socket (`SCM_RIGHTS`): runc's terminal master on a console
//! socket, a fork request's listener and pipes.

use std::io::IoSliceMut;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

/// The most descriptors one [`receive`] takes.
pub const MAX_FDS: usize = 4;

/// Receives one message on the unix socket `socket`: up to `buf.len()` bytes into `buf`, and the
/// descriptors that came with them (close-on-exec, in the order sent). Returns how many bytes
/// were read.
pub fn receive(socket: RawFd, buf: &mut [u8]) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(buf)];
    let message = recvmsg::<()>(
        socket,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for cmsg in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: descriptors just received, owned by nobody else.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok((message.bytes, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use nix::sys::socket::{ControlMessage, sendmsg};

    #[test]
    fn bytes_and_descriptors_arrive_together_in_order() {
        let (a, b) = UnixStream::pair().expect("pair");
        let (first, second) = UnixStream::pair().expect("pair");
        let fds = [first.as_raw_fd(), second.as_raw_fd()];
        sendmsg::<()>(
            a.as_raw_fd(),
            &[IoSlice::new(b"hi")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .expect("sent");
        let mut buf = [0u8; 8];
        let (n, received) = receive(b.as_raw_fd(), &mut buf).expect("received");
        assert_eq!(&buf[..n], b"hi");
        assert_eq!(received.len(), 2);
        // The first received descriptor is `first`: what goes into it comes out of `second`.
        let first_copy = UnixStream::from(received.into_iter().next().expect("one"));
        std::io::Write::write_all(&mut &first_copy, b"x").expect("write");
        let mut got = [0u8; 1];
        std::io::Read::read_exact(&mut &second, &mut got).expect("read");
        assert_eq!(&got, b"x");
    }
}
