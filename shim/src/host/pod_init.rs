//! The pod's sandbox without runc: a minimal init process that holds the pod's namespaces.
//!
//! The init does what the pause image does: it waits for signals, reaps the orphans a shared
//! PID namespace hands it, and exits 0 on SIGTERM or SIGINT ([`run`]). It is PID 1 of a new PID
//! namespace (unless the pod uses the host's), with new IPC and UTS namespaces and the pod's
//! hostname, in the pod's network namespace (the shim's own: the shim joined it before any
//! thread), in the sandbox's cgroup leaves. Sidecars join its namespaces through runc by
//! `/proc/<pid>/ns/...`, exactly as they join a pause container's.
//!
//! The init is forked from the serving shim at its start, before any thread, when its bundle
//! is a pod sandbox ([`InitTemplate`]): that template waits for the sandbox's Create, then
//! makes the namespaces, forks the init and exits; the shim, a subreaper, becomes the init's
//! parent. The init shares the shim's pages as they were before its runtime started (the
//! relocated binary above all), so its own memory is a few pages; the sandbox's Create moves it
//! into the sandbox's cgroup. (Executing the shim's binary again instead cost 1.2 MiB of
//! private memory in relocations alone.) Without a template, runc runs the sandbox.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use super::cgroup_placement::{PLACEMENT_MAX, Placement, fork_into};

/// The init's name in `ps` (its command line and `comm`).
pub const POD_INIT_NAME: &str = "spore-pod-init";

