//! The shim process in its pod's cgroup. Wasm containers run inside the shim, so the shim lives
//! in a leaf `spore-wasm` below the pod's cgroup (the parent of the containers' `cgroupsPath`),
//! in every hierarchy (cgroup v1 and v2, see [`enter_leaves`]), so that the kubelet's pod
//! limits and accounting cover the Wasm containers; it leaves at shutdown so the kubelet can
//! remove the pod's cgroup.
//!
//! When it joins is a matter of speed. Writing a pid to `cgroup.procs` takes the kernel's
//! global `cgroup_threadgroup_rwsem` for writing, and the first writer after a quiet spell waits
//! for an RCU grace period: 6-25 ms on a 2-core VM, on the path of every pod's start. A
//! single-threaded process that writes `0` to a cgroup v1 `tasks` file moves only its own
//! thread, which takes no global lock (0.1 ms per hierarchy). So the serving shim joins its pod
//! at its start, while it has one thread ([`join_pod_at_start`]): the v1 hierarchies that way,
//! and a v2 one (which has no such file) by `cgroup.procs` from a thread of its own. That write
//! holds `cgroup_mutex` while it waits, which stalls every cgroup directory made and every
//! process cloned into a cgroup meanwhile (the sandbox's leaves and init among them): a v2 leaf
//! without controllers (a hybrid host's unified hierarchy, which only tracks processes) is
//! therefore joined 2 s later, once the pod has started; one with controllers at once.
//!
//! Compiling is the node's cost, like unpacking an image: the first compile of an interpreter
//! component needs several times a pod's memory limit. A compile before the pod's first Wasm
//! guest is linked therefore runs with the shim stepped out to the hierarchies' roots
//! ([`outside_pod_while`]), and back in afterwards: a cache miss pays two moves, a hit none.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use super::cgroup::{SHIM_CGROUP_LEAF, cgroup_mounts, inherit_cpuset, is_v2, pod_cgroup};
use crate::spec::ContainerSpec;

/// The leaves the shim is in, one per hierarchy.
static JOINED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// The thread still moving the shim into a cgroup v2 leaf (see the module's text).
static JOINING_V2: Mutex<Option<(JoinHandle<JoinFailures>, Sender<bool>)>> = Mutex::new(None);
/// Set once a Wasm guest of the pod is linked: from then on compiles stay in the pod.
static GUEST_LINKED: AtomicBool = AtomicBool::new(false);
/// How many compiles run with the shim stepped out of its pod.
static STEPPED_OUT: Mutex<usize> = Mutex::new(0);

/// What could not be joined: the hierarchy or leaf, and why.
pub type JoinFailures = Vec<(PathBuf, std::io::Error)>;

/// The shim's leaf below the pod's cgroup in hierarchy `mount`, made (with its cpuset) if
/// missing; `None` when the pod's cgroup does not exist there (no kubelet made it).
fn leaf_in(mount: &Path, pod: &Path) -> Option<std::io::Result<PathBuf>> {
    let parent = mount.join(pod.strip_prefix("/").unwrap_or(pod));
    if !parent.is_dir() {
        return None;
    }
    let leaf = parent.join(SHIM_CGROUP_LEAF);
    Some(
        std::fs::create_dir_all(&leaf)
            .and_then(|()| inherit_cpuset(&parent, &leaf))
            .map(|()| leaf),
    )
}

fn pod_of(spec: &ContainerSpec) -> Option<PathBuf> {
    spec.sandbox_id()?;
    spec.cgroups_path.as_deref().and_then(pod_cgroup)
}

/// Writes `what` to `file` of `leaf`; on failure removes the leaf (if empty).
fn move_into(leaf: &Path, file: &str, what: &str) -> std::io::Result<PathBuf> {
    match std::fs::write(leaf.join(file), what) {
        Ok(()) => Ok(leaf.to_path_buf()),
        Err(err) => {
            let _ = std::fs::remove_dir(leaf);
            Err(err)
        }
    }
}

/// For each hierarchy in which the pod has a cgroup: the shim's leaf there (made if missing),
/// given to `enter`, which moves the shim in (`Ok(Some(leaf))`, recorded in `joined`), leaves
/// the move for later (`Ok(None)`) or fails. Returns the failures.
///
/// Every hierarchy, a v1 `cpuset` too. Leaving the cpuset out (5ad1de7) cost HTTP guests a
/// third of their req/s at 16 and 50 connections (`hack/bench.sh http`: hello-http 0.78-0.84x
/// runwasi's shim, 1.19-1.24x with the cpuset joined, in the same hour); why is not known.
/// The slower CreateContainer seen with the cpuset joined is containerd's own stall on a 2-core
/// node (its FIFO opens and Go's `sysmon`, gone with `GOMAXPROCS=4` and the cpuset joined,
/// `docs/benchmarks.md`); how the cpuset changed how often it hit is not known.
fn enter_leaves(
    pod: &Path,
    joined: &mut Vec<PathBuf>,
    mut enter: impl FnMut(&Path) -> std::io::Result<Option<PathBuf>>,
) -> JoinFailures {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut failures = Vec::new();
    for mount in cgroup_mounts(&mountinfo) {
        let Some(made) = leaf_in(&mount, pod) else {
            continue;
        };
        match made.and_then(|leaf| enter(&leaf)) {
            Ok(Some(leaf)) => joined.push(leaf),
            Ok(None) => {}
            Err(err) => failures.push((mount, err)),
        }
    }
    failures
}

