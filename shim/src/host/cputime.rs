//! Per-container CPU time: a future wrapper that adds the thread CPU time spent in each poll of
//! the guest's future to a shared counter. Guests run as tokio tasks on shared worker threads,
//! so per-thread CPU clocks around each poll are what belongs to the container.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use crate::host::stats::Usage;

/// CPU time the calling thread has used, in nanoseconds.
pub fn thread_cpu_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is always available
    // on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

pin_project_lite::pin_project! {
    /// Wraps a future, adding the CPU time of its polls to `usage.cpu_nanos`.
    pub struct CpuAccounted<F> {
        #[pin]
        inner: F,
        usage: Arc<Usage>,
    }
}

impl<F> CpuAccounted<F> {
    pub fn new(inner: F, usage: Arc<Usage>) -> Self {
        CpuAccounted { inner, usage }
    }
}

impl<F: Future> Future for CpuAccounted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let before = thread_cpu_nanos();
        let out = this.inner.poll(cx);
        let spent = thread_cpu_nanos().saturating_sub(before);
        this.usage.cpu_nanos.fetch_add(spent, Ordering::Relaxed);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn busy_work_is_counted() {
        let usage = Arc::new(Usage::default());
        let work = async {
            let mut x = 0u64;
            for i in 0..20_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x)
        };
        CpuAccounted::new(work, usage.clone()).await;
        assert!(usage.cpu_nanos.load(Ordering::Relaxed) > 0);
    }
}
