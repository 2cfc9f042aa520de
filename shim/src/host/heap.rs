//! The serving process's heap, kept small while the pod is idle.
//!
//! Measured on idle HTTP pods' shims (glibc build, 1,000 pods, `docs/benchmarks.md`): besides
//! the main heap, each shim held 0.9 to 1.6 MiB in four per-thread malloc arenas (the threads
//! that compiled or loaded the guest, served its first request, answered containerd), the
//! largest part of its private memory. So:
//! - at most [`START_ARENAS`] arena while the pod's containers start, [`SERVING_ARENAS`] once
//!   an HTTP guest serves: the threads of a shim share them instead of taking one each;
//! - once the process has been quiet for [`QUIET`] after anything happened (a task call, a
//!   request), `malloc_trim(0)` gives the freed pages of every arena back to the kernel. A busy
//!   server is not trimmed: only the first quiet period after activity is.
//!
//! With both, 1,000 idle pods measured 2.14 MiB PSS each; without, 2.88 MiB (20 pods showed no
//! difference: the arenas a shim ends up with vary from shim to shim). The same quiet moment
//! also has the threads give back their unused stack pages (`crate::host::idle_stacks`).
//!
//! musl builds use mimalloc (`crate::allocator`), which returns freed pages itself; there both
//! are no-ops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Arenas glibc's malloc may make for the serving process's threads while it starts its pod's
/// containers: one. A thread that finds the arena busy takes an arena of its own, and keeps it;
/// under load (a kubelet starting pods while a thousand others stopped) the calls of one
/// container's start ran on two threads at once, and 7 of 10 idle shims then held 1.2 MiB of a
/// guest's linking in a second arena (the linker's and the component's type names): 1.9 MiB
/// private against 0.95 with one arena.
pub const START_ARENAS: i32 = 1;
/// Arenas once an HTTP guest serves: its serving threads allocate for every request. Two, as
/// when issue 18's figures were measured; one for serving too was not measured apart.
pub const SERVING_ARENAS: i32 = 2;
/// How long nothing must happen before the heap is trimmed.
pub const QUIET: Duration = Duration::from_secs(2);

static ACTIVITY: AtomicU64 = AtomicU64::new(0);

/// Something happened that allocates (a task call, a request): the next quiet period trims.
pub fn note_activity() {
    ACTIVITY.fetch_add(1, Ordering::Relaxed);
}

/// Limits malloc's arenas to [`START_ARENAS`]. Call before the process's threads start.
pub fn limit_arenas() {
    set_arena_max(START_ARENAS);
}

/// Allows [`SERVING_ARENAS`]: called when an HTTP guest's first serving thread starts.
pub fn allow_serving_arenas() {
    set_arena_max(SERVING_ARENAS);
}

fn set_arena_max(arenas: i32) {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt with a valid parameter; it takes malloc's main lock.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
    #[cfg(not(target_env = "gnu"))]
    let _ = arenas;
}

/// Gives the freed pages of every arena back to the kernel; returns whether any were.
pub fn trim() -> bool {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes malloc's own locks.
    unsafe {
        libc::malloc_trim(0) == 1
    }
    #[cfg(not(target_env = "gnu"))]
    false
}

/// Whether a trim is due: something happened since the last one, and nothing in the last
/// period (`seen` is the count at the previous check, `trimmed` at the last trim).
fn due(now: u64, seen: u64, trimmed: u64) -> bool {
    now == seen && now != trimmed
}

/// Trims the heap after each burst of activity, for the life of the process.
pub async fn trim_when_quiet() {
    let (mut seen, mut trimmed) = (ACTIVITY.load(Ordering::Relaxed), 0);
    loop {
        tokio::time::sleep(QUIET).await;
        let now = ACTIVITY.load(Ordering::Relaxed);
        if due(now, seen, trimmed) {
            let _ = tokio::task::spawn_blocking(trim).await;
            wake_workers_to_release_stacks();
            trimmed = now;
        }
        seen = now;
    }
}

/// Asks every thread to give back its unused stack pages when it next parks
/// (`crate::host::idle_stacks`), and gives each of the runtime's workers an empty task, so that
/// each parks once more: a task spawned while another waits in this worker's queue wakes a
/// parked worker to steal it.
fn wake_workers_to_release_stacks() {
    crate::host::idle_stacks::request_release();
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    for _ in 0..workers {
        tokio::spawn(async {});
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trim_is_due_once_after_activity_settles() {
        // Nothing has happened yet: no trim.
        assert!(!due(0, 0, 0));
        // Activity in the last period: wait.
        assert!(!due(5, 3, 0));
        // Quiet since: trim.
        assert!(due(5, 5, 0));
        // Already trimmed at that count: not again.
        assert!(!due(5, 5, 5));
    }

    #[cfg(target_env = "gnu")]
    #[test]
    fn freed_memory_goes_back_to_the_kernel() {
        fn resident_kib() -> u64 {
            std::fs::read_to_string("/proc/self/status")
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        }
        // Many small blocks (below the mmap threshold, so they live in the heap), then all but
        // the last freed: glibc cannot shrink the heap past the live one at its top.
        let mut blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 4000]).collect();
        let last = blocks.pop();
        drop(blocks);
        let before = resident_kib();
        assert!(trim(), "malloc_trim released nothing");
        let after = resident_kib();
        drop(last);
        assert!(
            after + 8 * 1024 < before,
            "resident {before} KiB before the trim, {after} KiB after"
        );
    }
}