/// Logs what the shim could not join (the guests still run, only outside the pod's
/// accounting).
pub fn log_failures(failures: &JoinFailures) {
    for (cgroup, err) in failures {
        tracing::warn!(cgroup = %cgroup.display(), %err, "cannot join the pod's cgroup");
    }
}

/// Moves the shim into the pod's cgroup of `spec` (a pod's sandbox or container) at its start.
/// Only while the process has one thread: a `tasks` write moves one thread. Returns what it
/// could not join, for the log once there is one; the v2 thread's failures are logged when it
/// is waited for.
pub fn join_pod_at_start(spec: &ContainerSpec) -> JoinFailures {
    let Some(pod) = pod_of(spec) else {
        return Vec::new();
    };
    let Ok(mut joined) = JOINED.lock() else {
        return Vec::new();
    };
    let mut v2 = Vec::new();
    let mut failures = enter_leaves(&pod, &mut joined, |leaf| {
        if is_v2(leaf) {
            v2.push(leaf.to_path_buf());
            return Ok(None);
        }
        move_into(leaf, "tasks", "0").map(Some)
    });
    if v2.is_empty() {
        return failures;
    }
    // Recorded at once (a dead shim's cleanup removes them); the thread takes back a leaf it
    // could not move the shim into. It holds no lock while it waits.
    joined.extend(v2.iter().cloned());
    drop(joined);
    let (now, wake) = std::sync::mpsc::channel::<bool>();
    let pid = std::process::id().to_string();
    let leaves = v2.clone();
    let joining = std::thread::Builder::new()
        .name("spore-cgroup".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            // A v2 leaf without controllers (the unified hierarchy of a hybrid host) only
            // tracks processes: its move waits until the pod has started, or until it is
            // needed ([`finish_joining`]). One with controllers is accounting: at once.
            let mut failures = Vec::new();
            if leaves.iter().all(|leaf| !has_controllers(leaf))
                && wake.recv_timeout(DEFERRED_V2_JOIN) == Ok(false)
            {
                // The shim leaves its pod before it joined this one.
                return failures;
            }
            for leaf in leaves {
                if let Err(err) = move_into(&leaf, "cgroup.procs", &pid) {
                    if let Ok(mut joined) = JOINED.lock() {
                        joined.retain(|l| *l != leaf);
                    }
                    failures.push((leaf, err));
                }
            }
            failures
        });
    match joining {
        Ok(handle) => {
            if let Ok(mut slot) = JOINING_V2.lock() {
                *slot = Some((handle, now));
            }
        }
        Err(err) => {
            if let Ok(mut joined) = JOINED.lock() {
                joined.retain(|l| !v2.contains(l));
            }
            let reason = err.to_string();
            failures.extend(
                v2.into_iter()
                    .map(|leaf| (leaf, std::io::Error::other(reason.clone()))),
            );
        }
    }
    failures
}

/// How long the move into a v2 leaf without controllers waits: past the pod's start, whose
/// own cgroup work (the sandbox's leaves, runc's containers) it would otherwise hold up.
const DEFERRED_V2_JOIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether the v2 cgroup `leaf` has controllers (memory, cpu, ...) enabled.
fn has_controllers(leaf: &Path) -> bool {
    std::fs::read_to_string(leaf.join("cgroup.controllers"))
        .map(|c| !c.trim().is_empty())
        .unwrap_or(true)
}

/// Has the cgroup v2 move [`join_pod_at_start`] left to a thread done now (or, not `wanted`,
/// not at all if it has not begun), and waits for it.
fn finish_joining_if(wanted: bool) {
    let joining = JOINING_V2.lock().ok().and_then(|mut slot| slot.take());
    if let Some((handle, now)) = joining {
        let _ = now.send(wanted);
        if let Ok(failures) = handle.join() {
            log_failures(&failures);
        }
    }
}

fn finish_joining() {
    finish_joining_if(true);
}

