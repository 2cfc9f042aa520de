//! Thread stacks given back while the pod is idle.
//!
//! A thread's stack keeps every page its deepest call ever touched: in an idle HTTP pod's shim
//! (release build) the runtime's workers held 52 and 76 KiB, the serving thread 40 KiB, though
//! each was parked a few KiB deep. When the heap is trimmed ([`crate::host::heap`]), a release
//! is requested; each runtime thread then gives back the pages below its current stack pointer
//! the next time it parks (`on_thread_park`), as glibc does for an exiting thread's stack. The
//! pages come back, zeroed, when the thread next goes that deep.
//!
//! A parked thread does nothing until it is woken: [`request_release`] wakes what
//! [`released_on_wake`] waits on (on every HTTP serving thread), and the heap's trimmer hands
//! the shared runtime's workers an empty task each.

use std::cell::Cell;
use std::sync::LazyLock;

use tokio::sync::watch;

/// What is kept below the stack pointer. Nothing live is there but the x86-64 red zone (128
/// bytes); the margin spares the page faults of the few frames the release itself calls (a
/// signal handler that runs there later just faults its pages in again).
const MARGIN: usize = 4 << 10;

/// Bumped for each release; a thread releases when it parks and has not seen the newest.
static RELEASES: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);

thread_local! {
    static SEEN: Cell<u64> = const { Cell::new(0) };
}

/// Asks every runtime thread to give back its unused stack pages when it next parks.
pub fn request_release() {
    RELEASES.send_modify(|n| *n += 1);
}

/// For `on_thread_park`: gives back this thread's unused stack pages if a release was asked for
/// since its last.
pub fn on_park() {
    let newest = *RELEASES.borrow();
    if SEEN.with(|seen| seen.replace(newest)) != newest {
        release_below_here();
    }
}

/// Resolves after each [`request_release`], for a thread that would otherwise stay parked
/// through it: waiting on this wakes it, and it parks again (releasing) right after.
pub async fn released_on_wake() {
    let mut releases = RELEASES.subscribe();
    while releases.changed().await.is_ok() {}
}

/// Gives back the pages of the calling thread's stack that lie below its stack pointer (minus
/// [`MARGIN`]); returns how many bytes that covered.
pub fn release_below_here() -> usize {
    let here = 0u8;
    let sp = std::hint::black_box(&here) as *const u8 as usize;
    let Some(lowest) = stack_lowest() else {
        return 0;
    };
    let page = page_size();
    let start = lowest.next_multiple_of(page);
    let end = sp.saturating_sub(MARGIN) / page * page;
    if end <= start {
        return 0;
    }
    // SAFETY: [start, end) is this thread's own stack, below every live frame of it by MARGIN;
    // no one else uses a thread's stack, and MADV_DONTNEED leaves the pages mapped (zero-filled
    // on the next touch).
    let done =
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    if done == 0 { end - start } else { 0 }
}

/// The lowest address of the calling thread's stack.
fn stack_lowest() -> Option<usize> {
    // SAFETY: pthread_getattr_np fills an attribute object for the calling thread, which is
    // destroyed after its stack is read.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let got = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (got == 0 && !addr.is_null()).then_some(addr as usize)
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KiB of private dirty pages in the mapping that holds `address` (this process).
    fn dirty_kib_around(address: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut inside = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or_default();
            if let Some((low, high)) = first.split_once('-')
                && let (Ok(low), Ok(high)) = (
                    usize::from_str_radix(low, 16),
                    usize::from_str_radix(high, 16),
                )
            {
                inside = low <= address && address < high;
            } else if inside && let Some(rest) = line.strip_prefix("Private_Dirty:") {
                return rest
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .unwrap_or(0);
            }
        }
        0
    }

    /// Touches `kib` KiB of stack below the caller.
    #[inline(never)]
    fn go_deep(kib: usize) -> u8 {
        let mut block = [0u8; 1024];
        std::hint::black_box(&mut block)[0] = kib as u8;
        if kib == 0 {
            return block[0];
        }
        go_deep(kib - 1).wrapping_add(std::hint::black_box(&block)[0])
    }

    #[test]
    fn a_thread_gives_back_the_stack_pages_below_its_frames() {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let here = 0u8;
                let address = std::hint::black_box(&here) as *const u8 as usize;
                std::hint::black_box(go_deep(512));
                let deep = dirty_kib_around(address);
                let released = release_below_here();
                let after = dirty_kib_around(address);
                assert!(deep >= 512, "the deep call dirtied {deep} KiB");
                assert!(released >= 512 << 10, "released {released} bytes");
                assert!(
                    after + 400 <= deep,
                    "dirty stack: {deep} KiB deep, {after} KiB after the release"
                );
                // The thread goes on as before, and deep again.
                assert_eq!(go_deep(64), go_deep(64));
            })
            .expect("thread")
            .join()
            .expect("the thread ran");
    }

    #[test]
    fn a_parking_thread_catches_up_with_the_newest_request() {
        std::thread::spawn(|| {
            request_release();
            on_park();
            assert_eq!(SEEN.with(Cell::get), *RELEASES.borrow());
        })
        .join()
        .expect("the thread ran");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_request_wakes_a_waiting_thread() {
        let waiting = tokio::spawn(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), async {
                let mut releases = RELEASES.subscribe();
                releases.changed().await.is_ok()
            })
            .await
        });
        tokio::task::yield_now().await;
        request_release();
        assert_eq!(waiting.await.expect("task").ok(), Some(true));
    }
}
