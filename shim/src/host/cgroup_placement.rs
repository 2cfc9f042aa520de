//! Placing a new process in its cgroups without the kernel's global lock for moving one: what
//! the pod's init template sends itself (`pod_init.rs`), and `clone3` into a cgroup v2 directory.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// How the init gets into its cgroups without the kernel's global lock for moving a process.
///
/// Writing a pid to `cgroup.procs` takes `cgroup_threadgroup_rwsem` for writing, and the first
/// writer after a quiet spell waits for an RCU grace period: 6-25 ms on this 2-core VM, the
/// biggest single cost of a sandbox's Create. Two ways around it, both for a process that is
/// being made anyway: a single-threaded process that writes `0` to a cgroup v1 `tasks` file
/// moves only its own thread, which takes no global lock (the template does that before it
/// forks the init, which inherits the cgroups); and `clone3` with `CLONE_INTO_CGROUP` (Linux
/// 5.7) makes the init directly in a cgroup v2 directory. Encoded for the template, which must
/// not allocate: `1<v1 tasks file>\0` and `2<v2 directory>\0` entries.
pub struct Placement;

impl Placement {
    pub fn of(leaves: &[PathBuf]) -> Vec<u8> {
        let mut encoded = Vec::new();
        for leaf in leaves {
            let (marker, path) = if super::cgroup::is_v2(leaf) {
                (b'2', leaf.clone())
            } else {
                (b'1', leaf.join("tasks"))
            };
            encoded.push(marker);
            encoded.extend_from_slice(path.as_os_str().as_bytes());
            encoded.push(0);
        }
        encoded
    }
}

/// The template's buffer for the placement; a longer one is refused (`E2BIG`).
pub const PLACEMENT_MAX: usize = 16 * 1024;

/// `struct clone_args` of `clone3(2)`, up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Forks a child into the cgroup v2 directory `cgroup` (a descriptor) with `clone3`; where the
/// kernel has no `CLONE_INTO_CGROUP`, forks and writes the child's pid to the directory's
/// `cgroup.procs` (the slow way). Returns what fork returns, or a negative errno.
///
/// # Safety
/// Only in a single-threaded process; the child must only make system calls.
pub unsafe fn fork_into(cgroup: libc::c_int) -> i64 {
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without a new stack is fork; `args` is valid for its size.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid >= 0 {
        return pid;
    }
    // SAFETY: errno of this thread.
    let errno = unsafe { *libc::__errno_location() };
    if !matches!(errno, libc::ENOSYS | libc::E2BIG | libc::EINVAL) {
        return -i64::from(errno);
    }
    // SAFETY: fork of a single-threaded process, then writes from stack buffers.
    unsafe {
        let pid = libc::fork();
        if pid <= 0 {
            return if pid == 0 {
                0
            } else {
                -i64::from(*libc::__errno_location())
            };
        }
        let procs = libc::openat(
            cgroup,
            c"cgroup.procs".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        );
        let mut digits = [0u8; 20];
        let text = decimal(pid as u64, &mut digits);
        if procs < 0 || libc::write(procs, text.as_ptr().cast(), text.len()) < 0 {
            let errno = -i64::from(*libc::__errno_location());
            libc::kill(pid, libc::SIGKILL);
            return errno;
        }
        libc::close(procs);
        i64::from(pid)
    }
}

/// `value` in decimal, in `buf`, without allocating.
fn decimal(mut value: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &buf[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_writes_digits() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(4_194_304, &mut buf), b"4194304");
        assert_eq!(decimal(u64::MAX, &mut buf), b"18446744073709551615");
    }
}