/// Called once a Wasm guest of the pod is linked: from now on the guest's memory is the pod's,
/// and so are later compiles. Joins the pod's cgroup if the shim is not in it yet (it was not
/// started for a pod's sandbox, or the pod's cgroup did not exist then).
pub fn join_pod(spec: &ContainerSpec) {
    GUEST_LINKED.store(true, Ordering::SeqCst);
    let Some(pod) = pod_of(spec) else {
        return;
    };
    let Ok(mut joined) = JOINED.lock() else {
        return;
    };
    if !joined.is_empty() {
        return;
    }
    let pid = std::process::id().to_string();
    let failures = enter_leaves(&pod, &mut joined, |leaf| {
        move_into(leaf, "cgroup.procs", &pid).map(Some)
    });
    log_failures(&failures);
    tracing::info!(cgroups = ?*joined, "shim joined its pod's cgroup");
}

/// The leaves the shim is in, or is being moved into (one per hierarchy); empty when it
/// joined none.
pub fn joined_leaves() -> Vec<PathBuf> {
    JOINED.lock().map(|j| j.clone()).unwrap_or_default()
}

/// Writes this process's pid to `cgroup.procs` of each joined hierarchy's root, or of each
/// joined leaf (`into_leaves`).
fn move_whole_process(joined: &[PathBuf], into_leaves: bool) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let pid = std::process::id().to_string();
    for mount in cgroup_mounts(&mountinfo) {
        for leaf in joined.iter().filter(|leaf| leaf.starts_with(&mount)) {
            let target = if into_leaves { leaf.as_path() } else { &mount };
            if let Err(err) = std::fs::write(target.join("cgroup.procs"), &pid) {
                tracing::warn!(cgroup = %target.display(), %err, "cannot move the shim");
            }
        }
    }
}

/// Runs `compile` with the shim outside its pod's cgroup (in each hierarchy's root) when no
/// Wasm guest of the pod is linked yet; otherwise where it is. Compiles that overlap share one
/// step out: the last one to end moves the shim back.
pub fn outside_pod_while<T>(compile: impl FnOnce() -> T) -> T {
    if GUEST_LINKED.load(Ordering::SeqCst) {
        return compile();
    }
    finish_joining();
    let joined = joined_leaves();
    if joined.is_empty() {
        return compile();
    }
    if let Ok(mut count) = STEPPED_OUT.lock() {
        if *count == 0 {
            move_whole_process(&joined, false);
            tracing::debug!("the shim stepped out of its pod's cgroup to compile");
        }
        *count += 1;
    }
    let compiled = compile();
    if let Ok(mut count) = STEPPED_OUT.lock() {
        *count = count.saturating_sub(1);
        if *count == 0 {
            move_whole_process(&joined, true);
        }
    }
    compiled
}

/// Whether `/proc/self/cgroup` (`cgroups`) places the process in `leaf` (a path under one of
/// the hierarchies' mounts): by the v2 line (`0::/path`) for a `v2` leaf, else by a v1 line.
fn is_in(cgroups: &str, leaf: &Path, v2: bool) -> bool {
    cgroups.lines().any(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next(), fields.next(), fields.next());
        controllers.is_some_and(|c| c.is_empty() == v2)
            && path.is_some_and(|p| p != "/" && leaf.ends_with(p.trim_start_matches('/')))
    })
}

/// Leaves the pod's cgroup (back to each hierarchy's root) and removes the leaf, so the kubelet
/// can remove the pod's cgroup.
pub fn leave_pod() {
    // A deferred move not made yet is not made: leaving costs no wait for it.
    finish_joining_if(false);
    let Ok(mut joined) = JOINED.lock() else {
        return;
    };
    let mine = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let inside: Vec<PathBuf> = joined
        .iter()
        .filter(|leaf| is_in(&mine, leaf, is_v2(leaf)))
        .cloned()
        .collect();
    move_whole_process(&inside, false);
    for leaf in joined.drain(..) {
        if let Err(err) = std::fs::remove_dir(&leaf) {
            tracing::warn!(leaf = %leaf.display(), %err, "cannot remove the shim's cgroup");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
9:memory:/kubepods/pod1/spore-wasm
1:name=systemd:/kubepods/pod1/spore-wasm
0::/";

    #[test]
    fn the_v2_line_alone_says_where_the_process_is_in_v2() {
        let v1 = Path::new("/sys/fs/cgroup/memory/kubepods/pod1/spore-wasm");
        let v2 = Path::new("/sys/fs/cgroup/unified/kubepods/pod1/spore-wasm");
        assert!(is_in(HYBRID, v1, false));
        assert!(!is_in(HYBRID, v2, true), "the v1 lines name the same path");
        let joined = HYBRID.replace("0::/", "0::/kubepods/pod1/spore-wasm");
        assert!(is_in(&joined, v2, true));
        assert!(!is_in("0::/kubepods/pod1/spore-wasm", v1, false));
    }
}
