//! The container's stdout and stderr, shared by every request's instance.
//!
//! Each stream is opened once per container (a FIFO opened read-write, see `crate::host::stdio`) and owned
//! by one writer task; instances send their writes to it over a bounded channel. A guest write
//! is one message, so lines printed by concurrent requests do not interleave inside a line, and
//! a reader that stops reading slows the guests down (the channel fills) instead of growing memory.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::PollSender;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::error::ShimError;
use crate::host::stdio::{StdioTarget, open_writer};

/// Writes waiting for the writer task, per stream.
const QUEUED_WRITES: usize = 1024;
/// The most a guest may write in one call.
const MAX_WRITE: usize = 64 * 1024;

/// One of the container's output streams, as the instances see it.
#[derive(Clone)]
pub struct SharedOutput {
    sender: Option<mpsc::Sender<Bytes>>,
}

/// The task that writes a stream to its FIFO or file; finishes once every [`SharedOutput`]
/// clone is gone and the queue is written.
pub struct OutputWriter {
    task: Option<JoinHandle<()>>,
}

impl OutputWriter {
    /// Waits until everything queued has been written.
    pub async fn finish(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl SharedOutput {
    /// Opens `target` and starts its writer task. `StdioTarget::None` discards the output.
    pub async fn open(
        stream: &'static str,
        target: &StdioTarget,
    ) -> Result<(SharedOutput, OutputWriter), ShimError> {
        let path = match target {
            StdioTarget::None => {
                return Ok((SharedOutput { sender: None }, OutputWriter { task: None }));
            }
            StdioTarget::Path(path) => path,
        };
        let mut file = open_writer(stream, path).await?;
        let (sender, mut receiver) = mpsc::channel::<Bytes>(QUEUED_WRITES);
        let shown = path.display().to_string();
        let task = tokio::spawn(async move {
            let mut failed = false;
            while let Some(chunk) = receiver.recv().await {
                if failed {
                    continue;
                }
                if let Err(err) = file.write_all(&chunk).await {
                    tracing::warn!(%err, stream, path = %shown, "cannot write guest output; dropping the rest");
                    failed = true;
                }
            }
            let _ = file.flush().await;
        });
        Ok((
            SharedOutput {
                sender: Some(sender),
            },
            OutputWriter { task: Some(task) },
        ))
    }

    /// Queues one line written by the host (a trap's message), waiting for room.
    pub async fn write_line(&self, line: &str) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(Bytes::from(format!("{line}\n"))).await;
        }
    }
}

impl IsTerminal for SharedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for SharedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(AsyncOutput {
            sender: self.sender.clone().map(PollSender::new),
        })
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(P2Output {
            sender: self.sender.clone(),
            permit: None,
        })
    }
}

/// A WASIp2 output stream: `check-write` takes a slot in the queue, `write` fills it.
struct P2Output {
    sender: Option<mpsc::Sender<Bytes>>,
    permit: Option<mpsc::OwnedPermit<Bytes>>,
}

impl OutputStream for P2Output {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let Some(sender) = &self.sender else {
            return Ok(());
        };
        if bytes.len() > MAX_WRITE {
            return Err(StreamError::Trap(wasmtime::format_err!(
                "write of {} bytes is more than check-write allowed ({MAX_WRITE})",
                bytes.len()
            )));
        }
        match self.permit.take() {
            Some(permit) => {
                permit.send(bytes);
                Ok(())
            }
            None => sender.try_send(bytes).map_err(|err| match err {
                mpsc::error::TrySendError::Closed(_) => StreamError::Closed,
                mpsc::error::TrySendError::Full(_) => StreamError::Trap(wasmtime::format_err!(
                    "write without a permit from check-write"
                )),
            }),
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let Some(sender) = &self.sender else {
            return Ok(MAX_WRITE);
        };
        if self.permit.is_some() {
            return Ok(MAX_WRITE);
        }
        match sender.clone().try_reserve_owned() {
            Ok(permit) => {
                self.permit = Some(permit);
                Ok(MAX_WRITE)
            }
            Err(mpsc::error::TrySendError::Full(_)) => Ok(0),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(StreamError::Closed),
        }
    }
}

#[async_trait::async_trait]
impl Pollable for P2Output {
    async fn ready(&mut self) {
        if self.permit.is_some() {
            return;
        }
        let Some(sender) = &self.sender else {
            return;
        };
        // A closed queue is ready: the next check-write reports it.
        if let Ok(permit) = sender.clone().reserve_owned().await {
            self.permit = Some(permit);
        }
    }
}

/// The same stream for hosts that write through `AsyncWrite`.
struct AsyncOutput {
    sender: Option<PollSender<Bytes>>,
}

impl AsyncWrite for AsyncOutput {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let Some(sender) = self.sender.as_mut() else {
            return Poll::Ready(Ok(buf.len()));
        };
        let closed = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        match sender.poll_reserve(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(Err(closed())),
            Poll::Ready(Ok(())) => {
                let len = buf.len().min(MAX_WRITE);
                match sender.send_item(Bytes::copy_from_slice(&buf[..len])) {
                    Ok(()) => Poll::Ready(Ok(len)),
                    Err(_) => Poll::Ready(Err(closed())),
                }
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_from_many_streams_reach_the_file_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out");
        std::fs::write(&path, "").expect("create");
        let (output, writer) = SharedOutput::open("stdout", &StdioTarget::Path(path.clone()))
            .await
            .expect("open");
        let mut first = output.p2_stream();
        let mut second = output.p2_stream();
        assert!(first.check_write().expect("room") > 0);
        assert!(second.check_write().expect("room") > 0);
        first.write(Bytes::from_static(b"one\n")).expect("write");
        second.write(Bytes::from_static(b"two\n")).expect("write");
        let mut async_stream = Pin::from(output.async_stream());
        async_stream.write_all(b"three\n").await.expect("write");
        output.write_line("four").await;
        drop((first, second, async_stream, output));
        writer.finish().await;
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "one\ntwo\nthree\nfour\n"
        );
    }

    #[tokio::test]
    async fn a_full_queue_asks_the_guest_to_wait() {
        let (sender, mut receiver) = mpsc::channel::<Bytes>(1);
        let mut stream = P2Output {
            sender: Some(sender),
            permit: None,
        };
        assert_eq!(stream.check_write().expect("room"), MAX_WRITE);
        stream.write(Bytes::from_static(b"a")).expect("write");
        assert_eq!(stream.check_write().expect("full"), 0);
        assert_eq!(
            receiver.recv().await.expect("queued"),
            Bytes::from_static(b"a")
        );
        stream.ready().await;
        assert_eq!(stream.check_write().expect("room again"), MAX_WRITE);
        drop(receiver);
        stream.permit = None;
        assert!(matches!(stream.check_write(), Err(StreamError::Closed)));
    }

    #[tokio::test]
    async fn no_target_discards() {
        let (output, writer) = SharedOutput::open("stdout", &StdioTarget::None)
            .await
            .expect("none");
        let mut stream = output.p2_stream();
        assert!(stream.check_write().expect("room") > 0);
        stream
            .write(Bytes::from_static(b"gone"))
            .expect("discarded");
        writer.finish().await;
    }
}
