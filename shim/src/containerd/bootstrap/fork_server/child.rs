//! What a child of the fork server does to become the serving process `start` asked for: the
//! same descriptors, environment, working directory and command line an exec would have given
//! it, then [`serve::run`](super::super::serve::run), then exit.

use std::ffi::CString;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;

use super::request::{ForkRequest, RequestFds};
use crate::containerd::socket::LISTEN_FD;

/// Runs in the forked child (one thread, a copy of the server's memory) and never returns.
/// `server_fds` are the server's own descriptors, closed here.
pub fn become_serving(request: &ForkRequest, fds: RequestFds, server_fds: &[RawFd]) -> ! {
    // SAFETY: the process has one thread; these calls set up its own descriptors, signal mask
    // and process group.
    unsafe {
        for fd in server_fds {
            libc::close(*fd);
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null >= 0 {
            libc::dup2(null, libc::STDIN_FILENO);
        }
        libc::dup2(fds.stdout.as_raw_fd(), libc::STDOUT_FILENO);
        libc::dup2(fds.stderr.as_raw_fd(), libc::STDERR_FILENO);
        if fds.listener.as_raw_fd() != LISTEN_FD {
            libc::dup2(fds.listener.as_raw_fd(), LISTEN_FD);
        }
        // Everything else (the request's own copies, the server's) goes.
        libc::syscall(
            libc::SYS_close_range,
            (LISTEN_FD + 1) as u32,
            u32::MAX,
            0u32,
        );
        std::mem::forget(fds);
        // Signals containerd sends `start`'s group must not reach the shim; nor the server's.
        libc::setpgid(0, 0);
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
    }
    let code = match prepare(request) {
        Ok(flags) => super::super::serve::run(&flags),
        Err(message) => {
            eprintln!("{}: {message}", spore_format::SHIM_BINARY);
            ExitCode::FAILURE
        }
    };
    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 })
}

/// The working directory, environment and command line; the flags the command line says.
fn prepare(request: &ForkRequest) -> Result<containerd_shim::Flags, String> {
    std::env::set_current_dir(&request.cwd)
        .map_err(|e| format!("entering the bundle {}: {e}", request.cwd))?;
    let old: Vec<_> = std::env::vars_os().map(|(k, _)| k).collect();
    // SAFETY: this process has one thread.
    unsafe {
        for key in old {
            std::env::remove_var(key);
        }
        for (key, value) in &request.env {
            if !key.is_empty() && !key.contains(['=', '\0']) && !value.contains('\0') {
                std::env::set_var(key, value);
            }
        }
    }
    crate::host::process_title::set(&request.args, &serving_name());
    containerd_shim::parse(request.args.get(1..).unwrap_or_default())
        .map_err(|e| format!("parsing the command line: {e}"))
}

/// The name `ps` shows for a serving process, as an exec of the shim's binary gives it.
fn serving_name() -> CString {
    let mut name = spore_format::SHIM_BINARY.as_bytes().to_vec();
    name.truncate(15);
    CString::new(name).unwrap_or_default()
}
