//! The pod's sandbox without runc: a minimal init process that holds the pod's namespaces.
//!
//! The init does what the pause image does: it waits for signals, reaps the orphans a shared
//! PID namespace hands it, and exits 0 on SIGTERM or SIGINT ([`run`]). It is PID 1 of a new PID
//! namespace (unless the pod uses the host's), with new IPC and UTS namespaces and the pod's
//! hostname, in the pod's network namespace (the shim's own: the shim joined it before any
//! thread), in the sandbox's cgroup leaves. Sidecars join its namespaces through runc by
//! `/proc/<pid>/ns/...`, exactly as they join a pause container's.
//!
//! Two ways to make it, the first preferred:
//!
//! - [`InitTemplate`]: forked by the serving shim at its start, before any thread, when its
//!   bundle is a pod sandbox. It waits for the sandbox's Create, then makes the namespaces,
//!   forks the init and exits; the shim, a subreaper, becomes the init's parent. The init
//!   shares the shim's pages as they were before its runtime started (the relocated binary
//!   above all): its own memory is a few pages.
//! - [`spawn`], when there is no template: clones the shim into the namespaces and executes the
//!   shim's binary again as the init (chosen by `argv[0]`). Between `clone` and `execve` that
//!   child of a multi-threaded process only makes system calls on memory prepared before the
//!   clone; a failure comes back through a close-on-exec pipe. It costs more: the re-executed
//!   binary's relocations alone are 1.2 MiB of private memory.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// `argv[0]` of the init process: the shim binary run as a pod's init.
pub const POD_INIT_ARG0: &str = "spore-pod-init";

/// What the init is made with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInitSpec {
    pub new_ipc: bool,
    pub new_uts: bool,
    pub new_pid: bool,
    /// Set in the new UTS namespace.
    pub hostname: Option<String>,
    /// Cgroup directories the init moves into (one per hierarchy).
    pub cgroup_leaves: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum PodInitError {
    #[error("preparing the pod's init: {0}")]
    Prepare(std::io::Error),
    #[error("cloning the pod's init: {0}")]
    Clone(std::io::Error),
    #[error("the pod's init failed to {step}: {source}")]
    Child {
        step: &'static str,
        source: std::io::Error,
    },
}

/// The steps of the child, as reported through the pipe (a byte each, then the errno).
const STEPS: [&str; 4] = [
    "join its cgroup",
    "set the pod's hostname",
    "reset its signal mask",
    "execute the init",
];

/// Starts the init; returns its pid (in the shim's PID namespace). Blocking: run it off the
/// async workers.
pub fn spawn(spec: &PodInitSpec) -> Result<i32, PodInitError> {
    let prepare = PodInitError::Prepare;
    let exe = CString::new("/proc/self/exe").map_err(|e| prepare(e.into()))?;
    let arg0 = CString::new(POD_INIT_ARG0).map_err(|e| prepare(e.into()))?;
    let argv = [arg0.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null()];
    let hostname = match (&spec.hostname, spec.new_uts) {
        (Some(name), true) => Some(name.clone().into_bytes()),
        _ => None,
    };
    let procs: Vec<OwnedFd> = spec
        .cgroup_leaves
        .iter()
        .map(|leaf| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(leaf.join("cgroup.procs"))
                .map(OwnedFd::from)
        })
        .collect::<Result<_, _>>()
        .map_err(prepare)?;
    let (report_read, report_write) = pipe().map_err(prepare)?;
    let mut flags = libc::SIGCHLD as libc::c_ulong;
    if spec.new_ipc {
        flags |= libc::CLONE_NEWIPC as libc::c_ulong;
    }
    if spec.new_uts {
        flags |= libc::CLONE_NEWUTS as libc::c_ulong;
    }
    if spec.new_pid {
        flags |= libc::CLONE_NEWPID as libc::c_ulong;
    }
    let procs_fds: Vec<RawFd> = procs.iter().map(AsRawFd::as_raw_fd).collect();
    let report_fd = report_write.as_raw_fd();
    // SAFETY: clone without a new stack or CLONE_VM is fork with namespace flags. The child
    // only runs `child`, which makes system calls on memory prepared above and then executes
    // or exits; it never returns here.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if pid == 0 {
        // SAFETY: in the child, see above.
        unsafe {
            child(
                &procs_fds,
                hostname.as_deref(),
                &exe,
                &argv,
                &envp,
                report_fd,
            )
        }
    }
    if pid < 0 {
        return Err(PodInitError::Clone(std::io::Error::last_os_error()));
    }
    drop(report_write);
    drop(procs);
    let pid = pid as i32;
    // EOF: the child executed the init. Otherwise a step and its errno.
    let mut report = [0u8; 5];
    let read = read_full(&report_read, &mut report);
    if read == report.len() {
        let step = STEPS
            .get(usize::from(report[0]))
            .copied()
            .unwrap_or("start");
        let errno = i32::from_ne_bytes([report[1], report[2], report[3], report[4]]);
        return Err(PodInitError::Child {
            step,
            source: std::io::Error::from_raw_os_error(errno),
        });
    }
    Ok(pid)
}

