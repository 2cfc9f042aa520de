//! The threads that serve one HTTP container's connections: each runs a single-threaded tokio
//! runtime, and each accepted connection is handed, socket and all, to one of them in turn. A
//! connection's requests, their guests and the writing of their responses then all run on that
//! one thread: no work stealing and no wake-up across threads within a request.
//!
//! Measured through containerd (`hack/bench.sh http`, 2 cores), the shim's shared multi-threaded
//! runtime spread each request over both of its workers: at 1 connection it spent 266 us of CPU
//! per request where runwasi's shim, whose server runs on one thread, spent 192. `docs/http.md`
//! has the figures with these threads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The container's serving threads, each started when the first connection is handed to it (an
/// idle server holds none: their stacks, runtimes and malloc arenas cost an idle pod memory);
/// they end when this is dropped (tasks still on them are cancelled).
pub struct ServingThreads {
    name: String,
    /// A started thread's runtime, by slot.
    slots: Mutex<Vec<Option<Handle>>>,
    /// Dropping a sender ends its thread's runtime.
    stops: Mutex<Vec<oneshot::Sender<()>>>,
    count: usize,
    next: AtomicUsize,
}

impl ServingThreads {
    /// Room for `count` (at least one) threads named `name-<slot>`; none started yet.
    pub fn new(count: usize, name: &str) -> ServingThreads {
        let count = count.max(1);
        ServingThreads {
            name: name.to_owned(),
            slots: Mutex::new(vec![None; count]),
            stops: Mutex::new(Vec::new()),
            count,
            next: AtomicUsize::new(0),
        }
    }

    /// The thread for the next connection (round robin), started if it is its first.
    pub fn next(&self) -> std::io::Result<Handle> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.count;
        let mut slots = self
            .slots
            .lock()
            .map_err(|_| std::io::Error::other("serving threads poisoned"))?;
        if let Some(handle) = &slots[i] {
            return Ok(handle.clone());
        }
        crate::host::heap::allow_serving_arenas();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(crate::host::idle_stacks::on_park)
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("{}-{i}", self.name))
            .spawn(move || {
                // Runs the tasks handed to it until the sender goes; dropping the runtime
                // here cancels what is left. A quiet pod's request to give back stack pages
                // wakes the thread, which then parks again and does.
                runtime.block_on(async {
                    tokio::select! {
                        _ = stopped => {}
                        () = crate::host::idle_stacks::released_on_wake() => {}
                    }
                });
            })?;
        if let Ok(mut stops) = self.stops.lock() {
            stops.push(stop);
        }
        slots[i] = Some(handle.clone());
        Ok(handle)
    }

    /// How many threads there is room for.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How many have been started.
    pub fn started(&self) -> usize {
        self.slots
            .lock()
            .map_or(0, |slots| slots.iter().filter(|s| s.is_some()).count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_go_round_robin_and_each_runs_on_its_own_thread() {
        let threads = ServingThreads::new(2, "spore-test-http");
        assert_eq!(threads.len(), 2);
        let mut names = Vec::new();
        for _ in 0..4 {
            let name = threads
                .next()
                .expect("thread")
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
        let threads = ServingThreads::new(1, "spore-test-end");
        let (held, released) = oneshot::channel::<()>();
        let task = threads.next().expect("thread").spawn(async move {
            let _held = held;
            std::future::pending::<()>().await;
        });
        drop(threads);
        // The task is cancelled with its runtime: its sender is dropped, the join reports it.
        assert!(released.await.is_err());
        assert!(task.await.expect_err("cancelled").is_cancelled());
    }

    /// Names of this process's threads.
    fn thread_names() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .flatten()
                    .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                    .map(|n| n.trim().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_thread_starts_with_its_first_connection_and_not_before() {
        let threads = ServingThreads::new(2, "spore-lazy");
        // A new thread names itself a moment after it starts: wait (bounded) for the count.
        let running = || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                let n = thread_names()
                    .iter()
                    .filter(|n| n.starts_with("spore-lazy"))
                    .count();
                if n == threads.started() || std::time::Instant::now() > deadline {
                    return n;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        };
        assert_eq!((threads.started(), running()), (0, 0), "idle: no thread");
        let first = threads.next().expect("thread");
        assert_eq!((threads.started(), running()), (1, 1));
        let again = threads.next().expect("thread");
        assert_eq!((threads.started(), running()), (2, 2));
        // The slots are reused from then on.
        let third = threads.next().expect("thread");
        assert_eq!((threads.started(), running()), (2, 2));
        let on = |h: Handle| async move {
            h.spawn(async { std::thread::current().name().map(str::to_owned) })
                .await
                .expect("task")
        };
        assert_eq!(on(first).await.as_deref(), Some("spore-lazy-0"));
        assert_eq!(on(again).await.as_deref(), Some("spore-lazy-1"));
        assert_eq!(on(third).await.as_deref(), Some("spore-lazy-0"));
    }
}
