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
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::PollSender;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::error::ShimError;
use crate::host::stdio::{OpenedOutput, StdioTarget, open_output};

/// Writes waiting for the writer task, per stream.
const QUEUED_WRITES: usize = 1024;
/// The most a guest may write in one call.
const MAX_WRITE: usize = 64 * 1024;

/// Queued writes the writer task takes and writes at once (one syscall for the lines that
/// concurrent requests printed meanwhile; each write stays whole and in order).
const BATCHED_WRITES: usize = 64;
/// How long the writer task waits for more writes once it has one, so that a server printing a
/// line per request hands containerd's log reader a batch of lines per wake-up instead of one.
/// containerd's reader wakes, reads and writes the log file for every FIFO write; at a few
/// thousand lines a second that was a third of a core on a 2-core node.
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);
/// A batch this large is written without waiting out [`LINGER`].
const BATCH_BYTES: usize = 16 * 1024;

/// Where a stream's writer task writes. containerd hands over FIFOs: they are written
/// non-blocking through tokio's reactor. A regular file (a `file://` target) goes through
/// tokio's blocking pool, one thread hand-off per write.
enum Sink {
    Pipe(pipe::Sender),
    File(tokio::fs::File),
}

impl Sink {
    async fn open(stream: &'static str, path: &std::path::Path) -> Result<Sink, ShimError> {
        let OpenedOutput { file, is_fifo } = open_output(stream, path).await?;
        if !is_fifo {
            return Ok(Sink::File(file));
        }
        pipe::Sender::from_file(file.into_std().await)
            .map(Sink::Pipe)
            .map_err(|source| ShimError::Stdio {
                stream,
                path: path.display().to_string(),
                source,
            })
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Pipe(pipe) => pipe.write_all(bytes).await,
            Sink::File(file) => file.write_all(bytes).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Pipe(pipe) => pipe.flush().await,
            Sink::File(file) => file.flush().await,
        }
    }
}

/// Takes more queued writes into `batch` until it holds [`BATCHED_WRITES`] writes or
/// [`BATCH_BYTES`] bytes, [`LINGER`] has passed, or every sender is gone.
async fn linger(receiver: &mut mpsc::Receiver<Bytes>, batch: &mut Vec<Bytes>) {
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut bytes: usize = batch.iter().map(Bytes::len).sum();
    while bytes < BATCH_BYTES && batch.len() < BATCHED_WRITES {
        let before = batch.len();
        let room = BATCHED_WRITES - before;
        match tokio::time::timeout_at(deadline, receiver.recv_many(batch, room)).await {
            Ok(0) | Err(_) => return,
            Ok(_) => bytes += batch[before..].iter().map(Bytes::len).sum::<usize>(),
        }
    }
}

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
        let mut sink = Sink::open(stream, path).await?;
        let (sender, mut receiver) = mpsc::channel::<Bytes>(QUEUED_WRITES);
        let shown = path.display().to_string();
        let task = tokio::spawn(async move {
            let mut failed = false;
            let mut batch = Vec::with_capacity(BATCHED_WRITES);
            let mut joined = Vec::new();
            while receiver.recv_many(&mut batch, BATCHED_WRITES).await > 0 {
                linger(&mut receiver, &mut batch).await;
                if !failed {
                    let written = match batch.as_slice() {
                        [one] => sink.write_all(one).await,
                        many => {
                            joined.clear();
                            many.iter()
                                .for_each(|chunk| joined.extend_from_slice(chunk));
                            sink.write_all(&joined).await
                        }
                    };
                    if let Err(err) = written {
                        tracing::warn!(%err, stream, path = %shown, "cannot write guest output; dropping the rest");
                        failed = true;
                    }
                }
                batch.clear();
            }
            let _ = sink.flush().await;
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
    use std::time::Duration;

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

    /// A FIFO in `dir` and a thread that reads it to EOF.
    fn fifo_with_reader(
        dir: &std::path::Path,
    ) -> (
        std::path::PathBuf,
        std::thread::JoinHandle<std::io::Result<String>>,
    ) {
        let path = dir.join("fifo");
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid, NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let reader_path = path.clone();
        (
            path,
            std::thread::spawn(move || std::fs::read_to_string(reader_path)),
        )
    }

    #[tokio::test]
    async fn a_fifo_is_written_through_the_reactor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, reader) = fifo_with_reader(dir.path());
        let mut sink = Sink::open("stdout", &path).await.expect("open");
        assert!(
            matches!(sink, Sink::Pipe(_)),
            "a FIFO went to tokio's blocking pool"
        );
        sink.write_all(b"through the reactor\n")
            .await
            .expect("write");
        drop(sink);
        let read = reader.join().expect("reader thread").expect("read");
        assert_eq!(read, "through the reactor\n");
    }

    #[tokio::test]
    async fn queued_lines_reach_a_fifo_whole_and_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, reader) = fifo_with_reader(dir.path());
        let (output, writer) = SharedOutput::open("stdout", &StdioTarget::Path(path))
            .await
            .expect("open");
        // More lines than one batch, queued faster than they are written.
        let lines: Vec<String> = (0..3 * BATCHED_WRITES)
            .map(|i| format!("line {i}:{}\n", "x".repeat(i % 97)))
            .collect();
        for line in &lines {
            output.write_line(line.trim_end()).await;
        }
        drop(output);
        writer.finish().await;
        let read = reader.join().expect("reader thread").expect("read");
        assert!(
            read == lines.concat(),
            "{} bytes read, {} written",
            read.len(),
            lines.concat().len()
        );
    }

    /// A line per request, as a server under load prints them: lines queued while the writer
    /// lingers go out in its one write (one wake-up of containerd's log copier); a lone line
    /// waits no longer than the linger; a full batch does not wait.
    #[tokio::test(start_paused = true)]
    async fn the_writer_lingers_for_more_lines_but_not_past_the_linger_or_a_full_batch() {
        let (sender, mut receiver) = mpsc::channel::<Bytes>(QUEUED_WRITES);
        let mut batch = Vec::new();
        sender
            .send(Bytes::from_static(b"one\n"))
            .await
            .expect("send");
        receiver.recv_many(&mut batch, BATCHED_WRITES).await;
        let later = sender.clone();
        tokio::spawn(async move {
            tokio::time::sleep(LINGER / 2).await;
            later
                .send(Bytes::from_static(b"two\n"))
                .await
                .expect("send");
        });
        let began = tokio::time::Instant::now();
        linger(&mut receiver, &mut batch).await;
        assert_eq!(batch, [&b"one\n"[..], &b"two\n"[..]]);
        assert_eq!(began.elapsed(), LINGER, "it waited out the linger for more");

        batch.clear();
        sender
            .send(Bytes::from_static(b"alone\n"))
            .await
            .expect("send");
        receiver.recv_many(&mut batch, BATCHED_WRITES).await;
        let began = tokio::time::Instant::now();
        linger(&mut receiver, &mut batch).await;
        assert_eq!(batch.len(), 1);
        assert_eq!(
            began.elapsed(),
            LINGER,
            "a lone line waits the linger, no more"
        );

        batch.clear();
        sender
            .send(Bytes::from(vec![b'x'; BATCH_BYTES]))
            .await
            .expect("send");
        receiver.recv_many(&mut batch, BATCHED_WRITES).await;
        let began = tokio::time::Instant::now();
        linger(&mut receiver, &mut batch).await;
        assert_eq!(began.elapsed(), Duration::ZERO, "a full batch goes at once");
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