/// What the init is made with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInitSpec {
    pub new_ipc: bool,
    pub new_uts: bool,
    pub new_pid: bool,
    /// Set in the new UTS namespace.
    pub hostname: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PodInitError {
    #[error("starting the pod's init: {0}")]
    Template(std::io::Error),
    #[error("the pod's init failed to {step}: {source}")]
    Child {
        step: &'static str,
        source: std::io::Error,
    },
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

/// Reads from `fd` until `len` bytes at `buf` are filled or EOF; returns how much was read. Raw,
/// for the forked template, whose buffer is left uninitialised.
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes.
unsafe fn read_into(fd: libc::c_int, buf: *mut u8, len: usize) -> usize {
    let mut filled = 0;
    while filled < len {
        // SAFETY: reads into the unfilled part of the caller's buffer.
        let n = unsafe { libc::read(fd, buf.add(filled).cast(), len - filled) };
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
    go: OwnedFd,
    reply: OwnedFd,
}

/// What the template answers: the init's pid, or a negative errno and the failed step.
const REPLY_LEN: usize = 9;

impl InitTemplate {
    /// Forks the template for `spec`. Only while the process has one thread. `None` when it
    /// cannot (runc then runs the sandbox).
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
        let args = crate::host::process_title::arg_area();
        let (go_read, go_write) = pipe().ok()?;
        let (reply_read, reply_write) = pipe().ok()?;
        // SAFETY: fork of a single-threaded process; the child runs `template` and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            drop((go_write, reply_read));
            if let Some((start, end)) = args {
                // SAFETY: the kernel's record of this process's argument strings, writable
                // memory of its own (a copy after fork). Makes `ps` show the pod's init, not
                // another shim (which containerd's and the suite's listings would take it for).
                let area = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
                crate::host::process_title::write_in_place(area, b"spore-pod-init\0");
                crate::host::process_title::set_name(c"spore-pod-init");
            }
            template(go_read, reply_write, flags, hostname.as_deref())
        }
        if pid < 0 {
            return None;
        }
        Some(InitTemplate {
            go: go_write,
            reply: reply_read,
        })
    }

    /// Has the template make the init in the cgroup `leaves` (one per hierarchy, made
    /// beforehand); returns the init's pid (in the shim's PID namespace).
    pub fn start(self, leaves: &[PathBuf]) -> Result<i32, PodInitError> {
        let placement = Placement::of(leaves);
        let mut message = Vec::with_capacity(5 + placement.len());
        message.push(b'g');
        message.extend_from_slice(&(placement.len() as u32).to_ne_bytes());
        message.extend_from_slice(&placement);
        File::from(self.go)
            .write_all(&message)
            .map_err(PodInitError::Template)?;
        let mut reply = [0u8; REPLY_LEN];
        File::from(self.reply)
            .read_exact(&mut reply)
            .map_err(|source| PodInitError::Child {
                step: "answer",
                source,
            })?;
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
}

const TEMPLATE_STEPS: [&str; 4] = [
    "make the pod's namespaces",
    "set the pod's hostname",
    "fork the init",
    "join its cgroup",
];

/// The template: keeps only its two pipes, waits for the go, joins the pod's cgroup v1 leaves,
/// makes the namespaces, forks the init (into the cgroup v2 leaf), answers its pid, exits. EOF
/// instead of the go (the shim ended, or ran the sandbox with runc) ends it.
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
        if read_into(go, &mut byte, 1) != 1 {
            libc::_exit(0);
        }
        let mut length = [0u8; 4];
        if read_into(go, length.as_mut_ptr(), length.len()) != length.len() {
            libc::_exit(0);
        }
        let length = u32::from_ne_bytes(length) as usize;
        if length > PLACEMENT_MAX {
            answer(3, -i64::from(libc::E2BIG));
        }
        // Left uninitialised: zeroing it would dirty 16 KiB of stack that the init inherits.
        let mut buffer = std::mem::MaybeUninit::<[u8; PLACEMENT_MAX]>::uninit();
        let base = buffer.as_mut_ptr().cast::<u8>();
        if read_into(go, base, length) != length {
            libc::_exit(0);
        }
        let placement = std::slice::from_raw_parts(base, length);
        let mut v2_cgroup = -1;
        for entry in placement.split_inclusive(|b| *b == 0) {
            let Some((&marker, path)) = entry.split_first() else {
                continue;
            };
            let path = path.as_ptr().cast::<libc::c_char>();
            if marker == b'2' {
                v2_cgroup = libc::open(path, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC);
                if v2_cgroup < 0 {
                    answer(3, errno());
                }
                continue;
            }
            let tasks = libc::open(path, libc::O_WRONLY | libc::O_CLOEXEC);
            if tasks < 0 || libc::write(tasks, b"0".as_ptr().cast(), 1) != 1 {
                answer(3, errno());
            }
            libc::close(tasks);
        }
        if flags != 0 && libc::unshare(flags) != 0 {
            answer(0, errno());
        }
        if let Some(name) = hostname
            && libc::sethostname(name.as_ptr().cast(), name.len()) != 0
        {
            answer(1, errno());
        }
        // The init is PID 1 of its namespace: a signal it has no handler for yet is dropped,
        // not kept. Blocked from before the fork, a SIGTERM that comes before `run` has set its
        // handlers stays pending for `run` to take (a Kill right after the sandbox's Start was
        // otherwise lost, and the pod took its whole grace period to stop).
        let mut blocked: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut blocked);
        for signal in INIT_SIGNALS {
            libc::sigaddset(&mut blocked, signal);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &blocked, std::ptr::null_mut());
        let forked = if v2_cgroup >= 0 {
            fork_into(v2_cgroup)
        } else {
            i64::from(libc::fork())
        };
        match forked {
            0 => {
                libc::close(go);
                libc::close(reply);
                run()
            }
            pid if pid > 0 => answer(2, pid),
            errno if v2_cgroup >= 0 => answer(3, errno),
            _ => answer(2, errno()),
        }
    }
}

extern "C" fn on_signal(_: libc::c_int) {}

/// The signals the init waits for.
const INIT_SIGNALS: [libc::c_int; 3] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT];