/// The child between clone and exec: system calls only.
///
/// # Safety
/// Called once, in the child of `clone`, with pointers that stay valid (the child has a copy
/// of the parent's memory).
unsafe fn child(
    procs: &[RawFd],
    hostname: Option<&[u8]>,
    exe: &CString,
    argv: &[*const libc::c_char; 2],
    envp: &[*const libc::c_char; 1],
    report: RawFd,
) -> ! {
    let fail = |step: u8| -> ! {
        // SAFETY: errno location and write/_exit are async-signal-safe.
        unsafe {
            let errno = *libc::__errno_location();
            let mut message = [step, 0, 0, 0, 0];
            message[1..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(report, message.as_ptr().cast(), message.len());
            libc::_exit(127)
        }
    };
    // SAFETY: plain system calls on valid descriptors and buffers.
    unsafe {
        for &fd in procs {
            // "0": the writing process itself (its pid differs in a new PID namespace).
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                fail(0);
            }
        }
        if let Some(name) = hostname
            && libc::sethostname(name.as_ptr().cast(), name.len()) != 0
        {
            fail(1);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
            fail(2);
        }
        libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
        fail(3)
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both descriptors on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both are new descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads until `buf` is full or EOF; returns how much was read.
fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: reads into the unfilled part of `buf`.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf[filled..].as_mut_ptr().cast(),
                buf.len() - filled,
            )
        };
        match n {
            0 => break,
            n if n > 0 => filled += n as usize,
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => break,
        }
    }
    filled
}

/// The template forked at the shim's start, until the sandbox's Create takes it.
static TEMPLATE: std::sync::Mutex<Option<InitTemplate>> = std::sync::Mutex::new(None);

/// Forks the template when the bundle in the current directory is a pod sandbox the init can
/// run. Call before any thread exists.
pub fn prepare_template(spec: &crate::spec::ContainerSpec) {
    if !spec.is_sandbox() || spec.sandbox_namespaces.needs_runc {
        return;
    }
    let namespaces = spec.sandbox_namespaces;
    let init = PodInitSpec {
        new_ipc: namespaces.new_ipc,
        new_uts: namespaces.new_uts,
        new_pid: namespaces.new_pid,
        hostname: spec.hostname.clone(),
        cgroup_leaves: Vec::new(),
    };
    if let (Some(template), Ok(mut slot)) =
        (InitTemplate::fork_single_threaded(&init), TEMPLATE.lock())
    {
        *slot = Some(template);
    }
}

/// The template, once: the sandbox's Create takes it; dropping it ends the template.
pub fn take_template() -> Option<InitTemplate> {
    TEMPLATE.lock().ok()?.take()
}

/// A process forked before the shim's threads, waiting to make the pod's init.
pub struct InitTemplate {
    pid: i32,
    go: OwnedFd,
    reply: OwnedFd,
}

/// What the template answers: the init's pid, or a negative errno and the failed step.
const REPLY_LEN: usize = 9;

impl InitTemplate {
    /// Forks the template for `spec` (its cgroup leaves are ignored: the shim moves the init).
    /// Only while the process has one thread. `None` when it cannot (the shim then uses
    /// [`spawn`]).
    pub fn fork_single_threaded(spec: &PodInitSpec) -> Option<InitTemplate> {
        let mut flags = 0;
        if spec.new_ipc {
            flags |= libc::CLONE_NEWIPC;
        }
        if spec.new_uts {
            flags |= libc::CLONE_NEWUTS;
        }
        if spec.new_pid {
            flags |= libc::CLONE_NEWPID;
        }
        let hostname = spec.hostname.clone().filter(|_| spec.new_uts);
        let args = own_arg_area();
        let (go_read, go_write) = pipe().ok()?;
        let (reply_read, reply_write) = pipe().ok()?;
        // SAFETY: fork of a single-threaded process; the child runs `template` and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            drop((go_write, reply_read));
            if let Some((start, end)) = args {
                // SAFETY: the kernel's record of this process's argument strings, writable
                // memory of its own (a copy after fork).
                unsafe { retitle(start, end) };
            }
            template(go_read, reply_write, flags, hostname.as_deref())
        }
        if pid < 0 {
            return None;
        }
        Some(InitTemplate {
            pid,
            go: go_write,
            reply: reply_read,
        })
    }

    /// Has the template make the init; returns the init's pid (in the shim's PID namespace).
    pub fn start(self) -> Result<i32, PodInitError> {
        // SAFETY: one byte from a valid buffer to the pipe the template reads.
        if unsafe { libc::write(self.go.as_raw_fd(), b"g".as_ptr().cast(), 1) } != 1 {
            return Err(PodInitError::Clone(std::io::Error::last_os_error()));
        }
        let mut reply = [0u8; REPLY_LEN];
        if read_full(&self.reply, &mut reply) != REPLY_LEN {
            return Err(PodInitError::Child {
                step: "answer",
                source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            });
        }
        let value = i64::from_ne_bytes(reply[1..].try_into().unwrap_or_default());
        if value > 0 {
            return Ok(value as i32);
        }
        Err(PodInitError::Child {
            step: TEMPLATE_STEPS
                .get(usize::from(reply[0]))
                .copied()
                .unwrap_or("start"),
            source: std::io::Error::from_raw_os_error(-value as i32),
        })
    }

    /// The template's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }
}

