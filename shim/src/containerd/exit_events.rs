//! A process's TaskExit: published once the process ends, never before the TaskStart of a start
//! that is still being answered, and always before the TaskDelete of its container (Delete waits
//! for [`ExitWatch::published`]).

use std::sync::Arc;

use tokio::sync::watch;

use crate::container::Process;
use crate::containerd::convert;
use crate::containerd::events::{EventSink, TaskEvent};

pub struct ExitWatch {
    starting: watch::Sender<usize>,
    published: watch::Receiver<bool>,
}

impl ExitWatch {
    /// Watches `process` (of container `container`, exec `exec`) and publishes its exit.
    pub fn spawn(
        process: Arc<dyn Process>,
        events: Arc<dyn EventSink>,
        container: String,
        exec: Option<String>,
    ) -> Self {
        let (starting, mut starts) = watch::channel(0usize);
        let (published_tx, published) = watch::channel(false);
        tokio::spawn(async move {
            let status = process.wait().await;
            // A Start being answered publishes its TaskStart first.
            let _ = starts.wait_for(|in_flight| *in_flight == 0).await;
            let pid = process.info().pid;
            events.send(TaskEvent::Exit(convert::task_exit(
                &container,
                exec.as_deref(),
                pid,
                &status,
            )));
            published_tx.send_replace(true);
        });
        ExitWatch {
            starting,
            published,
        }
    }

    /// Holds the TaskExit back while a Start is answered (until the guard drops).
    pub fn hold(&self) -> StartInFlight<'_> {
        self.starting.send_modify(|n| *n += 1);
        StartInFlight(&self.starting)
    }

    /// Resolves once the TaskExit is published.
    pub async fn published(&self) {
        let mut published = self.published.clone();
        let _ = published.wait_for(|done| *done).await;
    }
}

/// A Start being answered; see [`ExitWatch::hold`].
pub struct StartInFlight<'a>(&'a watch::Sender<usize>);

impl Drop for StartInFlight<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}
