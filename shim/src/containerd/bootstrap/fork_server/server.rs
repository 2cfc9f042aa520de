//! The fork server's loop: one thread, never more (it forks). It accepts requests, forks a
//! serving process for each, answers `forked <pid>`, and later `exited <status>` to a `start`
//! that still waits (a serving process that failed before its ready line). It reaps its
//! children and exits once it has had none for [`LINGER`].

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use super::child;
use super::request::ForkRequest;

/// How long the server stays without children before it exits.
pub const LINGER: Duration = Duration::from_secs(1);
/// How long a `start` may take to send its request once connected.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);

/// A child whose `start` may still ask how it ended.
struct Waiting {
    pid: i32,
    start: UnixStream,
}

/// Serves requests on `listener` (the socket at `path`) until idle; returns when it exits.
pub fn serve(listener: UnixListener, path: &std::path::Path) {
    let _ = listener.set_nonblocking(true);
    let own_socket = inode(path);
    let mut children = 0usize;
    let mut waiting: Vec<Waiting> = Vec::new();
    let mut idle_since = Instant::now();
    let mut accepting = true;
    loop {
        for (pid, status) in reap() {
            children = children.saturating_sub(1);
            if let Some(i) = waiting.iter().position(|w| w.pid == pid) {
                let mut w = waiting.swap_remove(i);
                let _ = writeln!(w.start, "exited {status}");
            }
        }
        waiting.retain(|w| !hung_up(&w.start));
        if children > 0 || !waiting.is_empty() {
            idle_since = Instant::now();
        } else if !accepting {
            return;
        } else if idle_since.elapsed() >= LINGER {
            // No new `start` can reach this server once the name is gone; one already queued
            // is still served, and the server then stays until that child is gone too (its
            // pages stay shared with the server as long as the server lives).
            if own_socket.is_some() && inode(path) == own_socket {
                let _ = std::fs::remove_file(path);
            }
            accepting = false;
            children += accept_all(&listener, &mut waiting);
            continue;
        }
        let timeout_ms = if waiting.is_empty() { 200 } else { 20 };
        if !readable(&listener, timeout_ms) {
            continue;
        }
        children += accept_all(&listener, &mut waiting);
    }
}

/// Serves every connection waiting on `listener`; returns how many children it forked (each
/// also added to `waiting`).
fn accept_all(listener: &UnixListener, waiting: &mut Vec<Waiting>) -> usize {
    let mut forked = 0;
    while let Ok((stream, _)) = listener.accept() {
        if let Some(started) = fork_for(stream, listener) {
            forked += 1;
            waiting.push(started);
        }
    }
    forked
}

/// Receives one request on `stream` and forks its serving process.
fn fork_for(mut stream: UnixStream, listener: &UnixListener) -> Option<Waiting> {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(REQUEST_LIMIT));
    let (request, fds) = match ForkRequest::receive(&mut stream) {
        Ok(received) => received,
        Err(err) => {
            let _ = writeln!(stream, "error {err}");
            return None;
        }
    };
    // SAFETY: this process has one thread; the child only runs `child::become_serving`.
    match unsafe { libc::fork() } {
        0 => child::become_serving(&request, fds, &[listener.as_raw_fd(), stream.as_raw_fd()]),
        pid if pid > 0 => {
            drop(fds);
            let _ = writeln!(stream, "forked {pid}");
            Some(Waiting { pid, start: stream })
        }
        _ => {
            let err = std::io::Error::last_os_error();
            let _ = writeln!(stream, "error forking: {err}");
            None
        }
    }
}

/// Reaps every child that has ended: `(pid, status as std's ExitStatus says it)`.
fn reap() -> Vec<(i32, String)> {
    let mut ended = Vec::new();
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return ended;
        }
        let status =
            <std::process::ExitStatus as std::os::unix::process::ExitStatusExt>::from_raw(status);
        ended.push((pid, status.to_string()));
    }
}

/// Whether the `start` at the other end has closed its connection (it saw the ready line).
fn hung_up(stream: &UnixStream) -> bool {
    let _ = stream.set_nonblocking(true);
    let mut byte = [0u8; 1];
    let gone = match (&*stream).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(err) => err.kind() != std::io::ErrorKind::WouldBlock,
    };
    let _ = stream.set_nonblocking(false);
    gone
}

/// Waits up to `timeout_ms` for a connection.
fn readable(listener: &UnixListener, timeout_ms: i32) -> bool {
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd.
    unsafe { libc::poll(&mut fd, 1, timeout_ms) > 0 }
}

/// The inode of the socket file at `path`, to know at the end whether it is still this
/// server's (a `start` that found it dead may have put a newer server's there).
fn inode(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).map(|m| m.ino()).ok()
}
