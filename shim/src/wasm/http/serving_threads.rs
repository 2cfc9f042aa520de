//! The threads that serve one HTTP container's connections: each runs a single-threaded tokio
//! runtime, and each accepted connection is handed, socket and all, to one of them in turn. A
//! connection's requests, their guests and the writing of their responses then all run on that
//! one thread: no work stealing and no wake-up across threads within a request.
//!
//! Measured through containerd (`hack/bench.sh http`, 2 cores), the shim's shared multi-threaded
//! runtime spread each request over both of its workers: at 1 connection it spent 266 us of CPU
//! per request where runwasi's shim, whose server runs on one thread, spent 192. `docs/http.md`
//! has the figures with these threads.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The container's serving threads; they end when this is dropped (tasks still on them are
/// cancelled).
pub struct ServingThreads {
    handles: Vec<Handle>,
    /// Dropping a sender ends its thread's runtime.
    _stops: Vec<oneshot::Sender<()>>,
    next: AtomicUsize,
}

impl ServingThreads {
    /// Starts `count` (at least one) threads named `name`.
    pub fn start(count: usize, name: &str) -> std::io::Result<ServingThreads> {
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        for i in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    // Runs the tasks handed to it until the sender goes; dropping the runtime
                    // here cancels what is left.
                    let _ = runtime.block_on(stopped);
                })?;
        }
        Ok(ServingThreads {
            handles,
            _stops: stops,
            next: AtomicUsize::new(0),
        })
    }

    /// The thread for the next connection (round robin).
    pub fn next(&self) -> &Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[i]
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_go_round_robin_and_each_runs_on_its_own_thread() {
        let threads = ServingThreads::start(2, "spore-test-http").expect("threads");
        assert_eq!(threads.len(), 2);
        let mut names = Vec::new();
        for _ in 0..4 {
            let name = threads
                .next()
                .spawn(async {
                    // A task spawned from there stays on that thread.
                    let outer = std::thread::current().name().map(str::to_owned);
                    let inner =
                        tokio::spawn(async { std::thread::current().name().map(str::to_owned) })
                            .await
                            .expect("inner task");
                    assert_eq!(outer, inner);
                    outer
                })
                .await
                .expect("task");
            names.push(name.expect("named thread"));
        }
        assert_eq!(
            names,
            [
                "spore-test-http-0",
                "spore-test-http-1",
                "spore-test-http-0",
                "spore-test-http-1"
            ]
        );
    }

    #[tokio::test]
    async fn tasks_left_on_the_threads_end_with_them() {
        let threads = ServingThreads::start(1, "spore-test-end").expect("threads");
        let (held, released) = oneshot::channel::<()>();
        let task = threads.next().spawn(async move {
            let _held = held;
            std::future::pending::<()>().await;
        });
        drop(threads);
        // The task is cancelled with its runtime: its sender is dropped, the join reports it.
        assert!(released.await.is_err());
        assert!(task.await.expect_err("cancelled").is_cancelled());
    }
}