/// Where this process's argument strings are (`arg_start`, `arg_end` of `/proc/self/stat`).
fn own_arg_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    // Fields 48 and 49 of stat(5); the split starts at field 3.
    let start = fields.nth(45)?.parse().ok()?;
    let end = fields.next()?.parse().ok()?;
    (end > start).then_some((start, end))
}

/// Makes `ps` and `/proc/<pid>/cmdline` show the process as the pod's init, not as another shim
/// (which containerd's and the suite's process listings would take it for).
///
/// # Safety
/// `start..end` must be this process's argument area.
unsafe fn retitle(start: usize, end: usize) {
    let title = POD_INIT_ARG0.as_bytes();
    let area = end - start;
    // SAFETY: within the argument area, per the caller.
    unsafe {
        let dst = start as *mut u8;
        std::ptr::write_bytes(dst, 0, area);
        std::ptr::copy_nonoverlapping(title.as_ptr(), dst, title.len().min(area - 1));
        libc::prctl(libc::PR_SET_NAME, c"spore-pod-init".as_ptr());
    }
}

const TEMPLATE_STEPS: [&str; 3] = [
    "make the pod's namespaces",
    "set the pod's hostname",
    "fork the init",
];

/// The template: keeps only its two pipes, waits for the go, makes the namespaces, forks the
/// init, answers its pid, exits. EOF instead of the go (the shim ended, or ran the sandbox with
/// runc) ends it.
fn template(go: OwnedFd, reply: OwnedFd, flags: libc::c_int, hostname: Option<&str>) -> ! {
    let (go, reply) = (go.as_raw_fd(), reply.as_raw_fd());
    // SAFETY: system calls on this single-threaded child's own descriptors and memory.
    unsafe {
        // Nothing of the shim's (its listener, containerd's FIFOs) stays open here or in the init.
        let (low, high) = (go.min(reply), go.max(reply));
        libc::syscall(libc::SYS_close_range, 3u32, (low - 1) as u32, 0u32);
        libc::syscall(
            libc::SYS_close_range,
            (low + 1) as u32,
            (high - 1) as u32,
            0u32,
        );
        libc::syscall(libc::SYS_close_range, (high + 1) as u32, u32::MAX, 0u32);
        let answer = |step: u8, value: i64| -> ! {
            let mut message = [0u8; REPLY_LEN];
            message[0] = step;
            message[1..].copy_from_slice(&value.to_ne_bytes());
            libc::write(reply, message.as_ptr().cast(), message.len());
            libc::_exit(0)
        };
        let errno = || -i64::from(*libc::__errno_location());
        // stdout was the pipe to `start`, which must see its end when the shim lets go of it.
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
        let mut byte = 0u8;
        if libc::read(go, (&mut byte as *mut u8).cast(), 1) != 1 {
            libc::_exit(0);
        }
        if flags != 0 && libc::unshare(flags) != 0 {
            answer(0, errno());
        }
        if let Some(name) = hostname
            && libc::sethostname(name.as_ptr().cast(), name.len()) != 0
        {
            answer(1, errno());
        }
        match libc::fork() {
            0 => {
                libc::close(go);
                libc::close(reply);
                run()
            }
            pid if pid > 0 => answer(2, i64::from(pid)),
            _ => answer(2, errno()),
        }
    }
}

/// Whether this process was started as a pod's init.
pub fn is_pod_init() -> bool {
    std::env::args_os()
        .next()
        .is_some_and(|arg0| arg0 == POD_INIT_ARG0)
}

extern "C" fn on_signal(_: libc::c_int) {}

/// The init: waits for signals, reaps children, exits 0 on SIGTERM or SIGINT. As PID 1 of a
/// namespace it gets only the signals it handles (and SIGKILL from outside), hence the handlers.
pub fn run() -> ! {
    // SAFETY: signal set manipulation and waits on this single-threaded process.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"spore-pod-init".as_ptr());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT] {
            libc::sigaddset(&mut set, signal);
            libc::signal(signal, on_signal as *const () as libc::sighandler_t);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        loop {
            match libc::sigwaitinfo(&set, std::ptr::null_mut()) {
                libc::SIGTERM | libc::SIGINT => libc::_exit(0),
                libc::SIGCHLD => {
                    while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
                }
                _ => {}
            }
        }
    }
}
