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

/// Forks this single-threaded process into the cgroup v2 directory `cgroup` (a descriptor) for
/// a child that goes on to run the whole program: `clone3` with `CLONE_INTO_CGROUP`, set up as
/// glibc's own fork sets up its child (the child's thread id written into glibc's descriptor
/// of the thread, cleared at its exit; its robust-mutex list registered again). The fork
/// server makes serving processes so, directly in their pod's leaf (`shim_cgroup.rs`).
/// Returns what fork returns, or the errno when the kernel cannot (the caller then forks).
///
/// # Safety
/// Only in a process with one thread and no `pthread_atfork` handlers.
pub unsafe fn fork_process_into(cgroup: libc::c_int) -> Result<libc::pid_t, i32> {
    let errno = || {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL)
    };
    let mut tid_address: *mut libc::c_int = std::ptr::null_mut();
    // SAFETY: PR_GET_TID_ADDRESS writes one pointer to the address given.
    if unsafe {
        libc::prctl(
            PR_GET_TID_ADDRESS,
            &mut tid_address as *mut *mut libc::c_int,
        )
    } != 0
    {
        return Err(errno());
    }
    let mut robust_head: *mut libc::c_void = std::ptr::null_mut();
    let mut robust_len: libc::size_t = 0;
    // SAFETY: get_robust_list of this thread writes a pointer and a length.
    let have_robust = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut robust_head as *mut *mut libc::c_void,
            &mut robust_len as *mut libc::size_t,
        )
    } == 0;
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP
            | libc::CLONE_CHILD_SETTID as u64
            | libc::CLONE_CHILD_CLEARTID as u64,
        child_tid: tid_address as u64,
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
    if pid < 0 {
        return Err(errno());
    }
    if pid == 0 && have_robust {
        // SAFETY: the list glibc registered for this thread, in the child's copy of memory.
        unsafe { libc::syscall(libc::SYS_set_robust_list, robust_head, robust_len) };
    }
    Ok(pid as libc::pid_t)
}

/// `prctl` option: the address the kernel clears at this thread's exit (glibc's thread id).
const PR_GET_TID_ADDRESS: libc::c_int = 40;

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

    /// Needs root. The child is in the cgroup from its first instruction, and glibc's record of
    /// its thread id is its own, not its parent's (as after glibc's fork).
    #[test]
    fn a_process_forked_into_a_cgroup_starts_there() {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let Some(v2) = crate::host::cgroup::cgroup_mounts(&mountinfo)
            .into_iter()
            .find(|m| crate::host::cgroup::is_v2(m))
        else {
            eprintln!("no cgroup v2 hierarchy here");
            return;
        };
        let name = format!("spore-fork-into-{}", std::process::id());
        let leaf = v2.join(&name);
        std::fs::create_dir_all(&leaf).expect("leaf");
        let dir = std::fs::File::open(&leaf).expect("open");
        let expected = format!("/{name}\n").into_bytes();
        // SAFETY: the child only makes system calls on stack buffers, then exits (the test's
        // other threads may hold malloc's locks).
        let forked = unsafe { fork_process_into(std::os::fd::AsRawFd::as_raw_fd(&dir)) };
        let pid = match forked {
            Ok(0) => unsafe {
                let mut cgroups = [0u8; 4096];
                let fd = libc::open(c"/proc/self/cgroup".as_ptr(), libc::O_RDONLY);
                let n = libc::read(fd, cgroups.as_mut_ptr().cast(), cgroups.len());
                let read = &cgroups[..n.max(0) as usize];
                let placed = read
                    .windows(expected.len() + 3)
                    .any(|w| w.starts_with(b"0::") && w.ends_with(&expected));
                let mut clock: libc::clockid_t = 0;
                libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock);
                // glibc makes a thread's CPU clock from the thread id it keeps.
                let glibc_tid = !(clock >> 3);
                let ok = placed && glibc_tid == libc::gettid();
                libc::_exit(if ok {
                    0
                } else if placed {
                    2
                } else {
                    1
                })
            },
            Ok(pid) => pid,
            Err(errno) => panic!("clone3 into a cgroup: errno {errno}"),
        };
        let mut status = 0;
        // SAFETY: waitpid of the child just made.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let _ = std::fs::remove_dir(&leaf);
        assert!(libc::WIFEXITED(status), "{status:#x}");
        let code = libc::WEXITSTATUS(status);
        assert_ne!(code, 1, "the child was not in {}", leaf.display());
        assert_ne!(code, 2, "glibc kept the parent's thread id in the child");
        assert_eq!(code, 0);
    }
}