/// The init: waits for signals, reaps children, exits 0 on SIGTERM or SIGINT. As PID 1 of a
/// namespace it gets only the signals it handles (and SIGKILL from outside), hence the handlers.
fn run() -> ! {
    // SAFETY: signal set manipulation and waits on this single-threaded process.
    unsafe {
        crate::host::process_title::set_name(c"spore-pod-init");
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in INIT_SIGNALS {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(pid: &str, kind: &str) -> std::path::PathBuf {
        std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).expect("namespace link")
    }

    /// Needs root (namespaces). The template is forked here from a multi-threaded test process,
    /// which its child tolerates: it only makes system calls.
    #[test]
    fn the_init_holds_new_namespaces_and_ends_with_0_on_sigterm() {
        // The init's parent, the template, exits: this process must inherit the init.
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag on this process.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let spec = PodInitSpec {
            new_ipc: true,
            new_uts: true,
            new_pid: true,
            hostname: Some("pod-a".into()),
        };
        let template = InitTemplate::fork_single_threaded(&spec).expect("fork");
        let pid = template.start(&[]).expect("the init starts");
        let shown = pid.to_string();
        // From its first instant (the template answers as soon as it has forked, usually before
        // the init has run a line), SIGTERM is blocked or handled, never neither: a Kill that
        // early stays pending instead of being dropped by a PID 1 without a handler. (While
        // the init waits in sigwaitinfo the kernel shows it unblocked, and handled.)
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let mask = |field: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_owned()))
                .and_then(|v| u64::from_str_radix(&v, 16).ok())
                .unwrap_or(0)
        };
        let (blocked, caught) = (mask("SigBlk:"), mask("SigCgt:"));
        assert_ne!(
            (blocked | caught) & (1 << (libc::SIGTERM - 1)),
            0,
            "SigBlk {blocked:x}, SigCgt {caught:x}"
        );
        for kind in ["ipc", "uts", "pid"] {
            assert_ne!(ns(&shown, kind), ns("self", kind), "{kind}");
        }
        assert_eq!(ns(&shown, "net"), ns("self", "net"));
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
        assert_eq!(comm.trim(), POD_INIT_NAME);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
        assert!(cmdline.starts_with(b"spore-pod-init\0"), "{cmdline:?}");
        // PID 1 of its namespace gets SIGTERM only because it handles it.
        // SAFETY: kill and waitpid of the init this test made.
        let status = unsafe {
            libc::kill(pid, libc::SIGTERM);
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            status
        };
        assert!(libc::WIFEXITED(status), "{status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0);
    }

    #[test]
    fn a_failed_step_is_named() {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag on this process.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        // A hostname longer than the kernel takes (64 bytes) fails sethostname.
        let spec = PodInitSpec {
            new_uts: true,
            hostname: Some("h".repeat(100)),
            ..PodInitSpec::default()
        };
        let template = InitTemplate::fork_single_threaded(&spec).expect("fork");
        let err = template.start(&[]).expect_err("sethostname fails");
        assert!(err.to_string().contains("set the pod's hostname"), "{err}");
    }

    /// Leaves `spore-init-test-<pid>-<name>` in every cgroup hierarchy of this machine.
    fn test_leaves(name: &str) -> Vec<PathBuf> {
        let relative = format!("spore-init-test-{}-{name}", std::process::id());
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        crate::host::cgroup::cgroup_mounts(&mountinfo)
            .iter()
            .filter_map(|mount| crate::host::cgroup::make_dirs(mount, relative.as_ref()).ok())
            .collect()
    }

    /// Needs root. The init is in every leaf when `start` returns: the template joined the
    /// cgroup v1 ones itself (by `tasks`) and cloned the init into the v2 one; nobody moved it
    /// afterwards (the shim used to write its pid to each `cgroup.procs`, the slow way).
    #[test]
    fn the_init_starts_in_its_cgroup_in_every_hierarchy() {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag on this process.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let leaves = test_leaves("placed");
        assert!(!leaves.is_empty(), "no cgroup hierarchy to test with");
        let template = InitTemplate::fork_single_threaded(&PodInitSpec {
            new_pid: true,
            ..PodInitSpec::default()
        })
        .expect("fork");
        let pid = template.start(&leaves).expect("the init starts");
        let mut missing = Vec::new();
        for leaf in &leaves {
            let procs = std::fs::read_to_string(leaf.join("cgroup.procs")).unwrap_or_default();
            if !procs.lines().any(|line| line.trim() == pid.to_string()) {
                missing.push(leaf.clone());
            }
        }
        // SAFETY: kill and waitpid of the init this test made.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        crate::host::cgroup::remove_leaves(&leaves);
        assert!(missing.is_empty(), "the init {pid} is not in {missing:?}");
    }

    #[test]
    fn a_cgroup_the_init_cannot_join_is_named() {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a flag on this process.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let template = InitTemplate::fork_single_threaded(&PodInitSpec::default()).expect("fork");
        let missing = PathBuf::from(format!(
            "/sys/fs/cgroup/spore-no-such-{}",
            std::process::id()
        ));
        let err = template.start(&[missing]).expect_err("no such cgroup");
        assert!(err.to_string().contains("join its cgroup"), "{err}");
    }
}
